// Host integration: notify callback, event fd, instrumentation hooks, drain.
#include "test_support.hpp"

#include <poll.h>

#include <set>

using namespace test;

namespace {

bool readable(int fd, int timeout_ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

}  // namespace

TEST(Host, NotifyCallbackWakesTheHostOncePerPoll) {
    Counted::reset();
    {
        btm::Manager m{started(1)};
        std::atomic<int> calls{0};
        Latch first;
        m.set_notify([&calls, &first, c = Counted(1)] {
            ++calls;
            first.open();
        });
        const btm::TaskId id = m.add_task([] { return 5; });
        ASSERT_TRUE(first.wait());
        ASSERT_TRUE(m.wait_idle(kTimeout));
        EXPECT_EQ(calls.load(), 1);  // at most once until the host polls
        int result = 0;
        const std::size_t n = m.drain([&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == id) {
                result = c->result<int>();
            }
        });
        EXPECT_EQ(n, 2u);  // completed + group finished
        EXPECT_EQ(result, 5);
        // A new empty-to-non-empty transition notifies again.
        m.add_task([] {});
        const auto deadline = std::chrono::steady_clock::now() + kTimeout;
        while (calls.load() < 2 && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(1ms);
        }
        EXPECT_EQ(calls.load(), 2);
        // Replacing the callback destroys the old one exactly once.
        EXPECT_EQ(Counted::live(), 1);
        m.clear_notify();
        // Freed "after any call in progress": possibly on the worker, a
        // moment after clear_notify returned.
        EXPECT_TRUE(eventually([] { return Counted::live() == 0; }));
        m.set_notify([c = Counted(2)] { throw std::runtime_error("swallowed"); });
        m.drain([](const btm::Event&) {});
        m.add_task([] {});
        ASSERT_TRUE(m.wait_idle(kTimeout));
        EXPECT_EQ(m.drain([](const btm::Event&) {}), 2u);
    }
    // The last callback was freed with the manager, before btm_destroy
    // returned: exactly once.
    EXPECT_EQ(Counted::live(), 0);
    EXPECT_EQ(Counted::constructed.load(), Counted::destroyed.load());
}

// btm_destroy promises that no btm thread calls host code afterwards, and
// that manager-lifetime userdata (thread hooks, notify callback) is freed
// when the manager is freed: so all of it is gone when destroy returns. (A
// plugin may be unloaded right after.) Regression test for a bug fixed in
// 575941f, where the exiting worker dropped the last reference later.
TEST(Host, ManagerUserdataIsFreedBeforeDestroyReturns) {
    for (int i = 0; i < 20; ++i) {
        Counted::reset();
        {
            btm::Manager m{started(1).on_thread_start([c = Counted(1)](std::uint32_t) { (void)c; })};
            m.set_notify([c = Counted(2)] { (void)c; });
            m.add_task([] {});
            ASSERT_TRUE(m.wait_idle(kTimeout));
        }
        ASSERT_EQ(Counted::live(), 0) << "run " << i << ": userdata freed after btm_destroy returned";
    }
}

TEST(Host, EventFdIsReadableExactlyWhileEventsAreUndelivered) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const int fd = m.event_fd();
    ASSERT_GE(fd, 0);
    EXPECT_EQ(m.event_fd(), fd);  // the same descriptor every time
    EXPECT_FALSE(readable(fd, 0));
    m.add_task([] { return 1; });
    m.start();
    EXPECT_TRUE(readable(fd, 20000));
    EXPECT_TRUE(readable(fd, 0));  // level-triggered: still readable
    ASSERT_TRUE(m.wait_idle(kTimeout));
    EXPECT_EQ(m.drain([](const btm::Event&) {}, 1), 2u);  // capacity 1: several polls
    EXPECT_FALSE(readable(fd, 0));
}

#ifndef _WIN32
TEST(Host, TheEventHandleIsWindowsOnly) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    try {
        (void)m.event_handle();
        FAIL() << "event_handle() returned on a system without event objects";
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::unsupported);
    }
}
#endif

