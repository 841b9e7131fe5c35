// btm.hpp: header-only C++17 wrapper over the btm C API (btm.h).
//
// Overview
// --------
//   btm::Manager mgr{btm::Config{}.max_threads(4).start_processing(true)};
//   btm::TaskId a = mgr.add_task([](btm::TaskContext& ctx) {
//       ctx.report_progress(0.5, "half way");
//       return std::string("thumbnail");          // becomes a typed result
//   });
//   btm::TaskId b = mgr.add_task([](btm::TaskContext& ctx) {
//       return ctx.upstream<std::string>(0).size();  // typed upstream result
//   }, btm::TaskOptions{}.upstream(a).priority(5));
//   mgr.wait_events(std::chrono::seconds(1));
//   for (const btm::Event& e : mgr.poll()) { ... std::visit / std::get_if ... }
//
// Events: poll() returns a std::vector<btm::Event> (a std::variant of
// Completed, Failed, GroupFinished, Progress); poll(handler) and drain(sink)
// hand them to an object with on_completed / on_failed / on_group_finished /
// on_progress (any subset) or to a callable. A host woken by set_notify() or
// a readable event_fd() calls drain(). Results inside events (Completed::
// results, result<T>()) BORROW from btm: they are valid until the next poll
// of the same manager (a poll made from a free function that a poll runs
// releases nothing); strings in events are copies.
//
// Bulk adds: fill a btm::TaskBatch (add_task / add_pass_through, same
// arguments) and call mgr.add_tasks(batch): one native call, all tasks or
// none, ids in the batch's order; the batch is empty afterwards. An entry
// waits for an earlier entry of the same batch through
// TaskOptions{}.upstream(btm::in_batch(i)), `i` the index its append
// returned: a whole graph (chains, fan-ins) goes in one call.
//
// Pass-through tasks (add_pass_through) gather: their completed event (and a
// downstream task's ctx.upstream()) lists the payload first, then every
// upstream result, each entry typed (Value::get<T>(), get_if<T>()).
//
// Conventions (one style throughout)
// ----------------------------------
// - Every C API error becomes a `btm::Error` exception carrying the status.
//   Outcomes that the C API documents as "not an error" (a stop that finds
//   nothing, a wait that times out, a progress report on a stopped task) are
//   return values, never exceptions.
// - A typed access to a result of the wrong type (or to a result that does not
//   exist) throws `btm::BadResultAccess`, never undefined behaviour.
// - Every function btm calls back (task trampolines, free functions, thread
//   hooks, notify callback, instrumentation hooks) is `noexcept` and catches
//   everything: nothing unwinds into Rust.
//   An exception escaping a task becomes the task's failure: message =
//   `what()`, details = "<exception type>: <what()>". One escaping a hook, the
//   notify callback or a destructor (a callable's, a result's or a payload's
//   declared noexcept(false)) cannot be reported anywhere and is swallowed;
//   the object still counts as destroyed (its memory is freed).
// - Ownership: a callable passed to add_task is moved (or copied) into a heap
//   object handed to btm, which destroys it exactly once, whatever the task's
//   fate (also when add_task throws). Results and pass-through payloads are
//   likewise destroyed exactly once by btm. A TaskBatch owns its boxed
//   callables and payloads until add_tasks hands them all to btm (even when
//   it throws); a batch cleared or destroyed first destroys them itself.
// - Threads: every Manager member may be called from any thread, including
//   from inside a running task (use TaskContext::manager()). Task callables,
//   and destructors of callables and results, run on btm worker threads or
//   on the thread that adds (an add that fails), stops, shuts down, polls or
//   destroys (see btm.h for which).
//
// Results are only understood by this header: a value set through the raw C
// API (btm_context_set_result) must not be read with get<T>().
//
// Requires C++17 and exceptions; works with and without RTTI (without RTTI a
// result cannot be read in another shared object built with hidden
// visibility: that is reported as BadResultAccess). See README.md here.

#ifndef BTM_HPP
#define BTM_HPP

#if !defined(__cpp_exceptions) && !defined(__EXCEPTIONS) && !defined(_CPPUNWIND)
#error "btm.hpp reports errors with exceptions: compile with exceptions enabled (or use btm.h directly)"
#endif

#include "btm.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

#if defined(__GNUC__) || defined(__clang__)
#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#define BTM_HPP_HAVE_CXXABI 1
#endif
#endif
#if defined(__cpp_rtti) || defined(__GXX_RTTI) || defined(_CPPRTTI)
#define BTM_HPP_HAVE_RTTI 1
#endif

namespace btm {

/// A task id: unique per manager, never reused, never 0.
using TaskId = btm_task_id;

/// Status codes of the C API (same numbers as `btm_status`).
enum class Status : std::uint32_t {
    ok = BTM_STATUS_OK,
    not_found = BTM_STATUS_NOT_FOUND,
    null_argument = BTM_STATUS_NULL_ARGUMENT,
    invalid_argument = BTM_STATUS_INVALID_ARGUMENT,
    unknown_upstream = BTM_STATUS_UNKNOWN_UPSTREAM,
    invalid_utf8 = BTM_STATUS_INVALID_UTF8,
    invalid_thread_count = BTM_STATUS_INVALID_THREAD_COUNT,
    shut_down = BTM_STATUS_SHUT_DOWN,
    already_shut_down = BTM_STATUS_ALREADY_SHUT_DOWN,
    timed_out = BTM_STATUS_TIMED_OUT,
    would_deadlock = BTM_STATUS_WOULD_DEADLOCK,
    zero_capacity = BTM_STATUS_ZERO_CAPACITY,
    invalid_config = BTM_STATUS_INVALID_CONFIG,
    invalid_group = BTM_STATUS_INVALID_GROUP,
    not_queued = BTM_STATUS_NOT_QUEUED,
    panic = BTM_STATUS_PANIC,
    too_many_groups = BTM_STATUS_TOO_MANY_GROUPS,
    forked = BTM_STATUS_FORKED,
    unsupported = BTM_STATUS_UNSUPPORTED,
};

/// The static English description of a status (btm_status_str).
inline const char* status_str(Status s) noexcept {
    return btm_status_str(static_cast<std::uint32_t>(s));
}

/// Version of the loaded library ("MAJOR.MINOR.PATCH"); compare with
/// BTM_VERSION, the version of the header compiled against.
inline const char* version() noexcept { return btm_version(); }

/// An error returned by the C API: `status()` says which, `what()` names the
/// C function and describes the status.
class Error : public std::runtime_error {
public:
    Error(Status status, const char* function)
        : std::runtime_error(std::string(function) + ": " + status_str(status) + " (btm status " +
                             std::to_string(static_cast<std::uint32_t>(status)) + ")"),
          status_(status) {}

