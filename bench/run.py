#!/usr/bin/env python3
"""Side-by-side benchmark of btm and its peers (issue 6).

Builds every peer (bench/peers/) and, when bench/btm_bench.c exists, the btm
bench program against target/release/libbtm.so; runs every (peer, workload,
N) combination R times, interleaved round-robin across peers; writes
docs/BENCHMARKS.md, the charts docs/bench_w1_scaling.svg and
docs/bench_w3_scaling.svg, and (a full run) the summary block of README.md.
Python 3 standard library only.

    python3 bench/run.py              # the full run (R=21, plus callgrind)
    python3 bench/run.py --quick      # smoke run for CI: tiny N, 1 run
    python3 bench/run.py --callgrind  # instructions per task only (W1, N=100000)

Every program takes `<workload> <N>` and prints one line of JSON
(see bench/peers/peer_common.h for the protocol).
"""

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PEERS = os.path.join(BENCH, "peers")
BUILD = os.path.join(BENCH, "build")
RUSTPOOL = os.path.join(PEERS, "rustpool")

PEER_ORDER = ["btm", "btm_bulk", "rustpool", "libuv", "glib", "tbb"]
# Tasks per btm_add_tasks call in the btm_bulk row (W1, W2 and W6; W2a
# rounds it down to whole chains of 100: 1,000).
BULK = 1024
PEER_LABEL = {
    "btm": "btm (C API)",
    "btm_bulk": "btm, bulk add (btm_add_tasks, %d per call)" % BULK,
    "rustpool": "hand-rolled Rust pool",
    "libuv": "libuv uv_queue_work",
    "glib": "GLib GThreadPool",
    "tbb": "oneTBB",
}
COLORS = {
    "btm": "#d62728",
    "btm_bulk": "#e377c2",
    "rustpool": "#1f77b4",
    "libuv": "#2ca02c",
    "glib": "#9467bd",
    "tbb": "#ff7f0e",
}

# (workload, [N, ...]); w2a ignores N (always 1000 chains x 100 tasks).
FULL_PLAN = [
    ("w1", [1000, 10000, 100000, 1000000]),
    ("w2a", [100000]),
    ("w2b", [100000]),
    ("w3", [1000, 10000, 100000, 1000000]),
    ("w4", [10000]),
    ("w5", [1000000]),
    ("w6", [100000, 1000000]),
    ("q1", [1000, 10000, 100000, 1000000]),
    ("q2", [1000, 10000, 100000, 1000000]),
    ("q3", [1000, 10000, 100000, 1000000]),
]
QUICK_PLAN = [
    ("w1", [1000, 10000]),
    ("w2a", [100000]),
    ("w2b", [1000]),
    ("w3", [1000, 10000]),
    ("w4", [200]),
    ("w5", [10000]),
    ("w6", [1000]),
    ("q1", [1000]),
    ("q2", [1000]),
    ("q3", [1000]),
]
# btm's own scaling checks (the original's two quadratic cases, and Q3): no peer runs
# them (the peers have no dependencies or groups to scale, or none that the
# original's cases apply to; Q3 checks btm's own priority queue).
BTM_ONLY = ("q1", "q2", "q3")
WORKLOAD_TITLE = {
    "w1": "W1: N empty tasks, every completion observed by the main thread",
    "w2a": "W2a: 1,000 chains of 100 dependent tasks",
    "w2b": "W2b: N tasks fanning into one final task",
    "w3": "W3: cancel N queued tasks, freeing each task's userdata",
    "w4": "W4: single-task round trip (add one task, observe its completion)",
    "w5": "W5: memory per queued task (RSS delta / N)",
    "w6": "W6: W1 with 4 priority levels (task i has priority i % 4)",
    "q1": "Q1: N tasks waiting on one upstream task",
    "q2": "Q2: stop a group of 1,000 tasks queued behind N others",
    "q3": "Q3: N tasks of N distinct priorities queued, then run",
}
CALLGRIND_N = 100000
CALLGRIND_QUICK_N = 2000
# Tasks of btm's exact W1-path count (fit in one lane level: 16,384).
LANE_PATH_N = 10000


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def rel(path):
    return os.path.relpath(path, ROOT)


