// Every object handed to btm (captures, results, payloads) is destroyed
// exactly once, whatever happens to the task.
#include "test_support.hpp"

using namespace test;

namespace {

struct TrackedResult {
    Tracked t;
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