    Status status() const noexcept { return status_; }
    std::uint32_t code() const noexcept { return static_cast<std::uint32_t>(status_); }

private:
    Status status_;
};

/// A typed access to a result that does not exist, or that holds another type.
class BadResultAccess : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

namespace detail {

inline void check(btm_status s, const char* function) {
    if (s != BTM_STATUS_OK) {
        throw Error(static_cast<Status>(s), function);
    }
}

// ---- type identity without RTTI -------------------------------------------

/// Readable name of T, taken from the compiler's function signature text.
template <class T>
constexpr std::string_view type_name() noexcept {
#if defined(__clang__)
    // "std::string_view btm::detail::type_name() [T = int]"
    constexpr std::string_view p = __PRETTY_FUNCTION__;
    constexpr std::size_t start = p.find("T = ") + 4;
    constexpr std::size_t end = p.rfind(']');
    return p.substr(start, end - start);
#elif defined(__GNUC__)
    // "constexpr std::string_view btm::detail::type_name() [with T = int;
    //  std::string_view = std::basic_string_view<char>]"
    constexpr std::string_view p = __PRETTY_FUNCTION__;
    constexpr std::size_t start = p.find("T = ") + 4;
    constexpr std::size_t semi = p.find(';', start);
    constexpr std::size_t end = semi == std::string_view::npos ? p.rfind(']') : semi;
    return p.substr(start, end - start);
#elif defined(_MSC_VER)
    // "class std::basic_string_view<...> __cdecl btm::detail::type_name<int>(void) noexcept"
    constexpr std::string_view p = __FUNCSIG__;
    constexpr std::size_t start = p.find("type_name<") + 10;
    constexpr std::size_t end = p.rfind(">(void)");
    return p.substr(start, end - start);
#else
    return "(unknown type)";
#endif
}

/// One object per type; its address is the type's identity.
struct TypeKey {
    /// Readable name (for messages only).
    std::string_view name;
    /// `&typeid(T)` when the TU that made the key had RTTI, else NULL.
    const std::type_info* rtti;
};

#if defined(BTM_HPP_HAVE_RTTI)
#define BTM_HPP_TYPEID_OR_NULL(T) (&typeid(T))
#else
#define BTM_HPP_TYPEID_OR_NULL(T) nullptr
#endif

template <class T>
inline constexpr TypeKey type_key{type_name<T>(), BTM_HPP_TYPEID_OR_NULL(T)};

/// Same type? Within one program image the key's address decides (no RTTI
/// needed). A type's keys differ only across shared objects built with
/// hidden visibility (each has its own copy); then, if both sides were
/// compiled with RTTI, std::type_info equality decides, which follows the C++
/// ABI: equal mangled names for types with linkage, identity for local and
/// anonymous-namespace types. Without RTTI on either side such values are
/// reported as a mismatch (BadResultAccess), never misread.
inline bool same_type(const TypeKey* a, const TypeKey* b) noexcept {
    if (a == b) {
        return true;
    }
    return a->rtti != nullptr && b->rtti != nullptr && *a->rtti == *b->rtti;
}

/// The type a typed access reads: get<T>(), get<const T>() and
/// get<const T&>() all read the T that was boxed (as std::any_cast does).
/// Without this, a reference type named a Box<T&> that was never made
/// (typeid ignores references and cv-qualifiers, so same_type accepted it).
template <class T>
using plain_t = std::remove_cv_t<std::remove_reference_t<T>>;

// ---- boxes: results and payloads ------------------------------------------

/// What btm sees as a result's `void*`: always a `BoxBase*`.
struct BoxBase {
    const TypeKey* key;
};

/// Tag of the `Box` constructor that makes its value from a call's result.
struct FromCall {};

template <class T>
struct Box final : BoxBase {
    template <class... A>
    explicit Box(A&&... a) : BoxBase{&type_key<T>}, value(std::forward<A>(a)...) {}
    /// The value made in place from `std::invoke(f, a...)`'s result (no
    /// temporary to move from: a result type whose destructor throws even
    /// when moved from would otherwise fail the task after the box was
    /// made, and leak it).
    template <class F, class... A>
    Box(FromCall, F&& f, A&&... a)
        : BoxBase{&type_key<T>}, value(std::invoke(std::forward<F>(f), std::forward<A>(a)...)) {}
    T value;
};

/// Deletes `p` for a free function btm calls: an exception thrown by the
/// destructor (one declared noexcept(false)) is swallowed, as nothing may
/// unwind into btm. The memory is freed all the same.
template <class T>
void delete_swallowing(T* p) noexcept {
    try {
        delete p;
    } catch (...) {
        // Nowhere to report it: btm destroys objects long after the call
        // that handed them over, on whichever thread releases them.
    }
}

template <class T>
void free_box(void* p) noexcept {
    delete_swallowing(static_cast<Box<T>*>(static_cast<BoxBase*>(p)));
}

/// Boxes a value: returns the `void*` to give btm (as a BoxBase*).
template <class T, class... A>
void* make_box(A&&... a) {
    return static_cast<BoxBase*>(new Box<T>(std::forward<A>(a)...));
}

template <class Fn>
void free_callable(void* p) noexcept {
    delete_swallowing(static_cast<Fn*>(p));
}

// ---- exception names --------------------------------------------------------

inline std::string demangle(const char* name) {
#if defined(BTM_HPP_HAVE_CXXABI)
    int status = 0;
    char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status == 0 && d != nullptr) {
        std::string out(d);
        std::free(d);
        return out;
    }
    std::free(d);
#endif
    return name;
}

/// The dynamic type name of the exception being handled (inside a catch).
inline std::string current_exception_type_name(const std::exception* e) {
#if defined(BTM_HPP_HAVE_CXXABI)
    if (const std::type_info* t = abi::__cxa_current_exception_type()) {
        return demangle(t->name());
    }
#endif
#if defined(BTM_HPP_HAVE_RTTI)
    if (e != nullptr) {
        return demangle(typeid(*e).name());
    }
#endif
    return e != nullptr ? "std::exception" : "unknown exception type";
}

/// Turns the exception being handled into a task failure. Never throws.
inline void fail_with_current_exception(btm_task_context* ctx) noexcept {
    try {
        std::string message;
        std::string type;
        try {
            throw;
        } catch (const std::exception& e) {
            message = e.what();
            type = current_exception_type_name(&e);
        } catch (...) {
            type = current_exception_type_name(nullptr);
            message = "unknown exception (not derived from std::exception) of type " + type;
        }
        const std::string details = type + ": " + message;
        (void)btm_context_fail(ctx, message.c_str(), details.c_str());
    } catch (...) {
        // Out of memory while describing the exception: fail plainly.
        (void)btm_context_fail(ctx, "task failed with an exception", "");
    }
}

// ---- misc -------------------------------------------------------------------

/// Serialises polls (the native call and the copy of its strings): btm
/// releases a poll's strings at the next poll of the manager, from whichever
/// thread, so two threads polling one manager at once would copy freed
/// memory. Recursive: a free function that a poll runs may poll (btm
/// allows it). One per program image (a hidden-visibility shared object
/// has its own).
inline std::recursive_mutex& poll_mutex() noexcept {
    static std::recursive_mutex m;
    return m;
}

inline std::uint32_t to_timeout_ms(std::chrono::milliseconds t) noexcept {
    if (t.count() <= 0) {
        return 0;
    }
    constexpr auto limit = static_cast<std::chrono::milliseconds::rep>(BTM_WAIT_FOREVER - 1);
    return t.count() >= limit ? BTM_WAIT_FOREVER - 1 : static_cast<std::uint32_t>(t.count());
}

}  // namespace detail

/// Wait without a time limit.
inline constexpr std::chrono::milliseconds wait_forever = std::chrono::milliseconds::max();

// =============================================================================
// Groups
// =============================================================================

/// A task group: the default group, a numbered group (any 64-bit number, or
/// one from Manager::next_group), or a named group (Manager::group_named).
/// Equality compares the group, not the name text.
class Group {
public:
    /// The default group.
    Group() noexcept : raw_{BTM_GROUP_KIND_DEFAULT, 0, 0} {}

    static Group numbered(std::uint64_t number) noexcept {
        return Group(btm_group{BTM_GROUP_KIND_NUMBERED, 0, number}, nullptr);
    }

    /// Wraps a C group; `name` may be NULL (it is copied).
    Group(const btm_group& raw, const char* name) : raw_(raw) {
        if (name != nullptr) {
            name_ = name;
        }
    }

    bool is_default() const noexcept { return raw_.kind == BTM_GROUP_KIND_DEFAULT; }
    bool is_numbered() const noexcept { return raw_.kind == BTM_GROUP_KIND_NUMBERED; }
    bool is_named() const noexcept { return raw_.kind == BTM_GROUP_KIND_NAMED; }
    /// The number of a numbered group (the name id of a named one).
    std::uint64_t value() const noexcept { return raw_.value; }
    /// The name of a named group, "" otherwise.
    const std::string& name() const noexcept { return name_; }
    const btm_group& raw() const noexcept { return raw_; }
    /// For C calls: NULL for the default group.
    const btm_group* c_ptr() const noexcept { return is_default() ? nullptr : &raw_; }

    friend bool operator==(const Group& a, const Group& b) noexcept {
        if (a.raw_.kind != b.raw_.kind) {
            return false;
        }
        return a.is_default() || a.raw_.value == b.raw_.value;
    }
    friend bool operator!=(const Group& a, const Group& b) noexcept { return !(a == b); }

private:
    btm_group raw_;
    std::string name_;
};