def sh(cmd, cwd=ROOT, env=None, timeout=None):
    """Run a build command quietly; return (ok, combined output)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return p.returncode == 0, p.stdout


def pkg_config(*args):
    ok, out = sh(["pkg-config"] + list(args))
    return out.split() if ok else None


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def newer(target, sources):
    if not os.path.exists(target):
        return True
    t = os.path.getmtime(target)
    return any(os.path.getmtime(s) > t for s in sources if os.path.exists(s))


# --------------------------------------------------------------------------
# building


class Peer:
    def __init__(self, name, path, env=None):
        self.name = name
        self.path = path
        self.env = dict(os.environ)
        self.env.update(env or {})


def build_c_peer(name, compiler, source, pkg, std=None):
    """Returns (Peer, None) or (None, reason)."""
    if shutil.which(compiler) is None:
        return None, "%s not found" % compiler
    if shutil.which("pkg-config") is None:
        return None, "pkg-config not found"
    flags = pkg_config("--cflags", "--libs", pkg)
    if flags is None:
        return None, "pkg-config cannot find '%s' (install its -dev package)" % pkg
    src = os.path.join(PEERS, source)
    out = os.path.join(BUILD, "peer_" + name)
    if newer(out, [src, os.path.join(PEERS, "peer_common.h")]):
        cmd = [compiler, "-O2"] + ([std] if std else []) + ["-o", out, src] + flags + ["-lpthread"]
        ok, text = sh(cmd)
        if not ok:
            remove(out)
            return None, "build failed: %s\n%s" % (" ".join(cmd), text.strip())
    return Peer(name, out), None


def build_rustpool():
    if shutil.which("cargo") is None:
        return None, "cargo not found"
    cmd = ["cargo", "build", "--release", "--quiet",
           "--manifest-path", os.path.join(RUSTPOOL, "Cargo.toml")]
    ok, text = sh(cmd, timeout=900)
    if not ok:
        return None, "build failed: %s\n%s" % (" ".join(cmd), text.strip())
    return Peer("rustpool", os.path.join(RUSTPOOL, "target", "release", "peer_rustpool")), None


def build_against_btm(src, out, deps):
    """Compiles the C program `src` against target/release's libbtm into
    `out` if it is older than `src`, the library or `deps`. Returns None,
    or the error."""
    lib = os.path.join(ROOT, "target", "release", "libbtm.so")
    if not newer(out, [src, lib] + deps):
        return None
    cmd = ["gcc", "-O2", "-std=c11", "-I" + os.path.join(ROOT, "include"), src,
           "-L" + os.path.join(ROOT, "target", "release"), "-lbtm", "-lpthread", "-o", out]
    ok, text = sh(cmd)
    if ok:
        return None
    remove(out)
    return "build failed: %s\n%s" % (" ".join(cmd), text.strip())


def build_btm():
    src = os.path.join(BENCH, "btm_bench.c")
    if not os.path.exists(src):
        return None, "bench/btm_bench.c not found: btm is not benchmarked"
    ok, text = sh(["cargo", "build", "--release", "--quiet"], timeout=1800)
    if not ok:
        return None, "ERROR: cargo build --release failed:\n" + text.strip()
    out = os.path.join(BUILD, "btm_bench")
    # The program records the library's soname, libbtm.so.0 (build.rs):
    # the link a package would install, made here as tests/c/run.sh does.
    soname = os.path.join(ROOT, "target", "release", "libbtm.so.0")
    if os.path.lexists(soname):
        os.remove(soname)
    os.symlink("libbtm.so", soname)
    err = build_against_btm(src, out, [os.path.join(PEERS, "peer_common.h")])
    if err:
        return None, "ERROR: " + err
    return Peer("btm", out, {"LD_LIBRARY_PATH": os.path.join(ROOT, "target", "release")}), None


# The peers' Debian packages, by peer and pkg-config name.
PEER_PACKAGES = {"libuv": ("libuv", "libuv1-dev"), "glib": ("glib-2.0", "libglib2.0-dev"),
                 "tbb": ("tbb", "libtbb-dev")}


def install_peer_packages(wanted):
    """Installs the Debian packages of the wanted peers that pkg-config
    cannot find (with apt-get, as root or through sudo without a password,
    as scripts/test.sh does for the tests); without apt-get or the rights,
    or if the install fails, those peers are skipped with a message."""
    missing = [deb for name, (pkg, deb) in PEER_PACKAGES.items()
               if name in wanted and (shutil.which("pkg-config") is None or pkg_config("--exists", pkg) is None)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        log("peers' packages missing (%s) and no apt-get: those peers are skipped" % " ".join(missing))
        return
    if os.geteuid() == 0:
        sudo = []
    elif shutil.which("sudo") and sh(["sudo", "-n", "true"])[0]:
        sudo = ["sudo", "-n"]
    else:
        log("peers' packages missing (%s): install them as root (see bench/README.md)" % " ".join(missing))
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("installing the peers' packages: %s" % " ".join(missing))
    # (The update matters on a fresh machine: with a stale index,
    # libglib2.0-dev failed on a held libpcre2-dev.)
    ok, text = sh(sudo + ["apt-get", "update", "-qq"], env=env, timeout=600)
    if ok:
        ok, text = sh(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "pkg-config"] + missing,
                      env=env, timeout=900)
    if not ok:
        log("apt-get failed (those peers are skipped):\n%s" % text.strip()[-2000:])


def build_all(wanted):
    os.makedirs(BUILD, exist_ok=True)
    peers, skipped = {}, {}
    def build_btm_bulk():
        peer, why = build_btm()
        if peer:
            peer = Peer("btm_bulk", peer.path, dict(peer.env, BTM_BENCH_BULK=str(BULK)))
        return peer, why

    builders = {
        "btm": build_btm,
        "btm_bulk": build_btm_bulk,
        "rustpool": build_rustpool,
        "libuv": lambda: build_c_peer("libuv", "gcc", "peer_libuv.c", PEER_PACKAGES["libuv"][0]),
        "glib": lambda: build_c_peer("glib", "gcc", "peer_glib.c", PEER_PACKAGES["glib"][0]),
        "tbb": lambda: build_c_peer("tbb", "g++", "peer_tbb.cpp", PEER_PACKAGES["tbb"][0], "-std=c++17"),
    }
    for name in PEER_ORDER:
        if name not in wanted:
            continue
        t = time.time()
        peer, why = builders[name]()
        if peer:
            peers[name] = peer
            log("build: %-8s ok (%.1f s)" % (name, time.time() - t))
        else:
            skipped[name] = why
            log("build: %-8s SKIPPED: %s" % (name, why))
    return peers, skipped


# --------------------------------------------------------------------------
# running


def run_one(peer, workload, n, timeout):
    """Returns a dict: the program's JSON plus "status" (ok, unsupported,
    timeout, error)."""
    cmd = [peer.path, workload, str(n)]
    try:
        p = subprocess.run(cmd, env=peer.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "error": "no result within %g s" % timeout}
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    try:
        res = json.loads(lines[-1])
    except (IndexError, ValueError):
        res = None
    if p.returncode != 0 or not isinstance(res, dict):
        msg = (p.stderr.strip() or p.stdout.strip() or "no output")[-400:]
        return {"status": "error", "error": "exit %d: %s" % (p.returncode, msg)}
    need = {"w4": ("median_us", "p99_us"), "w5": ("bytes_per_task",)}.get(workload, ("ms",))
    if "unsupported" in res:
        res["status"] = "unsupported"
    elif all(isinstance(res.get(k), (int, float)) for k in need):
        res["status"] = "ok"
        if "ns_per_task" not in res:  # optional: derive it when the program did not print it
            nn = res.get("n") or n
            res["ns_per_task"] = (res["ms"] * 1e6 / nn) if ("ms" in res and nn) else None
    else:
        res = {"status": "error", "error": "result without %s: %s" % ("/".join(need), lines[-1][:200])}
    return res


def primary(workload, r):
    """The number the tables rank by (lower is better) and its unit."""
    if workload == "w4":
        return r.get("median_us"), "us"
    if workload == "w5":
        return r.get("bytes_per_task"), "B"
    return r.get("ms"), "ms"


def brief(workload, r):
    if r["status"] != "ok":
        return r["status"]
    if workload == "w4":
        return "%.2f/%.2f us" % (r["median_us"], r["p99_us"])
    if workload == "w5":
        return "%.1f B" % r["bytes_per_task"]
    return "%.1f ns/task" % r["ns_per_task"]


def run_plan(peers, plan, runs, timeout):
    combos = [(w, n) for w, ns in plan for n in ns]
    results = {"%s:%d" % c: {p: [] for p in peers} for c in combos}
    done = set()  # (combo, peer) that need no more runs: unsupported, timed out, failed
    names = [p for p in PEER_ORDER if p in peers]
    total = runs * sum(1 if w in BTM_ONLY else len(names) for w, _ in combos)
    count, t_start = 0, time.time()
    for r in range(runs):
        for ci, (w, n) in enumerate(combos):
            key = "%s:%d" % (w, n)
            here = [p for p in names if p == "btm"] if w in BTM_ONLY else names
            k = (r + ci) % len(here) if here else 0
            order = here[k:] + here[:k]  # rotate the start peer every round
            line = []
            for name in order:
                count += 1
                if (key, name) in done:
                    continue
                res = run_one(peers[name], w, n, timeout)
                results[key][name].append(res)
                if res["status"] != "ok":
                    done.add((key, name))
                    if res["status"] in ("error", "timeout"):
                        log("  %s %s N=%d: %s" % (name, w, n, res.get("error")))
                line.append("%s %s" % (name, brief(w, res)))
            log("[run %d/%d, %3.0f%%, %4.0f s] %s N=%d: %s" % (
                r + 1, runs, 100.0 * count / max(total, 1), time.time() - t_start, w, n,
                ", ".join(line) if line else "-"))
    return results


def callgrind_ir(peer, n, timeout, args=None):
    """Total Ir of `peer.path w1 n` (or of `peer.path *args`) under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        # --fair-sched=yes: without it valgrind runs one thread until it blocks,
        # so a spin-wait loop can burn its whole time slice and the count of a
        # spinning program varies by 10x from run to run.
        cmd = ["valgrind", "--tool=callgrind", "--fair-sched=yes", "--callgrind-out-file=" + out,
               peer.path] + (args or ["w1", str(n)])
        try:
            p = subprocess.run(cmd, env=peer.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "timeout"
        if p.returncode != 0 or not os.path.exists(out):
            return None, "exit %d: %s" % (p.returncode, p.stderr.strip()[-300:])
        with open(out) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1]), None
    return None, "no totals line in the callgrind output"


