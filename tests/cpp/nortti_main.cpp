// btm.hpp without RTTI (built with -fno-rtti) and against the static
// library: one typed result, one exception turned into a failure.
#include <btm.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace {
struct Custom : std::runtime_error {
    using std::runtime_error::runtime_error;
};
}  // namespace

int main() {
    int failures = 0;
    auto check = [&](bool ok, const char* what) {
        if (!ok) {
            std::fprintf(stderr, "FAILED: %s\n", what);
            ++failures;
        }
    };
    try {
        btm::Manager m{btm::Config{}.max_threads(1).start_processing(true)};
        const btm::TaskId a = m.add_task([] { return std::string("typed"); });
        const btm::TaskId b = m.add_task([]() -> int { throw Custom("custom failure"); });
        check(m.wait_idle(std::chrono::seconds(20)), "wait_idle");
        bool got_a = false, got_b = false;
        for (int i = 0; i < 10; ++i) {
            for (const btm::Event& e : m.poll()) {
                if (const auto* c = std::get_if<btm::Completed>(&e); c != nullptr && c->task_id == a) {
                    got_a = true;
                    check(c->result<std::string>() == "typed", "typed result");
                    bool threw = false;
                    try {
                        (void)c->result<int>();
                    } catch (const btm::BadResultAccess&) {
                        threw = true;
                    }
                    check(threw, "type mismatch throws");
                } else if (const auto* f = std::get_if<btm::Failed>(&e); f != nullptr && f->task_id == b) {
                    got_b = true;
                    check(f->message == "custom failure", "failure message");
                    // With RTTI off the type still comes from the C++ ABI
                    // (__cxa_current_exception_type) on GCC and Clang.
                    std::printf("details without RTTI: %s\n", f->details.c_str());
                    check(f->details.find("custom failure") != std::string::npos, "failure details");
                }
            }
        }
        check(got_a && got_b, "both events");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "exception: %s\n", e.what());
        return 1;
    }
    std::printf("%s\n", failures == 0 ? "ok" : "FAILED");
    return failures == 0 ? 0 : 1;
}