// =============================================================================
// Results
// =============================================================================

/// One result entry: the id of the task that produced it and its value.
/// Borrowed: valid as long as the event or task context it came from.
class Value {
public:
    explicit Value(const btm_value& raw) noexcept : raw_(raw) {}

    TaskId task_id() const noexcept { return raw_.task_id; }

    /// True if the value holds a T.
    template <class T>
    bool is() const noexcept {
        return raw_.data != nullptr && detail::same_type(box()->key, &detail::type_key<detail::plain_t<T>>);
    }

    /// The value as a T; throws BadResultAccess if it holds another type.
    template <class T>
    const detail::plain_t<T>& get() const {
        using U = detail::plain_t<T>;
        if (!is<U>()) {
            std::string what = "btm: the result of task " + std::to_string(raw_.task_id) + " holds " +
                               std::string(type_name()) + ", not the requested " + std::string(detail::type_name<U>());
            if (raw_.data != nullptr && type_name() == detail::type_name<U>()) {
                what += " (same name, different type: a local or unnamed type, or a type from another shared object "
                        "built without RTTI)";
            }
            throw BadResultAccess(what);
        }
        return static_cast<const detail::Box<U>*>(box())->value;
    }

    /// The value as a T, or nullptr if it holds another type.
    template <class T>
    const detail::plain_t<T>* get_if() const noexcept {
        using U = detail::plain_t<T>;
        return is<U>() ? &static_cast<const detail::Box<U>*>(box())->value : nullptr;
    }

    /// Name of the type held (as the compiler spells it).
    std::string_view type_name() const noexcept {
        return raw_.data != nullptr ? box()->key->name : std::string_view("(null)");
    }

    /// The C entry, for interop.
    const btm_value& raw() const noexcept { return raw_; }

private:
    const detail::BoxBase* box() const noexcept { return static_cast<const detail::BoxBase*>(raw_.data); }
    btm_value raw_;
};

/// A borrowed, iterable list of result entries (a completed event's results,
/// or a task's upstream results), in the order btm gives them.
class Results {
public:
    class iterator {
    public:
        using iterator_category = std::random_access_iterator_tag;
        using value_type = Value;
        using difference_type = std::ptrdiff_t;
        using reference = Value;
        /// What operator-> returns: a Value held by value.
        struct pointer {
            Value value;
            const Value* operator->() const noexcept { return &value; }
        };

        iterator() noexcept = default;
        explicit iterator(const btm_value* p) noexcept : p_(p) {}
        Value operator*() const noexcept { return Value(*p_); }
        pointer operator->() const noexcept { return pointer{Value(*p_)}; }
        Value operator[](difference_type n) const noexcept { return Value(p_[n]); }
        iterator& operator++() noexcept { ++p_; return *this; }
        iterator operator++(int) noexcept { iterator t = *this; ++p_; return t; }
        iterator& operator--() noexcept { --p_; return *this; }
        iterator operator--(int) noexcept { iterator t = *this; --p_; return t; }
        iterator& operator+=(difference_type n) noexcept { p_ += n; return *this; }
        iterator& operator-=(difference_type n) noexcept { p_ -= n; return *this; }
        friend iterator operator+(iterator i, difference_type n) noexcept { return i += n; }
        friend iterator operator+(difference_type n, iterator i) noexcept { return i += n; }
        friend iterator operator-(iterator i, difference_type n) noexcept { return i -= n; }
        friend difference_type operator-(iterator a, iterator b) noexcept { return a.p_ - b.p_; }
        friend bool operator==(iterator a, iterator b) noexcept { return a.p_ == b.p_; }
        friend bool operator!=(iterator a, iterator b) noexcept { return a.p_ != b.p_; }
        friend bool operator<(iterator a, iterator b) noexcept { return a.p_ < b.p_; }
        friend bool operator>(iterator a, iterator b) noexcept { return a.p_ > b.p_; }
        friend bool operator<=(iterator a, iterator b) noexcept { return a.p_ <= b.p_; }
        friend bool operator>=(iterator a, iterator b) noexcept { return a.p_ >= b.p_; }

    private:
        const btm_value* p_ = nullptr;
    };

    Results() noexcept = default;
    Results(const btm_value* values, std::size_t count) noexcept : values_(values), count_(values ? count : 0) {}

    std::size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }
    iterator begin() const noexcept { return iterator(values_); }
    iterator end() const noexcept { return iterator(values_ + count_); }

    /// Entry i; throws std::out_of_range.
    Value at(std::size_t i) const {
        if (i >= count_) {
            throw std::out_of_range("btm: result index " + std::to_string(i) + " out of range (" +
                                    std::to_string(count_) + " entries)");
        }
        return Value(values_[i]);
    }
    Value operator[](std::size_t i) const { return at(i); }

    /// Entry i as a T; throws std::out_of_range or BadResultAccess.
    template <class T>
    const detail::plain_t<T>& get(std::size_t i) const {
        return at(i).template get<T>();
    }

    /// True if some entry was produced by `task`.
    bool contains(TaskId task) const noexcept {
        for (std::size_t i = 0; i < count_; ++i) {
            if (values_[i].task_id == task) {
                return true;
            }
        }
        return false;
    }

    /// The first entry produced by `task`; throws BadResultAccess if none.
    Value from(TaskId task) const {
        for (std::size_t i = 0; i < count_; ++i) {
            if (values_[i].task_id == task) {
                return Value(values_[i]);
            }
        }
        throw BadResultAccess("btm: no result entry from task " + std::to_string(task));
    }

    /// Pointers to every entry that holds a T, in order (others skipped).
    template <class T>
    std::vector<const detail::plain_t<T>*> all_of() const {
        std::vector<const detail::plain_t<T>*> out;
        for (std::size_t i = 0; i < count_; ++i) {
            if (const detail::plain_t<T>* v = Value(values_[i]).template get_if<T>()) {
                out.push_back(v);
            }
        }
        return out;
    }

private:
    const btm_value* values_ = nullptr;
    std::size_t count_ = 0;
};

// =============================================================================
// Events
// =============================================================================

/// A task completed. `results()` borrows from btm: valid until the next poll
/// of the same manager.
struct Completed {
    TaskId task_id = 0;
    Group group;
    Results results;

    /// True if the task produced a value of its own (for a pass-through: a
    /// payload).
    bool has_result() const noexcept { return !results.empty() && results.begin()->task_id() == task_id; }


    /// The task's own result (for a pass-through: its payload) as a T.
    /// Throws BadResultAccess if there is none or it holds another type.
    template <class T>
    const detail::plain_t<T>& result() const {
        if (!has_result()) {
            throw BadResultAccess("btm: task " + std::to_string(task_id) + " completed without a result");
        }
        return results.begin()->template get<T>();
    }
};

/// A task failed (itself, or through an upstream task).
struct Failed {
    TaskId task_id = 0;
    Group group;
    std::string message;
    std::string details;
};

/// The last live task of a group ended by completing or failing.
struct GroupFinished {
    Group group;
};

/// A running task reported progress.
struct Progress {
    TaskId task_id = 0;
    Group group;
    double fraction = 0.0;
    bool has_message = false;
    std::string message;
};

/// One event; visit with std::visit (see btm::overloaded) or std::get_if.
using Event = std::variant<Completed, Failed, GroupFinished, Progress>;

