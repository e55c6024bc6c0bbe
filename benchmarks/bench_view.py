#!/usr/bin/env python3
"""What the seccomp view of `cgemu run` costs a command: the same command inside the
view and outside it, alternated, in one run.

    flock /tmp/cgemu-heavy.lock python3 benchmarks/bench_view.py [--repeat N] [--files N]

Needs root (cgemu run's private mount namespace), gcc with a static libc, and java for
the JVM row. Builds benchmarks/view_files.c statically (raw syscalls, as Go makes them)
and measures, each as the median of --repeat runs:

    tmpfs files     stat + open + read + close of --files small files in a tmpfs
                    directory (/dev/shm): every open is a notification the supervisor
                    lets through (target <= 1.5x)
    floor           the same files under the same filter, in the same alternation, with
                    the cheapest supervisor there is (view_files --floor: every
                    notification answered CONTINUE, nothing read): what one user
                    notification per open costs on this machine, whatever the
                    supervisor does
    floor + read    the floor plus one read of the path's first 256 bytes
                    (process_vm_readv), the least the view's supervisor must do
    control files   the same on the emulator mount's readable control files, repeated
                    to --files opens (FUSE dominates)
    java -version   timed from inside by view_files --time, so that cgemu run's own
                    start (Python, namespace, mounts) is not in it (target <= 1.3x);
                    again with --preload-only, the view without seccomp: what is left
                    is the JVM reading its container's files through FUSE
    cgemu run true  that start itself, against `true`, for the record

Ratios are inside / outside from the same run. The machine's load moves them: run it
under the lock.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _daemon import build_c, mounted_daemon

CGEMU = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu"]


def seconds(argv: list[str], stdin: str | None = None, from_stderr: bool = False) -> float:
    """What view_files printed (its own clock): stdout's first field, or stderr's last
    line for --time."""
    with open(stdin) if stdin else open(os.devnull) as f:
        r = subprocess.run(argv, stdin=f, capture_output=True, text=True, check=True)
    return float((r.stderr.splitlines()[-1] if from_stderr else r.stdout).split()[0])


def wall(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - t


def compare(name: str, outside, inside, repeat: int, target: float | None,
            others: tuple = ()) -> None:
    """One row for *inside* against *outside*, and one for each (name, command) of
    *others* against the same outside: all alternated, so that load changes hit each
    alike."""
    rows = [(name, inside, target)] + [(n, f, None) for n, f in others]
    out, times = [], [[] for _ in rows]
    for _ in range(repeat):
        out.append(outside())
        for t, (_, f, _) in zip(times, rows):
            t.append(f())
    o = statistics.median(out)
    for (row, _, goal), t in zip(rows, times):
        i = statistics.median(t)
        goal = f"  (target <= {goal}x)" if goal else ""
        print(f"{row:16s} outside {o * 1000:9.1f} ms   inside {i * 1000:9.1f} ms   "
              f"ratio {i / o:5.2f}x{goal}", flush=True)


def view_filter() -> str:
    """cgemu run's own filter (service/fork_guard.py), as view_files --floor takes it:
    struct sock_filter instructions, little-endian, in hex."""
    import platform
    import struct

    from cgroupfs_emu.service import fork_guard
    m = platform.machine()
    return b"".join(struct.pack("<HBBI", *insn) for insn in fork_guard.program(
        m, fork_guard.VIEW_CALLS[m], fork_guard.VIEW_PASSED.get(m))).hex()


def write_list(path: str, files: list[str], count: int) -> None:
    with open(path, "w") as f:
        for k in range(count):
            f.write(files[k % len(files)] + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--skip-files", action="store_true", help="only the java and start rows")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_view: needs root (cgemu run as root)", file=sys.stderr)
        return 2
    probe = build_c("view_files", fuse=False, static=True)
    shm = tempfile.mkdtemp(prefix="cgemu-bench-view-", dir="/dev/shm")
    try:
        names = []
        for k in range(args.files):
            names.append(os.path.join(shm, f"f{k}"))
            with open(names[-1], "w") as f:
                f.write("x" * 100)
        write_list(os.path.join(shm, "tmpfs.list"), names, args.files)
        with mounted_daemon("kernel=linux-6") as (mnt, work, _):
            controls = []
            for g in range(8):
                d = os.path.join(mnt, f"g{g}")
                os.mkdir(d)
                controls += [os.path.join(d, n) for n in sorted(os.listdir(d))
                             if os.stat(os.path.join(d, n)).st_mode & 0o444
                             and "event_control" not in n and n != "memory.force_empty"]
            write_list(os.path.join(work, "control.list"), controls, args.files)
            run = [*CGEMU, "run", "-m", mnt, "--"]
            print(f"bench_view: {args.files} files, median of {args.repeat}, kernel "
                  f"{os.uname().release}", flush=True)
            floor = [probe, "--floor", view_filter()]
            for name, listing in () if args.skip_files else (
                    ("tmpfs files", os.path.join(shm, "tmpfs.list")),
                    ("control files", os.path.join(work, "control.list"))):
                tmpfs = name == "tmpfs files"
                compare(name, lambda: seconds([probe], listing),
                        lambda: seconds([*run, probe], listing), args.repeat,
                        1.5 if tmpfs else None,
                        (("floor", lambda: seconds(floor, listing)),
                         ("floor + read", lambda: seconds([*floor, "--read"], listing)))
                        if tmpfs else ())
            if shutil.which("java"):
                java = [probe, "--time", "java", "-version"]
                compare("java -version", lambda: seconds(java, from_stderr=True),
                        lambda: seconds([*run, *java], from_stderr=True), args.repeat, 1.3)
                preload = [*run[:-1], "--preload-only", "--"]
                compare("java, preload", lambda: seconds(java, from_stderr=True),
                        lambda: seconds([*preload, *java], from_stderr=True), args.repeat, None)
            compare("cgemu run true", lambda: wall(["true"]), lambda: wall([*run, "true"]),
                    args.repeat, None)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
