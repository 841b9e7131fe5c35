// peer_tbb.cpp - oneTBB peer of the btm side-by-side benchmark.
//
// Two TBB worker threads (global_control max_allowed_parallelism = 3 and a
// task_arena of 3 slots with 1 reserved for the main thread); the main thread
// stays inside the arena but only submits and observes: each task pushes its
// id to a tbb::concurrent_bounded_queue that the main thread pops (blocking),
// which is where a completion counts as "observed".
//   w1, w3, w4, w5: tbb::task_group (w3: task_group::cancel()).
//   w2a, w2b:       flow graph of continue_nodes, built inside the timed region.
//   w6:             flow graph, 4 function_nodes with node priorities 1..4.
//
// Usage: ./peer_tbb <w1|w2a|w2b|w3|w4|w5|w6> <N>   (see peer_common.h)
#include <oneapi/tbb/concurrent_queue.h>
#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "peer_common.h"

namespace {

using cmsg = tbb::flow::continue_msg;
using cnode = tbb::flow::continue_node<cmsg>;

tbb::concurrent_bounded_queue<uint64_t> done;
uint64_t completed = 0, id_sum = 0;
std::atomic<uint64_t> freed{0};

void observe() {
    uint64_t id;
    done.pop(id);
    completed++;
    id_sum += id;
}

void check_ids(uint64_t n) {
    if (completed != n || id_sum != n * (n ? n - 1 : 0) / 2)
        pc_die("completions %llu of %llu, id sum mismatch", (unsigned long long)completed,
               (unsigned long long)n);
}

void submit(tbb::task_group &tg, pc_task_fn fn, void *ud, uint64_t id) {
    tg.run([fn, ud, id] {
        fn(ud);
        done.push(id);
    });
}

void warm_up() {
    tbb::task_group tg;
    for (int i = 0; i < PC_WARMUP; i++) submit(tg, pc_task(), pc_dummy_ud, (uint64_t)i);
    for (int i = 0; i < PC_WARMUP; i++) observe();
    tg.wait();
    completed = id_sum = 0;
}

void block_workers(tbb::task_group &gate_tg) {
    for (int k = 0; k < PC_WORKERS; k++) gate_tg.run([] { pc_gate_task(nullptr); });
    pc_gate_wait_entered(PC_WORKERS);
}

void w1(uint64_t n) {
    pc_task_fn fn = pc_task();
    tbb::task_group tg;
    uint64_t t0 = pc_now_ns();
    for (uint64_t i = 0; i < n; i++) submit(tg, fn, pc_dummy_ud, i);
    for (uint64_t i = 0; i < n; i++) observe();
    uint64_t t1 = pc_now_ns();
    tg.wait();
    check_ids(n);
    pc_report(n, t1 - t0, nullptr);
}

void w2a() {
    const uint64_t total = (uint64_t)PC_W2A_CHAINS * PC_W2A_LEN;
    pc_task_fn fn = pc_task();
    std::vector<std::unique_ptr<cnode>> nodes;
    nodes.reserve(total);
    uint64_t t0 = pc_now_ns();
    {
        tbb::flow::graph g;
        for (uint64_t i = 0; i < total; i++) {
            nodes.emplace_back(new cnode(g, [fn, i](const cmsg &) {
                fn(pc_dummy_ud);
                done.push(i);
            }));
            if (i % PC_W2A_LEN != 0) tbb::flow::make_edge(*nodes[i - 1], *nodes[i]);
        }
        for (uint64_t c = 0; c < PC_W2A_CHAINS; c++) nodes[c * PC_W2A_LEN]->try_put(cmsg());
        for (uint64_t i = 0; i < total; i++) observe();
        uint64_t t1 = pc_now_ns();
        g.wait_for_all();
        check_ids(total);
        pc_report(total, t1 - t0,
                  ",\"chains\":1000,\"chain_len\":100,\"note\":\"flow graph: one continue_node per "
                  "task, edges along each chain; graph construction is inside the timed region\"");
        nodes.clear();
    }
}

void w2b(uint64_t n) {
    pc_task_fn fn = pc_task();
    std::vector<std::unique_ptr<cnode>> nodes;
    nodes.reserve(n);
    uint64_t t0 = pc_now_ns();
    {
        tbb::flow::graph g;
        cnode final_node(g, [fn, n](const cmsg &) {
            fn(pc_dummy_ud);
            done.push(n);
        });
        for (uint64_t i = 0; i < n; i++) {
            nodes.emplace_back(new cnode(g, [fn, i](const cmsg &) {
                fn(pc_dummy_ud);
                done.push(i);
            }));
            tbb::flow::make_edge(*nodes[i], final_node);
        }
        if (n == 0) final_node.try_put(cmsg());
        for (uint64_t i = 0; i < n; i++) nodes[i]->try_put(cmsg());
        for (uint64_t i = 0; i < n + 1; i++) observe();
        uint64_t t1 = pc_now_ns();
        g.wait_for_all();
        check_ids(n + 1);
        pc_report(n + 1, t1 - t0,
                  ",\"note\":\"flow graph: N continue_nodes with an edge each into one final "
                  "continue_node; graph construction is inside the timed region\"");
        nodes.clear();
    }
}

// Owns a task's userdata: freed when the task object is destroyed, which
// task_group does for a cancelled task without running it.
struct owned_ud {
    void *p;
    explicit owned_ud(void *q) : p(q) {}
    owned_ud(owned_ud &&o) noexcept : p(o.p) { o.p = nullptr; }
    owned_ud(const owned_ud &) = delete;
    owned_ud &operator=(const owned_ud &) = delete;
    ~owned_ud() {
        if (p) {
            free(p);
            freed.fetch_add(1, std::memory_order_relaxed);
        }
    }
};

void w3(uint64_t n) {
    pc_task_fn fn = pc_task();
    tbb::task_group gate_tg, tg;
    std::atomic<uint64_t> ran{0};
    block_workers(gate_tg);
    auto queue = [&](tbb::task_group &g, uint64_t count) {
        for (uint64_t i = 0; i < count; i++) {
            void *ud = malloc(16);
            if (!ud) pc_die("out of memory");
            g.run([fn, h = owned_ud(ud), &ran] {
                fn(h.p);
                ran.fetch_add(1, std::memory_order_relaxed);
            });
        }
    };
    {
        // Warm-up: the measured operation once before the clock, on
        // PC_WARMUP queued tasks, as every program of the benchmark does.
        tbb::task_group warm;
        queue(warm, PC_WARMUP);
        warm.cancel();
        warm.wait();
        if (ran.load() != 0 || freed.load() != PC_WARMUP) pc_die("the warm-up cancel missed tasks");
        freed.store(0);
    }
    queue(tg, n);
    uint64_t t0 = pc_now_ns();
    tg.cancel();
    tg.wait(); // the main thread destroys the cancelled tasks without running them
    uint64_t t1 = pc_now_ns();
    pc_gate_open();
    gate_tg.wait();
    if (ran.load() != 0 || freed.load() != n)
        pc_die("cancel: %llu ran, %llu of %llu userdata freed", (unsigned long long)ran.load(),
               (unsigned long long)freed.load(), (unsigned long long)n);
    pc_report(n, t1 - t0,
              ",\"note\":\"task_group::cancel() + wait(): each cancelled task's functor is "
              "destroyed without running, its destructor frees the userdata\"");
}

void w4(uint64_t n) {
    pc_task_fn fn = pc_task();
    if (n == 0) n = PC_W4_DEFAULT;
    std::vector<uint64_t> lat(n);
    uint64_t total = 0;
    tbb::task_group tg;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t t0 = pc_now_ns();
        submit(tg, fn, pc_dummy_ud, i);
        observe();
        uint64_t t1 = pc_now_ns();
        lat[i] = t1 - t0;
        total += lat[i];
    }
    tg.wait();
    check_ids(n);
    double med = pc_percentile_us(lat.data(), n, 50.0);
    double p99 = pc_percentile_us(lat.data(), n, 99.0);
    char extra[128];
    snprintf(extra, sizeof extra, ",\"median_us\":%.3f,\"p99_us\":%.3f", med, p99);
    pc_report(n, total, extra);
}

