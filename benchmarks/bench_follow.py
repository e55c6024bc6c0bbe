#!/usr/bin/env python3
"""What following real processes costs the daemon.

    python3 benchmarks/bench_follow.py [--tasks N] [--seconds S] [--poll-ms MS]

Mounts a daemon, measures its CPU time (utime + stime from /proc) over S seconds with
no followed task (the baseline), then starts N idle processes (``sleep``), writes them
into a group's cgroup.procs and measures again over S seconds. Prints both as a share
of one core (target: N=1000 at the default 500 ms poll costs at most 10 %). Every
process it starts, it stops by pid.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=int, default=500)
    args = ap.parse_args()

    sleepers: list[subprocess.Popen] = []
    with mounted_daemon(f"socket={{work}}/s,poll_ms={args.poll_ms}") as (mnt, _, daemon):
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
            time.sleep(2 * args.poll_ms / 1000)  # let the first polls adopt them all
            busy = share_of_core(daemon.pid, args.seconds)
        finally:
            for p in sleepers:
                p.kill()  # our own children
            for p in sleepers:
                p.wait()
    print(f"{joined} tasks followed, poll every {args.poll_ms} ms, {args.seconds}s per run")
    print(f"daemon CPU, no tasks:    {idle * 100:6.2f} % of one core")
    print(f"daemon CPU, {joined} tasks: {busy * 100:6.2f} % of one core (target <= 10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
