// Bulk adds: btm::TaskBatch and Manager::add_tasks (btm_add_tasks).
#include "test_support.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace test;

namespace {

/// How many times the tracked object labelled `label` was destroyed (-1: no
/// such object).
int destroyed(const std::string& label) {
    for (const auto& [id, entry] : Tracked::snapshot()) {
        if (entry.label == label) {
            return entry.destroyed;
        }
    }
    return -1;
}

void expect_none_destroyed_yet() {
    for (const auto& [id, entry] : Tracked::snapshot()) {
        EXPECT_EQ(entry.destroyed, 0) << "object #" << id << " (" << entry.label << ") destroyed early";
    }
}

/// A payload whose copy throws (a move is fine).
struct ThrowsOnCopy {
    ThrowsOnCopy() = default;
    ThrowsOnCopy(const ThrowsOnCopy&) { throw std::runtime_error("copy refused"); }
    ThrowsOnCopy(ThrowsOnCopy&&) noexcept = default;
    ThrowsOnCopy& operator=(const ThrowsOnCopy&) = delete;
    ThrowsOnCopy& operator=(ThrowsOnCopy&&) = delete;
    int operator()() const { return 1; }
};

}  // namespace

TEST(Batch, IdsComeBackInOrderAndEveryTaskRunsAndIsPolled) {
    btm::Manager m{btm::Config{}.max_threads(3)};  // paused
    const btm::TaskId before = m.add_task([] { return -1; });
    constexpr int n = 50;
    std::atomic<int> runs{0};
    btm::TaskBatch batch;
    batch.reserve(n);
    for (int i = 0; i < n; ++i) {
        const std::size_t index = batch.add_task([i, &runs](btm::TaskContext& ctx) {
            ++runs;
            return std::make_pair(i, ctx.id());
        });
        EXPECT_EQ(index, static_cast<std::size_t>(i));
    }
    EXPECT_EQ(batch.size(), static_cast<std::size_t>(n));

    const std::vector<btm::TaskId> ids = m.add_tasks(batch);
    EXPECT_TRUE(batch.empty());
    EXPECT_EQ(batch.size(), 0u);
    ASSERT_EQ(ids.size(), static_cast<std::size_t>(n));
    const std::set<btm::TaskId> distinct(ids.begin(), ids.end());
    EXPECT_EQ(distinct.size(), ids.size());
    EXPECT_EQ(distinct.count(0), 0u);
    EXPECT_EQ(distinct.count(before), 0u);
    EXPECT_EQ(m.stats().queued, static_cast<std::uint64_t>(n + 1));

    m.start();
    std::map<btm::TaskId, std::pair<int, btm::TaskId>> results;
    bool before_done = false;
    ASSERT_TRUE(pump(
        m,
        [&](const btm::Event& e) {
            if (const auto* f = std::get_if<btm::Failed>(&e)) {
                ADD_FAILURE() << "task " << f->task_id << " failed: " << f->message;
            } else if (const auto* c = std::get_if<btm::Completed>(&e)) {
                if (c->task_id == before) {
                    EXPECT_EQ(c->result<int>(), -1);
                    before_done = true;
                } else {
                    results[c->task_id] = c->result<std::pair<int, btm::TaskId>>();
                }
            }
        },
        [&] { return before_done && results.size() == static_cast<std::size_t>(n); }));
    // ids[i] is the task made from the i-th callable, and it knew its id.
    for (int i = 0; i < n; ++i) {
        const btm::TaskId id = ids[static_cast<std::size_t>(i)];
        ASSERT_EQ(results.count(id), 1u) << "no completed event for entry " << i;
        EXPECT_EQ(results[id].first, i);
        EXPECT_EQ(results[id].second, id);
    }
    EXPECT_EQ(runs.load(), n);
    const btm::Stats s = m.stats();
    EXPECT_EQ(s.completed_total, static_cast<std::uint64_t>(n + 1));
    EXPECT_EQ(s.failed_total, 0u);
}

