// Every object handed to btm (captures, results, payloads) is destroyed
// exactly once, whatever happens to the task.
#include "test_support.hpp"

#include <stdexcept>
#include <utility>

using namespace test;

namespace {

struct TrackedResult {
    Tracked t;
};

/// Its destructor is noexcept(false) and throws while the object is armed. A
/// move hands the armed state over, so of a chain of moves only the last
/// owner throws (like a guard that reports an unfinished job). Counts the
/// throwing destructions.
struct ThrowsOnDestroy {
    static inline std::atomic<int> thrown{0};

    bool armed = true;
    ThrowsOnDestroy() = default;
    ThrowsOnDestroy(ThrowsOnDestroy&& o) noexcept : armed(std::exchange(o.armed, false)) {}
    ThrowsOnDestroy(const ThrowsOnDestroy&) = delete;
    ThrowsOnDestroy& operator=(const ThrowsOnDestroy&) = delete;
    ThrowsOnDestroy& operator=(ThrowsOnDestroy&&) = delete;
    ~ThrowsOnDestroy() noexcept(false) {
        if (armed) {
            ++thrown;
            throw std::runtime_error("thrown by ~ThrowsOnDestroy");
        }
    }
};

/// A result type whose destructor throws every time, moved from or not,
/// counting the instances alive.
struct AlwaysThrowsOnDestroy {
    static inline std::atomic<int> alive{0};

    AlwaysThrowsOnDestroy() { ++alive; }
    AlwaysThrowsOnDestroy(AlwaysThrowsOnDestroy&&) noexcept { ++alive; }
    AlwaysThrowsOnDestroy(const AlwaysThrowsOnDestroy&) = delete;
    AlwaysThrowsOnDestroy& operator=(const AlwaysThrowsOnDestroy&) = delete;
    AlwaysThrowsOnDestroy& operator=(AlwaysThrowsOnDestroy&&) = delete;
    ~AlwaysThrowsOnDestroy() noexcept(false) {
        --alive;
        throw std::runtime_error("thrown by ~AlwaysThrowsOnDestroy");
    }
};

}  // namespace

TEST(Lifetime, EveryCapturedObjectIsDestroyedExactlyOnceOnEveryPath) {
    Tracked::reset();
    {
        btm::Manager m{btm::Config{}.max_threads(2)};  // paused

        // 1. completes, with a move-only result holding another tracked object
        const btm::TaskId completes =
            m.add_task([t = Tracked("capture: completes")] { return TrackedResult{Tracked("result")}; });
        // 2. throws
        const btm::TaskId throws = m.add_task([t = Tracked("capture: throws")]() -> int {
            throw std::runtime_error("boom");
        });
        // 3. fails through its upstream: never runs
        m.add_task([t = Tracked("capture: cascade")] {}, btm::TaskOptions{}.upstream(throws));
        // 4. stopped before it starts
        const btm::TaskId stopped = m.add_task([t = Tracked("capture: stopped")] {});
        EXPECT_EQ(m.stop_task(stopped, btm::StopOptions{}.stop_upstream(false)).before_start, 1u);
        // 5. rejected by btm (unknown upstream): add_task throws, the callable
        //    is destroyed by btm exactly once, not again by the wrapper
        try {
            m.add_task([t = Tracked("capture: rejected")] {}, btm::TaskOptions{}.upstream(987654));
            ADD_FAILURE() << "add_task with an unknown upstream did not throw";
        } catch (const btm::Error& e) {
            EXPECT_EQ(e.status(), btm::Status::unknown_upstream);
        }
        // 6. pass-through payloads: gathered and completed, and rejected
        const btm::TaskId gather =
            m.add_pass_through(std::make_shared<Tracked>("payload"), btm::TaskOptions{}.upstream(completes));
        EXPECT_THROW(m.add_pass_through(std::make_shared<Tracked>("payload: rejected"),
                                        btm::TaskOptions{}.group(btm::Group(btm_group{99, 0, 0}, nullptr))),
                     btm::Error);
        // 7. downstream that reads the result while the host polls it
        m.add_task(
            [t = Tracked("capture: downstream")](btm::TaskContext& ctx) {
                return ctx.upstream().size();
            },
            btm::TaskOptions{}.upstream(gather));
        // 8. an lvalue callable is copied: the original stays with us
        auto shared = std::make_shared<Tracked>("shared by copies");
        auto copyable = [shared] { return shared->label().size(); };
        m.add_task(copyable);
        m.add_task(copyable);

        m.start();
        const auto records = drain_records(m);
        EXPECT_NE(find(records, Record::completed, completes), nullptr);
        EXPECT_NE(find(records, Record::failed, throws), nullptr);
        EXPECT_NE(find(records, Record::completed, gather), nullptr);

        // 9. still queued when the manager is destroyed
        m.pause();
        m.add_task([t = Tracked("capture: queued at destroy")] {});
        m.add_pass_through(std::make_shared<Tracked>("payload: queued at destroy"));
        // 10. rejected after shut down
        EXPECT_EQ(m.shut_down(kTimeout), 0u);
        EXPECT_THROW(m.add_task([t = Tracked("capture: after shut down")] {}), btm::Error);
    }
    Tracked::expect_all_destroyed_once();
    EXPECT_GE(Tracked::snapshot().size(), 12u);
}

