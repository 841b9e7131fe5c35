// The Manager handle: RAII, move-only, raw access, config, C API errors.
#include "test_support.hpp"

#include <cstring>
#include <type_traits>

using namespace test;

static_assert(!std::is_copy_constructible_v<btm::Manager>);
static_assert(!std::is_copy_assignable_v<btm::Manager>);
static_assert(std::is_nothrow_move_constructible_v<btm::Manager>);
static_assert(std::is_nothrow_move_assignable_v<btm::Manager>);
static_assert(!std::is_copy_constructible_v<btm::TaskContext>);

TEST(Manager, VersionOfLoadedLibraryMatchesHeader) {
    EXPECT_STREQ(btm::version(), BTM_VERSION);
}

TEST(Manager, IsMoveOnlyAndExposesTheRawHandle) {
    btm::Manager a;
    btm_manager* raw = a.get();
    ASSERT_NE(raw, nullptr);
    EXPECT_EQ(a.raw(), raw);
    EXPECT_TRUE(static_cast<bool>(a));

    btm::Manager b = std::move(a);
    EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_FALSE(static_cast<bool>(a));
    EXPECT_EQ(b.get(), raw);

    // The raw handle works with the C API.
    EXPECT_EQ(btm_start_processing(b.get()), BTM_STATUS_OK);
    btm_stats stats{};
    EXPECT_EQ(btm_get_stats(b.get(), &stats), BTM_STATUS_OK);

    // Move assignment destroys the old manager and takes the new one.
    btm::Manager c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);

    // release() / adopt() hand the C handle over.
    btm_manager* released = c.release();
    EXPECT_EQ(released, raw);
    EXPECT_EQ(c.get(), nullptr);
    btm::Manager d = btm::Manager::adopt(released);
    EXPECT_EQ(d.get(), raw);
    d.reset();
    EXPECT_EQ(d.get(), nullptr);
}

TEST(Manager, RefIsABorrowedHandleWithTheSameOperations) {
    btm::Manager m{started()};
    btm::ManagerRef r = m.ref();
    EXPECT_EQ(r.get(), m.get());
    const btm::TaskId id = r.add_task([] { return 1; });
    bool done = false;
    ASSERT_TRUE(pump(
        m, [&](const btm::Event& e) { done = done || std::holds_alternative<btm::Completed>(e); }, [&] { return done; }));
    EXPECT_NE(id, 0u);
}

TEST(Manager, CApiErrorsBecomeBtmErrorWithTheStatus) {
    try {
        btm::Manager bad{btm::Config{}.max_threads(-1)};
        FAIL() << "btm_create accepted max_threads -1";
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::invalid_thread_count);
        EXPECT_EQ(e.code(), static_cast<std::uint32_t>(BTM_STATUS_INVALID_THREAD_COUNT));
        EXPECT_NE(std::strstr(e.what(), "btm_create"), nullptr) << e.what();
        EXPECT_NE(std::strstr(e.what(), btm_status_str(BTM_STATUS_INVALID_THREAD_COUNT)), nullptr) << e.what();
    }

    btm::Manager m;
    try {
        m.add_task([] {}, btm::TaskOptions{}.upstream(999));
        FAIL() << "an upstream id never issued was accepted";
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::unknown_upstream);
        EXPECT_NE(std::strstr(e.what(), "btm_add_task"), nullptr) << e.what();
    }
    EXPECT_THROW(m.set_max_threads(-5), btm::Error);
    EXPECT_THROW(m.set_max_threads(BTM_MAX_THREADS_LIMIT + 1), btm::Error);
    EXPECT_STREQ(btm::status_str(btm::Status::ok), btm_status_str(BTM_STATUS_OK));
}

TEST(Manager, AFailedCreateDestroysTheThreadHooksExactlyOnce) {
    // btm_create owns the hooks on every call, even a failing one: btm
    // destroys the manager's copy, the wrapper must not destroy it again.
    Counted::reset();
    {
        const btm::Config config =
            btm::Config{}.max_threads(-1).on_thread_start([c = Counted(1)](std::uint32_t) { (void)c; });
        const int own = Counted::live();
        EXPECT_THROW({ btm::Manager bad{config}; }, btm::Error);
        EXPECT_EQ(Counted::live(), own);  // only the config's own copy is left
    }
    EXPECT_EQ(Counted::live(), 0);
}

TEST(Manager, ThreadHooksRunOnEveryWorker) {
    std::atomic<int> starts{0};
    std::atomic<int> stops{0};
    {
        btm::Manager m{started(2)
                           .on_thread_start([&](std::uint32_t) { ++starts; })
                           .on_thread_stop([&](std::uint32_t) {
                               ++stops;
                               throw std::runtime_error("swallowed: must not reach Rust");
                           })};
        m.add_task([] { return 1; });
        ASSERT_TRUE(m.wait_idle(kTimeout));
        EXPECT_GE(starts.load(), 1);
    }
    EXPECT_EQ(starts.load(), stops.load());
}

TEST(Manager, StartPauseWaitIdleAndStats) {
    btm::Manager m{btm::Config{}.max_threads(1)};  // paused
    m.add_task([] { return 1; });
    m.add_task([] { return 2; });
    btm::Stats s = m.stats();
    EXPECT_EQ(s.queued, 2u);
    EXPECT_EQ(s.running, 0u);
    EXPECT_FALSE(m.wait_idle(50ms));  // paused with queued tasks: times out
    EXPECT_FALSE(m.wait_events(10ms));
    m.start();
    m.start();  // idempotent
    ASSERT_TRUE(m.wait_idle(kTimeout));
    EXPECT_TRUE(m.wait_events(kTimeout));
    s = m.stats();
    EXPECT_EQ(s.completed_total, 2u);
    EXPECT_EQ(s.undelivered, 2u);
    m.pause();
    m.add_task([] { return 3; });
    EXPECT_EQ(m.stats().queued, 1u);
}

TEST(Manager, ShutDownRejectsNewTasksAndSecondShutDown) {
    btm::Manager m{started()};
    EXPECT_EQ(m.shut_down(kTimeout), 0u);
    try {
        m.add_task([] {});
        FAIL();
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::shut_down);
    }
    try {
        m.shut_down();
        FAIL();
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::already_shut_down);
    }
    EXPECT_THROW(m.wait_events(10ms), btm::Error);
}