TEST(Batch, PrioritiesGroupsAndUpstreamAreHonoured) {
    btm::Manager m{btm::Config{}.max_threads(1)};  // paused; one worker: a strict order
    const btm::Group named = m.group_named("batch");
    const btm::Group numbered = btm::Group::numbered(77);
    std::mutex mu;
    std::vector<std::string> order;
    auto record = [&mu, &order](std::string name) {
        return [&mu, &order, name] {
            std::lock_guard<std::mutex> lock(mu);
            order.push_back(name);
            return name;
        };
    };
    const btm::TaskId a = m.add_task(record("a"));

    btm::TaskBatch batch;
    const std::size_t low = batch.add_task(record("low"), btm::TaskOptions{}.priority(-5).group(named));
    const std::size_t high = batch.add_task(record("high"), btm::TaskOptions{}.priority(10).group(named));
    // Highest priority, but it waits for `a` (added before the batch).
    const std::size_t waits = batch.add_task(
        [&mu, &order](btm::TaskContext& ctx) {
            {
                std::lock_guard<std::mutex> lock(mu);
                order.push_back("waits for a");
            }
            return ctx.upstream<std::string>(0) + "+";
        },
        btm::TaskOptions{}.upstream(a).priority(100).group(numbered));
    const std::vector<btm::TaskId> ids = m.add_tasks(batch);
    ASSERT_EQ(ids.size(), 3u);

    EXPECT_EQ(m.group_stats(named).queued, 2u);
    EXPECT_EQ(m.group_stats(numbered).blocked, 1u);
    EXPECT_EQ(m.stats().blocked, 1u);

    m.start();
    std::vector<Record> records;
    std::string waited_result;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        records.push_back(Record::of(e));
        if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == ids[waits]) {
            waited_result = c->result<std::string>();
        }
    }));
    // high (10) before a (0) before low (-5); the dependant runs as soon as a
    // completed, ahead of low thanks to its priority.
    EXPECT_EQ(order, (std::vector<std::string>{"high", "a", "waits for a", "low"}));
    EXPECT_EQ(waited_result, "a+");

    const Record* low_done = find(records, Record::completed, ids[low]);
    const Record* high_done = find(records, Record::completed, ids[high]);
    const Record* waits_done = find(records, Record::completed, ids[waits]);
    ASSERT_NE(low_done, nullptr);
    ASSERT_NE(high_done, nullptr);
    ASSERT_NE(waits_done, nullptr);
    EXPECT_EQ(low_done->group, named);
    EXPECT_EQ(low_done->group.name(), "batch");
    EXPECT_EQ(high_done->group, named);
    EXPECT_EQ(waits_done->group, numbered);
    EXPECT_EQ(waits_done->result_tasks, (std::vector<btm::TaskId>{ids[waits]}));
    std::size_t named_finished = 0;
    std::size_t numbered_finished = 0;
    for (const Record& r : records) {
        if (r.kind == Record::group_finished) {
            named_finished += r.group == named ? 1u : 0u;
            numbered_finished += r.group == numbered ? 1u : 0u;
        }
    }
    EXPECT_EQ(named_finished, 1u);
    EXPECT_EQ(numbered_finished, 1u);
    EXPECT_EQ(count_kind(records, Record::failed), 0u);
}

TEST(Batch, PassThroughTasksInABatchGather) {
    Counted::reset();
    {
        btm::Manager m{btm::Config{}.max_threads(2)};  // paused
        const btm::TaskId a = m.add_task([] { return 7; });
        const btm::TaskId b = m.add_task([] { return std::string("x"); });

        btm::TaskBatch batch;
        const std::size_t with_payload =
            batch.add_pass_through(std::string("meta"), btm::TaskOptions{}.upstream({a, b}));
        const std::size_t bare = batch.add_pass_through(btm::TaskOptions{}.upstream(a).priority(3));
        const std::size_t empty = batch.add_pass_through();
        const std::size_t counted = batch.add_pass_through(std::make_unique<Counted>(5));
        const std::size_t task = batch.add_task([] { return 2.5; }, btm::TaskOptions{}.upstream(b));
        const std::vector<btm::TaskId> ids = m.add_tasks(batch);
        ASSERT_EQ(ids.size(), 5u);

        m.start();
        int checked = 0;
        ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
            if (const auto* f = std::get_if<btm::Failed>(&e)) {
                ADD_FAILURE() << "task " << f->task_id << " failed: " << f->message;
            }
            const auto* c = std::get_if<btm::Completed>(&e);
            if (c == nullptr) {
                return;  // the default group's group-finished event
            }
            if (c->task_id == ids[with_payload]) {
                ASSERT_EQ(c->results.size(), 3u);
                EXPECT_TRUE(c->has_result());
                EXPECT_EQ(c->result<std::string>(), "meta");
                EXPECT_EQ(c->results[0].task_id(), ids[with_payload]);
                EXPECT_EQ(c->results.from(a).get<int>(), 7);
                EXPECT_EQ(c->results.from(b).get<std::string>(), "x");
                ++checked;
            } else if (c->task_id == ids[bare]) {
                EXPECT_FALSE(c->has_result());
                ASSERT_EQ(c->results.size(), 1u);
                EXPECT_EQ(c->results.from(a).get<int>(), 7);
                ++checked;
            } else if (c->task_id == ids[empty]) {
                EXPECT_TRUE(c->results.empty());
                ++checked;
            } else if (c->task_id == ids[counted]) {
                EXPECT_EQ(c->result<std::unique_ptr<Counted>>()->value, 5);
                ++checked;
            } else if (c->task_id == ids[task]) {
                EXPECT_EQ(c->result<double>(), 2.5);
                ++checked;
            }
        }));
        EXPECT_EQ(checked, 5);
    }
    EXPECT_EQ(Counted::live(), 0);
    EXPECT_GT(Counted::constructed.load(), 0);
}

