// btm::TaskBatch under std::bad_alloc. This program replaces the global
// operator new so that a chosen allocation of the current thread fails; it is
// a separate executable so that the replacement touches no other test.
#include "test_support.hpp"

#include <cstdlib>
#include <new>
#include <string>
#include <vector>

namespace {

/// -1: never fail; n >= 0: the n-th next operator new of this thread (0 being
/// the very next one) throws std::bad_alloc, then allocations succeed again.
thread_local long fail_in = -1;

}  // namespace

void* operator new(std::size_t size) {
    if (fail_in == 0) {
        fail_in = -1;
        throw std::bad_alloc();
    }
    if (fail_in > 0) {
        --fail_in;
    }
    if (void* p = std::malloc(size == 0 ? 1 : size)) {
        return p;
    }
    throw std::bad_alloc();
}
// GCC 12 at -O2 may inline these into library code and then warn that free()
// releases what operator new returned: they are the matching pair here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

using namespace test;

TEST(BatchAlloc, AnAppendFailingAtAnyAllocationLeavesTheBatchAsItWas) {
    Tracked::reset();
    std::size_t expected_tasks = 0;
    int failures = 0;
    {
        btm::Manager m{btm::Config{}.max_threads(2)};  // paused
        const btm::TaskId a = m.add_task([] { return 1; });
        const btm::TaskId b = m.add_task([] { return 2; });
        const btm::TaskId c = m.add_task([] { return 3; });
        expected_tasks = 3;
        for (long k = 0;; ++k) {
            ASSERT_LT(k, 100) << "an append never succeeded";
            // A batch with one entry, then an append whose k-th allocation fails.
            btm::TaskBatch batch;
            batch.add_task([t = Tracked("kept " + std::to_string(k))] { return 0; }, btm::TaskOptions{}.upstream(a));
            auto fn = [t = Tracked("attempt " + std::to_string(k))] { return 4; };
            const btm::TaskOptions opts = btm::TaskOptions{}.upstream({a, b, c}).priority(1);
            bool threw = false;
            fail_in = k;
            try {
                batch.add_task(std::move(fn), opts);
            } catch (const std::bad_alloc&) {
                threw = true;
            }
            fail_in = -1;
            if (threw) {
                ++failures;
                EXPECT_EQ(batch.size(), 1u) << "allocation " << k;
            } else {
                EXPECT_EQ(batch.size(), 2u);
            }
            // The batch still works: its entries are added and run.
            const std::vector<btm::TaskId> ids = m.add_tasks(batch);
            EXPECT_EQ(ids.size(), threw ? 1u : 2u);
            expected_tasks += ids.size();
            if (!threw) {
                break;
            }
        }
        // make_unique of the callable, the upstream ids, the descriptor.
        EXPECT_GE(failures, 3);
        m.start();
        const std::vector<Record> records = drain_records(m);
        EXPECT_EQ(count_kind(records, Record::completed), expected_tasks);
        EXPECT_EQ(count_kind(records, Record::failed), 0u);
    }
    // Every callable (those whose append failed too) destroyed exactly once.
    Tracked::expect_all_destroyed_once();
}

TEST(BatchAlloc, AddTasksFailingBeforeTheCallKeepsTheBatch) {
    Tracked::reset();
    {
        btm::Manager m{btm::Config{}.max_threads(2)};  // paused
        btm::TaskBatch batch;
        batch.add_task([t = Tracked("one")] { return 1; });
        batch.add_pass_through(Tracked("payload"));
        bool threw = false;
        fail_in = 0;  // the id vector
        try {
            (void)m.add_tasks(batch);
        } catch (const std::bad_alloc&) {
            threw = true;
        }
        fail_in = -1;
        EXPECT_TRUE(threw);
        EXPECT_EQ(batch.size(), 2u);
        EXPECT_EQ(m.stats().queued, 0u);
        for (const auto& [id, entry] : Tracked::snapshot()) {
            EXPECT_EQ(entry.destroyed, 0) << entry.label;
        }
        const std::vector<btm::TaskId> ids = m.add_tasks(batch);
        ASSERT_EQ(ids.size(), 2u);
        EXPECT_TRUE(batch.empty());
        m.start();
        const std::vector<Record> records = drain_records(m);
        EXPECT_NE(find(records, Record::completed, ids[0]), nullptr);
        EXPECT_NE(find(records, Record::completed, ids[1]), nullptr);
    }
    Tracked::expect_all_destroyed_once();
}
