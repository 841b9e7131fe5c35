// Events: variant visiting, handler objects, groups, progress.
#include "test_support.hpp"

using namespace test;

TEST(Events, GroupsNamedNumberedAndDefault) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const btm::Group named = m.group_named("thumbnails");
    EXPECT_TRUE(named.is_named());
    EXPECT_EQ(named.name(), "thumbnails");
    EXPECT_EQ(named, m.group_named("thumbnails"));
    EXPECT_NE(named, m.group_named("other"));
    EXPECT_NE(named, btm::Group::numbered(named.value()));  // named never equals numbered
    const btm::Group n1 = m.next_group();
    const btm::Group n2 = m.next_group();
    EXPECT_TRUE(n1.is_numbered());
    EXPECT_NE(n1, n2);
    EXPECT_EQ(btm::Group::numbered(n1.value()), n1);
    EXPECT_TRUE(btm::Group().is_default());
    EXPECT_EQ(btm::Group().c_ptr(), nullptr);

    const btm::TaskId t1 = m.add_task([] {}, btm::TaskOptions{}.group(named));
    const btm::TaskId t2 = m.add_task([] {}, btm::TaskOptions{}.group(named));
    const btm::TaskId t3 = m.add_task([] {}, btm::TaskOptions{}.group(btm::Group::numbered(4242)));
    const btm::TaskId t4 = m.add_task([] {});
    m.start();
    const auto records = drain_records(m);
    ASSERT_EQ(records.size(), 7u);  // 4 completed + 3 group finished
    const Record* r1 = find(records, Record::completed, t1);
    ASSERT_NE(r1, nullptr);
    EXPECT_EQ(r1->group, named);
    EXPECT_EQ(r1->group.name(), "thumbnails");  // the name travels with the event
    EXPECT_EQ(find(records, Record::completed, t3)->group.value(), 4242u);
    EXPECT_TRUE(find(records, Record::completed, t4)->group.is_default());
    // The named group finished right after its last task (t2).
    for (std::size_t i = 0; i < records.size(); ++i) {
        if (records[i].kind == Record::completed && records[i].task == t2) {
            ASSERT_LT(i + 1, records.size());
            EXPECT_EQ(records[i + 1].kind, Record::group_finished);
            EXPECT_EQ(records[i + 1].group, named);
            EXPECT_EQ(records[i + 1].group.name(), "thumbnails");
        }
    }
    EXPECT_EQ(count_kind(records, Record::group_finished), 3u);
}

// A std::string carries its length, but btm takes a NUL-terminated name: a
// name with an embedded '\0' reached btm cut short, so "a\0b" and "a" became
// one group (and the Group's name() lost its tail). Such a name is refused,
// as the C# binding refuses it, before anything reaches btm.
TEST(Events, GroupNamesWithAnEmbeddedNulAreRejected) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const std::string with_nul("a\0b", 3);
    try {
        const btm::Group g = m.group_named(with_nul);
        ADD_FAILURE() << "group_named accepted a name with an embedded NUL: it became \"" << g.name()
                      << "\" (size " << g.name().size() << "), equal to group_named(\"a\"): "
                      << (g == m.group_named("a"));
    } catch (const btm::Error& e) {
        EXPECT_EQ(e.status(), btm::Status::invalid_argument);
    }
    // Names without NUL are unaffected, the empty name and non-ASCII included.
    EXPECT_EQ(m.group_named("").name(), "");
    EXPECT_EQ(m.group_named("\xc3\xa9t\xc3\xa9").name(), "\xc3\xa9t\xc3\xa9");
    EXPECT_NE(m.group_named("a"), m.group_named("ab"));
}