namespace {

struct BadEntry {
    const char* what;
    btm::TaskOptions options;
    btm::Status expected;
};

}  // namespace

TEST(Batch, ABadEntryRejectsTheWholeBatchAndEveryCallableIsDestroyedOnce) {
    const std::vector<BadEntry> cases = {
        {"unknown upstream", btm::TaskOptions{}.upstream(987654321), btm::Status::unknown_upstream},
        {"group kind out of range", btm::TaskOptions{}.group(btm::Group(btm_group{99, 0, 0}, nullptr)),
         btm::Status::invalid_group},
        {"named group never interned",
         btm::TaskOptions{}.group(btm::Group(btm_group{BTM_GROUP_KIND_NAMED, 0, 424242}, nullptr)),
         btm::Status::invalid_group},
    };
    for (const BadEntry& bad : cases) {
        SCOPED_TRACE(bad.what);
        Tracked::reset();
        std::atomic<int> ran{0};
        btm::Manager m{btm::Config{}.max_threads(2)};  // paused
        const btm::TaskId before = m.add_task([] {});

        btm::TaskBatch batch;
        batch.add_task([t = Tracked("first"), &ran] { ++ran; });
        batch.add_pass_through(Tracked("payload"), btm::TaskOptions{}.upstream(before));
        batch.add_task([t = Tracked("bad entry"), &ran] { ++ran; }, bad.options);
        batch.add_task([t = Tracked("after the bad entry"), &ran] { ++ran; }, btm::TaskOptions{}.upstream(before));
        batch.add_pass_through(btm::TaskOptions{}.upstream(before));
        EXPECT_EQ(batch.size(), 5u);
        expect_none_destroyed_yet();  // the batch owns them

        try {
            (void)m.add_tasks(batch);
            ADD_FAILURE() << "add_tasks with a bad entry did not throw";
        } catch (const btm::Error& e) {
            EXPECT_EQ(e.status(), bad.expected);
            EXPECT_NE(std::string(e.what()).find("btm_add_tasks"), std::string::npos) << e.what();
        }
        // All or none: btm destroyed every callable and payload (once, before
        // add_tasks returned) and the batch let go of them.
        EXPECT_TRUE(batch.empty());
        EXPECT_EQ(Tracked::snapshot().size(), 4u);
        Tracked::expect_all_destroyed_once();
        const btm::Stats s = m.stats();
        EXPECT_EQ(s.queued, 1u);  // `before` only
        EXPECT_EQ(s.blocked, 0u);
        // No id was issued: ids are consecutive (as tests/semantics.rs checks).
        const btm::TaskId after = m.add_task([] {});
        EXPECT_EQ(after, before + 1);

        // The batch is reusable.
        batch.add_task([&ran] { ++ran; }, btm::TaskOptions{}.upstream({before, after}));
        const std::vector<btm::TaskId> ids = m.add_tasks(batch);
        ASSERT_EQ(ids.size(), 1u);
        m.start();
        const std::vector<Record> records = drain_records(m);
        EXPECT_EQ(count_kind(records, Record::completed), 3u);
        EXPECT_EQ(count_kind(records, Record::failed), 0u);
        EXPECT_NE(find(records, Record::completed, ids[0]), nullptr);
        EXPECT_EQ(ran.load(), 1);  // only the task of the second batch
    }
}