/// Helper to build a visitor from lambdas: std::visit(btm::overloaded{...}, e).
template <class... Fs>
struct overloaded : Fs... {
    using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

/// Converts a C event (results stay borrowed; strings are copied). Returns
/// nothing for a kind this header does not know (a newer library): such
/// events are skipped by poll() and drain().
inline std::optional<Event> to_event(const btm_event& e) {
    switch (e.kind) {
        case BTM_EVENT_TASK_COMPLETED:
            return Event{Completed{e.task_id, Group(e.group, e.group_name), Results(e.results, e.result_count)}};
        case BTM_EVENT_TASK_FAILED:
            return Event{Failed{e.task_id, Group(e.group, e.group_name), e.message ? e.message : "",
                                e.details ? e.details : ""}};
        case BTM_EVENT_GROUP_FINISHED:
            return Event{GroupFinished{Group(e.group, e.group_name)}};
        case BTM_EVENT_TASK_PROGRESS:
            return Event{Progress{e.task_id, Group(e.group, e.group_name), e.progress, e.message != nullptr,
                                  e.message ? e.message : ""}};
        default:
            return std::nullopt;
    }
}

// =============================================================================
// Options, stats, config
// =============================================================================

/// Named options for add_task / add_pass_through:
///   btm::TaskOptions{}.priority(5).group(g).upstream(a).upstream({b, c})
class TaskOptions {
public:
    /// Higher runs first; equal priorities run in the order added (exact for tasks queued when a worker looks for work; see btm.h for the rare race with a concurrent add). Default 0.
    TaskOptions& priority(std::int32_t p) noexcept { priority_ = p; return *this; }
    /// The task's group (default: the default group).
    TaskOptions& group(Group g) { group_ = std::move(g); return *this; }
    /// Adds an upstream task that must complete first (in a TaskBatch entry,
    /// btm::in_batch(i) names an earlier entry of the same batch).
    TaskOptions& upstream(TaskId id) { upstream_.push_back(id); return *this; }
    /// Adds upstream tasks.
    TaskOptions& upstream(std::initializer_list<TaskId> ids) {
        // A loop rather than vector::insert: GCC 12 reports a false
        // -Wstringop-overflow for insert at -O2, which breaks -Werror users.
        for (TaskId id : ids) {
            upstream_.push_back(id);
        }
        return *this;
    }
    template <class Range, class = decltype(std::begin(std::declval<const Range&>()))>
    TaskOptions& upstream(const Range& ids) {
        for (const auto& id : ids) {
            upstream_.push_back(static_cast<TaskId>(id));
        }
        return *this;
    }

    std::int32_t get_priority() const noexcept { return priority_; }
    const Group& get_group() const noexcept { return group_; }
    const std::vector<TaskId>& get_upstream() const noexcept { return upstream_; }

private:
    std::int32_t priority_ = 0;
    Group group_;
    std::vector<TaskId> upstream_;
};

/// Named flags for stops; both default to true (as in the original).
class StopOptions {
public:
    StopOptions& stop_upstream(bool v) noexcept { up_ = v; return *this; }
    StopOptions& stop_downstream(bool v) noexcept { down_ = v; return *this; }
    bool get_stop_upstream() const noexcept { return up_; }
    bool get_stop_downstream() const noexcept { return down_; }

private:
    bool up_ = true;
    bool down_ = true;
};

/// What a stop reached. `found` is false when nothing matched (not an error).
struct StopReport {
    bool found = false;
    std::uint64_t before_start = 0;
    std::uint64_t while_running = 0;
    std::uint64_t after_finish = 0;
    std::uint64_t total() const noexcept { return before_start + while_running + after_finish; }
};

using Stats = btm_stats;
using GroupStats = btm_group_stats;

/// Manager configuration:
///   btm::Config{}.max_threads(4).start_processing(true)
class Config {
public:
    using ThreadHook = std::function<void(std::uint32_t worker_index)>;

    /// Maximum worker threads (0 means 8). Default 0.
    Config& max_threads(std::int32_t n) noexcept { max_threads_ = n; return *this; }
    /// Start processing at once (default false: tasks queue until start()).
    Config& start_processing(bool v) noexcept { start_ = v; return *this; }
    /// Called on each worker thread before it runs any task. Exceptions are
    /// swallowed (they cannot be reported anywhere).
    Config& on_thread_start(ThreadHook f) { thread_start_ = std::move(f); return *this; }
    /// Called on each worker thread just before it exits.
    Config& on_thread_stop(ThreadHook f) { thread_stop_ = std::move(f); return *this; }

    std::int32_t get_max_threads() const noexcept { return max_threads_; }
    bool get_start_processing() const noexcept { return start_; }

private:
    friend class Manager;
    std::int32_t max_threads_ = 0;
    bool start_ = false;
    ThreadHook thread_start_;
    ThreadHook thread_stop_;
};

class TaskContext;

namespace detail {

template <class Fn>
void task_trampoline(void* userdata, btm_task_context* context) noexcept;

struct ThreadHooks {
    Config::ThreadHook start;
    Config::ThreadHook stop;
};

inline void thread_start_trampoline(void* ud, std::uint32_t index) noexcept {
    try {
        auto* h = static_cast<ThreadHooks*>(ud);
        if (h->start) {
            h->start(index);
        }
    } catch (...) {
    }
}

inline void thread_stop_trampoline(void* ud, std::uint32_t index) noexcept {
    try {
        auto* h = static_cast<ThreadHooks*>(ud);
        if (h->stop) {
            h->stop(index);
        }
    } catch (...) {
    }
}

inline void free_thread_hooks(void* ud) noexcept { delete_swallowing(static_cast<ThreadHooks*>(ud)); }

template <class Fn>
void notify_trampoline(void* ud) noexcept {
    try {
        (*static_cast<Fn*>(ud))();
    } catch (...) {
        // Nowhere to report it: a notify callback must not throw.
    }
}

template <class Start, class End>
struct TaskHooks {
    Start start;
    End end;
};

template <class Hooks, bool IsStart>
void task_hook_trampoline(void* ud, std::uint64_t task_id, std::uint32_t group_kind, std::uint64_t group_value,
                          std::uint32_t worker_index) noexcept;

template <class H, class E, class = void>
struct has_on_completed : std::false_type {};
template <class H, class E>
struct has_on_completed<H, E, std::void_t<decltype(std::declval<H&>().on_completed(std::declval<const E&>()))>>
    : std::true_type {};
template <class H, class E, class = void>
struct has_on_failed : std::false_type {};
template <class H, class E>
struct has_on_failed<H, E, std::void_t<decltype(std::declval<H&>().on_failed(std::declval<const E&>()))>>
    : std::true_type {};
template <class H, class E, class = void>
struct has_on_group_finished : std::false_type {};
template <class H, class E>
struct has_on_group_finished<H, E,
                             std::void_t<decltype(std::declval<H&>().on_group_finished(std::declval<const E&>()))>>
    : std::true_type {};
template <class H, class E, class = void>
struct has_on_progress : std::false_type {};
template <class H, class E>
struct has_on_progress<H, E, std::void_t<decltype(std::declval<H&>().on_progress(std::declval<const E&>()))>>
    : std::true_type {};

template <class H>
constexpr bool is_handler_v = has_on_completed<H, Completed>::value || has_on_failed<H, Failed>::value ||
                              has_on_group_finished<H, GroupFinished>::value || has_on_progress<H, Progress>::value;

template <class Derived>
class ManagerApi;

}  // namespace detail

// =============================================================================
// Batches
// =============================================================================

/// The upstream id naming entry `index` of the same TaskBatch (the index its
/// add_task / add_pass_through returned): `BTM_IN_BATCH | index`. Use it in
/// TaskOptions::upstream for an entry of a TaskBatch, to wait for an EARLIER
/// entry of that batch, whose id is not known before Manager::add_tasks.
/// Anywhere else (Manager::add_task, add_pass_through), or naming the entry
/// itself or a later one, btm rejects it as unknown_upstream.
constexpr TaskId in_batch(std::size_t index) noexcept {
    return static_cast<TaskId>(BTM_IN_BATCH) | static_cast<TaskId>(index);
}

/// Tasks to add together with Manager::add_tasks: one native call
/// (btm_add_tasks), one lock section, all of them or none.
///
///   btm::TaskBatch batch;
///   std::size_t i = batch.add_task([] { return 1; }, btm::TaskOptions{}.upstream(earlier));
///   batch.add_pass_through(std::string("meta"), btm::TaskOptions{}.upstream(earlier));
///   std::vector<btm::TaskId> ids = mgr.add_tasks(batch);  // ids[i] is the first task
///
/// add_task / add_pass_through take the same arguments as the Manager
/// members of the same name and return the entry's index in the batch (and in
/// the ids add_tasks returns). Each callable or payload is moved/copied into
/// a heap object at once; the batch owns those objects until add_tasks hands
/// them to btm, and destroys them (exactly once) if it is cleared or destroyed
/// first. An append that throws (std::bad_alloc, a throwing copy) leaves the
/// batch as it was and destroys what it had boxed.
///
/// Upstream ids are of tasks added BEFORE the batch, or name an EARLIER entry
/// of the same batch as btm::in_batch(i), `i` the index its append returned
/// (its id is not known before add_tasks): a whole graph goes in one call.
///
///   std::size_t prev = batch.add_task(step(0));
///   for (int k = 1; k < n; ++k)  // a chain: each entry waits for the one before
///       prev = batch.add_task(step(k), btm::TaskOptions{}.upstream(btm::in_batch(prev)));
///
/// Groups and upstream ids are checked by btm when the batch is added: an
/// in_batch index that is not below the entry's own (itself, a later entry,
/// past the end) makes add_tasks throw btm::Error(unknown_upstream), nothing
/// added.
///
/// Not thread-safe: fill and add a batch from one thread at a time. Movable,
/// not copyable (a moved-from batch is empty).
class TaskBatch {
public:
    TaskBatch() noexcept = default;
    TaskBatch(TaskBatch&& other) noexcept
        : descs_(std::move(other.descs_)), upstream_(std::move(other.upstream_)) {
        other.descs_.clear();
        other.upstream_.clear();
    }
    TaskBatch& operator=(TaskBatch&& other) noexcept {
        if (this != &other) {
            clear();
            descs_ = std::move(other.descs_);
            upstream_ = std::move(other.upstream_);
            other.descs_.clear();
            other.upstream_.clear();
        }
        return *this;
    }
    TaskBatch(const TaskBatch&) = delete;
    TaskBatch& operator=(const TaskBatch&) = delete;
    /// Destroys the callables and payloads of entries not added.
    ~TaskBatch() { clear(); }