def run_w3_floor(n, runs):
    """The host's own share of W3: N free() calls, no task manager.
    Returns {"n", "free_ms": [...]} or None."""
    src = os.path.join(BENCH, "w3_floor.c")
    out = os.path.join(BUILD, "w3_floor")
    if shutil.which("gcc") is None or not os.path.exists(src):
        return None
    if newer(out, [src]):
        ok, text = sh(["gcc", "-O2", "-std=c11", "-o", out, src])
        if not ok:
            log("w3_floor: build failed: %s" % text.strip())
            return None
    floor = {"n": n, "free_ms": []}
    for _ in range(runs):
        p = subprocess.run([out, str(n)], stdout=subprocess.PIPE, text=True, timeout=120)
        if p.returncode != 0:
            return None
        j = json.loads(p.stdout)
        floor["free_ms"].append(j["free_ms"])
    log("w3 floor: %d free() %.1f ms (median)" % (n, statistics.median(floor["free_ms"])))
    return floor


def lane_path_ir(btm, timeout):
    """btm's W1 path counted without scheduling effects: bench/btm_paths.c
    in lane mode adds LANE_PATH_N tasks while the one worker is held, so
    that every task takes the lane (the path of W1's tasks), then lets the
    worker run them all and polls them. Whole-program Ir/task = (Ir of N -
    Ir of 0) / N. Unlike `w1` under callgrind, whose count depends on how
    valgrind schedules the threads (a host that finds no event and waits
    makes the workers finish their tasks under the lock), this is exact
    from run to run. Returns a dict like run_callgrind's entries."""
    src = os.path.join(BENCH, "btm_paths.c")
    out = os.path.join(BUILD, "btm_paths")
    err = build_against_btm(src, out, [])
    if err:
        return {"error": err}
    peer = Peer("btm_lane_path", out, {"LD_LIBRARY_PATH": btm.env.get("LD_LIBRARY_PATH", "")})
    base, err = callgrind_ir(peer, 0, timeout, ["0", "lane"])
    ir = None
    if not err:
        ir, err = callgrind_ir(peer, 0, timeout, [str(LANE_PATH_N), "lane"])
    if err:
        log("callgrind: btm lane path ERROR %s" % err)
        return {"error": err}
    res = {"n": LANE_PATH_N, "base_ir": base, "ir": [ir], "ir_per_task": (ir - base) / LANE_PATH_N}
    log("callgrind: btm lane path %.0f instructions/task (Ir %d, baseline %d)" % (res["ir_per_task"], ir, base))
    return res


def run_callgrind(peers, n, runs, timeout):
    """Ir/task = (median Ir of `w1 n` - median Ir of `w1 0`) / n, so the
    start-up, pool creation and warm-up cost cancels out. The baseline is a
    median too: a single `w1 0` run of btm once counted 4.7M instructions
    against 0.7M in most (a worker's spin under valgrind's scheduling),
    which moved btm's figure by 40 per task."""
    out = {}
    for name in [p for p in PEER_ORDER if p in peers]:
        bases, err = [], None
        for _ in range(runs):
            base, err = callgrind_ir(peers[name], 0, timeout)
            if err:
                break
            bases.append(base)
        base = statistics.median(bases) if bases else None
        irs = []
        for _ in range(runs):
            if err:
                break
            ir, err = callgrind_ir(peers[name], n, timeout)
            if ir is not None:
                irs.append(ir)
        if err or not irs:
            out[name] = {"error": err or "no run"}
            log("callgrind: %-8s ERROR %s" % (name, err))
            continue
        med = statistics.median(irs)
        out[name] = {"n": n, "base_ir": base, "ir": irs, "ir_per_task": (med - base) / n}
        log("callgrind: %-8s %.0f instructions/task (Ir %s, baseline %d)" % (
            name, out[name]["ir_per_task"], irs, base))
    if "btm" in peers:
        out["btm_lane_path"] = lane_path_ir(peers["btm"], timeout)
    return out


# --------------------------------------------------------------------------
# machine description


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def first_line(cmd):
    ok, out = sh(cmd)
    return out.strip().splitlines()[0] if ok and out.strip() else "n/a"


