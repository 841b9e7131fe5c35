// Stops: named flags, reports, no events, running tasks see the stop.
#include "test_support.hpp"

using namespace test;

TEST(Stops, AStoppedQueuedTaskNeverRunsAndGetsNoEvent) {
    Counted::reset();
    {
        btm::Manager m{btm::Config{}.max_threads(1)};  // paused
        std::atomic<int> runs{0};
        const btm::TaskId id = m.add_task([c = Counted(1), &runs] { ++runs; });
        const btm::StopReport r = m.stop_task(id);
        EXPECT_TRUE(r.found);
        EXPECT_EQ(r.before_start, 1u);
        EXPECT_EQ(r.total(), 1u);
        EXPECT_EQ(Counted::live(), 0);  // the callable was destroyed by the stop
        m.start();
        EXPECT_TRUE(m.wait_idle(kTimeout));
        EXPECT_TRUE(drain_records(m).empty());
        EXPECT_EQ(runs.load(), 0);
        EXPECT_FALSE(m.stop_task(id).found);  // no longer live
    }
    EXPECT_EQ(Counted::live(), 0);
}

TEST(Stops, NothingToStopIsNotAnError) {
    btm::Manager m;
    const btm::StopReport r = m.stop_task(123456);
    EXPECT_FALSE(r.found);
    EXPECT_EQ(r.total(), 0u);
    EXPECT_FALSE(m.stop_group(btm::Group::numbered(77)).found);
    EXPECT_FALSE(m.stop_group(m.group_named("nobody")).found);
    EXPECT_TRUE(m.stop_all().found);  // always OK for a live manager
    EXPECT_EQ(m.stop_all().total(), 0u);
}

TEST(Stops, StopDownstreamOnly) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const btm::TaskId a = m.add_task([] { return 1; });
    const btm::TaskId b = m.add_task([] { return 2; }, btm::TaskOptions{}.upstream(a));
    const btm::TaskId c = m.add_task([] { return 3; }, btm::TaskOptions{}.upstream(b));
    const btm::StopReport r = m.stop_task(b, btm::StopOptions{}.stop_upstream(false).stop_downstream(true));
    EXPECT_EQ(r.before_start, 2u);  // b and c
    m.start();
    const auto records = drain_records(m);
    EXPECT_NE(find(records, Record::completed, a), nullptr);
    EXPECT_EQ(find(records, Record::completed, b), nullptr);
    EXPECT_EQ(find(records, Record::completed, c), nullptr);
    EXPECT_EQ(count_kind(records, Record::failed), 0u);
}

TEST(Stops, StopUpstreamOnlyLetsTheDownstreamRunWithoutThatResult) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const btm::TaskId x = m.add_task([] { return 1; });
    const btm::TaskId y = m.add_task([] { return 2; }, btm::TaskOptions{}.upstream(x));
    std::atomic<std::size_t> seen{99};
    const btm::TaskId z = m.add_task([&](btm::TaskContext& ctx) { seen = ctx.upstream().size(); },
                                     btm::TaskOptions{}.upstream(y));
    const btm::StopReport r = m.stop_task(y, btm::StopOptions{}.stop_downstream(false));
    EXPECT_EQ(r.before_start, 2u);  // y and x
    m.start();
    const auto records = drain_records(m);
    EXPECT_NE(find(records, Record::completed, z), nullptr);
    EXPECT_EQ(find(records, Record::completed, x), nullptr);
    EXPECT_EQ(seen.load(), 0u);
}

TEST(Stops, DefaultFlagsStopTheWholeConnectedComponent) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const btm::TaskId a = m.add_task([] {});
    const btm::TaskId b = m.add_task([] {}, btm::TaskOptions{}.upstream(a));
    m.add_task([] {}, btm::TaskOptions{}.upstream(b));
    const btm::TaskId other = m.add_task([] {});
    EXPECT_EQ(m.stop_task(b).before_start, 3u);
    m.start();
    const auto records = drain_records(m);
    EXPECT_EQ(count_kind(records, Record::completed), 1u);
    EXPECT_NE(find(records, Record::completed, other), nullptr);
}

TEST(Stops, StopGroupStopsOnlyThatGroup) {
    btm::Manager m{btm::Config{}.max_threads(2)};
    const btm::Group thumbs = m.group_named("thumbnails");
    const btm::Group numbered = m.next_group();
    for (int i = 0; i < 3; ++i) {
        m.add_task([] {}, btm::TaskOptions{}.group(thumbs));
    }
    m.add_task([] {}, btm::TaskOptions{}.group(numbered));
    const btm::TaskId keep = m.add_task([] {});
    EXPECT_EQ(m.group_stats(thumbs).queued, 3u);
    EXPECT_EQ(m.stop_group(thumbs).before_start, 3u);
    EXPECT_EQ(m.stop_group(numbered).before_start, 1u);
    EXPECT_EQ(m.group_stats(thumbs).queued, 0u);
    m.start();
    const auto records = drain_records(m);
    EXPECT_EQ(count_kind(records, Record::completed), 1u);
    EXPECT_NE(find(records, Record::completed, keep), nullptr);
    // A group emptied by a stop does not finish; only the default group does.
    ASSERT_EQ(count_kind(records, Record::group_finished), 1u);
    for (const Record& r : records) {
        if (r.kind == Record::group_finished) {
            EXPECT_TRUE(r.group.is_default());
        }
    }
}

TEST(Stops, StopAllStopsEverythingAndTheManagerKeepsWorking) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    for (int i = 0; i < 4; ++i) {
        m.add_task([] {});
    }
    EXPECT_EQ(m.stop_all().before_start, 4u);
    m.start();
    EXPECT_TRUE(drain_records(m).empty());
    const btm::TaskId later = m.add_task([] { return 1; });
    const auto records = drain_records(m);
    EXPECT_NE(find(records, Record::completed, later), nullptr);
}

TEST(Stops, ARunningTaskSeesTheStopAndItsOutcomeIsDropped) {
    btm::Manager m{started(1)};
    Latch started_latch;
    std::atomic<bool> saw_stop{false};
    std::atomic<bool> progress_refused{false};
    const btm::TaskId id = m.add_task([&](btm::TaskContext& ctx) {
        started_latch.open();
        const auto deadline = std::chrono::steady_clock::now() + kTimeout;
        while (!ctx.is_stopped() && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
        saw_stop = ctx.is_stopped();
        progress_refused = !ctx.report_progress(0.9, "after the stop");
        return 1;
    });
    ASSERT_TRUE(started_latch.wait());
    const btm::StopReport r = m.stop_task(id);
    EXPECT_EQ(r.while_running, 1u);
    ASSERT_TRUE(m.wait_idle(kTimeout));
    EXPECT_TRUE(saw_stop.load());
    EXPECT_TRUE(progress_refused.load());
    EXPECT_TRUE(drain_records(m).empty());
}

TEST(Stops, AFinishedButUnpolledTaskIsWithdrawn) {
    btm::Manager m{started(1)};
    const btm::TaskId id = m.add_task([] { return 1; });
    ASSERT_TRUE(m.wait_idle(kTimeout));
    EXPECT_EQ(m.stop_task(id).after_finish, 1u);
    EXPECT_TRUE(drain_records(m).empty());
}