TEST(Events, ProgressIsDeliveredBeforeCompletion) {
    btm::Manager m{started(1)};
    Latch seen;
    const btm::TaskId id = m.add_task([&](btm::TaskContext& ctx) {
        EXPECT_TRUE(ctx.report_progress(0.25, "a quarter"));
        EXPECT_TRUE(seen.wait());  // the host saw the progress event
        EXPECT_TRUE(ctx.report_progress(7.0));  // clamped to 1
        return 1;
    });
    std::vector<Record> records;
    ASSERT_TRUE(pump(
        m,
        [&](const btm::Event& e) {
            records.push_back(Record::of(e));
            if (std::holds_alternative<btm::Progress>(e)) {
                seen.open();
            }
        },
        [&] { return find(records, Record::completed, id) != nullptr; }));
    ASSERT_GE(records.size(), 2u);
    EXPECT_EQ(records[0].kind, Record::progress);
    EXPECT_EQ(records[0].task, id);
    EXPECT_DOUBLE_EQ(records[0].fraction, 0.25);
    EXPECT_EQ(records[0].message, "a quarter");
    // The second report either arrived (fraction 1, no message) or was
    // superseded by the completion; nothing follows the completion.
    EXPECT_EQ(records.back().kind == Record::group_finished ? records[records.size() - 2].kind : records.back().kind,
              Record::completed);
    for (const Record& r : records) {
        if (r.kind == Record::progress && r.fraction > 0.5) {
            EXPECT_DOUBLE_EQ(r.fraction, 1.0);
            EXPECT_TRUE(r.message.empty());
        }
    }
}

namespace {

/// A handler with only some of the methods.
struct PartialHandler {
    std::vector<btm::TaskId> completed;
    std::vector<std::string> failed;
    void on_completed(const btm::Completed& c) { completed.push_back(c.task_id); }
    void on_failed(const btm::Failed& f) { failed.push_back(f.message); }
};

struct FullHandler {
    int completed = 0, failed = 0, groups = 0, progress = 0;
    int sum = 0;
    void on_completed(const btm::Completed& c) {
        ++completed;
        if (c.has_result()) {
            sum += c.result<int>();
        }
    }
    void on_failed(const btm::Failed&) { ++failed; }
    void on_group_finished(const btm::GroupFinished&) { ++groups; }
    void on_progress(const btm::Progress&) { ++progress; }
};

}  // namespace

TEST(Events, HandlerObjectsWithSomeOrAllMethods) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    const btm::TaskId a = m.add_task([] { return 2; });
    m.add_task([]() -> int { throw std::logic_error("nope"); });
    m.start();
    ASSERT_TRUE(m.wait_idle(kTimeout));
    PartialHandler h;
    std::size_t n = 0;
    for (std::size_t got; (got = m.poll(h)) != 0;) {
        n += got;
    }
    EXPECT_EQ(n, 3u);  // completed, failed, group finished (ignored by h)
    EXPECT_EQ(h.completed, std::vector<btm::TaskId>{a});
    EXPECT_EQ(h.failed, std::vector<std::string>{"nope"});

    m.add_task([](btm::TaskContext& ctx) { ctx.report_progress(0.5); return 40; });
    m.add_task([] { return 2; });
    ASSERT_TRUE(m.wait_idle(kTimeout));
    FullHandler full;
    while (m.poll(full, 1) != 0) {  // capacity 1: one event per poll
    }
    EXPECT_EQ(full.completed, 2);
    EXPECT_EQ(full.sum, 42);
    EXPECT_EQ(full.groups, 1);
    EXPECT_LE(full.progress, 1);
}

TEST(Events, VisitWithOverloadedAndLargeCapacities) {
    btm::Manager m{started(2)};
    for (int i = 0; i < 100; ++i) {
        m.add_task([i] { return i; });
    }
    ASSERT_TRUE(m.wait_idle(kTimeout));
    int completions = 0, groups = 0, sum = 0;
    const std::vector<btm::Event> events = m.poll(1000);  // above the stack buffer
    for (const btm::Event& e : events) {
        std::visit(btm::overloaded{
                       [&](const btm::Completed& c) {
                           ++completions;
                           sum += c.result<int>();
                       },
                       [&](const btm::GroupFinished&) { ++groups; },
                       [&](const auto&) { ADD_FAILURE() << "unexpected event"; },
                   },
                   e);
    }
    EXPECT_EQ(completions, 100);
    EXPECT_EQ(sum, 99 * 100 / 2);
    EXPECT_EQ(groups, 1);
    EXPECT_THROW(m.poll(0), btm::Error);  // zero capacity
}

