// Helpers shared by the C++ tests.
#ifndef BTM_TEST_SUPPORT_HPP
#define BTM_TEST_SUPPORT_HPP

#include <btm.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace test {

using namespace std::chrono_literals;

inline constexpr std::chrono::milliseconds kTimeout = 20s;

/// Polls `m` until `done()` holds, calling `visit(const btm::Event&)` on every
/// event before the next poll (so borrowed results are valid in `visit`).
/// Returns false on timeout.
template <class Visit, class Done>
bool pump(const btm::Manager& m, Visit&& visit, Done&& done, std::chrono::milliseconds timeout = kTimeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        m.wait_events(20ms);
        for (const btm::Event& e : m.poll()) {
            visit(e);
        }
    }
    return true;
}

/// Polls `pred` (every millisecond) until it holds or `timeout` passes.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

/// Waits until nothing is queued/blocked/running, then polls until no event
/// is left, calling `visit` on each. Returns false on timeout.
template <class Visit>
bool drain(const btm::Manager& m, Visit&& visit, std::chrono::milliseconds timeout = kTimeout) {
    if (!m.wait_idle(timeout)) {
        return false;
    }
    for (;;) {
        std::vector<btm::Event> events = m.poll();
        if (events.empty()) {
            return true;
        }
        for (const btm::Event& e : events) {
            visit(e);
        }
    }
}

/// A copy of an event that outlives the poll (results reduced to task ids
/// and type names).
struct Record {
    enum Kind { completed, failed, group_finished, progress } kind;
    btm::TaskId task = 0;
    btm::Group group;
    std::string message;
    std::string details;
    double fraction = 0.0;
    std::vector<btm::TaskId> result_tasks;

    static Record of(const btm::Event& e) {
        Record r{completed, 0, {}, {}, {}, 0.0, {}};
        std::visit(btm::overloaded{
                       [&](const btm::Completed& c) {
                           r.kind = completed;
                           r.task = c.task_id;
                           r.group = c.group;
                           for (btm::Value v : c.results) {
                               r.result_tasks.push_back(v.task_id());
                           }
                       },
                       [&](const btm::Failed& f) {
                           r.kind = failed;
                           r.task = f.task_id;
                           r.group = f.group;
                           r.message = f.message;
                           r.details = f.details;
                       },
                       [&](const btm::GroupFinished& g) {
                           r.kind = group_finished;
                           r.group = g.group;
                       },
                       [&](const btm::Progress& p) {
                           r.kind = progress;
                           r.task = p.task_id;
                           r.group = p.group;
                           r.fraction = p.fraction;
                           r.message = p.message;
                       },
                   },
                   e);
        return r;
    }
};

/// Drains everything into records.
inline std::vector<Record> drain_records(const btm::Manager& m) {
    std::vector<Record> out;
    EXPECT_TRUE(drain(m, [&](const btm::Event& e) { out.push_back(Record::of(e)); }));
    return out;
}

inline std::size_t count_kind(const std::vector<Record>& rs, Record::Kind k) {
    std::size_t n = 0;
    for (const Record& r : rs) {
        n += r.kind == k ? 1u : 0u;
    }
    return n;
}

inline const Record* find(const std::vector<Record>& rs, Record::Kind k, btm::TaskId task) {
    for (const Record& r : rs) {
        if (r.kind == k && r.task == task) {
            return &r;
        }
    }
    return nullptr;
}

/// Counts constructions (of any kind) and destructions.
struct Counted {
    static inline std::atomic<int> constructed{0};
    static inline std::atomic<int> destroyed{0};
    static int live() { return constructed.load() - destroyed.load(); }
    static void reset() {
        constructed = 0;
        destroyed = 0;
    }

    int value = 0;
    explicit Counted(int v = 0) : value(v) { ++constructed; }
    Counted(const Counted& o) : value(o.value) { ++constructed; }
    Counted(Counted&& o) noexcept : value(o.value) { ++constructed; }
    Counted& operator=(const Counted&) = default;
    Counted& operator=(Counted&&) = default;
    ~Counted() { ++destroyed; }
};

/// A move-only object with an identity: each identity (created by the
/// constructor, or by a copy for the copyable variant) must be destroyed
/// exactly once; moves hand the identity over. Constructions and
/// destructions of objects are counted too.
class Tracked {
public:
    explicit Tracked(std::string label) : id_(next_id()), label_(std::move(label)) {
        ++constructed();
        std::lock_guard<std::mutex> lock(mutex());
        registry()[id_] = Entry{label_, 0};
    }
    Tracked(Tracked&& o) noexcept : id_(o.id_), label_(std::move(o.label_)) {
        o.id_ = 0;
        ++constructed();
    }
    Tracked(const Tracked&) = delete;
    Tracked& operator=(const Tracked&) = delete;
    Tracked& operator=(Tracked&&) = delete;
    ~Tracked() {
        ++destroyed();
        if (id_ != 0) {
            std::lock_guard<std::mutex> lock(mutex());
            ++registry()[id_].destroyed;
        }
    }

    const std::string& label() const { return label_; }

    struct Entry {
        std::string label;
        int destroyed = 0;
    };
    static std::map<int, Entry> snapshot() {
        std::lock_guard<std::mutex> lock(mutex());
        return registry();
    }
    static void reset() {
        std::lock_guard<std::mutex> lock(mutex());
        registry().clear();
        constructed() = 0;
        destroyed() = 0;
    }
    static std::atomic<int>& constructed() {
        static std::atomic<int> n{0};
        return n;
    }
    static std::atomic<int>& destroyed() {
        static std::atomic<int> n{0};
        return n;
    }
    /// Every identity destroyed exactly once, and as many destructions as
    /// constructions.
    static void expect_all_destroyed_once() {
        for (const auto& [id, entry] : snapshot()) {
            EXPECT_EQ(entry.destroyed, 1) << "object #" << id << " (" << entry.label << ") destroyed "
                                          << entry.destroyed << " times";
        }
        EXPECT_EQ(constructed().load(), destroyed().load());
    }

private:
    static int next_id() {
        static std::atomic<int> n{0};
        return ++n;
    }
    static std::mutex& mutex() {
        static std::mutex m;
        return m;
    }
    static std::map<int, Entry>& registry() {
        static std::map<int, Entry> r;
        return r;
    }

    int id_;
    std::string label_;
};

/// A one-shot flag a task can wait on.
class Latch {
public:
    void open() {
        {
            std::lock_guard<std::mutex> lock(m_);
            open_ = true;
        }
        cv_.notify_all();
    }
    bool wait(std::chrono::milliseconds timeout = kTimeout) {
        std::unique_lock<std::mutex> lock(m_);
        return cv_.wait_for(lock, timeout, [&] { return open_; });
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    bool open_ = false;
};

inline btm::Config started(int threads = 2) {
    return btm::Config{}.max_threads(threads).start_processing(true);
}

}  // namespace test

#endif
