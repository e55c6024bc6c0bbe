#!/usr/bin/env python3
"""Many groups: mkdir, readdir, memory.stat and rmdir at 100, 10,000 and 65,535 groups,
against a minimal C libfuse server making and listing as many directories, same run.

    flock /work/heavy.lock python3 benchmarks/bench_scale.py [--cpu K] [--max N]

Builds benchmarks/dir_server.c (libfuse3-dev, pkg-config, gcc). Both servers and this
client are pinned to one CPU. Groups are made flat in the root of a linux-6 mount
until the memcg ID space is full (65,535 with the root), then removed. At each size:

* mkdir and rmdir: median latency of the last 100 operations reaching that size (the
  targets: flat from 1 to 65,535 groups);
* readdir: listing the root (os.scandir to the end), median of 5, and its ratio to the
  C server listing as many directories (target <= 10x);
* memory.stat of the root and of a leaf (open + read + close, median of 200), and
  their ratio (target <= 3x: the totals are kept, not summed per read);
* the daemon's resident memory per group, over what it held with one group (target
  <= 4 KiB);
* with one group and at the largest size: the idle daemon's CPU (utime + stime from /proc) over
  IDLE_SECONDS with nothing asked of it, as a share of one core: what its periodic
  duties cost per group (target: about what it costs with no groups).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from _daemon import build_c, emu_command, pinned, serving

SIZES = (100, 10_000, 65_535)
#: how long the idle daemon's CPU is measured (with one group, and at the largest size)
IDLE_SECONDS = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmRSS")


def idle_share(pid: int, seconds: float) -> float:
    """The share of one core *pid* used over *seconds* of asking nothing of it."""
    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    c0, t0 = cpu(), time.monotonic()
    time.sleep(seconds)
    return (cpu() - c0) / (time.monotonic() - t0)


def timed(fn, *args) -> int:
    t0 = time.perf_counter_ns()
    fn(*args)
    return time.perf_counter_ns() - t0


def listing(path: str) -> int:
    def scan():
        with os.scandir(path) as it:
            for _ in it:
                pass
    return statistics.median(timed(scan) for _ in range(5))


def read_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, 65536):
            pass
    finally:
        os.close(fd)


def grow(root: str, sizes, start: int, offset: int = 0):
    """mkdir g<i> in *root* until each size in turn; yield (size, median us of the
    last 100 mkdirs)."""
    n = start
    for size in sizes:
        lat = []
        while n < size:
            lat.append(timed(os.mkdir, os.path.join(root, f"g{n + offset}")))
            n += 1
        yield size, statistics.median(lat[-100:]) / 1000


def shrink(root: str, sizes, stop: int, offset: int = 0):
    """rmdir from the largest size down; yield (size, median us of the first 100
    rmdirs below that size)."""
    n = max(sizes)
    for size in sorted(sizes, reverse=True):
        lat = []
        while n > stop and (n > size - 100 or not lat):
            n -= 1
            lat.append(timed(os.rmdir, os.path.join(root, f"g{n + offset}")))
        while n > stop and n > max([s for s in sizes if s < size], default=stop):
            n -= 1
            os.rmdir(os.path.join(root, f"g{n + offset}"))
        yield size, statistics.median(lat) / 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--max", type=int, default=SIZES[-1])
    args = ap.parse_args()
    sizes = tuple(s for s in SIZES if s < args.max) + (args.max,)
    server = build_c("dir_server")
    os.sched_setaffinity(0, {args.cpu})
    rows = {s: {} for s in sizes}

    with serving([*pinned(args.cpu), server]) as (c_mnt, _):
        for size, us in grow(c_mnt, sizes, 0):
            rows[size]["c_mkdir"] = us
            rows[size]["c_readdir"] = listing(c_mnt)
        for size, us in shrink(c_mnt, sizes, 0):
            rows[size]["c_rmdir"] = us

    with serving([*pinned(args.cpu), *emu_command()]) as (mnt, proc):
        # The root counts as a group: the ID space holds max - 1 more.
        os.mkdir(os.path.join(mnt, "leaf"))
        leaf_stat = os.path.join(mnt, "leaf", "memory.stat")
        root_stat = os.path.join(mnt, "memory.stat")
        for _ in range(50):
            read_file(leaf_stat), read_file(root_stat), listing(mnt)
        base = rss(proc.pid)
        idle_base = idle_share(proc.pid, IDLE_SECONDS)
        for size, us in grow(mnt, sizes, 2, offset=-2):
            r = rows[size]
            r["mkdir"] = us
            r["readdir"] = listing(mnt)
            r["leaf"] = statistics.median(timed(read_file, leaf_stat) for _ in range(200))
            r["root"] = statistics.median(timed(read_file, root_stat) for _ in range(200))
            r["per_group"] = (rss(proc.pid) - base) / (size - 2)
            if size == sizes[-1]:
                idle = idle_share(proc.pid, IDLE_SECONDS)
        for size, us in shrink(mnt, sizes, 2, offset=-2):
            rows[size]["rmdir"] = us
        os.rmdir(os.path.join(mnt, "leaf"))

    print(f"pinned to CPU {args.cpu}; groups made flat in the root (the root is one)")
    print(f"{'groups':>7} {'mkdir us':>15} {'rmdir us':>15} {'readdir ms':>22} "
          f"{'memory.stat us':>24} {'bytes/group':>12}")
    print(f"{'':>7} {'emu':>7} {'C':>7} {'emu':>7} {'C':>7} {'emu':>7} {'C':>7} {'ratio':>6} "
          f"{'root':>7} {'leaf':>7} {'ratio':>8}")
    for size in sizes:
        r = rows[size]
        print(f"{size:>7} {r['mkdir']:>7.0f} {r['c_mkdir']:>7.0f} {r['rmdir']:>7.0f} "
              f"{r['c_rmdir']:>7.0f} {r['readdir'] / 1e6:>7.1f} {r['c_readdir'] / 1e6:>7.1f} "
              f"{r['readdir'] / r['c_readdir']:>5.1f}x {r['root'] / 1000:>7.0f} "
              f"{r['leaf'] / 1000:>7.0f} {r['root'] / r['leaf']:>7.2f}x {r['per_group']:>12.0f}")
    print(f"idle daemon CPU at {sizes[-1]} groups: {idle * 100:.2f} % of one core, "
          f"with 1 group: {idle_base * 100:.2f} % (each over {IDLE_SECONDS:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
