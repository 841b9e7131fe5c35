// add_task with every kind of callable, typed results, typed upstream results.
#include "test_support.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

using namespace test;

namespace {

int free_function(btm::TaskContext& ctx) { return ctx.id() != 0 ? 1 : -1; }

struct Functor {
    int offset;
    int operator()() const { return 2 + offset; }
};

/// Runs the manager until every id in `ids` completed or failed, calling
/// `on_completed` for completions (results valid inside the call).
template <class F>
std::vector<Record> run_until_done(const btm::Manager& m, const std::vector<btm::TaskId>& ids, F&& on_completed) {
    std::vector<Record> records;
    std::size_t finals = 0;
    EXPECT_TRUE(pump(
        m,
        [&](const btm::Event& e) {
            records.push_back(Record::of(e));
            if (const auto* c = std::get_if<btm::Completed>(&e)) {
                on_completed(*c);
            }
            const Record& r = records.back();
            if ((r.kind == Record::completed || r.kind == Record::failed) &&
                std::find(ids.begin(), ids.end(), r.task) != ids.end()) {
                ++finals;
            }
        },
        [&] { return finals == ids.size(); }));
    return records;
}

}  // namespace

TEST(Tasks, LambdaWithCapturesReturnsATypedResult) {
    btm::Manager m{started()};
    int base = 40;
    const std::string suffix = "!";
    std::atomic<int> runs{0};
    btm::TaskId seen_id = 0;
    const btm::TaskId id = m.add_task([base, suffix, &runs, &seen_id](btm::TaskContext& ctx) {
        ++runs;
        seen_id = ctx.id();
        return std::to_string(base + 2) + suffix;
    });
    bool checked = false;
    run_until_done(m, {id}, [&](const btm::Completed& c) {
        EXPECT_EQ(c.task_id, id);
        EXPECT_TRUE(c.has_result());
        EXPECT_EQ(c.result<std::string>(), "42!");
        ASSERT_EQ(c.results.size(), 1u);
        EXPECT_EQ(c.results[0].task_id(), id);
        EXPECT_TRUE(c.results[0].is<std::string>());
        EXPECT_FALSE(c.results[0].is<int>());
        EXPECT_NE(c.results[0].type_name().find("string"), std::string_view::npos);
        checked = true;
    });
    EXPECT_TRUE(checked);
    EXPECT_EQ(runs.load(), 1);
    EXPECT_EQ(seen_id, id);
}

TEST(Tasks, NoArgumentCallablesAndVoidTasks) {
    btm::Manager m{started()};
    std::atomic<bool> flag{false};
    const btm::TaskId with_value = m.add_task([] { return 7; });
    const btm::TaskId without = m.add_task([&flag] { flag = true; });
    const btm::TaskId ctx_void = m.add_task([](btm::TaskContext& ctx) { (void)ctx; });
    int checked = 0;
    run_until_done(m, {with_value, without, ctx_void}, [&](const btm::Completed& c) {
        if (c.task_id == with_value) {
            EXPECT_EQ(c.result<int>(), 7);
        } else {
            EXPECT_FALSE(c.has_result());
            EXPECT_TRUE(c.results.empty());
            try {
                (void)c.result<int>();
                ADD_FAILURE() << "result<int>() of a void task did not throw";
            } catch (const btm::BadResultAccess& e) {
                EXPECT_NE(std::string(e.what()).find("without a result"), std::string::npos) << e.what();
            }
        }
        ++checked;
    });
    EXPECT_EQ(checked, 3);
    EXPECT_TRUE(flag.load());
}

TEST(Tasks, FunctionPointersFunctionObjectsAndStdFunction) {
    btm::Manager m{started()};
    std::function<int()> plain = [] { return 3; };
    std::function<int(btm::TaskContext&)> with_ctx = [](btm::TaskContext&) { return 4; };
    const Functor functor{0};
    std::map<btm::TaskId, int> expected;
    expected[m.add_task(&free_function)] = 1;
    expected[m.add_task(free_function)] = 1;
    expected[m.add_task(functor)] = 2;        // copied (lvalue)
    expected[m.add_task(Functor{3})] = 5;     // moved (rvalue)
    expected[m.add_task(plain)] = 3;
    expected[m.add_task(std::move(with_ctx))] = 4;
    EXPECT_TRUE(static_cast<bool>(plain));  // an lvalue is copied, not consumed
    std::vector<btm::TaskId> ids;
    for (const auto& kv : expected) {
        ids.push_back(kv.first);
    }
    std::map<btm::TaskId, int> got;
    run_until_done(m, ids, [&](const btm::Completed& c) { got[c.task_id] = c.result<int>(); });
    EXPECT_EQ(got, expected);
}