TEST(Host, InstrumentationHooksSeeEveryTaskButNotPassThroughs) {
    Counted::reset();
    {
        btm::Manager m{btm::Config{}.max_threads(2)};
        const btm::Group g = m.group_named("profiled");
        std::mutex mu;
        std::multiset<btm::TaskId> started_ids, ended_ids;
        std::atomic<bool> bad_worker{false};
        std::atomic<bool> bad_group{false};
        std::set<std::string> hook_names;
        m.set_task_hooks(
            [&, c = Counted(1)](btm::TaskId id, const btm::Group& group, std::uint32_t worker) {
                // Hooks see groups without names; the manager gives them back.
                std::string name = m.group_name(group);
                std::lock_guard<std::mutex> lock(mu);
                started_ids.insert(id);
                hook_names.insert(group.name() + "|" + name);
                bad_worker = bad_worker || worker >= 2;
                bad_group = bad_group || group != g;
            },
            [&](btm::TaskId id, const btm::Group&, std::uint32_t) {
                {
                    std::lock_guard<std::mutex> lock(mu);
                    ended_ids.insert(id);
                }
                throw std::runtime_error("swallowed: must not reach Rust");
            });
        std::vector<btm::TaskId> ids;
        for (int i = 0; i < 10; ++i) {
            ids.push_back(m.add_task([i] { return i; }, btm::TaskOptions{}.group(g)));
        }
        const btm::TaskId pass = m.add_pass_through(btm::TaskOptions{}.upstream(ids).group(g));
        m.start();
        std::size_t completed = 0;
        ASSERT_TRUE(drain(m, [&](const btm::Event& e) { completed += std::holds_alternative<btm::Completed>(e); }));
        EXPECT_EQ(completed, 11u);
        {
            std::lock_guard<std::mutex> lock(mu);
            EXPECT_EQ(started_ids, std::multiset<btm::TaskId>(ids.begin(), ids.end()));
            EXPECT_EQ(ended_ids, started_ids);
            EXPECT_EQ(started_ids.count(pass), 0u);
        }
        EXPECT_FALSE(bad_worker.load());
        EXPECT_FALSE(bad_group.load());
        {
            std::lock_guard<std::mutex> lock(mu);
            EXPECT_EQ(hook_names, std::set<std::string>{"|profiled"});
        }
        EXPECT_EQ(m.group_name(g), "profiled");
        EXPECT_EQ(m.group_name(btm::Group::numbered(7)), "");
        EXPECT_EQ(m.group_name(btm::Group()), "");
        btm_group unknown = g.raw();
        unknown.value += 1000;
        EXPECT_THROW(m.group_name(btm::Group(unknown, nullptr)), btm::Error);
        EXPECT_EQ(Counted::live(), 1);
        m.clear_task_hooks();
        m.add_task([] {});
        ASSERT_TRUE(m.wait_idle(kTimeout));
        // Replaced hooks are freed once no task that started with them runs
        // (possibly on the worker, just after its on_end hook).
        EXPECT_TRUE(eventually([] { return Counted::live() == 0; }));
        std::lock_guard<std::mutex> lock(mu);
        EXPECT_EQ(started_ids.size(), 10u);
    }
    EXPECT_EQ(Counted::live(), 0);
}

TEST(Host, DrainAcceptsAHandlerObject) {
    struct Handler {
        int completed = 0;
        void on_completed(const btm::Completed&) { ++completed; }
    };
    btm::Manager m{started(2)};
    for (int i = 0; i < 150; ++i) {
        m.add_task([] {});
    }
    ASSERT_TRUE(m.wait_idle(kTimeout));
    Handler h;
    EXPECT_EQ(m.drain(h, 16), 151u);  // 150 completed + 1 group finished
    EXPECT_EQ(h.completed, 150);
    EXPECT_EQ(m.drain(h), 0u);
}

// A notify callback comes only when the event queue goes from empty to
// non-empty, so drain() must empty it even if the sink throws. Regression:
// drain() stopped after the batch that threw; the events left queued never
// caused another notify call, and a host woken only by set_notify stalled.
TEST(Host, ADrainWhoseSinkThrowsStillEmptiesTheQueueSoNotifyComesAgain) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    std::atomic<int> calls{0};
    m.set_notify([&calls] { ++calls; });
    constexpr std::size_t tasks = 130;  // more than two batches of 64
    for (std::size_t i = 0; i < tasks; ++i) {
        m.add_task([] {});
    }
    m.start();
    ASSERT_TRUE(m.wait_idle(kTimeout));
    ASSERT_TRUE(eventually([&] { return calls.load() == 1; }));
    std::size_t seen = 0;
    EXPECT_THROW(m.drain([&](const btm::Event&) {
        if (++seen == 1) {
            throw std::runtime_error("the host failed on one event");
        }
    }),
                 std::runtime_error);
    EXPECT_EQ(seen, tasks + 1);  // every completion and the group finished
    EXPECT_EQ(m.stats().undelivered, 0u);
    // The queue was emptied, so the next event notifies the host again.
    m.add_task([] {});
    EXPECT_TRUE(eventually([&] { return calls.load() == 2; }));
}

// A handler that ends the manager's life through the Manager (reset(), or
// assigning another manager to it: a host closing a job when it fails or
// finishes) must not be handed the rest of the polled batch: those events'
// results were freed by btm_destroy. Regression: drain() and poll(handler)
// went on delivering them (heap-use-after-free under ASan when a handler
// read a result), then drain() polled the emptied Manager and threw
// btm::Error(null_argument).
TEST(Host, AHandlerThatResetsTheManagerEndsTheDelivery) {
    for (int variant = 0; variant < 3; ++variant) {
        SCOPED_TRACE(variant == 0 ? "drain, reset()" : variant == 1 ? "poll(handler), reset()" : "drain, move-assign");
        btm::Manager m{btm::Config{}.max_threads(1)};
        for (int i = 0; i < 3; ++i) {
            m.add_task([i] { return std::string(64, static_cast<char>('a' + i)); });
        }
        m.start();
        ASSERT_TRUE(m.wait_idle(kTimeout));
        struct Host {
            btm::Manager& m;
            int variant;
            int completed = 0;
            std::string last;
            void on_completed(const btm::Completed& c) {
                ++completed;
                last = c.result<std::string>();  // reads the borrowed result
                if (variant == 2) {
                    m = btm::Manager{btm::Config{}.max_threads(1)};
                } else {
                    m.reset();
                }
            }
        } host{m, variant, 0, {}};
        if (variant == 1) {
            EXPECT_NO_THROW(m.poll(host));
        } else {
            EXPECT_NO_THROW(m.drain(host));
        }
        EXPECT_EQ(host.completed, 1);
        EXPECT_EQ(host.last, std::string(64, 'a'));
    }
}
