//! peer_rustpool - the hand-rolled pool a user would write instead of adopting
//! btm: two `std::thread`s, a crossbeam-channel work queue of
//! `{fn ptr, void*, id}` and a completion channel drained by the main thread.
//!
//! Usage: `peer_rustpool <w1|w2a|w2b|w3|w4|w5|w6> <N>`, printing one line of
//! JSON, like the C peers (see bench/peers/peer_common.h).

use crossbeam_channel::{unbounded, Receiver, Select, Sender};
use std::ffi::c_void;
use std::sync::atomic::AtomicUsize;
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

const WORKERS: usize = 2;
const W2A_CHAINS: u64 = 1000;
const W2A_LEN: u64 = 100;
const W4_DEFAULT: u64 = 10_000;
const WARMUP: u64 = 64;

type TaskFn = extern "C" fn(*mut c_void);

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn sysconf(name: i32) -> i64;
}
const SC_PAGESIZE: i32 = 30; // Linux

/// The task body: an empty, non-inlined C-ABI function.
#[inline(never)]
extern "C" fn bench_task(ud: *mut c_void) {
    std::hint::black_box(ud);
}

/// The task function, hidden from the optimiser like the C peers do.
fn task_fn() -> TaskFn {
    std::hint::black_box(bench_task as TaskFn)
}

struct Job {
    f: TaskFn,
    ud: *mut c_void,
    id: u64,
}
// The pointer is only handed back to `f`, as a C host would do.
unsafe impl Send for Job {}

// ---- the gate: blocks both workers so queued jobs stay queued ----
static GATE: Mutex<(usize, bool)> = Mutex::new((0, false));
static GATE_CV: Condvar = Condvar::new();
const GATE_ID: u64 = u64::MAX;

extern "C" fn gate_task(_: *mut c_void) {
    let mut g = GATE.lock().unwrap();
    g.0 += 1;
    GATE_CV.notify_all();
    while !g.1 {
        g = GATE_CV.wait(g).unwrap();
    }
}

fn gate_wait_entered(n: usize) {
    let mut g = GATE.lock().unwrap();
    while g.0 < n {
        let (ng, to) = GATE_CV.wait_timeout(g, std::time::Duration::from_secs(10)).unwrap();
        g = ng;
        if to.timed_out() && g.0 < n {
            die(&format!("only {} of {} workers reached the gate", g.0, n));
        }
    }
}

fn gate_open() {
    GATE.lock().unwrap().1 = true;
    GATE_CV.notify_all();
}

fn die(msg: &str) -> ! {
    eprintln!("peer: {msg}");
    std::process::exit(1)
}

/// The pool: jobs in, ids of finished jobs out. `levels` > 1 gives one work
/// channel per priority level; a worker always takes from the highest
/// non-empty level.
struct Pool {
    work_tx: Vec<Sender<Job>>,
    work_rx: Vec<Receiver<Job>>, // the main thread's handle, used to cancel (drain)
    done_rx: Receiver<u64>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(levels: usize) -> Pool {
        let (mut work_tx, mut work_rx) = (Vec::new(), Vec::new());
        for _ in 0..levels {
            let (t, r) = unbounded::<Job>();
            work_tx.push(t);
            work_rx.push(r);
        }
        let (done_tx, done_rx) = unbounded::<u64>();
        let workers = (0..WORKERS)
            .map(|_| {
                let rx = work_rx.clone();
                let done = done_tx.clone();
                std::thread::spawn(move || {
                    if rx.len() == 1 {
                        for job in rx[0].iter() {
                            (job.f)(job.ud);
                            if job.id != GATE_ID {
                                let _ = done.send(job.id);
                            }
                        }
                    } else {
                        prioritized_worker(&rx, &done);
                    }
                })
            })
            .collect();
        Pool { work_tx, work_rx, done_rx, workers }
    }

    #[inline]
    fn submit(&self, level: usize, f: TaskFn, ud: *mut c_void, id: u64) {
        self.work_tx[level].send(Job { f, ud, id }).unwrap();
    }

    #[inline]
    fn observe(&self) -> u64 {
        self.done_rx.recv().unwrap()
    }

    fn shut_down(mut self) {
        self.work_tx.clear(); // disconnect: the workers' loops end
        for w in self.workers.drain(..) {
            w.join().unwrap();
        }
    }
}