    /// Appends a task (as Manager::add_task). Returns its index.
    template <class F>
    std::size_t add_task(F&& f, const TaskOptions& opts = {}) {
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_v<Fn&&, TaskContext&> || std::is_invocable_v<Fn&&>,
                      "btm: a task must be callable as f(btm::TaskContext&) or f()");
        btm_task_desc d{};
        d.task_fn = &detail::task_trampoline<Fn>;
        d.userdata = std::make_unique<Fn>(std::forward<F>(f)).release();
        d.userdata_free = &detail::free_callable<Fn>;
        return append(d, opts);
    }

    /// Appends a pass-through task with no payload (as
    /// Manager::add_pass_through). Returns its index.
    std::size_t add_pass_through(const TaskOptions& opts = {}) {
        btm_task_desc d{};
        d.flags = BTM_TASK_PASS_THROUGH;
        return append(d, opts);
    }

    /// Appends a pass-through task whose payload (a copy/move of `payload`)
    /// comes first in its gathered result. Returns its index.
    template <class P, class = std::enable_if_t<!std::is_same_v<std::decay_t<P>, TaskOptions>>>
    std::size_t add_pass_through(P&& payload, const TaskOptions& opts = {}) {
        using T = std::decay_t<P>;
        btm_task_desc d{};
        d.flags = BTM_TASK_PASS_THROUGH;
        d.userdata = detail::make_box<T>(std::forward<P>(payload));
        d.userdata_free = &detail::free_box<T>;
        return append(d, opts);
    }

    /// Number of entries not yet added.
    std::size_t size() const noexcept { return descs_.size(); }
    bool empty() const noexcept { return descs_.empty(); }
    /// Reserves room for `n` entries (their upstream ids aside).
    void reserve(std::size_t n) { descs_.reserve(n); }

    /// Destroys every callable and payload not yet added; the batch becomes
    /// empty (and stays usable).
    void clear() noexcept {
        std::vector<btm_task_desc> doomed;
        doomed.swap(descs_);
        upstream_.clear();
        for (const btm_task_desc& d : doomed) {
            if (d.userdata_free != nullptr) {
                d.userdata_free(d.userdata);
            }
        }
    }

private:
    template <class Derived>
    friend class detail::ManagerApi;

    /// Stores `d` with the options' group, priority and upstream ids. Owns
    /// `d.userdata` whatever happens: on an exception it is freed here and
    /// the batch is left as it was.
    std::size_t append(btm_task_desc d, const TaskOptions& opts) {
        const std::size_t old_upstream = upstream_.size();
        try {
            const std::vector<TaskId>& up = opts.get_upstream();
            for (TaskId id : up) {  // a loop: see TaskOptions::upstream
                upstream_.push_back(id);
            }
            d.group = opts.get_group().raw();
            d.priority = opts.get_priority();
            d.upstream = nullptr;  // set by prepare(): upstream_ may still move
            d.upstream_len = up.size();
            descs_.push_back(d);
        } catch (...) {
            upstream_.resize(old_upstream);
            if (d.userdata_free != nullptr) {
                d.userdata_free(d.userdata);
            }
            throw;
        }
        return descs_.size() - 1;
    }

    /// Points every descriptor at its upstream ids; returns the array.
    btm_task_desc* prepare() noexcept {
        const TaskId* next = upstream_.data();
        for (btm_task_desc& d : descs_) {
            if (d.upstream_len == 0) {
                d.upstream = nullptr;
            } else {
                d.upstream = next;
                next += d.upstream_len;
            }
        }
        return descs_.data();
    }

    /// Forgets every entry without freeing it (btm owns them now).
    void release() noexcept {
        descs_.clear();
        upstream_.clear();
    }

    std::vector<btm_task_desc> descs_;
    std::vector<TaskId> upstream_;
};

namespace detail {

// ---- the operations shared by Manager (owning) and ManagerRef (borrowed) ----

template <class Derived>
class ManagerApi {
public:
    /// Adds a task. `f` is any callable taking `btm::TaskContext&` or
    /// nothing; it is moved/copied into a heap object that btm destroys
    /// exactly once. It is invoked once, as an rvalue, on a worker thread.
    /// Its return value (if not void) becomes the task's typed result.
    /// Throws btm::Error (the callable has then already been destroyed).
    template <class F>
    TaskId add_task(F&& f, const TaskOptions& opts = {}) const {
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_v<Fn&&, TaskContext&> || std::is_invocable_v<Fn&&>,
                      "btm: a task must be callable as f(btm::TaskContext&) or f()");
        auto holder = std::make_unique<Fn>(std::forward<F>(f));
        const auto& up = opts.get_upstream();
        TaskId id = 0;
        // Ownership passes to btm on every call, even a failing one: release
        // first so nothing here frees it again.
        const btm_status s = btm_add_task(raw(), &task_trampoline<Fn>, holder.release(), &free_callable<Fn>,
                                          opts.get_priority(), opts.get_group().c_ptr(),
                                          up.empty() ? nullptr : up.data(), up.size(), &id);
        check(s, "btm_add_task");
        return id;
    }

    /// Adds a pass-through task with no payload: it gathers its upstream
    /// results (iterate Completed::results or TaskContext::upstream()).
    TaskId add_pass_through(const TaskOptions& opts = {}) const {
        return add_pass_through_raw(nullptr, nullptr, opts);
    }

    /// Adds a pass-through task whose payload (a copy/move of `payload`) comes
    /// first in its gathered result.
    template <class P, class = std::enable_if_t<!std::is_same_v<std::decay_t<P>, TaskOptions>>>
    TaskId add_pass_through(P&& payload, const TaskOptions& opts = {}) const {
        using T = std::decay_t<P>;
        void* box = make_box<T>(std::forward<P>(payload));
        return add_pass_through_raw(box, &free_box<T>, opts);
    }

    /// Adds every entry of `batch` in one native call (btm_add_tasks), all of
    /// them or none, and returns their ids in the batch's order. The batch is
    /// then empty (reusable) whatever the outcome: its callables and payloads
    /// belong to btm from the call on, so on a btm::Error (e.g.
    /// unknown_upstream, invalid_group, shut_down: nothing added, no id
    /// issued) btm has already destroyed every one of them, exactly once.
    /// Only a std::bad_alloc before the call (allocating the id vector)
    /// leaves the batch as it was. An empty batch adds nothing.
    std::vector<TaskId> add_tasks(TaskBatch& batch) const {
        std::vector<TaskId> ids(batch.size());
        const std::size_t n = batch.size();
        btm_task_desc* descs = batch.prepare();
        const btm_status s = btm_add_tasks(raw(), n == 0 ? nullptr : descs, n, n == 0 ? nullptr : ids.data());
        // Ownership passed to btm on every call, even a failing one.
        batch.release();
        check(s, "btm_add_tasks");
        return ids;
    }