void w5(uint64_t n) {
    pc_task_fn fn = pc_task();
    // Never destroyed: the process exits with the workers parked on the gate.
    tbb::task_group *gate_tg = new tbb::task_group;
    tbb::task_group *tg = new tbb::task_group;
    block_workers(*gate_tg);
    long before = pc_rss_bytes();
    uint64_t t0 = pc_now_ns();
    for (uint64_t i = 0; i < n; i++) submit(*tg, fn, pc_dummy_ud, i);
    uint64_t t1 = pc_now_ns();
    long after = pc_rss_bytes();
    char extra[160];
    snprintf(extra, sizeof extra,
             ",\"bytes_per_task\":%.1f,\"rss_delta\":%ld,\"note\":\"task_group tasks capturing "
             "{fn, userdata, id}\"",
             n ? (double)(after - before) / (double)n : 0.0, after - before);
    pc_report(n, t1 - t0, extra); // time = adding N tasks to a blocked pool
    _exit(0);
}

void w6(uint64_t n) {
    pc_task_fn fn = pc_task();
    uint64_t t0 = pc_now_ns();
    {
        tbb::flow::graph g;
        using fnode = tbb::flow::function_node<uint64_t, cmsg>;
        std::vector<std::unique_ptr<fnode>> level;
        for (unsigned p = 0; p < 4; p++)
            level.emplace_back(new fnode(
                g, tbb::flow::unlimited,
                [fn](uint64_t id) {
                    fn(pc_dummy_ud);
                    done.push(id);
                    return cmsg();
                },
                (tbb::flow::node_priority_t)(p + 1)));
        for (uint64_t i = 0; i < n; i++) level[i % 4]->try_put(i);
        for (uint64_t i = 0; i < n; i++) observe();
        uint64_t t1 = pc_now_ns();
        g.wait_for_all();
        check_ids(n);
        pc_report(n, t1 - t0,
                  ",\"note\":\"task_group has no priorities (task_arena has 3 arena-wide levels); "
                  "flow graph: 4 unlimited function_nodes with node priorities 1..4, task i put "
                  "to node i%4\"");
    }
}

} // namespace

int main(int argc, char **argv) {
    uint64_t n = pc_parse_args(argc, argv, "tbb");
    std::string w = argv[1];
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, PC_WORKERS + 1);
    tbb::task_arena arena(PC_WORKERS + 1, 1);
    arena.execute([&] {
        warm_up();
        if (w == "w1") w1(n);
        else if (w == "w2a") w2a();
        else if (w == "w2b") w2b(n);
        else if (w == "w3") w3(n);
        else if (w == "w4") w4(n);
        else if (w == "w5") w5(n);
        else if (w == "w6") w6(n);
    });
    return 0;
}