TEST(Tasks, MoveOnlyCapturesAndMoveOnlyResults) {
    btm::Manager m{started()};
    auto input = std::make_unique<int>(41);
    const btm::TaskId id = m.add_task([p = std::move(input)]() mutable {
        // The callable is invoked once, as an rvalue: it may consume captures.
        std::unique_ptr<int> mine = std::move(p);
        return std::make_unique<std::string>(std::to_string(*mine + 1));
    });
    EXPECT_EQ(input, nullptr);
    bool checked = false;
    run_until_done(m, {id}, [&](const btm::Completed& c) {
        const auto& result = c.result<std::unique_ptr<std::string>>();
        ASSERT_NE(result, nullptr);
        EXPECT_EQ(*result, "42");
        checked = true;
    });
    EXPECT_TRUE(checked);
}

TEST(Tasks, ResultTypeMismatchThrowsAClearError) {
    btm::Manager m{started()};
    const btm::TaskId id = m.add_task([] { return 42; });
    bool checked = false;
    run_until_done(m, {id}, [&](const btm::Completed& c) {
        try {
            (void)c.result<std::string>();
            ADD_FAILURE() << "no exception on a type mismatch";
        } catch (const btm::BadResultAccess& e) {
            const std::string what = e.what();
            EXPECT_NE(what.find("holds int"), std::string::npos) << what;
            EXPECT_NE(what.find("string"), std::string::npos) << what;
            EXPECT_NE(what.find("task " + std::to_string(id)), std::string::npos) << what;
        }
        EXPECT_THROW((void)c.result<long>(), btm::BadResultAccess);
        EXPECT_THROW((void)c.result<unsigned>(), btm::BadResultAccess);
        EXPECT_THROW((void)c.results.get<int>(1), std::out_of_range);
        EXPECT_EQ(c.results[0].get_if<double>(), nullptr);
        ASSERT_NE(c.results[0].get_if<int>(), nullptr);
        EXPECT_EQ(*c.results[0].get_if<int>(), 42);
        EXPECT_EQ(c.results[0].type_name(), "int");
        checked = true;
    });
    EXPECT_TRUE(checked);
}

// Naming the type with a reference or cv-qualifier (as with std::any_cast)
// reads the boxed T. Regression: get<const std::string&>() passed the type
// check (typeid ignores references) and read a Box<const std::string&> that
// was never made: the string's bytes taken as a pointer (SEGV under ASan).
TEST(Tasks, TypedAccessThroughAReferenceOrConstTypeReadsTheBoxedType) {
    btm::Manager m{started()};
    const std::string text = "a result long enough to live on the heap";
    const btm::TaskId a = m.add_task([text] { return text; });
    const btm::TaskId b = m.add_task(
        [](btm::TaskContext& ctx) { return ctx.upstream<const std::string&>(0).size(); },
        btm::TaskOptions{}.upstream(a));
    bool checked_a = false, checked_b = false;
    run_until_done(m, {a, b}, [&](const btm::Completed& c) {
        if (c.task_id == a) {
            EXPECT_EQ(c.result<const std::string&>(), text);
            EXPECT_EQ(c.result<const std::string>(), text);
            EXPECT_EQ(c.results.get<std::string&&>(0), text);
            EXPECT_TRUE(c.results[0].is<const std::string&>());
            ASSERT_NE(c.results[0].get_if<const std::string>(), nullptr);
            EXPECT_EQ(c.results.all_of<const std::string>().size(), 1u);
            EXPECT_THROW((void)c.result<const int&>(), btm::BadResultAccess);
            checked_a = true;
        } else if (c.task_id == b) {
            EXPECT_EQ(c.result<const std::size_t&>(), text.size());
            checked_b = true;
        }
    });
    EXPECT_TRUE(checked_a);
    EXPECT_TRUE(checked_b);
}