TEST(Batch, AShutDownManagerRejectsTheBatchAndDestroysItsCallables) {
    Tracked::reset();
    btm::Manager m{started()};
    m.shut_down();
    btm::TaskBatch batch;
    batch.add_task([t = Tracked("task")] {});
    batch.add_pass_through(Tracked("payload"));
    try {
        (void)m.add_tasks(batch);
        ADD_FAILURE() << "add_tasks after shut_down did not throw";
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::shut_down);
    }
    EXPECT_TRUE(batch.empty());
    EXPECT_EQ(Tracked::snapshot().size(), 2u);
    Tracked::expect_all_destroyed_once();
}

TEST(Batch, ABatchDestroyedOrClearedWithoutAddingDestroysItsCallables) {
    Tracked::reset();
    std::atomic<int> ran{0};
    {
        btm::TaskBatch batch;
        batch.add_task([t = Tracked("task"), &ran] { ++ran; });
        batch.add_pass_through(std::make_unique<Tracked>("payload"));
        auto shared = std::make_shared<Tracked>("shared by copies");
        auto copyable = [shared, &ran] { ++ran; };
        batch.add_task(copyable);  // an lvalue: copied
        batch.add_task(copyable);
        shared.reset();
        EXPECT_EQ(batch.size(), 4u);
        expect_none_destroyed_yet();  // the copies in the batch keep it alive

        // Moving hands the entries over; the moved-from batch owns nothing.
        btm::TaskBatch moved(std::move(batch));
        EXPECT_TRUE(batch.empty());  // NOLINT(bugprone-use-after-move): documented
        EXPECT_EQ(moved.size(), 4u);
        btm::TaskBatch assigned;
        assigned.add_task([t = Tracked("overwritten")] {});
        assigned = std::move(moved);  // destroys what `assigned` held
        EXPECT_EQ(destroyed("overwritten"), 1);
        EXPECT_EQ(destroyed("task"), 0);
        EXPECT_EQ(assigned.size(), 4u);
        EXPECT_TRUE(moved.empty());  // NOLINT(bugprone-use-after-move)
    }
    EXPECT_EQ(ran.load(), 0);
    EXPECT_EQ(Tracked::snapshot().size(), 4u);
    Tracked::expect_all_destroyed_once();

    // clear() destroys at once and leaves the batch usable.
    Tracked::reset();
    {
        btm::Manager m{started()};
        btm::TaskBatch batch;
        batch.add_task([t = Tracked("cleared")] {});
        batch.add_pass_through(Tracked("cleared payload"));
        batch.clear();
        EXPECT_TRUE(batch.empty());
        EXPECT_EQ(destroyed("cleared"), 1);
        EXPECT_EQ(destroyed("cleared payload"), 1);
        batch.add_task([t = Tracked("added after clear")] { return 5; });
        const std::vector<btm::TaskId> ids = m.add_tasks(batch);
        ASSERT_EQ(ids.size(), 1u);
        int result = 0;
        ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == ids[0]) {
                result = c->result<int>();
            }
        }));
        EXPECT_EQ(result, 5);
    }
    Tracked::expect_all_destroyed_once();
}

TEST(Batch, AnEmptyBatchIsFine) {
    btm::Manager m{started()};
    btm::TaskBatch batch;
    EXPECT_TRUE(batch.empty());
    const std::vector<btm::TaskId> ids = m.add_tasks(batch);
    EXPECT_TRUE(ids.empty());
    EXPECT_TRUE(batch.empty());
    const btm::Stats s = m.stats();
    EXPECT_EQ(s.queued + s.blocked + s.running + s.undelivered, 0u);
    EXPECT_EQ(s.completed_total, 0u);
    // A cleared batch is empty too.
    batch.add_task([] {});
    batch.clear();
    EXPECT_TRUE(m.add_tasks(batch).empty());
    EXPECT_TRUE(drain_records(m).empty());
}