    /// Stops a task (see btm_stop_task). Returns what was stopped;
    /// `found == false` if the task is not live.
    StopReport stop_task(TaskId id, const StopOptions& opts = {}) const {
        btm_stop_report r{};
        const btm_status s =
            btm_stop_task(raw(), id, opts.get_stop_upstream(), opts.get_stop_downstream(), &r);
        return to_report(s, r, "btm_stop_task");
    }

    /// Stops every live task of a group.
    StopReport stop_group(const Group& g, const StopOptions& opts = {}) const {
        btm_stop_report r{};
        const btm_status s =
            btm_stop_task_group(raw(), g.c_ptr(), opts.get_stop_upstream(), opts.get_stop_downstream(), &r);
        return to_report(s, r, "btm_stop_task_group");
    }

    /// Stops every live task; the manager keeps working.
    StopReport stop_all() const {
        btm_stop_report r{};
        const btm_status s = btm_stop_all_tasks(raw(), &r);
        return to_report(s, r, "btm_stop_all_tasks");
    }

    /// Changes the priority of a task that has not started. Returns false if
    /// it is not live or no longer queued.
    bool set_priority(TaskId id, std::int32_t priority) const {
        const btm_status s = btm_set_task_priority(raw(), id, priority);
        if (s == BTM_STATUS_NOT_FOUND || s == BTM_STATUS_NOT_QUEUED) {
            return false;
        }
        check(s, "btm_set_task_priority");
        return true;
    }

    void start() const { check(btm_start_processing(raw()), "btm_start_processing"); }
    void pause() const { check(btm_pause_processing(raw()), "btm_pause_processing"); }

    void set_max_threads(std::int32_t n) const { check(btm_set_max_threads(raw(), n), "btm_set_max_threads"); }

    /// The named group for `name` (same name, same group). btm takes the
    /// name NUL-terminated, so a name with an embedded '\0' (which btm would
    /// see cut short, the same group as its prefix) throws
    /// btm::Error(invalid_argument); invalid UTF-8 throws
    /// btm::Error(invalid_utf8).
    Group group_named(const std::string& name) const {
        if (name.find('\0') != std::string::npos) {
            throw Error(Status::invalid_argument, "btm_group_named (a name with an embedded NUL)");
        }
        btm_group g{};
        check(btm_group_named(raw(), name.c_str(), &g), "btm_group_named");
        return Group(g, name.c_str());
    }

    /// The name of a named group, "" for the default and numbered groups:
    /// for the groups task hooks report, whose `name()` is empty there (a
    /// hook may call it; it allocates the string). Throws on a name id
    /// this manager never issued (`INVALID_GROUP`).
    std::string group_name(const Group& group) const {
        const char* name = nullptr;
        check(btm_group_name(raw(), &group.raw(), &name), "btm_group_name");
        return name != nullptr ? std::string(name) : std::string();
    }

    /// A numbered group this manager never returned before.
    Group next_group() const {
        btm_group g{};
        check(btm_next_group_id(raw(), &g), "btm_next_group_id");
        return Group(g, nullptr);
    }

    Stats stats() const {
        Stats s{};
        check(btm_get_stats(raw(), &s), "btm_get_stats");
        return s;
    }

    GroupStats group_stats(const Group& g) const {
        GroupStats s{};
        check(btm_get_group_stats(raw(), g.c_ptr(), &s), "btm_get_group_stats");
        return s;
    }

    /// Registers the host's wake-up callback (replacing any previous one):
    /// `notify()` runs on a worker thread (or on the thread of the call that
    /// made the first event available: an add whose task fails at once, a
    /// poll as it ends, a wait or stats call) when the event queue goes from
    /// empty to non-empty, at most
    /// once until the next poll. It should only
    /// post a message to the host's loop, which then calls drain(). It must
    /// not poll or block; an exception escaping it is swallowed. Events
    /// already waiting when it is registered give it no call: register it
    /// before adding tasks, or drain once after registering. The
    /// callable is destroyed exactly once, by btm (when replaced, cleared,
    /// or when the manager is freed). When set_notify() or clear_notify()
    /// returns, the callable it replaced is not running on any thread and
    /// has been destroyed (it waits for a call in progress; called from
    /// inside a notify callback or on a worker thread, it does not wait).
    template <class F>
    void set_notify(F&& notify) const {
        using Fn = std::decay_t<F>;
        static_assert(std::is_invocable_v<Fn&>, "btm: a notify callback must be callable as f()");
        auto holder = std::make_unique<Fn>(std::forward<F>(notify));
        // Owned by btm on every call, even a failing one.
        check(btm_set_notify(raw(), &notify_trampoline<Fn>, holder.release(), &free_callable<Fn>),
              "btm_set_notify");
    }

    /// Removes the notify callback.
    void clear_notify() const { check(btm_set_notify(raw(), nullptr, nullptr, nullptr), "btm_set_notify"); }

    /// A file descriptor readable exactly while undelivered events exist
    /// (for poll/epoll, libuv, GLib, QSocketNotifier); when readable, call
    /// drain(). Never read from it or close it: btm owns it. Unix only:
    /// throws Error (Status::unsupported) on Windows, see event_handle().
    int event_fd() const {
        std::int32_t fd = -1;
        check(btm_get_event_fd(raw(), &fd), "btm_get_event_fd");
        return static_cast<int>(fd);
    }

    /// Windows: the HANDLE of an event object signalled exactly while
    /// undelivered events exist (for WaitForMultipleObjects or
    /// MsgWaitForMultipleObjects; with RegisterWaitForSingleObject, pass
    /// WT_EXECUTEONLYONCE and register again after drain(): it stays
    /// signalled until then); when signalled, call drain(). Never set,
    /// reset or close it: btm owns it and closes it with the Manager, so end
    /// every wait on it first. Windows only: throws Error
    /// (Status::unsupported) elsewhere, see event_fd().
    void* event_handle() const {
        void* handle = nullptr;
        check(btm_get_event_handle(raw(), &handle), "btm_get_event_handle");
        return handle;
    }

    /// Registers instrumentation hooks (replacing previous ones), for
    /// profilers: `on_start(task_id, group, worker_index)` runs on the worker
    /// just before a task, `on_end(...)` just after it (pass-through tasks are
    /// not reported). `group.name()` is empty in hooks (no allocation there).
    /// Exceptions escaping a hook are swallowed. The hooks are destroyed
    /// exactly once, by btm.
    template <class Start, class End>
    void set_task_hooks(Start&& on_start, End&& on_end) const {
        using S = std::decay_t<Start>;
        using E = std::decay_t<End>;
        static_assert(std::is_invocable_v<S&, TaskId, const Group&, std::uint32_t> &&
                          std::is_invocable_v<E&, TaskId, const Group&, std::uint32_t>,
                      "btm: task hooks must be callable as f(btm::TaskId, const btm::Group&, std::uint32_t)");
        using Hooks = TaskHooks<S, E>;
        auto holder = std::make_unique<Hooks>(Hooks{std::forward<Start>(on_start), std::forward<End>(on_end)});
        check(btm_set_task_hooks(raw(), &task_hook_trampoline<Hooks, true>, &task_hook_trampoline<Hooks, false>,
                                 holder.release(), &free_callable<Hooks>),
              "btm_set_task_hooks");
    }

    /// Removes the instrumentation hooks.
    void clear_task_hooks() const {
        check(btm_set_task_hooks(raw(), nullptr, nullptr, nullptr, nullptr), "btm_set_task_hooks");
    }