TEST(Lifetime, ResultsLiveUntilTheNextPoll) {
    Counted::reset();
    btm::Manager m{started()};
    const btm::TaskId id = m.add_task([] { return Counted(3); });
    const Counted* borrowed = nullptr;
    ASSERT_TRUE(pump(
        m,
        [&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == id) {
                borrowed = &c->result<Counted>();
            }
        },
        [&] { return borrowed != nullptr; }));
    // Polled but not released yet: the value is still there.
    EXPECT_EQ(borrowed->value, 3);
    EXPECT_EQ(Counted::live(), 1);
    // The next poll releases the previous poll's results.
    while (!m.poll().empty()) {
    }
    EXPECT_EQ(Counted::live(), 0);
}

TEST(Lifetime, ManyTasksAcrossThreadsLeakNothing) {
    Counted::reset();
    {
        btm::Manager m{started(4)};
        std::vector<btm::TaskId> ids;
        for (int i = 0; i < 200; ++i) {
            ids.push_back(m.add_task([c = Counted(i)](btm::TaskContext& ctx) {
                if (c.value % 7 == 0) {
                    throw std::runtime_error("seven");
                }
                (void)ctx;
                return Counted(c.value * 2);
            }));
        }
        m.add_pass_through(Counted(-1), btm::TaskOptions{}.upstream(ids));
        m.stop_task(ids[150], btm::StopOptions{}.stop_upstream(false).stop_downstream(false));
        std::size_t n = 0;
        ASSERT_TRUE(drain(m, [&](const btm::Event&) { ++n; }));
        EXPECT_GT(n, 150u);
    }
    EXPECT_EQ(Counted::live(), 0);
}

// The free functions btm calls catch everything: an exception thrown by the
// destructor of a callable, result or payload is swallowed on whichever
// thread btm destroys it (a worker, or the one that stops, polls or
// destroys), never std::terminate. Without the catch-all these abort.

TEST(Lifetime, ACallableWhoseDestructorThrowsIsDestroyedOnceAndTheTaskStillCompletes) {
    ThrowsOnDestroy::thrown = 0;
    {
        btm::Manager m{btm::Config{}.max_threads(1)};  // paused
        // Destroyed by btm on a worker after it ran.
        const btm::TaskId runs = m.add_task([t = ThrowsOnDestroy()] { return 7; });
        // Destroyed by btm on this thread: stopped before it starts.
        const btm::TaskId stopped = m.add_task([t = ThrowsOnDestroy()] {});
        EXPECT_EQ(m.stop_task(stopped, btm::StopOptions{}.stop_upstream(false)).before_start, 1u);
        EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 1);
        // The notify callback and the instrumentation hooks, replaced.
        m.set_notify([t = ThrowsOnDestroy()] {});
        m.clear_notify();
        m.set_task_hooks([t = ThrowsOnDestroy()](btm::TaskId, const btm::Group&, std::uint32_t) {},
                         [](btm::TaskId, const btm::Group&, std::uint32_t) {});
        m.clear_task_hooks();
        EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 3);
        // A batch cleared before it was added destroys its callable itself.
        btm::TaskBatch batch;
        batch.add_task([t = ThrowsOnDestroy()] {});
        batch.clear();
        EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 4);

        m.start();
        const auto records = drain_records(m);
        const Record* done = find(records, Record::completed, runs);
        ASSERT_NE(done, nullptr);
        EXPECT_EQ(done->result_tasks, std::vector<btm::TaskId>{runs});
        EXPECT_EQ(find(records, Record::failed, runs), nullptr);
        EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 5);

        // The worker goes on: a later task runs and completes.
        const btm::TaskId later = m.add_task([] { return 8; });
        EXPECT_NE(find(drain_records(m), Record::completed, later), nullptr);
    }
    EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 5);
}

