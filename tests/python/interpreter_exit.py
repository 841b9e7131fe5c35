#!/usr/bin/env python3
"""A Python tool that reaches interpreter shutdown while btm workers still
run Python task functions and free functions must exit normally.

CPython ends any foreign thread that asks for the GIL during interpreter
shutdown with `pthread_exit`; before btm let such a thread end inside host
code, that aborted the process (SIGABRT, exit status 134, 10 runs in 10).

Each case runs in a child interpreter (this file with the case's name),
several times; the parent checks its exit status and output, with a
timeout (a shut-down waiting forever for a thread that ended would hang):

- `global`: the manager lives in a module global and is never destroyed
  (exit status 134 before, 0 now);
- `atexit_destroy`: the documented way (destroyed from `atexit`) still
  works, and every free function ran.

(A manager destroyed from `__del__` during shutdown was left out: in these
runs CPython did not call `__del__` for such a global at all, which its
documentation allows. btm_destroy while workers end is covered by
tests/c/thread_exit.c.)

Exits 0 when every run went as expected. Run by `bash scripts/test.sh
examples`. The library: $BTM_LIBRARY, else target/release/libbtm.so.
"""
import ctypes
import os
import subprocess
import sys
import time
from ctypes import CFUNCTYPE, POINTER, Structure, byref, c_bool, c_int32, c_size_t, c_uint32, c_uint64, c_void_p

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.environ.get("BTM_LIBRARY") or os.path.join(HERE, "..", "..", "target", "release", "libbtm.so")

TASK_FN = CFUNCTYPE(None, c_void_p, c_void_p)
FREE_FN = CFUNCTYPE(None, c_void_p)
HOOK_FN = CFUNCTYPE(None, c_void_p, c_uint32)
RUNS = 5
TASKS = 400


class Config(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_threads", c_int32),
                ("start_processing", c_bool), ("thread_start", HOOK_FN),
                ("thread_stop", HOOK_FN), ("thread_hook_userdata", c_void_p),
                ("thread_hook_free", FREE_FN)]


def child(case):
    lib = ctypes.CDLL(LIBRARY)
    lib.btm_config_init_size.argtypes = [POINTER(Config), c_size_t]
    lib.btm_create.argtypes = [POINTER(Config), POINTER(c_void_p)]
    lib.btm_add_task.argtypes = [c_void_p, TASK_FN, c_void_p, FREE_FN, c_int32, c_void_p,
                                 c_void_p, c_size_t, POINTER(c_uint64)]
    lib.btm_destroy.argtypes = [c_void_p]
    lib.btm_destroy.restype = None

    started = []
    freed = []

    def work(userdata, context):
        started.append(userdata)
        time.sleep(0.002)

    def free(data):
        freed.append(data)

    # Module-level names keep the ctypes callbacks alive.
    global TASK, FREE
    TASK, FREE = TASK_FN(work), FREE_FN(free)

    cfg = Config()
    lib.btm_config_init_size(byref(cfg), ctypes.sizeof(cfg))
    cfg.max_threads, cfg.start_processing = 2, True
    m = c_void_p()
    assert lib.btm_create(byref(cfg), byref(m)) == 0
    tid = c_uint64()
    for i in range(1, TASKS + 1):
        assert lib.btm_add_task(m, TASK, i, FREE, 0, None, None, 0, byref(tid)) == 0
    # Let the workers get going, then leave with most tasks queued.
    while len(started) < 4:
        time.sleep(0.001)

    global KEEP
    if case == "global":
        KEEP = m
    elif case == "atexit_destroy":
        import atexit

        def destroy():
            lib.btm_destroy(m)
            # Every task ran or was stopped and every userdata was freed
            # exactly once, before btm_destroy returned.
            ok = sorted(freed) == list(range(1, TASKS + 1))
            print("freed every userdata once" if ok else f"freed {len(freed)} of {TASKS}", flush=True)

        atexit.register(destroy)
    print("leaving", flush=True)


def main():
    if len(sys.argv) > 1:
        child(sys.argv[1])
        return 0
    expected = {
        "global": "leaving",
        "atexit_destroy": "freed every userdata once",
    }
    bad = 0
    for case, needle in expected.items():
        for run in range(RUNS):
            try:
                p = subprocess.run([sys.executable, os.path.abspath(__file__), case],
                                   capture_output=True, text=True, timeout=60)
            except subprocess.TimeoutExpired:
                print(f"FAIL {case} run {run}: no exit within 60 s")
                bad += 1
                continue
            if p.returncode != 0 or needle not in p.stdout:
                print(f"FAIL {case} run {run}: exit status {p.returncode}, stdout {p.stdout!r}, "
                      f"stderr {p.stderr[-400:]!r}")
                bad += 1
        print(f"{case}: {RUNS} runs done")
    print("interpreter exit: " + ("all runs exited normally" if bad == 0 else f"{bad} runs failed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
