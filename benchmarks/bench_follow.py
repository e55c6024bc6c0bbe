#!/usr/bin/env python3
"""What following real processes costs the daemon.

    python3 benchmarks/bench_follow.py [--tasks N] [--seconds S] [--poll-ms MS]
                                       [--busy N1,N2] [--options OPTS]

Mounts a daemon, measures its CPU time (utime + stime from /proc) over S seconds with
no followed task (the baseline), then starts N idle processes (``sleep``), writes them
into a group's cgroup.procs and measures again over S seconds (target: N=1000 at the
default 500 ms poll costs at most 5-6 % of a core). Then, for each count in --busy,
that many busy processes (benchmarks/churn.c: map 4 MiB, touch it, unmap it, every
50 ms, so each is always hot: sampled every fast_ms) join a group with a limit (so
the stop-first thread guards them too) and the daemon's CPU is measured again. Every
process it starts, it stops by pid.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _daemon import mounted_daemon

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def share_of_core(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def stop_all(started: list) -> None:
    """Kill and reap the processes this benchmark started (by pid), then let the
    daemon see them go."""
    for p in started:
        p.kill()
    for p in started:
        p.wait()
    started.clear()
    time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=int, default=500)
    ap.add_argument("--busy", default="1,10,50", help="counts of busy tasks ('' for none)")
    ap.add_argument("--options", default="", help="extra mount options")
    args = ap.parse_args()
    churn = os.path.join(tempfile.mkdtemp(prefix="cgemu-churn-"), "churn")
    subprocess.run(["cc", "-O2", "-o", churn,
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "churn.c")],
                   check=True)
    busy_results = []

    sleepers: list[subprocess.Popen] = []
    extra = "," + args.options if args.options else ""
    with mounted_daemon(f"socket={{work}}/s,poll_ms={args.poll_ms}{extra}") as (mnt, _, daemon):
        try:
            os.mkdir(os.path.join(mnt, "many"))
            idle = share_of_core(daemon.pid, args.seconds)
            procs = os.path.join(mnt, "many", "cgroup.procs")
            fd = os.open(procs, os.O_WRONLY)
            try:
                for _ in range(args.tasks):
                    p = subprocess.Popen(["sleep", "3600"])
                    sleepers.append(p)
                    os.write(fd, str(p.pid).encode())
            finally:
                os.close(fd)
            with open(procs) as f:
                joined = len(f.read().split())
            time.sleep(max(2 * args.poll_ms / 1000, 1.5))  # adopted, and cooled down
            busy = share_of_core(daemon.pid, args.seconds)
            stop_all(sleepers)
            for n in [int(x) for x in args.busy.split(",") if x]:
                g = os.path.join(mnt, f"busy{n}")
                os.mkdir(g)
                with open(os.path.join(g, "memory.limit_in_bytes"), "w") as f:
                    f.write(str(n * 16 << 20))  # room for all, but a limit to guard
                fd = os.open(os.path.join(g, "cgroup.procs"), os.O_WRONLY)
                try:
                    for _ in range(n):
                        p = subprocess.Popen([churn, "4", "50"])
                        sleepers.append(p)
                        os.write(fd, str(p.pid).encode())
                finally:
                    os.close(fd)
                time.sleep(1)
                busy_results.append((n, share_of_core(daemon.pid, args.seconds)))
                stop_all(sleepers)
        finally:
            for p in sleepers:
                p.kill()  # our own children
            for p in sleepers:
                p.wait()
            shutil.rmtree(os.path.dirname(churn), ignore_errors=True)
    print(f"{joined} tasks followed, poll every {args.poll_ms} ms, {args.seconds}s per run")
    print(f"daemon CPU, no tasks:    {idle * 100:6.2f} % of one core")
    print(f"daemon CPU, {joined} idle tasks: {busy * 100:6.2f} % of one core (target <= 5-6 %)")
    for n, share in busy_results:
        print(f"daemon CPU, {n} busy tasks (4 MiB every 50 ms): {share * 100:6.2f} % of one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