TEST(Tasks, UpstreamResultsAreTypedAndInCompletionOrder) {
    btm::Manager m{btm::Config{}.max_threads(1)};  // one worker: a, then b
    const btm::TaskId a = m.add_task([] { return 20; }, btm::TaskOptions{}.priority(2));
    const btm::TaskId b = m.add_task([] { return std::string("x"); }, btm::TaskOptions{}.priority(1));
    const btm::TaskId c = m.add_task(
        [a, b](btm::TaskContext& ctx) {
            EXPECT_EQ(ctx.upstream().size(), 2u);
            EXPECT_EQ(ctx.upstream()[0].task_id(), a);
            EXPECT_EQ(ctx.upstream()[1].task_id(), b);
            EXPECT_EQ(ctx.upstream().from(b).get<std::string>(), "x");
            EXPECT_TRUE(ctx.upstream().contains(a));
            EXPECT_THROW((void)ctx.upstream().from(12345), btm::BadResultAccess);
            return std::to_string(ctx.upstream<int>(0)) + ctx.upstream<std::string>(1);
        },
        btm::TaskOptions{}.upstream({a, b}).priority(100));
    m.start();
    bool checked = false;
    run_until_done(m, {a, b, c}, [&](const btm::Completed& done) {
        if (done.task_id == c) {
            EXPECT_EQ(done.result<std::string>(), "20x");
            checked = true;
        }
    });
    EXPECT_TRUE(checked);
}

TEST(Tasks, UpstreamTypeMismatchOrBadIndexFailsTheDownstreamTask) {
    btm::Manager m{started()};
    const btm::TaskId a = m.add_task([] { return 1; });
    const btm::TaskId wrong_type = m.add_task([](btm::TaskContext& ctx) { return ctx.upstream<std::string>(0); },
                                              btm::TaskOptions{}.upstream(a));
    const btm::TaskId bad_index =
        m.add_task([](btm::TaskContext& ctx) { return ctx.upstream<int>(5); }, btm::TaskOptions{}.upstream(a));
    const auto records = run_until_done(m, {a, wrong_type, bad_index}, [](const btm::Completed&) {});
    const Record* f1 = find(records, Record::failed, wrong_type);
    ASSERT_NE(f1, nullptr);
    EXPECT_NE(f1->message.find("holds int"), std::string::npos) << f1->message;
    EXPECT_EQ(f1->details.rfind("btm::BadResultAccess: ", 0), 0u) << f1->details;
    const Record* f2 = find(records, Record::failed, bad_index);
    ASSERT_NE(f2, nullptr);
    EXPECT_NE(f2->message.find("out of range"), std::string::npos) << f2->message;
    EXPECT_EQ(f2->details.rfind("std::out_of_range: ", 0), 0u) << f2->details;
}

TEST(Tasks, ATaskAddsTasksThroughItsContext) {
    btm::Manager m{started()};
    std::atomic<btm::TaskId> child{0};
    const btm::TaskId parent = m.add_task([&child](btm::TaskContext& ctx) {
        btm::TaskId id = ctx.manager().add_task([] { return std::string("child"); });
        child = id;
        // Waiting for idle from inside a task would deadlock: btm refuses.
        try {
            ctx.manager().wait_idle(10ms);
            ADD_FAILURE() << "wait_idle inside a task did not throw";
        } catch (const btm::Error& e) {
            EXPECT_EQ(e.status(), btm::Status::would_deadlock);
        }
        return id;
    });
    std::map<btm::TaskId, std::string> got;
    std::size_t done = 0;
    ASSERT_TRUE(pump(
        m,
        [&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e)) {
                ++done;
                if (c->task_id == parent) {
                    got[parent] = std::to_string(c->result<btm::TaskId>());
                } else {
                    got[c->task_id] = c->result<std::string>();
                }
            }
        },
        [&] { return done == 2; }));
    EXPECT_EQ(got[parent], std::to_string(child.load()));
    EXPECT_EQ(got[child.load()], "child");
}

TEST(Tasks, PriorityOptionsAndSetPriority) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    std::mutex mu;
    std::vector<std::string> order;
    auto record = [&](std::string name) {
        return [&, name] {
            std::lock_guard<std::mutex> lock(mu);
            order.push_back(name);
        };
    };
    const btm::TaskId a = m.add_task(record("a"));
    const btm::TaskId b = m.add_task(record("b"), btm::TaskOptions{}.priority(5));
    const btm::TaskId c = m.add_task(record("c"), btm::TaskOptions{}.priority(-3));
    const btm::TaskId d = m.add_task(record("d"));  // FIFO after a
    EXPECT_TRUE(m.set_priority(c, 10));
    m.start();
    ASSERT_TRUE(m.wait_idle(kTimeout));
    EXPECT_EQ(order, (std::vector<std::string>{"c", "b", "a", "d"}));
    EXPECT_FALSE(m.set_priority(a, 1));   // finished, not yet polled: not queued
    drain_records(m);
    EXPECT_FALSE(m.set_priority(a, 1));   // polled: not live
    EXPECT_FALSE(m.set_priority(99999, 1));  // never issued
    (void)d;
    (void)b;
}