    /// Waits until an event is pending: true, or false on timeout.
    /// Throws btm::Error(shut_down) if the manager is shut down.
    bool wait_events(std::chrono::milliseconds timeout = wait_forever) const {
        const std::uint32_t ms = timeout == wait_forever ? BTM_WAIT_FOREVER : to_timeout_ms(timeout);
        const btm_status s = btm_wait_events(raw(), ms);
        if (s == BTM_STATUS_TIMED_OUT) {
            return false;
        }
        check(s, "btm_wait_events");
        return true;
    }

    /// Waits until nothing is queued, blocked or running: true, or false on
    /// timeout. Throws btm::Error(would_deadlock) from inside a task.
    bool wait_idle(std::chrono::milliseconds timeout = wait_forever) const {
        const std::uint32_t ms = timeout == wait_forever ? BTM_WAIT_FOREVER : to_timeout_ms(timeout);
        const btm_status s = btm_wait_idle(raw(), ms);
        if (s == BTM_STATUS_TIMED_OUT) {
            return false;
        }
        check(s, "btm_wait_idle");
        return true;
    }

    /// Drains up to `capacity` pending events (one btm_poll_events call).
    /// Never blocks. The events' results borrow from btm and stay valid
    /// until the next poll of this manager (by anyone); strings are copies.
    /// Polls from several threads at once are serialised (btm frees a
    /// poll's strings at the next poll, from whichever thread).
    std::vector<Event> poll(std::size_t capacity = 64) const {
        std::vector<Event> out;
        std::exception_ptr first;
        poll_converted(capacity, out, first);
        if (first) {
            std::rethrow_exception(first);
        }
        return out;
    }

    /// Drains up to `capacity` pending events into a handler object with any
    /// of on_completed(const Completed&), on_failed(const Failed&),
    /// on_group_finished(const GroupFinished&), on_progress(const Progress&).
    /// Returns the number of events drained. If a handler method throws, the
    /// other events of the batch are still handed to the handler, then the
    /// first exception is rethrown (polled events are never lost). Every
    /// event's strings are copied before the first handler call, so a
    /// handler may poll again (a nested event loop); that releases only the
    /// results of the events not yet handled. A handler that destroys,
    /// replaces or gives up the manager through its Manager (reset(), a move
    /// assignment, release()) ends the delivery: the rest of the batch is
    /// dropped (after reset() or an assignment its results were freed with
    /// the manager). The Manager object itself must outlive the call.
    template <class H, class = std::enable_if_t<is_handler_v<std::remove_reference_t<H>>>>
    std::size_t poll(H&& handler, std::size_t capacity = 64) const {
        return poll_raw(capacity, [&](Event& ev) { deliver(handler, ev); });
    }

    /// Delivers every pending event: polls batches of `capacity` until a
    /// poll returns fewer, passing each event, before the next poll, to
    /// `sink`: a handler object (as for poll(handler)) or a callable taking
    /// `const btm::Event&`. Returns the number of events. This is what a
    /// notify callback or a readable event_fd() should lead to. If the sink
    /// throws, the draining still goes on until a poll returns fewer, then
    /// the first exception propagates: a notify callback comes only after
    /// the queue was emptied, so events left queued would wait for a call
    /// that never comes. A sink that destroys, replaces or gives up the
    /// manager through its Manager (reset(), a move assignment, release())
    /// ends the drain, as for poll(handler).
    template <class Sink>
    std::size_t drain(Sink&& sink, std::size_t capacity = 64) const {
        using ST = std::remove_reference_t<Sink>;
        static_assert(is_handler_v<ST> || std::is_invocable_v<ST&, const Event&>,
                      "btm: drain() takes a handler object or a callable taking const btm::Event&");
        std::size_t total = 0;
        std::exception_ptr first;
        btm_manager* const polled = raw();
        for (;;) {
            std::size_t n = 0;
            if constexpr (is_handler_v<ST>) {
                n = poll_collect(capacity, [&](Event& ev) { deliver(sink, ev); }, first);
            } else {
                n = poll_collect(capacity, [&](const Event& ev) { sink(ev); }, first);
            }
            total += n;
            // Also ends when the sink destroyed or replaced the manager.
            if (n < capacity || raw() != polled) {
                break;
            }
        }
        if (first) {
            std::rethrow_exception(first);
        }
        return total;
    }

    /// The C handle (borrowed), for interop.
    btm_manager* raw() const noexcept { return static_cast<const Derived*>(this)->get(); }

private:
    TaskId add_pass_through_raw(void* payload, btm_free_fn payload_free, const TaskOptions& opts) const {
        const auto& up = opts.get_upstream();
        TaskId id = 0;
        const btm_status s =
            btm_add_pass_through_task(raw(), opts.get_priority(), opts.get_group().c_ptr(),
                                      up.empty() ? nullptr : up.data(), up.size(), payload, payload_free, &id);
        check(s, "btm_add_pass_through_task");
        return id;
    }

    static StopReport to_report(btm_status s, const btm_stop_report& r, const char* function) {
        if (s == BTM_STATUS_NOT_FOUND) {
            return StopReport{};
        }
        check(s, function);
        return StopReport{true, r.before_start, r.while_running, r.after_finish};
    }

    /// One btm_poll_events call; every event is converted (its strings
    /// copied) into `out` before any host code runs, since host code may
    /// poll again and so release this poll's strings. Returns the number of
    /// events polled (kinds this header does not know included, not
    /// converted). A conversion that throws (std::bad_alloc) loses only that
    /// event; the first such exception is stored in `first`.
    std::size_t poll_converted(std::size_t capacity, std::vector<Event>& out, std::exception_ptr& first) const {
        constexpr std::size_t stack_capacity = 64;
        btm_event stack_events[stack_capacity];
        std::vector<btm_event> heap_events;
        btm_event* events = stack_events;
        if (capacity > stack_capacity) {
            heap_events.resize(capacity);
            events = heap_events.data();
        }
        std::size_t n = 0;
        const std::lock_guard<std::recursive_mutex> lock(poll_mutex());
        check(btm_poll_events(raw(), events, capacity, &n), "btm_poll_events");
        try {
            out.reserve(out.size() + n);
        } catch (...) {
            first = std::current_exception();
        }
        for (std::size_t i = 0; i < n; ++i) {
            try {
                if (std::optional<Event> ev = to_event(events[i])) {
                    out.push_back(std::move(*ev));
                }
            } catch (...) {
                if (!first) {
                    first = std::current_exception();
                }
            }
        }
        return n;
    }

    /// Hands one event to the matching method of `handler`, if it has one.
    template <class H>
    static void deliver(H& handler, Event& ev) {
        using HT = std::remove_reference_t<H>;
        if (auto* c = std::get_if<Completed>(&ev)) {
            if constexpr (has_on_completed<HT, Completed>::value) handler.on_completed(*c);
        } else if (auto* f = std::get_if<Failed>(&ev)) {
            if constexpr (has_on_failed<HT, Failed>::value) handler.on_failed(*f);
        } else if (auto* g = std::get_if<GroupFinished>(&ev)) {
            if constexpr (has_on_group_finished<HT, GroupFinished>::value) handler.on_group_finished(*g);
        } else if (auto* p = std::get_if<Progress>(&ev)) {
            if constexpr (has_on_progress<HT, Progress>::value) handler.on_progress(*p);
        }
    }

    /// One poll; every converted event goes to `sink`, even if an earlier
    /// one threw; the first exception is rethrown at the end.
    template <class Sink>
    std::size_t poll_raw(std::size_t capacity, Sink&& sink) const {
        std::exception_ptr first;
        const std::size_t n = poll_collect(capacity, sink, first);
        if (first) {
            std::rethrow_exception(first);
        }
        return n;
    }

    /// As poll_raw, but the first exception (if `first` holds none yet) is
    /// stored in `first` instead of rethrown.
    template <class Sink>
    std::size_t poll_collect(std::size_t capacity, Sink&& sink, std::exception_ptr& first) const {
        std::vector<Event> events;
        btm_manager* const polled = raw();
        const std::size_t n = poll_converted(capacity, events, first);
        for (Event& ev : events) {
            // A handler that destroyed, replaced or gave up the manager
            // (Manager::reset(), a move assignment, release()) ends the
            // delivery: the rest of the batch belongs to a manager this
            // object no longer has, and after reset() or an assignment
            // btm_destroy has freed its results.
            if (raw() != polled) {
                break;
            }
            try {
                sink(ev);
            } catch (...) {
                if (!first) {
                    first = std::current_exception();
                }
            }
        }
        return n;
    }
};

}  // namespace detail

