#!/usr/bin/env python3
"""Instruction-level profile of one function of btm's hot paths.

callgrind_annotate stops at source lines, and btm's hot paths are mostly
inlined std and engine code; this prints, for each instruction of the
functions whose name contains FUNC, how many times it ran per task, with
objdump's disassembly and source lines (`-l`), so that every instruction
of a path can be accounted for:

    valgrind --tool=callgrind --fair-sched=yes --dump-instr=yes \\
        --callgrind-out-file=/tmp/lane.cg bench/build/btm_paths 10240 lanebulk
    python3 bench/asm_profile.py /tmp/lane.cg target/release/libbtm.so lane_loop 10240

(`bash bench/paths.sh` builds `bench/build/btm_paths`; run it with
LD_LIBRARY_PATH=target/release.) FUNC is a substring of callgrind's
function name: `lane_loop` (the lane worker), `btm_poll_events`,
`btm::ffi::task::add` (the single add), `add_lane_run` (the bulk add). The
divisor (default 1) turns counts into counts per task; the total goes to
stderr. Instructions that ran less than once per task are printed too
(they show the cold paths' share). Standard library and binutils only;
not run by the tests.
"""

import collections
import re
import subprocess
import sys


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cg, so, pat = sys.argv[1], sys.argv[2], sys.argv[3]
    div = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    names = {}

    def name(kind, s):
        # Compressed names: "(12) name" defines, "(12)" refers.
        m = re.match(r"\((\d+)\)(?: (.*))?", s)
        if not m:
            return s
        key = (kind, m.group(1))
        if m.group(2):
            names[key] = m.group(2)
        return names.get(key, "?")

    counts = collections.Counter()
    ob = fn = None
    addr = 0
    skip = False
    with open(cg) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("ob="):
                ob = name("ob", line[3:])
            elif line.startswith("fn="):
                fn = name("fn", line[3:])
            elif line.startswith("cob="):
                name("ob", line[4:])
            elif line.startswith(("cfi=", "cfl=")):
                name("fl", line[4:])
            elif line.startswith("cfn="):
                name("fn", line[4:])
            elif line.startswith(("fl=", "fi=", "fe=")):
                name("fl", line[3:])
            elif line.startswith("calls="):
                skip = True  # the next cost line is the call's, not the caller's
            else:
                m = re.match(r"^(0x[0-9a-f]+|\+\d+|-\d+|\*)\s+(\S+)\s+(\d+)", line)
                if not m:
                    continue
                a = m.group(1)
                if a.startswith("0x"):
                    addr = int(a, 16)
                elif a.startswith("+"):
                    addr += int(a[1:])
                elif a.startswith("-"):
                    addr -= int(a[1:])
                if skip:
                    skip = False
                    continue
                if ob and so.split("/")[-1] in ob and fn and pat in fn:
                    counts[addr] += int(m.group(3))
    if not counts:
        sys.exit("no instruction of a function matching %r in %s (callgrind needs --dump-instr=yes)" % (pat, so))
    # Callgrind records a shared object's addresses relative to its load
    # address, as objdump prints them.
    print("total %.1f per task" % (sum(counts.values()) / div), file=sys.stderr)
    lo, hi = min(counts), max(counts) + 16
    dis = subprocess.run(["objdump", "-d", "-C", "-l", "--no-show-raw-insn", "--start-address=%#x" % lo,
                          "--stop-address=%#x" % hi, so], capture_output=True, text=True, check=True).stdout
    source = None
    for line in dis.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s*(.*)", line)
        if m:
            c = counts.get(int(m.group(1), 16), 0)
            if c:
                if source:
                    print("          " + source)
                    source = None
                print("%8.2f  %s" % (c / div, line.strip()))
        elif line.startswith("/"):
            source = re.sub(r"/rustc/[0-9a-f]+/library/", "std:", line.strip())


if __name__ == "__main__":
    main()
