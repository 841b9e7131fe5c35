#!/usr/bin/env python3
"""btm from Python with ctypes only: a pipeline tool making thumbnails.

- "thumbnails" (a named group): one task per image, then a contact sheet
  task that waits for all of them (upstream dependency) and reads their
  results in completion order;
- "previews" (a numbered group): slow tasks that the tool gives up on and
  stops as a group (they get no event; their userdata is still freed);
- the main thread sleeps in `selectors` on btm's event descriptor (so
  Ctrl-C and other signal handlers keep working) and polls events until
  the "thumbnails" group finishes;
- the manager is destroyed in a `finally` and, as a safety net, from
  `atexit`, so that queued tasks are stopped and their userdata freed
  (a process that reaches interpreter shutdown with btm workers still
  running Python callables exits too, but those tasks fail and what they
  held is not freed: see README.md).

Exits 0 when everything went as expected, 1 otherwise, so it doubles as a
test (`bash scripts/test.sh examples`). The library is found through
$BTM_LIBRARY, else target/release/libbtm.so of this tree.
"""
import atexit
import ctypes
import itertools
import os
import selectors
import sys
import threading
import time
import traceback
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_bool, c_char_p,
                    c_double, c_int32, c_size_t, c_uint32, c_uint64, c_void_p)

# ----------------------------------------------------------------- the C API
HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = os.environ.get("BTM_LIBRARY") or os.path.join(
    HERE, "..", "..", "target", "release", "libbtm.so")
lib = ctypes.CDLL(LIBRARY)  # CDLL releases the GIL during every btm call

OK, NOT_FOUND, TIMED_OUT = 0, 1, 9
TASK_COMPLETED, TASK_FAILED, GROUP_FINISHED, TASK_PROGRESS = 1, 2, 3, 4
GROUP_DEFAULT, GROUP_NUMBERED, GROUP_NAMED = 0, 1, 2
WAIT_FOREVER = 0xFFFFFFFF

TASK_FN = CFUNCTYPE(None, c_void_p, c_void_p)    # (userdata, context)
FREE_FN = CFUNCTYPE(None, c_void_p)              # (data)
HOOK_FN = CFUNCTYPE(None, c_void_p, c_uint32)    # (userdata, worker_index)


class Group(Structure):
    _fields_ = [("kind", c_uint32), ("reserved", c_uint32), ("value", c_uint64)]


class Value(Structure):
    _fields_ = [("task_id", c_uint64), ("data", c_void_p)]


class Event(Structure):
    _fields_ = [("kind", c_uint32), ("reserved", c_uint32),
                ("task_id", c_uint64), ("group", Group),
                ("group_name", c_char_p), ("results", POINTER(Value)),
                ("result_count", c_size_t), ("message", c_char_p),
                ("details", c_char_p), ("progress", c_double)]


class Config(Structure):
    _fields_ = [("struct_size", c_uint32), ("max_threads", c_int32),
                ("start_processing", c_bool), ("thread_start", HOOK_FN),
                ("thread_stop", HOOK_FN), ("thread_hook_userdata", c_void_p),
                ("thread_hook_free", FREE_FN)]


class StopReport(Structure):
    _fields_ = [("before_start", c_uint64), ("while_running", c_uint64),
                ("after_finish", c_uint64)]


