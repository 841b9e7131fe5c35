// Pass-through tasks: typed payloads, gathered results are iterable.
#include "test_support.hpp"

#include <memory>
#include <numeric>
#include <set>
#include <string>

using namespace test;

TEST(PassThrough, GatheredResultsAreIterable) {
    btm::Manager m{btm::Config{}.max_threads(2)};
    std::vector<btm::TaskId> ids;
    for (int i = 1; i <= 5; ++i) {
        ids.push_back(m.add_task([i] { return i * i; }));
    }
    const btm::TaskId gather = m.add_pass_through(btm::TaskOptions{}.upstream(ids));
    m.start();
    bool checked = false;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        const auto* c = std::get_if<btm::Completed>(&e);
        if (c == nullptr || c->task_id != gather) {
            return;
        }
        EXPECT_FALSE(c->has_result());  // no payload
        EXPECT_EQ(c->results.size(), 5u);
        int sum = 0;
        std::set<btm::TaskId> from;
        for (btm::Value v : c->results) {
            sum += v.get<int>();
            from.insert(v.task_id());
        }
        EXPECT_EQ(sum, 1 + 4 + 9 + 16 + 25);
        EXPECT_EQ(from, std::set<btm::TaskId>(ids.begin(), ids.end()));
        // Standard algorithms work on the range.
        const int sum2 = std::accumulate(c->results.begin(), c->results.end(), 0,
                                         [](int acc, const btm::Value& v) { return acc + v.get<int>(); });
        EXPECT_EQ(sum2, sum);
        EXPECT_EQ(c->results.end() - c->results.begin(), 5);
        EXPECT_EQ(c->results.begin()->task_id(), c->results[0].task_id());
        EXPECT_EQ(c->results.all_of<int>().size(), 5u);
        EXPECT_TRUE(c->results.all_of<std::string>().empty());
        checked = true;
    }));
    EXPECT_TRUE(checked);
}

TEST(PassThrough, PayloadComesFirstAndIsTyped) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const btm::TaskId a = m.add_task([] { return 7; });
    const btm::TaskId gather = m.add_pass_through(std::string("meta"), btm::TaskOptions{}.upstream(a));
    m.start();
    bool checked = false;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        const auto* c = std::get_if<btm::Completed>(&e);
        if (c == nullptr || c->task_id != gather) {
            return;
        }
        ASSERT_EQ(c->results.size(), 2u);
        EXPECT_TRUE(c->has_result());
        EXPECT_EQ(c->result<std::string>(), "meta");
        EXPECT_EQ(c->results[0].task_id(), gather);
        EXPECT_EQ(c->results.from(a).get<int>(), 7);
        checked = true;
    }));
    EXPECT_TRUE(checked);
}

TEST(PassThrough, DownstreamSeesEverythingGatheredWithMixedTypes) {
    btm::Manager m{btm::Config{}.max_threads(2)};
    const btm::TaskId a = m.add_task([] { return 1; });
    const btm::TaskId b = m.add_task([] { return std::string("two"); });
    const btm::TaskId gather = m.add_pass_through(3.5, btm::TaskOptions{}.upstream({a, b}));
    const btm::TaskId d = m.add_task(
        [=](btm::TaskContext& ctx) {
            const btm::Results up = ctx.upstream();
            EXPECT_EQ(up.size(), 3u);  // payload of the pass-through, then a and b
            EXPECT_EQ(up[0].task_id(), gather);
            EXPECT_EQ(up[0].get<double>(), 3.5);
            std::string joined;
            for (btm::Value v : up) {
                if (const int* i = v.get_if<int>()) {
                    joined += std::to_string(*i);
                } else if (const std::string* s = v.get_if<std::string>()) {
                    joined += *s;
                } else if (v.is<double>()) {
                    joined += "+";
                }
            }
            return joined;
        },
        btm::TaskOptions{}.upstream(gather));
    m.start();
    std::string result;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == d) {
            result = c->result<std::string>();
        }
    }));
    EXPECT_TRUE(result == "+1two" || result == "+two1") << result;
}

TEST(PassThrough, EmptyPassThroughCompletesWithNoResults) {
    btm::Manager m{started()};
    const btm::TaskId p = m.add_pass_through();
    bool checked = false;
    ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
        if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == p) {
            EXPECT_TRUE(c->results.empty());
            EXPECT_FALSE(c->has_result());
            EXPECT_THROW((void)c->result<int>(), btm::BadResultAccess);
            checked = true;
        }
    }));
    EXPECT_TRUE(checked);
}

TEST(PassThrough, MoveOnlyPayloadIsDestroyedOnce) {
    Counted::reset();
    {
        btm::Manager m{started()};
        const btm::TaskId p = m.add_pass_through(std::make_unique<Counted>(9));
        bool checked = false;
        ASSERT_TRUE(drain(m, [&](const btm::Event& e) {
            if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == p) {
                EXPECT_EQ(c->result<std::unique_ptr<Counted>>()->value, 9);
                checked = true;
            }
        }));
        EXPECT_TRUE(checked);
        // A stopped pass-through frees its payload too.
        m.pause();
        const btm::TaskId q = m.add_pass_through(Counted(1));
        EXPECT_TRUE(m.stop_task(q).found);
    }
    EXPECT_EQ(Counted::live(), 0);
    EXPECT_GT(Counted::constructed.load(), 0);
}