/// Highest level first (the last channel is the highest priority).
fn prioritized_worker(rx: &[Receiver<Job>], done: &Sender<u64>) {
    loop {
        let mut got = None;
        let mut open = 0;
        for r in rx.iter().rev() {
            match r.try_recv() {
                Ok(job) => {
                    got = Some(job);
                    break;
                }
                Err(e) => open += e.is_empty() as usize,
            }
        }
        match got {
            Some(job) => {
                (job.f)(job.ud);
                if job.id != GATE_ID {
                    let _ = done.send(job.id);
                }
            }
            None if open == 0 => return, // all disconnected
            None => {
                let mut sel = Select::new();
                for r in rx {
                    sel.recv(r);
                }
                sel.ready(); // block until some level has a job (or closed)
            }
        }
    }
}

fn rss_bytes() -> i64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = s.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(-1);
    pages * unsafe { sysconf(SC_PAGESIZE) }
}

fn dummy_ud() -> *mut c_void {
    static DUMMY: AtomicUsize = AtomicUsize::new(0);
    &DUMMY as *const AtomicUsize as *mut c_void
}

struct Out {
    workload: String,
}

impl Out {
    fn report(&self, n: u64, ns: u128, extra: &str) {
        let per = if n > 0 { ns as f64 / n as f64 } else { 0.0 };
        println!(
            "{{\"peer\":\"rustpool\",\"workload\":\"{}\",\"n\":{},\"ns_per_task\":{:.1},\"ms\":{:.3}{}}}",
            self.workload,
            n,
            per,
            ns as f64 / 1e6,
            extra
        );
    }
}

fn check_ids(count: u64, sum: u64, n: u64) {
    let want = if n > 0 { n * (n - 1) / 2 } else { 0 };
    if count != n || sum != want {
        die(&format!("completions {count} of {n}, id sum mismatch"));
    }
}

/// Runs `WARMUP` tasks before any clock starts; with `levels` > 1 (W6) at
/// priorities 0..levels in turn, as btm's bench does (its queue of a
/// priority is made at the first task of that priority).
fn warm_up_levels(p: &Pool, levels: u64) {
    for i in 0..WARMUP {
        p.submit((i % levels) as usize, task_fn(), dummy_ud(), i);
    }
    for _ in 0..WARMUP {
        p.observe();
    }
}

fn warm_up(p: &Pool) {
    warm_up_levels(p, 1);
}

fn block_workers(p: &Pool) {
    for _ in 0..WORKERS {
        p.submit(0, gate_task, std::ptr::null_mut(), GATE_ID);
    }
    gate_wait_entered(WORKERS);
}

fn w1(o: &Out, n: u64) {
    let p = Pool::new(1);
    warm_up(&p);
    let f = task_fn();
    let t0 = Instant::now();
    for i in 0..n {
        p.submit(0, f, dummy_ud(), i);
    }
    let (mut count, mut sum) = (0u64, 0u64);
    for _ in 0..n {
        sum += p.observe();
        count += 1;
    }
    let ns = t0.elapsed().as_nanos();
    check_ids(count, sum, n);
    o.report(n, ns, "");
    p.shut_down();
}

fn w2a(o: &Out) {
    let p = Pool::new(1);
    warm_up(&p);
    let f = task_fn();
    let total = W2A_CHAINS * W2A_LEN;
    let t0 = Instant::now();
    for c in 0..W2A_CHAINS {
        p.submit(0, f, dummy_ud(), c * W2A_LEN);
    }
    let (mut count, mut sum) = (0u64, 0u64);
    while count < total {
        let id = p.observe();
        count += 1;
        sum += id;
        if id % W2A_LEN != W2A_LEN - 1 {
            p.submit(0, f, dummy_ud(), id + 1);
        }
    }
    let ns = t0.elapsed().as_nanos();
    check_ids(count, sum, total);
    o.report(
        total,
        ns,
        ",\"chains\":1000,\"chain_len\":100,\"note\":\"no dependency support: the main thread \
         submits the next link when it receives its predecessor's completion\"",
    );
    p.shut_down();
}

fn w2b(o: &Out, n: u64) {
    let p = Pool::new(1);
    warm_up(&p);
    let f = task_fn();
    let t0 = Instant::now();
    for i in 0..n {
        p.submit(0, f, dummy_ud(), i);
    }
    let (mut count, mut sum) = (0u64, 0u64);
    for _ in 0..n {
        sum += p.observe();
        count += 1;
    }
    p.submit(0, f, dummy_ud(), n);
    sum += p.observe();
    count += 1;
    let ns = t0.elapsed().as_nanos();
    check_ids(count, sum, n + 1);
    o.report(
        n + 1,
        ns,
        ",\"note\":\"no dependency support: the main thread receives the N completions, then \
         submits the final task\"",
    );
    p.shut_down();
}