def machine_costs():
    """`bench/machine.c`'s figures: a cache line's round trip between CPUs
    0 and 1 and a PAUSE, in ns ({} if it cannot be built or run)."""
    src = os.path.join(BENCH, "machine.c")
    out = os.path.join(BUILD, "machine")
    if newer(out, [src]):
        ok, _ = sh(["gcc", "-O2", "-o", out, src, "-lpthread"])
        if not ok:
            remove(out)
            return {}
    ok, text = sh([out], timeout=120)
    if not ok:
        return {}
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def machine_info():
    cpu = read("/proc/cpuinfo")
    models = [l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("model name")]
    mem = [l for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal")]
    mem_gib = int(mem[0].split()[1]) / 1024.0 / 1024.0 if mem else 0.0
    os_name = "n/a"
    for l in read("/etc/os-release").splitlines():
        if l.startswith("PRETTY_NAME="):
            os_name = l.split("=", 1)[1].strip('"')
    u = platform.uname()
    crossbeam = "n/a"
    lock = read(os.path.join(RUSTPOOL, "Cargo.lock")).split("\n[[package]]")
    for pkg in lock:
        if 'name = "crossbeam-channel"' in pkg:
            for l in pkg.splitlines():
                if l.startswith("version"):
                    crossbeam = l.split("=")[1].strip().strip('"')
    return {
        "cpu": models[0] if models else "n/a",
        "logical_cpus": len(models) or os.cpu_count(),
        "mem_gib": round(mem_gib, 1),
        "uname": " ".join([u.system, u.release, u.version, u.machine]),
        "os": os_name,
        "loadavg": read("/proc/loadavg").split()[:3],
        "gcc": first_line(["gcc", "--version"]),
        "rustc": first_line(["rustc", "--version"]),
        "libuv": (pkg_config("--modversion", "libuv") or ["n/a"])[0],
        "glib": (pkg_config("--modversion", "glib-2.0") or ["n/a"])[0],
        "tbb": (pkg_config("--modversion", "tbb") or ["n/a"])[0],
        "crossbeam_channel": crossbeam,
        "python": platform.python_version(),
        "commit": source_commit(),
        "costs": machine_costs(),
    }


def source_commit():
    """The commit measured, marked when the engine or the benches differ from it."""
    head = first_line(["git", "rev-parse", "--short", "HEAD"])
    if head == "n/a":
        return head
    ok, out = sh(["git", "status", "--porcelain", "--", "src", "include", "bench", "Cargo.toml"])
    return head + (" with uncommitted changes" if ok and out.strip() else "")


# --------------------------------------------------------------------------
# statistics and report


def stats(workload, rs):
    ok = [r for r in rs if r["status"] == "ok"]
    if not ok:
        return None
    vals = [primary(workload, r)[0] for r in ok]
    per = [r["ns_per_task"] for r in ok if r.get("ns_per_task") is not None]
    s = {
        "runs": len(ok),
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "ns_per_task": statistics.median(per) if per else None,
        "ns_min": min(per) if per else None,
        "ns_max": max(per) if per else None,
    }
    if all("rss_returned_mb" in r for r in ok):
        s["rss_returned_mb"] = statistics.median([r["rss_returned_mb"] for r in ok])
    if workload == "w4":
        s["p99"] = statistics.median([r["p99_us"] for r in ok])
        s["p99_min"] = min(r["p99_us"] for r in ok)
        s["p99_max"] = max(r["p99_us"] for r in ok)
    return s


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 10:
        s = "%.1f" % v
    else:
        s = "%.2f" % v
    return s + (" " + unit if unit else "")


def status_text(rs):
    """Why a peer has no number for a combination."""
    if not rs:
        return "not run"
    last = rs[-1]
    if last["status"] == "unsupported":
        return "unsupported: " + last["unsupported"]
    if last["status"] == "timeout":
        return "timed out (%s)" % last.get("error", "")
    return "failed: " + last.get("error", "?").replace("|", "/").replace("\n", " ")


def ratio_text(btm, s):
    if btm is None or s is None or not s["median"]:
        return "n/a"
    return "%.2fx" % (btm["median"] / s["median"])


def svg_chart(path, title, series, xlabel, ylabel):
    """Log-log line chart; series: {peer: [(n, median, lo, hi), ...]}."""
    W, H = 760, 470
    ml, mr, mt, mb = 78, 190, 48, 62
    pw, ph = W - ml - mr, H - mt - mb
    pts = [p for ps in series.values() for p in ps if p[1] and p[1] > 0]
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">'
           % (W, H, W, H),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="26" font-size="15" font-weight="bold">%s</text>' % (ml, esc(title))]
    if not pts:
        out.append('<text x="%d" y="%d">no data</text>' % (ml + 20, mt + 40))
        out.append("</svg>")
        write(path, "\n".join(out) + "\n")
        return
    xs = sorted({p[0] for p in pts})
    xmin, xmax = math.log10(min(xs)), math.log10(max(xs))
    if xmax - xmin < 1e-9:
        xmin, xmax = xmin - 0.5, xmax + 0.5
    ylo = min(min(p[1], p[2] or p[1]) for p in pts)
    yhi = max(max(p[1], p[3] or p[1]) for p in pts)
    ymin, ymax = math.floor(math.log10(ylo)), math.ceil(math.log10(yhi))
    if ymax - ymin < 1:
        ymax = ymin + 1

    def X(n):
        return ml + (math.log10(n) - xmin) / (xmax - xmin) * pw

    def Y(v):
        return mt + ph - (math.log10(v) - ymin) / (ymax - ymin) * ph

    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>'
               % (ml, mt, pw, ph))
    for e in range(int(ymin), int(ymax) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if v < 10 ** ymin or v > 10 ** ymax:
                continue
            y = Y(v)
            out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>'
                       % (ml, y, ml + pw, y, "#ccc" if m == 1 else "#eee"))
            out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>'
                       % (ml - 6, y + 4, human(v)))
    for n in xs:
        x = X(n)
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eee"/>' % (x, mt, x, mt + ph))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, mt + ph + 18, human(n)))
    out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % (ml + pw / 2, H - 18, esc(xlabel)))
    out.append('<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">%s</text>'
               % (mt + ph / 2, esc(ylabel)))
    ly = mt + 10
    legend = [p for p in PEER_ORDER if p in series]
    # btm is drawn last so that its line is on top; the legend keeps PEER_ORDER.
    for name in [p for p in legend if p != "btm"] + [p for p in legend if p == "btm"]:
        ps = sorted(p for p in series[name] if p[1] and p[1] > 0)
        if not ps:
            continue
        c = COLORS.get(name, "#333")
        width = 3 if name == "btm" else 2
        if len(ps) > 1:
            out.append('<polyline fill="none" stroke="%s" stroke-width="%d" points="%s"/>'
                       % (c, width, " ".join("%.1f,%.1f" % (X(n), Y(v)) for n, v, _, _ in ps)))
        for n, v, lo, hi in ps:
            if lo and hi and hi > lo:
                out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>'
                           % (X(n), Y(hi), X(n), Y(lo), c))
            out.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>' % (X(n), Y(v), c))
    for name in legend:
        c = COLORS.get(name, "#333")
        width = 3 if name == "btm" else 2
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="%d"/>'
                   % (ml + pw + 14, ly, ml + pw + 38, ly, c, width))
        out.append('<text x="%d" y="%d">%s</text>' % (ml + pw + 44, ly + 4, esc(PEER_LABEL.get(name, name))))
        ly += 20
    out.append('<text x="%d" y="%d" fill="#666" font-size="11">median of runs; bars: min-max</text>'
               % (ml + pw + 14, ly + 8))
    out.append("</svg>")
    write(path, "\n".join(out) + "\n")


def wname(w):
    return w[0].upper() + w[1:]


def human(v):
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            q = v / div
            return ("%g" % q) + suf
    return "%g" % v


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def plan_of(data):
    """[(workload, [N...])] in plan order, from the results keys."""
    plan = []
    for key in data["results"]:
        w, n = key.split(":")
        if not plan or plan[-1][0] != w:
            plan.append((w, []))
        plan[-1][1].append(int(n))
    return plan