def _sig(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype, f.argtypes = restype, list(argtypes)


_sig("btm_config_init_size", c_uint32, POINTER(Config), c_size_t)
_sig("btm_create", c_uint32, POINTER(Config), POINTER(c_void_p))
_sig("btm_destroy", None, c_void_p)
_sig("btm_status_str", c_char_p, c_uint32)
_sig("btm_group_named", c_uint32, c_void_p, c_char_p, POINTER(Group))
_sig("btm_next_group_id", c_uint32, c_void_p, POINTER(Group))
_sig("btm_add_task", c_uint32, c_void_p, TASK_FN, c_void_p, FREE_FN, c_int32,
     POINTER(Group), POINTER(c_uint64), c_size_t, POINTER(c_uint64))
_sig("btm_poll_events", c_uint32, c_void_p, POINTER(Event), c_size_t,
     POINTER(c_size_t))
_sig("btm_get_event_fd", c_uint32, c_void_p, POINTER(c_int32))
_sig("btm_stop_task_group", c_uint32, c_void_p, POINTER(Group), c_bool, c_bool,
     POINTER(StopReport))
_sig("btm_context_upstream", c_uint32, c_void_p, POINTER(POINTER(Value)),
     POINTER(c_size_t))
_sig("btm_context_set_result", c_uint32, c_void_p, c_void_p, FREE_FN)
_sig("btm_context_fail", c_uint32, c_void_p, c_char_p, c_char_p)
_sig("btm_context_is_stopped", c_bool, c_void_p)
_sig("btm_context_report_progress", c_uint32, c_void_p, c_double, c_char_p)


def check(status, what):
    if status != OK:
        raise RuntimeError("%s: %s" % (what, lib.btm_status_str(status).decode()))


# --------------------------------------------- Python objects through void*
# btm moves `void *`; Python objects travel as integer keys into this table
# (never as id() of an object nothing keeps alive). btm calls `release`
# exactly once per key it was given, on whatever thread lets go last.
_objects = {}
_objects_lock = threading.Lock()
_next_key = itertools.count(1)


def keep(obj):
    key = next(_next_key)
    with _objects_lock:
        _objects[key] = obj
    return key


def peek(key):
    with _objects_lock:
        return _objects[key]


@FREE_FN
def release(key):
    with _objects_lock:
        del _objects[key]  # a KeyError here is a double free: reported


def task(fn):
    """Wraps fn(userdata_obj, ctx) -> result as a btm task function. An
    exception becomes a task failure with its traceback (an exception
    escaping a ctypes callback would only be printed, and the task would
    complete)."""
    @TASK_FN
    def trampoline(key, ctx):
        try:
            result = fn(peek(key) if key else None, ctx)
            if result is not None:
                lib.btm_context_set_result(ctx, keep(result), release)
        except BaseException as e:  # noqa: B902 - nothing may escape
            lib.btm_context_fail(ctx, repr(e).encode(),
                                 traceback.format_exc().encode())
    return trampoline


# ------------------------------------------------------------------- tasks
def make_thumbnail(image, ctx):
    lib.btm_context_report_progress(ctx, 0.5, b"scaling")
    time.sleep(0.01)
    if image == "broken.exr":
        raise IOError("cannot read " + image)
    return "thumb(%s)" % image


def contact_sheet(_, ctx):
    values, count = POINTER(Value)(), c_size_t()
    check(lib.btm_context_upstream(ctx, byref(values), byref(count)), "upstream")
    return [peek(values[i].data) for i in range(count.value)]


def slow_preview(_, ctx):
    for _ in range(500):  # ~5 s unless stopped
        if lib.btm_context_is_stopped(ctx):
            return None
        time.sleep(0.01)
    return "preview"


# Keep the CFUNCTYPE objects alive as long as the manager may call them.
THUMB_FN, SHEET_FN, PREVIEW_FN = task(make_thumbnail), task(contact_sheet), task(slow_preview)


def main():
    errors = []
    cfg = Config()
    check(lib.btm_config_init_size(byref(cfg), ctypes.sizeof(cfg)), "config")
    cfg.max_threads = 4
    cfg.start_processing = True
    manager = c_void_p()
    check(lib.btm_create(byref(cfg), byref(manager)), "create")

    destroyed = []

    def destroy():  # idempotent: from `finally` and from atexit
        if not destroyed:
            destroyed.append(True)
            lib.btm_destroy(manager)
    atexit.register(destroy)

    try:
        thumbs, previews = Group(), Group()
        check(lib.btm_group_named(manager, b"thumbnails", byref(thumbs)), "group")
        check(lib.btm_next_group_id(manager, byref(previews)), "group")

        def add(fn, obj, group, upstream=(), priority=0):
            ups = (c_uint64 * max(1, len(upstream)))(*upstream)
            tid = c_uint64()
            check(lib.btm_add_task(manager, fn, keep(obj) if obj is not None else None,
                                   release, priority, byref(group), ups,
                                   len(upstream), byref(tid)), "add")
            return tid.value

        for i in range(3):
            add(PREVIEW_FN, "shot%d" % i, previews, priority=-1)
        images = ["a.exr", "b.exr", "c.exr", "d.exr"]
        thumb_ids = [add(THUMB_FN, name, thumbs, priority=10) for name in images]
        sheet_id = add(SHEET_FN, None, thumbs, upstream=thumb_ids)
        broken_id = add(THUMB_FN, "broken.exr", thumbs)

        # The host loop: sleep on the descriptor, poll until the group ends.
        fd = c_int32()
        check(lib.btm_get_event_fd(manager, byref(fd)), "event fd")
        sel = selectors.DefaultSelector()
        sel.register(fd.value, selectors.EVENT_READ)
        events, n = (Event * 16)(), c_size_t()
        completed, failed, sheet, finished = set(), {}, None, False
        deadline = time.monotonic() + 30
        while not finished:
            if time.monotonic() > deadline:
                errors.append("timed out waiting for the thumbnails group")
                break
            if not sel.select(timeout=0.5):
                continue
            while True:  # drain until a poll returns less than its capacity
                check(lib.btm_poll_events(manager, events, len(events), byref(n)), "poll")
                for ev in events[:n.value]:
                    if ev.kind == TASK_COMPLETED:
                        completed.add(ev.task_id)
                        if ev.task_id == sheet_id:  # copy: valid until next poll
                            sheet = list(peek(ev.results[0].data))
                    elif ev.kind == TASK_FAILED:
                        failed[ev.task_id] = ev.message.decode()
                    elif ev.kind == GROUP_FINISHED and ev.group_name == b"thumbnails":
                        finished = True
                    if ev.kind != GROUP_FINISHED and ev.group.kind == GROUP_NUMBERED:
                        errors.append("event from the previews group before its stop")
                if n.value < len(events):
                    break
        sel.close()

        # The user closed the preview panel: stop that group.
        report = StopReport()
        status = lib.btm_stop_task_group(manager, byref(previews), True, True, byref(report))
        stopped = report.before_start + report.while_running + report.after_finish
        if status != OK or stopped != 3:
            errors.append("stop previews: status %d, %d stopped" % (status, stopped))

        expected = set(thumb_ids) | {sheet_id}
        if completed != expected:
            errors.append("completed %s, expected %s" % (sorted(completed), sorted(expected)))
        if sorted(sheet or []) != sorted("thumb(%s)" % i for i in images):
            errors.append("contact sheet %r" % (sheet,))
        if list(failed) != [broken_id] or "cannot read broken.exr" not in failed[broken_id]:
            errors.append("failures %r" % (failed,))
        print("contact sheet:", ", ".join(sheet or []))
        print("failed:", "; ".join(failed.values()))
        print("stopped %d previews (%d running)" % (stopped, report.while_running))
    finally:
        destroy()  # waits for the running previews, frees what is left

    with _objects_lock:
        if _objects:
            errors.append("not freed by btm: %r" % (_objects,))
    for e in errors:
        print("ERROR:", e, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