/// A borrowed manager handle (Manager::ref(), TaskContext::manager()): all
/// the operations of Manager, but it never destroys the manager. It must not
/// outlive its Manager (one from TaskContext::manager() stays usable until
/// the task returns).
class ManagerRef : public detail::ManagerApi<ManagerRef> {
public:
    explicit ManagerRef(btm_manager* m) noexcept : m_(m) {}
    btm_manager* get() const noexcept { return m_; }

private:
    btm_manager* m_;
};

/// A task manager (owning, move-only). Destruction shuts it down, waiting
/// for running tasks, and destroys everything still queued.
class Manager : public detail::ManagerApi<Manager> {
public:
    struct Deleter {
        void operator()(btm_manager* m) const noexcept { btm_destroy(m); }
    };

    /// Creates a manager; throws btm::Error.
    explicit Manager(const Config& config = Config{}) {
        btm_config c{};
        check_create(btm_config_init_size(&c, sizeof c));
        c.max_threads = config.max_threads_;
        c.start_processing = config.start_;
        std::unique_ptr<detail::ThreadHooks> hooks;
        if (config.thread_start_ || config.thread_stop_) {
            hooks = std::make_unique<detail::ThreadHooks>(detail::ThreadHooks{config.thread_start_, config.thread_stop_});
            c.thread_start = &detail::thread_start_trampoline;
            c.thread_stop = &detail::thread_stop_trampoline;
            c.thread_hook_free = &detail::free_thread_hooks;
        }
        // Ownership of the hooks passes to btm on every call, even a failing
        // one (btm_create calls thread_hook_free on every error; only a config
        // too small to hold the hook fields keeps them, and btm_config_init_size
        // made a full one): release first so nothing here frees them again.
        c.thread_hook_userdata = hooks.release();
        btm_manager* m = nullptr;
        const btm_status s = btm_create(&c, &m);
        check_create(s);
        handle_.reset(m);
    }

    /// Adopts a C handle (takes ownership; NULL makes an empty Manager).
    static Manager adopt(btm_manager* m) noexcept { return Manager(m); }

    Manager(Manager&&) noexcept = default;
    Manager& operator=(Manager&&) noexcept = default;
    Manager(const Manager&) = delete;
    Manager& operator=(const Manager&) = delete;
    ~Manager() = default;

    btm_manager* get() const noexcept { return handle_.get(); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }
    /// Gives up ownership of the C handle.
    btm_manager* release() noexcept { return handle_.release(); }
    /// Destroys the manager now (btm_destroy); the object becomes empty.
    void reset() noexcept { handle_.reset(); }

    /// A borrowed reference (for capturing in tasks).
    ManagerRef ref() const noexcept { return ManagerRef(handle_.get()); }

    /// Shuts down: stops everything, no event is ever delivered again, new
    /// tasks are rejected. Waits up to `timeout` for workers; returns the
    /// number still running a task (0 when all exited; called from a task
    /// or hook on one of its workers, 0 means every other worker exited and
    /// the calling one finishes what it is doing). Throws btm::Error
    /// (already_shut_down on a second call).
    std::size_t shut_down(std::chrono::milliseconds timeout = wait_forever) const {
        const std::uint32_t ms = timeout == wait_forever ? BTM_WAIT_FOREVER : detail::to_timeout_ms(timeout);
        std::size_t still = 0;
        const btm_status s = btm_shut_down(get(), ms, &still);
        if (s == BTM_STATUS_TIMED_OUT) {
            return still;
        }
        detail::check(s, "btm_shut_down");
        return 0;
    }

private:
    explicit Manager(btm_manager* m) noexcept : handle_(m) {}
    static void check_create(btm_status s) { detail::check(s, "btm_create"); }
    std::unique_ptr<btm_manager, Deleter> handle_;
};

/// What a running task sees: its id, upstream results, progress, failure,
/// stop flag and its manager. Valid only during the task call, on its thread.
class TaskContext {
public:
    explicit TaskContext(btm_task_context* c) noexcept : c_(c) {}
    TaskContext(const TaskContext&) = delete;
    TaskContext& operator=(const TaskContext&) = delete;

    TaskId id() const noexcept { return btm_context_task_id(c_); }

    /// The manager running this task (borrowed), to add or stop tasks.
    ManagerRef manager() const noexcept { return ManagerRef(btm_context_manager(c_)); }

    /// Results of the upstream tasks, in the order those completed; valid
    /// until the task returns.
    Results upstream() const {
        const btm_value* v = nullptr;
        std::size_t n = 0;
        detail::check(btm_context_upstream(c_, &v, &n), "btm_context_upstream");
        return Results(v, n);
    }

    /// Upstream entry i as a T; throws std::out_of_range or BadResultAccess
    /// (inside a task, either becomes the task's failure if not caught).
    template <class T>
    const detail::plain_t<T>& upstream(std::size_t i) const {
        return upstream().template get<T>(i);
    }

    /// True once the task was stopped: its outcome will be dropped.
    bool is_stopped() const noexcept { return btm_context_is_stopped(c_); }

    /// Reports progress (fraction clamped to 0..1). Returns false if the task
    /// was stopped. Throws btm::Error(invalid_argument) for NaN.
    bool report_progress(double fraction) const { return progress_raw(fraction, nullptr); }
    bool report_progress(double fraction, const std::string& message) const {
        return progress_raw(fraction, message.c_str());
    }
    bool report_progress(double fraction, const char* message) const { return progress_raw(fraction, message); }

    /// Marks the task failed (it fails instead of completing when it
    /// returns). Throwing an exception does the same.
    void fail(const std::string& message, const std::string& details = std::string()) const {
        detail::check(btm_context_fail(c_, message.c_str(), details.c_str()), "btm_context_fail");
    }

    btm_task_context* raw() const noexcept { return c_; }

private:
    bool progress_raw(double fraction, const char* message) const {
        const btm_status s = btm_context_report_progress(c_, fraction, message);
        if (s == BTM_STATUS_NOT_FOUND) {
            return false;
        }
        detail::check(s, "btm_context_report_progress");
        return true;
    }

    btm_task_context* c_;
};

namespace detail {

template <class Hooks, bool IsStart>
void task_hook_trampoline(void* ud, std::uint64_t task_id, std::uint32_t group_kind, std::uint64_t group_value,
                          std::uint32_t worker_index) noexcept {
    try {
        auto* hooks = static_cast<Hooks*>(ud);
        const Group group(btm_group{group_kind, 0, group_value}, nullptr);
        if constexpr (IsStart) {
            hooks->start(task_id, group, worker_index);
        } else {
            hooks->end(task_id, group, worker_index);
        }
    } catch (...) {
        // Nowhere to report it: instrumentation must not disturb the task.
    }
}

template <class Fn>
void task_trampoline(void* userdata, btm_task_context* context) noexcept {
    try {
        TaskContext ctx(context);
        Fn& fn = *static_cast<Fn*>(userdata);
        if constexpr (std::is_invocable_v<Fn&&, TaskContext&>) {
            using R = std::invoke_result_t<Fn&&, TaskContext&>;
            if constexpr (std::is_void_v<R>) {
                std::invoke(std::move(fn), ctx);
            } else {
                using T = std::decay_t<R>;
                void* box = make_box<T>(FromCall{}, std::move(fn), ctx);
                (void)btm_context_set_result(context, box, &free_box<T>);
            }
        } else {
            using R = std::invoke_result_t<Fn&&>;
            if constexpr (std::is_void_v<R>) {
                std::invoke(std::move(fn));
            } else {
                using T = std::decay_t<R>;
                void* box = make_box<T>(FromCall{}, std::move(fn));
                (void)btm_context_set_result(context, box, &free_box<T>);
            }
        }
    } catch (...) {
        fail_with_current_exception(context);
    }
}

}  // namespace detail

}  // namespace btm

#endif  // BTM_HPP