TEST(Batch, AThrowingCopyLeavesTheBatchAsItWas) {
    Tracked::reset();
    btm::Manager m{btm::Config{}.max_threads(2)};
    btm::TaskBatch batch;
    batch.add_task([t = Tracked("kept")] { return 1; });
    const ThrowsOnCopy refuses;
    EXPECT_THROW(batch.add_task(refuses), std::runtime_error);              // an lvalue is copied
    EXPECT_THROW(batch.add_pass_through(refuses), std::runtime_error);
    EXPECT_EQ(batch.size(), 1u);
    EXPECT_EQ(destroyed("kept"), 0);
    batch.add_task(ThrowsOnCopy{});  // an rvalue is moved
    const std::vector<btm::TaskId> ids = m.add_tasks(batch);
    ASSERT_EQ(ids.size(), 2u);
    m.start();
    const std::vector<Record> records = drain_records(m);
    EXPECT_NE(find(records, Record::completed, ids[0]), nullptr);
    EXPECT_NE(find(records, Record::completed, ids[1]), nullptr);
    Tracked::expect_all_destroyed_once();
}

TEST(Batch, ATaskAddsABatchThroughItsContext) {
    btm::Manager m{started()};
    std::atomic<std::size_t> added{0};
    const btm::TaskId parent = m.add_task([&added](btm::TaskContext& ctx) {
        btm::TaskBatch batch;
        batch.add_task([] { return std::string("child"); });
        // Its upstream is the running task itself: issued before the batch.
        batch.add_pass_through(btm::TaskOptions{}.upstream(ctx.id()));
        const std::vector<btm::TaskId> ids = ctx.manager().add_tasks(batch);
        added = ids.size();
        return 1;
    });
    std::size_t completed = 0;
    ASSERT_TRUE(pump(
        m,
        [&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e)) {
                ++completed;
                if (c->task_id != parent && c->results.size() == 1 && c->results[0].task_id() == parent) {
                    EXPECT_EQ(c->results[0].get<int>(), 1);  // the pass-through gathered its parent
                }
            } else if (const auto* f = std::get_if<btm::Failed>(&e)) {
                ADD_FAILURE() << f->message;
            }
        },
        [&] { return completed == 3; }));
    EXPECT_EQ(added.load(), 2u);
}

// ---- btm::in_batch: an entry waits for an earlier entry of the same batch ----