def targets(data):
    """The issue's targets, checked against this run. Rows: (target, value, verdict)."""
    res, cg = data["results"], data.get("callgrind") or {}
    rows = []

    def st(w, n, p):
        return stats(w, res.get("%s:%d" % (w, n), {}).get(p, []))

    def verdict(ok):
        return "PASS" if ok else "**FAIL**"

    for w, ns in plan_of(data):
        for n in ns:
            b = st(w, n, "btm")
            if b is None:
                continue
            if w == "w1" and n >= 100000:
                bb = st(w, n, "btm_bulk")
                for who, s0 in (("btm", b), ("btm_bulk", bb)):
                    if s0 is None:
                        continue
                    rp = st(w, n, "rustpool")
                    if rp:
                        r = s0["median"] / rp["median"]
                        rows.append(("W1 N=%s: %s <= 0.8x rustpool" % (human(n), who), "%.2fx" % r,
                                     verdict(r <= 0.8)))
                    for p in ("libuv", "glib"):
                        s = st(w, n, p)
                        if s:
                            r = s["median"] / s0["median"]
                            rows.append(("W1 N=%s: %s >= 3x faster than %s" % (human(n), who, p),
                                         "%.2fx faster" % r, verdict(r >= 3)))
            if w in ("w2a", "w2b"):
                peers = [st(w, n, p) for p in PEER_ORDER if p not in ("btm", "btm_bulk")]
                peers = [s for s in peers if s]
                if peers:
                    best = min(s["median"] for s in peers)
                    for who, s0 in (("btm", b), ("btm_bulk", st(w, n, "btm_bulk"))):
                        if s0 is None:
                            continue
                        r = s0["median"] / best
                        rows.append(("%s N=%s: %s <= 1.0x best peer" % (wname(w), human(n), who),
                                     "%.2fx" % r, verdict(r <= 1.0)))
            if w == "w3" and n == 1000000:
                rows.append(("W3 N=1M: stop in <= 20 ms", fmt(b["median"], "ms"), verdict(b["median"] <= 20)))
                fl = data.get("w3_floor")
                if fl and fl["n"] == n:
                    f = statistics.median(fl["free_ms"])
                    rows.append(("W3 N=1M floor, no btm: the host's %s `free()` calls alone (`bench/w3_floor.c`)"
                                 % human(n), "%.1f ms" % f,
                                 "(reference: %s)" % ("fits in 20 ms" if f <= 20 else "already above 20 ms")))
                mb = b.get("rss_returned_mb")
                w5 = st("w5", n, "btm")
                if mb is not None and w5:
                    own = w5["median"] * n / 1e6
                    rows.append(("W3 N=1M: the memory returned, as the RSS drop of the stop (PASS from 90%% of "
                                 "btm's own memory for 1M queued tasks, W5 x N = %.1f MB)" % own, "%.1f MB" % mb,
                                 verdict(mb >= 0.9 * own)))
            if w == "w4":
                rows.append(("W4: median <= 2 us", fmt(b["median"], "us"), verdict(b["median"] <= 2)))
                rows.append(("W4: p99 <= 10 us", fmt(b["p99"], "us"), verdict(b["p99"] <= 10)))
            if w == "w5":
                rows.append(("W5 N=%s: <= 64 B per queued task" % human(n), fmt(b["median"], "B"),
                             verdict(b["median"] <= 64)))
            if w == "w6":
                b1 = st("w1", n, "btm")
                if b1 and b1["ns_per_task"] and b["ns_per_task"] is not None:
                    r = b["ns_per_task"] / b1["ns_per_task"]
                    rows.append(("W6 N=%s: within 1.2x of W1" % human(n), "%.2fx" % r, verdict(r <= 1.2)))
    for w in ("w1", "w3"):
        ns = [n for ww, nn in plan_of(data) if ww == w for n in nn]
        per = [(n, st(w, n, "btm")) for n in ns]
        per = [(n, s["ns_per_task"]) for n, s in per if s and s["ns_per_task"]]
        if len(per) >= 2:
            r = max(v for _, v in per) / min(v for _, v in per)
            rows.append(("%s scaling N=%s..%s: ns/task flat within 1.5x" % (
                w.upper(), human(per[0][0]), human(per[-1][0])), "%.2fx" % r, verdict(r <= 1.5)))
    for w in BTM_ONLY:
        ns = [n for ww, nn in plan_of(data) if ww == w for n in nn]
        per = [(n, st(w, n, "btm")) for n in ns]
        per = [(n, s["ns_per_task"]) for n, s in per if s and s["ns_per_task"]]
        if len(per) >= 2:
            growth = max(v for _, v in per) / per[0][1]
            flat = max(v for _, v in per) / min(v for _, v in per)
            limit = QUADRATIC_LIMIT[w]
            rows.append(("%s (%s) N=%s..%s: no quadratic path, ns/task at most %gx its N=%s value"
                         % (w.upper(), QUADRATIC_CASE[w], human(per[0][0]), human(per[-1][0]), limit,
                            human(per[0][0])),
                         "%.2fx (max/min %.2fx)" % (growth, flat), verdict(growth <= limit)))
    for who in ("btm", "btm_bulk"):
        if who in cg and "ir_per_task" in cg[who]:
            v = cg[who]["ir_per_task"]
            rows.append(("W1 N=%s: %s <= 400 instructions per task (callgrind)" % (human(cg[who]["n"]), who),
                         "%.0f" % v, verdict(v <= 400)))
    lp = cg.get("btm_lane_path") or {}
    if "ir_per_task" in lp:
        v = lp["ir_per_task"]
        rows.append(("W1's path, exact: btm <= 400 instructions per task (callgrind, `btm_paths %d lane`)"
                     % lp["n"], "%.0f" % v, verdict(v <= 400)))
    return rows


QUADRATIC_CASE = {
    "q1": "many tasks waiting on one upstream task",
    "q2": "stopping a group queued behind many others",
    "q3": "tasks of as many distinct priorities",
}
# Growth allowed from the smallest N to the largest: Q3 queues N distinct
# priorities and runs them in order, which sorts them (N log N: 2x from 1k
# to 1M, and cache misses on top); a quadratic path grows 1,000x.
QUADRATIC_LIMIT = {"q1": 1.5, "q2": 1.5, "q3": 5.0}


README_START = "<!-- bench/run.py summary: start (generated, do not edit by hand) -->"
README_END = "<!-- bench/run.py summary: end -->"


def write_readme_summary(meta, summary, rows):
    """Rewrites the README's block between README_START and README_END: the
    medians table of this run and the verdicts of issue 6's targets (the
    failing ones named), so that the README's figures come from the same
    run as docs/BENCHMARKS.md."""
    path = os.path.join(ROOT, "README.md")
    text = read(path)
    if README_START not in text or README_END not in text:
        log("README.md has no summary block; not updated")
        return
    m = meta["machine"]
    B = [README_START, ""]
    B.append("From the last full run (`python3 bench/run.py`, %s, commit `%s`, %s logical CPUs, "
             "21 interleaved runs each, medians; the min-max and every target in "
             "[docs/BENCHMARKS.md](docs/BENCHMARKS.md)):" % (meta["date"], m.get("commit", "n/a"),
                                                           m["logical_cpus"]))
    B.append("")
    B.extend(summary)
    B.append("")
    if rows:
        checked = [(t, v, ok) for t, v, ok in rows if "PASS" in ok or "FAIL" in ok]  # not reference rows
        failed = [(t, v) for t, v, ok in checked if "FAIL" in ok]
        B.append("Targets of issue 6 in this run: %d of %d pass." % (len(checked) - len(failed), len(checked)))
        if failed:
            B.append("Failing:")
            B.append("")
            for t, v in failed:
                B.append("- %s: %s" % (t, v))
        B.append("")
    B.append(README_END)
    start = text.index(README_START)
    end = text.index(README_END) + len(README_END)
    write(path, text[:start] + "\n".join(B) + text[end:])
    log("wrote the summary block of README.md")