TEST(Lifetime, AResultWhoseDestructorThrowsIsReadableThenDestroyedOnce) {
    ThrowsOnDestroy::thrown = 0;
    {
        btm::Manager m{started(1)};
        const btm::TaskId id = m.add_task([] { return ThrowsOnDestroy(); });
        // A downstream task reads it too (only the host destroys it: it is
        // released by the poll after the one that delivered it).
        const btm::TaskId reader = m.add_task(
            [](btm::TaskContext& ctx) { return ctx.upstream<ThrowsOnDestroy>(0).armed; },
            btm::TaskOptions{}.upstream(id));
        bool armed = false;
        bool read = false;
        ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == id) {
                armed = c->result<ThrowsOnDestroy>().armed;
            } else if (c != nullptr && c->task_id == reader) {
                read = c->result<bool>();
            }
        }));
        EXPECT_TRUE(armed);
        EXPECT_TRUE(read);
        EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 1);

        const btm::TaskId later = m.add_task([] { return 8; });
        EXPECT_NE(find(drain_records(m), Record::completed, later), nullptr);
    }
    EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 1);
}

TEST(Lifetime, APassThroughPayloadWhoseDestructorThrowsIsDestroyedOnce) {
    ThrowsOnDestroy::thrown = 0;
    {
        btm::Manager m{started(1)};
        const btm::TaskId direct = m.add_pass_through(ThrowsOnDestroy());
        btm::TaskBatch batch;
        batch.add_pass_through(ThrowsOnDestroy());
        const std::vector<btm::TaskId> batched = m.add_tasks(batch);
        ASSERT_EQ(batched.size(), 1u);
        const auto records = drain_records(m);
        EXPECT_NE(find(records, Record::completed, direct), nullptr);
        EXPECT_NE(find(records, Record::completed, batched[0]), nullptr);
        EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 2);
        // Payloads still queued when the manager is destroyed.
        m.pause();
        m.add_pass_through(ThrowsOnDestroy());
    }
    EXPECT_EQ(ThrowsOnDestroy::thrown.load(), 3);
}

TEST(Lifetime, AResultWhoseDestructorAlwaysThrowsIsMadeInPlaceAndNotLeaked) {
    AlwaysThrowsOnDestroy::alive = 0;
    {
        btm::Manager m{started(1)};
        // The result is made in its box (no temporary moved from, whose
        // destructor would throw inside the task after the box was made).
        const btm::TaskId id = m.add_task([] { return AlwaysThrowsOnDestroy(); });
        const btm::TaskId with_ctx = m.add_task([](btm::TaskContext&) { return AlwaysThrowsOnDestroy(); });
        const auto records = drain_records(m);
        EXPECT_NE(find(records, Record::completed, id), nullptr);
        EXPECT_NE(find(records, Record::completed, with_ctx), nullptr);
        EXPECT_EQ(find(records, Record::failed, id), nullptr);
        EXPECT_EQ(find(records, Record::failed, with_ctx), nullptr);
        const btm::TaskId later = m.add_task([] { return 8; });
        EXPECT_NE(find(drain_records(m), Record::completed, later), nullptr);
    }
    EXPECT_EQ(AlwaysThrowsOnDestroy::alive.load(), 0);
}
