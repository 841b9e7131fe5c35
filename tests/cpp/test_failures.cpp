// Exceptions thrown by tasks become failures; nothing unwinds into btm.
#include "test_support.hpp"

#include <limits>
#include <stdexcept>
#include <string>

using namespace test;

namespace thumbs {
struct DecodeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
}  // namespace thumbs

namespace {

Record failure_of(const btm::Manager& m, btm::TaskId id) {
    const auto records = drain_records(m);
    const Record* r = find(records, Record::failed, id);
    EXPECT_NE(r, nullptr) << "no failed event for task " << id;
    EXPECT_EQ(find(records, Record::completed, id), nullptr);
    return r != nullptr ? *r : Record{};
}

}  // namespace

TEST(Failures, StdExceptionBecomesAFailureWithItsTypeInTheDetails) {
    btm::Manager m{started()};
    const btm::TaskId id = m.add_task([]() -> int { throw std::runtime_error("disk full"); });
    const Record r = failure_of(m, id);
    EXPECT_EQ(r.message, "disk full");
    EXPECT_EQ(r.details, "std::runtime_error: disk full");
}

TEST(Failures, TheDynamicExceptionTypeIsNamed) {
    btm::Manager m{started()};
    const btm::TaskId id = m.add_task([](btm::TaskContext&) { throw thumbs::DecodeError("bad PNG header"); });
    const Record r = failure_of(m, id);
    EXPECT_EQ(r.message, "bad PNG header");
    EXPECT_EQ(r.details, "thumbs::DecodeError: bad PNG header");
}

TEST(Failures, ExceptionsNotDerivedFromStdExceptionAreCaughtToo) {
    btm::Manager m{started()};
    const btm::TaskId i = m.add_task([] { throw 42; });
    const btm::TaskId s = m.add_task([] { throw std::string("text"); });
    const auto records = drain_records(m);
    const Record* ri = find(records, Record::failed, i);
    ASSERT_NE(ri, nullptr);
    EXPECT_NE(ri->message.find("unknown exception"), std::string::npos) << ri->message;
    EXPECT_EQ(ri->details.rfind("int: ", 0), 0u) << ri->details;
    const Record* rs = find(records, Record::failed, s);
    ASSERT_NE(rs, nullptr);
    EXPECT_NE(rs->details.find("string"), std::string::npos) << rs->details;
}

TEST(Failures, BadAllocIsReportedLikeAnyOtherException) {
    btm::Manager m{started()};
    const btm::TaskId id = m.add_task([] { throw std::bad_alloc(); });
    const Record r = failure_of(m, id);
    EXPECT_EQ(r.details.rfind("std::bad_alloc: ", 0), 0u) << r.details;
}

TEST(Failures, ExplicitFailThroughTheContextDropsTheResult) {
    Counted::reset();
    {
        btm::Manager m{started()};
        const btm::TaskId id = m.add_task([](btm::TaskContext& ctx) {
            ctx.fail("bad input", "line 3");
            return Counted(5);  // set, then freed because the task failed
        });
        const Record r = failure_of(m, id);
        EXPECT_EQ(r.message, "bad input");
        EXPECT_EQ(r.details, "line 3");
        const btm::TaskId no_details = m.add_task([](btm::TaskContext& ctx) { ctx.fail("just a message"); });
        const Record r2 = failure_of(m, no_details);
        EXPECT_EQ(r2.message, "just a message");
        EXPECT_EQ(r2.details, "");
    }
    EXPECT_EQ(Counted::live(), 0);
}

TEST(Failures, FailureCascadesDownstreamWithTheSameMessageAndDetails) {
    btm::Manager m{btm::Config{}.max_threads(2)};
    std::atomic<int> downstream_runs{0};
    const btm::TaskId a = m.add_task([]() -> int { throw thumbs::DecodeError("corrupt"); });
    const btm::TaskId ok = m.add_task([] { return 1; });
    const btm::TaskId b = m.add_task([&] { ++downstream_runs; }, btm::TaskOptions{}.upstream({a, ok}));
    const btm::TaskId c = m.add_task([&] { ++downstream_runs; }, btm::TaskOptions{}.upstream(b));
    m.start();
    const auto records = drain_records(m);
    for (btm::TaskId id : {a, b, c}) {
        const Record* r = find(records, Record::failed, id);
        ASSERT_NE(r, nullptr) << "task " << id;
        EXPECT_EQ(r->message, "corrupt");
        EXPECT_EQ(r->details, "thumbs::DecodeError: corrupt");
    }
    EXPECT_NE(find(records, Record::completed, ok), nullptr);
    EXPECT_EQ(downstream_runs.load(), 0);
}

TEST(Failures, ProgressWithNaNIsAnInvalidArgumentErrorInsideTheTask) {
    btm::Manager m{started()};
    const btm::TaskId id = m.add_task([](btm::TaskContext& ctx) {
        ctx.report_progress(std::numeric_limits<double>::quiet_NaN());
    });
    const Record r = failure_of(m, id);
    EXPECT_EQ(r.details.rfind("btm::Error: ", 0), 0u) << r.details;
    EXPECT_NE(r.message.find("btm_context_report_progress"), std::string::npos) << r.message;
}
