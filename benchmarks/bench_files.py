#!/usr/bin/env python3
"""Control-file latency of cgroupfs-emu against a minimal C libfuse server, same run.

    flock /tmp/cgemu-heavy.lock python3 benchmarks/bench_files.py [--rounds N] [--cpu K]
                                                                  [--repeat R]

Builds benchmarks/one_file_server.c and file_client.c (libfuse3-dev, pkg-config, gcc),
mounts the C server and a cgroupfs-emu linux-6 mount, and pins both servers and the
client to one CPU. Four operations, each on memory.usage_in_bytes (reads) or
memory.limit_in_bytes (writes) against the same system calls on the C server's file:

    read   open + read + close                 write  open + write + close
    cat    open + fstat + read to EOF + close   echo   open(O_TRUNC) + write + close

Each of R runs (default 3, one after the other in this invocation, both servers
mounted throughout) measures every operation on the C server and then on
cgroupfs-emu. Prints each run's medians and ratio (targets: cat <= 2x, echo <= 3x in
every run; lxcfs reaches 2.4x) and
the FUSE requests each operation costs on either server, counted in a second, short
run of both servers with libfuse's debug log (-d). Ratios, not absolute times:
machines are noisy.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys

from _daemon import build_c, emu_command, opcodes, pinned, quiet_size, serving

OPERATIONS = (  # name, file_client mode, control file, target ratio
    ("read", "r", "memory.usage_in_bytes", None),
    ("cat", "cat", "memory.usage_in_bytes", 2.0),
    ("write", "w", "memory.limit_in_bytes", None),
    ("echo", "echo", "memory.limit_in_bytes", 3.0),
)


def measure(client: str, cpu: int | None, mode: str, path: str, rounds: int) -> float:
    out = subprocess.run([*pinned(cpu), client, mode, path, str(rounds)],
                         check=True, capture_output=True, text=True).stdout.split()
    samples = [int(x) for x in out]
    return statistics.median(samples[rounds // 10:])  # first 10% are warm-up


def count_requests(client: str, path: str, mode: str, log: str, rounds: int = 20) -> list:
    """Requests per operation, after a warm-up (first lookups, the one FLUSH)."""
    subprocess.run([client, mode, path, "3"], check=True, capture_output=True)
    start = quiet_size(log)
    subprocess.run([client, mode, path, str(rounds)], check=True, capture_output=True)
    quiet_size(log)
    ops = collections.Counter(opcodes(log, start))
    return [(op, n / rounds) for op, n in ops.items()]


def _fmt(ops: list) -> str:
    total = sum(n for _, n in ops)
    parts = " ".join(op if n == 1 else f"{op}x{n:g}" for op, n in ops)
    return f"{total:g} ({parts})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    server, client = build_c("one_file_server"), build_c("file_client", fuse=False)

    times = {name: [] for name, *_ in OPERATIONS}
    with serving([*pinned(args.cpu), server]) as (c_mnt, _), \
            serving([*pinned(args.cpu), *emu_command()]) as (py_mnt, _):
        os.mkdir(os.path.join(py_mnt, "bench"))
        for _run in range(args.repeat):
            for name, mode, file, _target in OPERATIONS:
                base = measure(client, args.cpu, mode, os.path.join(c_mnt, "value"),
                               args.rounds)
                emu = measure(client, args.cpu, mode, os.path.join(py_mnt, "bench", file),
                              args.rounds)
                times[name].append((base, emu))
        os.rmdir(os.path.join(py_mnt, "bench"))

    requests = {}
    tmp = os.path.join(os.path.dirname(client), "logs")
    os.makedirs(tmp, exist_ok=True)
    c_log, py_log = os.path.join(tmp, "c.log"), os.path.join(tmp, "emu.log")
    with serving([server, "-d"], c_log) as (c_mnt, _), \
            serving(emu_command(debug=True), py_log) as (py_mnt, _):
        os.mkdir(os.path.join(py_mnt, "bench"))
        for name, mode, file, _target in OPERATIONS:
            requests[name] = (count_requests(client, os.path.join(c_mnt, "value"), mode, c_log),
                              count_requests(client, os.path.join(py_mnt, "bench", file),
                                             mode, py_log))
        os.rmdir(os.path.join(py_mnt, "bench"))

    print(f"pinned to CPU {args.cpu}, median of {args.rounds - args.rounds // 10} rounds, "
          f"{args.repeat} runs")
    print(f"{'operation':<10} {'run':>3} {'C server':>9} {'cgroupfs-emu':>13} {'ratio':>6} "
          f"{'target':>7}   requests per operation (C / cgroupfs-emu)")
    for name, _mode, _file, target in OPERATIONS:
        c_req, py_req = requests[name]
        goal = f"{target:.1f}x" if target else "-"
        for run, (base, emu) in enumerate(times[name], 1):
            print(f"{name:<10} {run:>3} {base / 1000:>7.1f}us {emu / 1000:>11.1f}us "
                  f"{emu / base:>5.2f}x {goal:>7}   {_fmt(c_req)} / {_fmt(py_req)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