def render(data, out_dir):
    meta, res, m = data["meta"], data["results"], data["meta"]["machine"]
    built = meta["peers"]
    names = [p for p in PEER_ORDER if p in built]
    L = []
    L.append("# Benchmarks: btm side by side with its peers")
    L.append("")
    L.append("Generated by `bench/run.py` on %s. Do not edit by hand: rerun the command below "
             "(it rewrites this page and the charts)." % meta["date"])
    L.append("")
    L.append("- **Command:** `%s` (from the repository root), on commit `%s`."
             % (meta["command"], m.get("commit", "n/a")))
    L.append("- **Runs:** %d per (peer, workload, N), interleaved round-robin across peers "
             "(the starting peer rotates every round); the tables give the median and the "
             "min-max over the runs." % meta["runs"])
    L.append("- **Machine:** %s, %s logical CPUs, %.1f GiB RAM; %s; `%s`; load average at "
             "start %s. A shared, noisy VM: compare ratios within one run, not absolute numbers "
             "across runs." % (m["cpu"], m["logical_cpus"], m["mem_gib"], m["os"], m["uname"],
                               " ".join(m["loadavg"])))
    costs = m.get("costs") or {}
    if costs:
        trip = costs.get("line_round_trip_ns")
        L.append("- **What this machine charges** (`bench/machine.c`, medians): %s; a `PAUSE`: %.1f ns "
                 "(btm's spins count them). The lane's W6 depends on the first: 2x W1 where it was "
                 "~140 ns (session 37), 1.01-1.37x (mostly within 1.2x) on the AMD VMs before." % (
                     "a cache line's round trip between CPU 0 and CPU 1: %.0f ns" % trip if trip is not None
                     else "no round trip between CPUs (fewer than 2, or not pinned)",
                     costs.get("pause_ns", float("nan"))))
    L.append("- **Toolchain:** %s; %s; libuv %s, GLib %s, oneTBB %s, crossbeam-channel %s "
             "(all from Debian except the Rust crates)." % (
                 m["gcc"], m["rustc"], m["libuv"], m["glib"], m["tbb"], m["crossbeam_channel"]))
    if meta["skipped"]:
        for p, why in meta["skipped"].items():
            L.append("- **Not run:** %s: %s" % (p, why.splitlines()[0]))
    if meta.get("quick"):
        L.append("- **Smoke mode (`--quick`)**: tiny N and a single run; these numbers mean nothing.")
    L.append("")
    L.append("## Summary (medians)")
    L.append("")
    L.append("Time per task for W1-W3 and W6, round-trip latency for W4 (median / p99), bytes "
             "per queued task for W5. `-`: the peer cannot express the workload (see the notes).")
    L.append("")
    summary_start = len(L)
    L.append("| Workload | N | " + " | ".join(names) + " |")
    L.append("|---|--:|" + "--:|" * len(names))
    for w, ns in plan_of(data):
        if w in BTM_ONLY:
            continue
        for n in ns:
            cells = []
            for p in names:
                s = stats(w, res["%s:%d" % (w, n)].get(p, []))
                if s is None:
                    rs = res["%s:%d" % (w, n)].get(p, [])
                    cells.append("-" if rs and rs[-1]["status"] == "unsupported" else
                                 ("timeout" if rs and rs[-1]["status"] == "timeout" else "fail"))
                elif w == "w4":
                    cells.append("%s / %s us" % (fmt(s["median"]), fmt(s["p99"])))
                elif w == "w5":
                    cells.append(fmt(s["median"], "B"))
                else:
                    cells.append(fmt(s["ns_per_task"], "ns"))
            nn = "1000x100" if w == "w2a" else human(n)
            L.append("| %s | %s | %s |" % (wname(w), nn, " | ".join(cells)))
    summary = L[summary_start:]
    rows = []
    L.append("")
    if "btm" in built and not meta.get("quick"):
        rows = targets(data)
        if rows:
            L.append("## Targets of issue 6, checked against this run")
            L.append("")
            L.append("| Target | Measured | Verdict |")
            L.append("|---|--:|---|")
            for t, v, ok in rows:
                L.append("| %s | %s | %s |" % (t, v, ok))
            L.append("")
    elif "btm" not in built:
        L.append("btm was not run (%s), so there are no ratios to btm and no target checks."
                 % meta["skipped"].get("btm", "not requested").splitlines()[0])
        L.append("")
    L.append("## Method")
    L.append("")
    L.append(METHOD.strip())
    L.append("")
    charts = []
    for w, ns in plan_of(data):
        if w in BTM_ONLY:
            continue
        L.append("## " + WORKLOAD_TITLE.get(w, w))
        L.append("")
        if w in ("w1", "w3") and len(ns) > 1:
            L.append("![%s ns/task against N](bench_%s_scaling.svg)" % (w.upper(), w))
            L.append("")
            charts.append(w)
        if w == "w4":
            L.append("| Peer | N | median | min-max of median | p99 (median) | p99 min-max | btm / peer (median) | runs |")
            L.append("|---|--:|--:|--:|--:|--:|--:|--:|")
        elif w == "w5":
            L.append("| Peer | N | bytes/task | min-max | add time ns/task | btm / peer | runs |")
            L.append("|---|--:|--:|--:|--:|--:|--:|")
        else:
            L.append("| Peer | N | time (median) | min-max | ns/task | btm / peer | runs |")
            L.append("|---|--:|--:|--:|--:|--:|--:|")
        for n in ns:
            key = "%s:%d" % (w, n)
            b = stats(w, res[key].get("btm", []))
            for p in names:
                rs = res[key].get(p, [])
                s = stats(w, rs)
                nn = "1000x100" if w == "w2a" else human(n)
                if s is None:
                    cols = 8 if w == "w4" else 7
                    L.append("| %s | %s | %s |" % (p, nn, status_text(rs)) + " |" * (cols - 3))
                    continue
                if w == "w4":
                    L.append("| %s | %s | %s | %s-%s | %s | %s-%s | %s | %d |" % (
                        p, nn, fmt(s["median"], "us"), fmt(s["min"]), fmt(s["max"]),
                        fmt(s["p99"], "us"), fmt(s["p99_min"]), fmt(s["p99_max"]),
                        ratio_text(b, s), s["runs"]))
                elif w == "w5":
                    L.append("| %s | %s | %s | %s-%s | %s | %s | %d |" % (
                        p, nn, fmt(s["median"], "B"), fmt(s["min"]), fmt(s["max"]),
                        fmt(s["ns_per_task"]), ratio_text(b, s), s["runs"]))
                else:
                    L.append("| %s | %s | %s | %s-%s | %s | %s | %d |" % (
                        p, nn, fmt(s["median"], "ms"), fmt(s["min"]), fmt(s["max"]),
                        fmt(s["ns_per_task"]), ratio_text(b, s), s["runs"]))
        L.append("")
        if w in ("w1", "w2a", "w2b", "w3", "w6"):
            L.append("`btm / peer` is btm's median time divided by the peer's: below 1.00x btm is faster.")
            L.append("")
    quadratic = [(w, ns) for w, ns in plan_of(data) if w in BTM_ONLY]
    if quadratic:
        L.append("## No quadratic path: the original's two quadratic cases, and many priorities (btm alone)")
        L.append("")
        L.append(QUADRATIC_TEXT.strip())
        L.append("")
        L.append("| Case | N | time (median) | min-max | ns/task | ns/task min-max | runs |")
        L.append("|---|--:|--:|--:|--:|--:|--:|")
        for w, ns in quadratic:
            for n in ns:
                rs = res["%s:%d" % (w, n)].get("btm", [])
                s = stats(w, rs)
                if s is None:
                    L.append("| %s | %s | %s | | | | |" % (wname(w), human(n), status_text(rs)))
                    continue
                # (Q2's stops take microseconds.)
                k, unit = (1000.0, "us") if s["max"] < 1 else (1.0, "ms")
                L.append("| %s | %s | %s | %s-%s | %s | %s-%s | %d |" % (
                    WORKLOAD_TITLE[w], human(n), fmt(s["median"] * k, unit), fmt(s["min"] * k), fmt(s["max"] * k),
                    fmt(s["ns_per_task"]), fmt(s["ns_min"]), fmt(s["ns_max"]), s["runs"]))
        L.append("")
    cg = data.get("callgrind")
    if cg:
        L.append("## Instructions per task (callgrind, W1)")
        L.append("")
        L.append("`valgrind --tool=callgrind --fair-sched=yes` counts the instructions of all "
                 "threads (`--fair-sched=yes` keeps spin-waiting programs repeatable). Ir/task = "
                 "(median Ir of `w1 %d` - median Ir of `w1 0`, %d run(s) of each) / %d; the `w1 0` runs "
                 "cancel start-up, pool creation and warm-up. Spin-waiting counts too, so a "
                 "peer that spins before parking pays for it here."
                 % (data["callgrind_n"], data.get("callgrind_runs", 1), data["callgrind_n"]))
        L.append("")
        L.append("| Peer | Ir/task | Ir of the runs | Ir baseline (N=0, median) | btm / peer |")
        L.append("|---|--:|--:|--:|--:|")
        bt = cg.get("btm", {}).get("ir_per_task")
        for p in names:
            c = cg.get(p)
            if not c:
                continue
            if "error" in c:
                L.append("| %s | failed: %s | | | |" % (p, c["error"].replace("\n", " ")[:200]))
                continue
            L.append("| %s | %.0f | %s | %d | %s |" % (
                p, c["ir_per_task"], ", ".join("%d" % i for i in c["ir"]), c["base_ir"],
                ("%.2fx" % (bt / c["ir_per_task"])) if bt and c["ir_per_task"] else "n/a"))
        lp = cg.get("btm_lane_path") or {}
        if "ir_per_task" in lp:
            L.append("| btm, W1's path, exact (`btm_paths %d lane`) | %.0f | %s | %d | |" % (
                lp["n"], lp["ir_per_task"], ", ".join("%d" % i for i in lp["ir"]), lp["base_ir"]))
        elif "error" in lp:
            L.append("| btm, W1's path, exact | failed: %s | | | |" % lp["error"].replace("\n", " ")[:200])
        L.append("")
        L.append("btm's `w1` count can depend on how valgrind schedules the threads: valgrind "
                 "runs one thread at a time, and a host that finds no event and waits makes the "
                 "workers finish their tasks under the lock (a costlier path). The exact row "
                 "counts W1's path alone: "
                 "`bench/btm_paths.c` adds %d tasks while its one worker is held, so every task "
                 "takes the lane, then lets the worker run them and polls them (Ir of N minus "
                 "Ir of 0, over N). `bash bench/paths.sh` splits it into add, worker and poll."
                 % LANE_PATH_N)
        L.append("")
    notes = {}
    for key, per in res.items():
        w = key.split(":")[0]
        for p, rs in per.items():
            for r in rs:
                txt = r.get("note") or r.get("unsupported")
                if txt:
                    notes.setdefault((p, w), txt)
    if notes:
        L.append("## How each peer expresses each workload")
        L.append("")
        L.append("From the `note` / `unsupported` fields the programs print.")
        L.append("")
        L.append("| Peer | Workload | Note |")
        L.append("|---|---|---|")
        for (p, w) in sorted(notes, key=lambda k: (PEER_ORDER.index(k[0]) if k[0] in PEER_ORDER else 99, k[1])):
            L.append("| %s | %s | %s |" % (p, wname(w), notes[(p, w)].replace("|", "/")))
        L.append("")
    write(os.path.join(out_dir, "BENCHMARKS.md"), "\n".join(L))
    if os.path.abspath(out_dir) == os.path.join(ROOT, "docs") and not meta.get("quick"):
        write_readme_summary(meta, summary, rows)
    for w in charts:
        series = {}
        ns = [n for ww, nn in plan_of(data) if ww == w for n in nn]
        for p in names:
            pts = []
            for n in ns:
                s = stats(w, res["%s:%d" % (w, n)].get(p, []))
                if s and s["ns_per_task"]:
                    pts.append((n, s["ns_per_task"], s["ns_min"], s["ns_max"]))
            if pts:
                series[p] = pts
        title = {"w1": "W1: cost per task against N (add, run, observe completion)",
                 "w3": "W3: cost per cancelled task against N"}[w]
        svg_chart(os.path.join(out_dir, "bench_%s_scaling.svg" % w), title, series,
                  "N (tasks, log scale)", "ns per task (log scale)")
    log("wrote %s" % ", ".join(rel(os.path.join(out_dir, f)) for f in
                              ["BENCHMARKS.md"] + ["bench_%s_scaling.svg" % w for w in charts]))