TEST(Batch, AChainAndAFanInOnEarlierEntriesGoInOneBatchOnARunningManager) {
    constexpr std::size_t n = 50;      // entries 0..n-1: a chain
    constexpr std::size_t fan_in = n;  // entry n: waits for three entries and `before`
    using Seen = std::vector<std::pair<btm::TaskId, int>>;
    // Declared before the manager: its tasks use them until it is destroyed.
    std::mutex mu;
    std::atomic<int> clock{0};
    std::vector<int> started_at(n + 1, 0);  // 0: not started
    std::vector<Seen> seen(n + 1);          // the upstream results each entry saw
    Latch release;
    btm::Manager m{started(4)};
    struct OpenOnExit {
        Latch& latch;
        ~OpenOnExit() { latch.open(); }
    } open_on_exit{release};  // a failed ASSERT must not leave `before` waiting
    const btm::TaskId before = m.add_task([&release] {
        EXPECT_TRUE(release.wait());
        return 1000;
    });
    auto entry = [&mu, &clock, &started_at, &seen](std::size_t k) {
        return [k, &mu, &clock, &started_at, &seen](btm::TaskContext& ctx) {
            const int t = ++clock;
            Seen up;
            for (btm::Value v : ctx.upstream()) {
                up.emplace_back(v.task_id(), v.get<int>());
            }
            std::lock_guard<std::mutex> lock(mu);
            started_at[k] = t;
            seen[k] = std::move(up);
            return static_cast<int>(k);
        };
    };

    btm::TaskBatch batch;
    std::size_t prev = batch.add_task(entry(0));
    for (std::size_t k = 1; k < n; ++k) {
        const std::size_t index = batch.add_task(entry(k), btm::TaskOptions{}.upstream(btm::in_batch(prev)));
        EXPECT_EQ(index, k);
        prev = index;
    }
    EXPECT_EQ(batch.add_task(entry(fan_in), btm::TaskOptions{}.upstream(
                                                {btm::in_batch(0), btm::in_batch(n / 2), btm::in_batch(n - 1), before})),
              fan_in);
    const std::vector<btm::TaskId> ids = m.add_tasks(batch);
    EXPECT_TRUE(batch.empty());
    ASSERT_EQ(ids.size(), n + 1);
    for (std::size_t k = 0; k <= n; ++k) {
        EXPECT_EQ(ids[k], ids[0] + k) << "the ids of one batch are consecutive, in its order";
    }
    EXPECT_GT(ids[0], before);

    // The chain runs through while `before` holds the fan-in back.
    ASSERT_TRUE(eventually([&] {
        std::lock_guard<std::mutex> lock(mu);
        return started_at[n - 1] != 0;
    }, kTimeout));
    {
        std::lock_guard<std::mutex> lock(mu);
        EXPECT_EQ(started_at[fan_in], 0) << "the fan-in ran before the task it waits for";
    }
    EXPECT_EQ(m.stats().blocked, 1u);
    release.open();

    std::map<btm::TaskId, int> results;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        if (const auto* f = std::get_if<btm::Failed>(&e)) {
            ADD_FAILURE() << "task " << f->task_id << " failed: " << f->message;
        } else if (const auto* c = std::get_if<btm::Completed>(&e)) {
            results[c->task_id] = c->result<int>();
        }
    }));
    ASSERT_EQ(results.size(), n + 2);
    EXPECT_EQ(results[before], 1000);
    for (std::size_t k = 0; k <= n; ++k) {
        EXPECT_EQ(results[ids[k]], static_cast<int>(k));
    }

    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(seen[0].empty());
    for (std::size_t k = 1; k < n; ++k) {
        SCOPED_TRACE(k);
        EXPECT_GT(started_at[k], started_at[k - 1]) << "entry " << k << " ran before the entry it waits for";
        EXPECT_EQ(seen[k], (Seen{{ids[k - 1], static_cast<int>(k - 1)}}));
    }
    for (std::size_t k : {std::size_t{0}, n / 2, n - 1}) {
        EXPECT_GT(started_at[fan_in], started_at[k]);
    }
    Seen fan_in_seen = seen[fan_in];
    std::sort(fan_in_seen.begin(), fan_in_seen.end());
    Seen expected{{before, 1000},
                  {ids[0], 0},
                  {ids[n / 2], static_cast<int>(n / 2)},
                  {ids[n - 1], static_cast<int>(n - 1)}};
    std::sort(expected.begin(), expected.end());
    EXPECT_EQ(fan_in_seen, expected);
}