fn w3(o: &Out, n: u64) {
    let p = Pool::new(1);
    warm_up(&p);
    block_workers(&p);
    let f = task_fn();
    // The only cancellation a channel pool has: drain the queue from the main
    // thread (the work channel is MPMC) and free each job's userdata.
    let cancel_all = |p: &Pool| {
        let mut cancelled = 0u64;
        for job in p.work_rx[0].try_iter() {
            unsafe { free(job.ud) };
            cancelled += 1;
        }
        cancelled
    };
    let queue = |p: &Pool, n: u64| {
        for i in 0..n {
            let ud = unsafe { malloc(16) };
            if ud.is_null() {
                die("out of memory");
            }
            p.submit(0, f, ud, i);
        }
    };
    // Warm-up: the measured operation once before the clock, on WARMUP
    // queued tasks, as every program of the benchmark does.
    queue(&p, WARMUP);
    if cancel_all(&p) != WARMUP {
        die("the warm-up cancel missed tasks");
    }
    queue(&p, n);
    let t0 = Instant::now();
    let cancelled = cancel_all(&p);
    let ns = t0.elapsed().as_nanos();
    gate_open();
    if cancelled != n {
        die(&format!("cancelled {cancelled} of {n}"));
    }
    o.report(
        n,
        ns,
        ",\"note\":\"no cancel API: the main thread drains the MPMC work channel (try_iter) and \
         frees each job's userdata; cancel-all only, no per-task or per-group stop\"",
    );
    p.shut_down();
}

fn w4(o: &Out, n: u64) {
    let n = if n == 0 { W4_DEFAULT } else { n };
    let p = Pool::new(1);
    warm_up(&p);
    let f = task_fn();
    let mut lat = Vec::with_capacity(n as usize);
    let (mut count, mut sum) = (0u64, 0u64);
    for i in 0..n {
        let t0 = Instant::now();
        p.submit(0, f, dummy_ud(), i);
        sum += p.observe();
        lat.push(t0.elapsed().as_nanos() as u64);
        count += 1;
    }
    check_ids(count, sum, n);
    let total: u64 = lat.iter().sum();
    lat.sort_unstable();
    let pct = |q: f64| -> f64 {
        let rank = ((q / 100.0) * n as f64 + 0.999999) as usize;
        lat[rank.clamp(1, n as usize) - 1] as f64 / 1000.0
    };
    o.report(n, total as u128, &format!(",\"median_us\":{:.3},\"p99_us\":{:.3}", pct(50.0), pct(99.0)));
    p.shut_down();
}

fn w5(o: &Out, n: u64) {
    let p = Pool::new(1);
    warm_up(&p);
    block_workers(&p);
    let f = task_fn();
    let before = rss_bytes();
    let t0 = Instant::now();
    for i in 0..n {
        p.submit(0, f, dummy_ud(), i);
    }
    let ns = t0.elapsed().as_nanos();
    let after = rss_bytes();
    let per = if n > 0 { (after - before) as f64 / n as f64 } else { 0.0 };
    o.report(
        n,
        ns,
        &format!(
            ",\"bytes_per_task\":{:.1},\"rss_delta\":{},\"note\":\"jobs {{fn, userdata, id}} \
             ({} bytes) stored by value in the unbounded channel\"",
            per,
            after - before,
            std::mem::size_of::<Job>()
        ),
    );
    std::process::exit(0); // workers are still parked on the gate
}

fn w6(o: &Out, n: u64) {
    let p = Pool::new(4);
    warm_up_levels(&p, 4);
    let f = task_fn();
    let t0 = Instant::now();
    for i in 0..n {
        p.submit((i % 4) as usize, f, dummy_ud(), i);
    }
    let (mut count, mut sum) = (0u64, 0u64);
    for _ in 0..n {
        sum += p.observe();
        count += 1;
    }
    let ns = t0.elapsed().as_nanos();
    check_ids(count, sum, n);
    o.report(
        n,
        ns,
        ",\"note\":\"one channel per priority level; a worker try_recv()s the levels from the \
         highest down and blocks on a Select over all of them when all are empty\"",
    );
    p.shut_down();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let known = ["w1", "w2a", "w2b", "w3", "w4", "w5", "w6"];
    let n = args.get(2).and_then(|s| s.parse::<u64>().ok());
    if args.len() != 3 || !known.contains(&args[1].as_str()) || n.is_none() {
        eprintln!("usage: peer_rustpool <w1|w2a|w2b|w3|w4|w5|w6> <N>");
        std::process::exit(2);
    }
    let n = n.unwrap();
    let o = Out { workload: args[1].clone() };
    match args[1].as_str() {
        "w1" => w1(&o, n),
        "w2a" => w2a(&o),
        "w2b" => w2b(&o, n),
        "w3" => w3(&o, n),
        "w4" => w4(&o, n),
        "w5" => w5(&o, n),
        "w6" => w6(&o, n),
        _ => unreachable!(),
    }
}