QUADRATIC_TEXT = """
The original scans its whole pending list on every start and every stop
(SEMANTICS.md): many tasks waiting on one upstream task, and a group stopped
behind many queued tasks, cost it time quadratic in the number of tasks.
btm runs both in `bench/btm_bench.c`, with the same warm-up as W1 and W3, at
every N of W1's scale; a quadratic path would multiply the cost per task by
1,000 between 1k and 1M. The target row checks growth (no N costs more per
task than 1.5x the smallest N; Q3: 5x, below); the max/min ratio, which W1's and W3's
flatness target uses, is given beside it. **Q1**: a task that holds a
worker (on a pipe) is added, then N tasks each naming it as their one
upstream task; the host then lets it
finish and polls every completion (time from the first add to the last
completion observed, per task). **Q2**: as W3 (the warm-up tasks run, the
manager paused, a warm-up stop), N tasks of one group are queued, then 1,000
tasks of another group, each with a `malloc(16)` userdata; the stop of that
second group is timed until every userdata is freed (per stopped task).
**Q3** is btm's own (found in session 36): as W3's start (the warm-up tasks
run, the manager paused, a warm-up stop), N tasks of N distinct priorities are queued in a
scrambled order, then processing starts and every completion is polled (time
from the first add to the last completion observed, per task). Until session
36 the queue kept its priority levels in a sorted vector, and each level made
or dropped moved every level after it: 93 us per task at N=100k. Running
N distinct priorities in order sorts them, so Q3's limit is 5x (N log N grows
2x from 1k to 1M, cache misses add to it; a quadratic path grows 1,000x). No
peer runs them: libuv, GLib and the hand-rolled pool have no dependencies or
groups (their host would submit Q1's tasks itself when the upstream one
completes), oneTBB's flow graph and task groups are not queues that a stop
searches, and Q3 checks btm's own priority queue (W6's notes say how each
peer expresses priorities).
"""