TEST(Batch, AnInBatchIndexNotBelowItsEntrysRejectsTheWholeBatch) {
    // Entry 2 of the batch below names ...
    const std::vector<BadEntry> cases = {
        {"itself", btm::TaskOptions{}.upstream(btm::in_batch(2)), btm::Status::unknown_upstream},
        {"the next entry", btm::TaskOptions{}.upstream(btm::in_batch(3)), btm::Status::unknown_upstream},
        {"an index past the end", btm::TaskOptions{}.upstream(btm::in_batch(1000)), btm::Status::unknown_upstream},
        {"the earlier entries, then itself",
         btm::TaskOptions{}.upstream({btm::in_batch(0), btm::in_batch(1), btm::in_batch(2)}),
         btm::Status::unknown_upstream},
    };
    for (const BadEntry& bad : cases) {
        SCOPED_TRACE(bad.what);
        Tracked::reset();
        std::atomic<int> ran{0};
        btm::Manager m{btm::Config{}.max_threads(2)};  // paused
        const btm::TaskId before = m.add_task([] { return 1; });

        btm::TaskBatch batch;
        batch.add_task([t = Tracked("first"), &ran] { ++ran; });
        batch.add_pass_through(Tracked("payload"), btm::TaskOptions{}.upstream({before, btm::in_batch(0)}));
        EXPECT_EQ(batch.add_task([t = Tracked("bad entry"), &ran] { ++ran; }, bad.options), 2u);
        batch.add_task([t = Tracked("waits for the bad entry"), &ran] { ++ran; },
                       btm::TaskOptions{}.upstream(btm::in_batch(2)));
        EXPECT_EQ(batch.size(), 4u);
        expect_none_destroyed_yet();

        try {
            (void)m.add_tasks(batch);
            ADD_FAILURE() << "add_tasks with a bad in_batch index did not throw";
        } catch (const btm::Error& e) {
            EXPECT_EQ(e.status(), bad.expected);
            EXPECT_NE(std::string(e.what()).find("btm_add_tasks"), std::string::npos) << e.what();
        }
        // Nothing added, every callable and payload destroyed once, the batch
        // emptied, no id issued.
        EXPECT_TRUE(batch.empty());
        EXPECT_EQ(Tracked::snapshot().size(), 4u);
        Tracked::expect_all_destroyed_once();
        const btm::Stats s = m.stats();
        EXPECT_EQ(s.queued, 1u);  // `before` only
        EXPECT_EQ(s.blocked, 0u);
        const btm::TaskId after = m.add_task([] { return 2; });
        EXPECT_EQ(after, before + 1);

        // The batch is reusable, with in_batch ids that are right this time.
        batch.add_task([&ran] {
            ++ran;
            return 10;
        });
        batch.add_task(
            [&ran](btm::TaskContext& ctx) {
                ++ran;
                return ctx.upstream<int>(0) + 1;
            },
            btm::TaskOptions{}.upstream(btm::in_batch(0)));
        const std::vector<btm::TaskId> ids = m.add_tasks(batch);
        ASSERT_EQ(ids.size(), 2u);
        EXPECT_EQ(ids[0], after + 1);
        EXPECT_EQ(ids[1], after + 2);
        m.start();
        std::map<btm::TaskId, int> results;
        ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
            if (const auto* f = std::get_if<btm::Failed>(&e)) {
                ADD_FAILURE() << "task " << f->task_id << " failed: " << f->message;
            } else if (const auto* c = std::get_if<btm::Completed>(&e)) {
                results[c->task_id] = c->result<int>();
            }
        }));
        EXPECT_EQ(results.size(), 4u);
        EXPECT_EQ(results[ids[1]], 11);
        EXPECT_EQ(ran.load(), 2);  // only the tasks of the second batch
    }
}

TEST(Batch, InBatchOutsideABatchIsAnUnknownUpstream) {
    static_assert(btm::in_batch(0) == BTM_IN_BATCH);
    static_assert(btm::in_batch(7) == (BTM_IN_BATCH | 7u));
    static_assert(noexcept(btm::in_batch(0)));
    Tracked::reset();
    btm::Manager m{started()};
    const btm::TaskId before = m.add_task([] { return 1; });

    auto expect_unknown_upstream = [](const char* function, auto&& add) {
        SCOPED_TRACE(function);
        try {
            (void)add();
            ADD_FAILURE() << "an in_batch id outside a batch was accepted";
        } catch (const btm::Error& e) {
            EXPECT_EQ(e.status(), btm::Status::unknown_upstream);
            EXPECT_NE(std::string(e.what()).find(function), std::string::npos) << e.what();
        }
    };
    expect_unknown_upstream("btm_add_task", [&] {
        return m.add_task([t = Tracked("task")] {}, btm::TaskOptions{}.upstream(btm::in_batch(0)));
    });
    expect_unknown_upstream("btm_add_task", [&] {
        return m.add_task([t = Tracked("task next to a real id")] {},
                          btm::TaskOptions{}.upstream({before, btm::in_batch(0)}));
    });
    // The index is no id: in_batch(i) is rejected even where i is an issued id.
    expect_unknown_upstream("btm_add_task", [&] {
        return m.add_task([t = Tracked("task, index equal to an issued id")] {},
                          btm::TaskOptions{}.upstream(btm::in_batch(static_cast<std::size_t>(before))));
    });
    expect_unknown_upstream("btm_add_pass_through_task", [&] {
        return m.add_pass_through(Tracked("payload"), btm::TaskOptions{}.upstream(btm::in_batch(0)));
    });
    EXPECT_EQ(Tracked::snapshot().size(), 4u);
    Tracked::expect_all_destroyed_once();

    // Nothing was added and no id issued.
    const btm::TaskId after = m.add_task([] { return 2; });
    EXPECT_EQ(after, before + 1);
    const std::vector<Record> records = drain_records(m);
    EXPECT_EQ(count_kind(records, Record::completed), 2u);
    EXPECT_EQ(count_kind(records, Record::failed), 0u);
}