TEST(Events, AThrowingHandlerLosesNoEvents) {
    struct Throwing {
        std::vector<btm::TaskId> seen;
        void on_completed(const btm::Completed& c) {
            seen.push_back(c.task_id);
            throw std::runtime_error("handler failed on task " + std::to_string(c.task_id));
        }
    };
    btm::Manager m{started(1)};
    std::vector<btm::TaskId> ids;
    for (int i = 0; i < 5; ++i) {
        ids.push_back(m.add_task([] {}));
    }
    ASSERT_TRUE(m.wait_idle(kTimeout));
    Throwing h;
    try {
        m.poll(h);
        ADD_FAILURE() << "the handler's exception was not rethrown";
    } catch (const std::runtime_error& e) {
        // The first exception, after every event of the batch was handed over.
        EXPECT_EQ(std::string(e.what()), "handler failed on task " + std::to_string(ids[0]));
    }
    EXPECT_EQ(h.seen, ids);
    // drain() with a throwing callable: same rule.
    m.add_task([] {});
    ASSERT_TRUE(m.wait_idle(kTimeout));
    int n = 0;
    EXPECT_THROW(m.drain([&](const btm::Event&) {
        ++n;
        throw 1;
    }),
                 int);
    EXPECT_EQ(n, 2);  // completed + group finished
}

// Strings in events are copies: a handler that polls again (a nested event
// loop, e.g. a modal dialog whose loop drains event_fd()) releases the
// previous poll's messages, which must not be read afterwards. Regression:
// poll(handler) and drain() copied an event's strings only when its turn
// came, after the earlier handler's nested poll had freed them
// (heap-use-after-free under ASan).
TEST(Events, AHandlerThatPollsAgainDoesNotInvalidateTheNextEventsStrings) {
    btm::Manager m{btm::Config{}.max_threads(1)};
    for (int i = 0; i < 3; ++i) {
        m.add_task([i]() -> int { throw std::runtime_error(std::string(200, static_cast<char>('a' + i))); });
    }
    m.start();
    ASSERT_TRUE(m.wait_idle(kTimeout));
    struct Nested {
        const btm::Manager* m;
        std::vector<std::string> messages;
        void on_failed(const btm::Failed& f) {
            messages.push_back(f.message);
            (void)m->poll();  // nothing new, but it releases the outer poll's strings
        }
    } h{&m, {}};
    EXPECT_EQ(m.poll(h), 4u);  // three failures, one group finished
    ASSERT_EQ(h.messages.size(), 3u);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(h.messages[static_cast<std::size_t>(i)], std::string(200, static_cast<char>('a' + i)));
    }
    // drain() with a callable: same rule.
    for (int i = 0; i < 2; ++i) {
        m.add_task([i]() -> int { throw std::runtime_error(std::string(200, static_cast<char>('x' + i))); });
    }
    ASSERT_TRUE(m.wait_idle(kTimeout));
    std::vector<std::string> drained;
    m.drain([&](const btm::Event& e) {
        if (const auto* f = std::get_if<btm::Failed>(&e)) {
            drained.push_back(f->message);
            (void)m.poll();
        }
    });
    ASSERT_EQ(drained.size(), 2u);
    EXPECT_EQ(drained[1], std::string(200, 'y'));
}

// "Every Manager member may be called from any thread": two threads polling
// one manager at once. btm releases a poll's strings at the next poll, from
// any thread, so each poll's copy of its strings must not overlap another
// poll. Regression: the second thread's poll freed the messages the first
// was copying (heap-use-after-free under ASan).
TEST(Events, TwoThreadsPollingOneManagerCopyOnlyLiveStrings) {
    btm::Manager m{started(2)};
    std::atomic<bool> stop{false};
    std::atomic<long> failures{0};
    const std::string message(64, 'x');
    auto poller = [&] {
        while (!stop.load()) {
            for (const btm::Event& e : m.poll(8)) {
                if (const auto* f = std::get_if<btm::Failed>(&e)) {
                    EXPECT_EQ(f->message, message);
                    ++failures;
                }
            }
        }
    };
    std::thread t1(poller);
    std::thread t2(poller);
    constexpr long tasks = 20000;
    for (long i = 0; i < tasks; ++i) {
        m.add_task([message]() -> int { throw std::runtime_error(message); });
    }
    EXPECT_TRUE(eventually([&] { return failures.load() == tasks; }, kTimeout));
    stop = true;
    t1.join();
    t2.join();
}