METHOD = """
Every program is a small C, C++ or Rust file in `bench/` with the same command line,
`<program> <workload> <N>`, printing one line of JSON; `bench/peers/peer_common.h` holds
the shared protocol and helpers. The task body is the same everywhere: an empty,
non-inlined `extern "C" void bench_task(void *)` called through a function pointer (read
through a volatile, so no compiler can inline it) with a userdata pointer. Every pool has
**2 worker threads**; the main thread submits and observes completions. Each program
creates its pool and runs 64 warm-up tasks before any clock starts (for W6, btm and the
hand-rolled pool run them at the four priorities in turn, so that btm's queue of each
priority, made at its first task, exists before the clock as the pool's channels do).
Times are `CLOCK_MONOTONIC` from the first add to the last completion *observed by the main thread*.

- **btm**: `bench/btm_bench.c` through the C API (so the FFI cost is counted), built with
  `gcc -O2 -std=c11 -Iinclude bench/btm_bench.c -Ltarget/release -lbtm -lpthread`, one
  `btm_add_task` call per task. The main thread polls with `btm_poll_events` and, when a
  poll finds nothing, blocks in `btm_wait_events`, as every peer's main thread blocks in
  its completion queue; in W4 alone it polls in a loop (the lowest latency a host can
  get; `btm_bench w4fd` is the round trip of a host blocking in `btm_wait_events`).
- **btm_bulk**: the same program with `BTM_BENCH_BULK=1024`: W1 and W6 add their tasks
  with `btm_add_tasks`, 1024 per call (one boundary crossing and one lock section per
  array); W2a adds ten whole chains (1,000 tasks) per call, each link naming the task
  before it in the same array with `BTM_IN_BATCH`; W2b adds its independent tasks 1024
  per call and the fan-in with one `btm_add_task`. Everything else is identical (one
  completion event per task, polled by the main thread). W3-W5 are btm's own row, so
  they show `-`. No peer has a bulk submission, so the peers' rows are their only way,
  one call per task.
- **rustpool**: the pool a user would write instead of adopting btm
  (`bench/peers/rustpool`): two `std::thread`s, an unbounded crossbeam-channel of
  `{fn, userdata, id}` and a completion channel drained by the main thread.
- **libuv**: `uv_queue_work` on a private loop with `UV_THREADPOOL_SIZE=2`; the
  `after_work_cb` runs on the loop thread (the main thread).
- **GLib**: a `GThreadPool` of 2 exclusive threads; each task pushes to a `GAsyncQueue`
  that the main thread pops.
- **oneTBB**: `global_control(max_allowed_parallelism, 3)` and a `task_arena(3, 1)`, so two
  TBB workers run tasks while the main thread (in the arena) only submits and pops a
  `concurrent_bounded_queue`; `task_group` for W1/W3/W4/W5, flow graph for W2 and W6.

Choices that favour the peers: libuv and GLib need one caller-owned record per task
(`uv_work_t` / the `GThreadPool` data pointer); it comes from one array allocated and
pre-faulted before the clock starts (W5 excepted, where its memory is what is measured).
Peers without dependencies (libuv, GLib, rustpool) run W2 with the main thread
submitting each successor when it observes the predecessor's completion.

- **W3** blocks both workers on a gate (a task waiting on a condition variable), queues N
  tasks each with a `malloc(16)` userdata, then times the cancellation until every
  userdata has been freed by the cancel path (btm: its warm-up tasks run, then the
  manager is paused instead of gated). Before the clock, each program also cancels 64
  queued tasks the same way (GLib: a pool with them queued is destroyed before the
  measured pool is made), so that the measured operation's code has run once, as
  W1's warm-up tasks do for adding and running: a process's first cancellation pays
  its cold code once (btm's first stop of 1,000 tasks: 13-14 us against 9-10 us for
  a later one, 9 ns per task at 10k).
- **W4** runs N round trips (add one task, wait for its completion) one after the
  other and reports the median and p99 latency of the individual round trips.
- **W5** blocks both workers, reads the RSS from `/proc/self/statm`, queues N tasks
  (userdata: one shared dummy pointer) and divides the RSS growth by N; it includes
  caller-owned per-task records where the API requires them (libuv, GLib).
- **W6** is W1 where task i has priority i % 4 (higher runs first).
"""


# --------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None, help="repetitions per combination (default 21; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: tiny N, 1 run, output to bench/build/smoke")
    ap.add_argument("--callgrind", action="store_true", help="only count instructions per task for W1 under callgrind")
    ap.add_argument("--no-callgrind", action="store_true", help="skip the callgrind section of a full run")
    ap.add_argument("--peers", default=",".join(PEER_ORDER), help="comma-separated subset of %s" % ",".join(PEER_ORDER))
    ap.add_argument("--workloads", default=None, help="comma-separated subset of w1,w2a,w2b,w3,w4,w5,w6,q1,q2,q3")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run (default 120; 30 with --quick)")
    ap.add_argument("--out-dir", default=None, help="where BENCHMARKS.md and the charts go (default docs/)")
    ap.add_argument("--from-json", default=None, help="re-render the report from a saved results file, run nothing")
    ap.add_argument("--no-install", action="store_true",
                    help="do not install missing peers' packages with apt-get (they are skipped)")
    args = ap.parse_args()

    out_dir = os.path.abspath(args.out_dir) if args.out_dir else (
        os.path.join(BUILD, "smoke") if args.quick else os.path.join(ROOT, "docs"))
    if args.from_json:
        with open(args.from_json) as f:
            render(json.load(f), out_dir)
        return 0

    runs = args.runs if args.runs is not None else (1 if args.quick else 21)
    timeout = args.timeout if args.timeout is not None else (30.0 if args.quick else 120.0)
    wanted = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PEER_ORDER]
    if unknown:
        ap.error("unknown peer(s): %s" % ", ".join(unknown))
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.workloads:
        ws = [w.strip() for w in args.workloads.split(",")]
        plan = [(w, ns) for w, ns in plan if w in ws]

    if not args.no_install:
        install_peer_packages(wanted)
    peers, skipped = build_all(wanted)
    failed = any(v.startswith("ERROR") for v in skipped.values())
    if "btm" in skipped:
        log("btm: %s" % skipped["btm"].splitlines()[0])
    if not peers:
        log("nothing to run")
        return 1

    cg_n = CALLGRIND_QUICK_N if args.quick else CALLGRIND_N
    cg_runs = max(1, min(runs, 3))
    have_valgrind = shutil.which("valgrind") is not None
    if args.callgrind:
        if not have_valgrind:
            log("valgrind not found (apt-get install valgrind)")
            return 1
        cg = run_callgrind(peers, cg_n, cg_runs, max(timeout, 600.0))
        print("| Peer | Ir/task (W1, N=%d) |" % cg_n)
        print("|---|--:|")
        for p in [p for p in PEER_ORDER if p in cg]:
            c = cg[p]
            print("| %s | %s |" % (p, "%.0f" % c["ir_per_task"] if "ir_per_task" in c else "failed: " + c["error"]))
        lp = cg.get("btm_lane_path")
        if lp:
            print("| btm, W1's path, exact (N=%d) | %s |" % (
                LANE_PATH_N, "%.0f" % lp["ir_per_task"] if "ir_per_task" in lp else "failed: " + lp["error"]))
        with open(os.path.join(BUILD, "callgrind.json"), "w") as f:
            json.dump(cg, f, indent=1)
        return 1 if failed or any("error" in c for c in cg.values()) else 0

    command = "python3 bench/run.py" + "".join(" " + shlex.quote(a) for a in sys.argv[1:])
    data = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "runs": runs,
            "quick": args.quick,
            "peers": sorted(peers, key=PEER_ORDER.index),
            "skipped": skipped,
            "machine": machine_info(),
        },
    }
    t0 = time.time()
    data["results"] = run_plan(peers, plan, runs, timeout)
    if any(w == "w3" for w, _ in plan) and "btm" in peers:
        data["w3_floor"] = run_w3_floor(max(n for w, ns in plan if w == "w3" for n in ns), runs)
    if not args.quick and not args.no_callgrind:
        if have_valgrind:
            data["callgrind"] = run_callgrind(peers, cg_n, cg_runs, max(timeout, 600.0))
            data["callgrind_n"], data["callgrind_runs"] = cg_n, cg_runs
        else:
            log("valgrind not found: no callgrind section")
    log("benchmark time: %.0f s" % (time.time() - t0))
    os.makedirs(BUILD, exist_ok=True)
    raw = os.path.join(BUILD, "results-%s.json" % ("quick" if args.quick else "full"))
    with open(raw, "w") as f:
        json.dump(data, f, indent=1)
    log("raw results: %s (re-render with --from-json)" % rel(raw))
    render(data, out_dir)

    bad = [(k, p, r) for k, per in data["results"].items() for p, rs in per.items() for r in rs
           if r["status"] == "error" or (args.quick and r["status"] == "timeout")]
    for k, p, r in bad:
        log("FAILED: %s %s: %s" % (p, k, r.get("error")))
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
