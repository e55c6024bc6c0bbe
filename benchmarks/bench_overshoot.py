#!/usr/bin/env python3
"""How far past its limit a task that allocates as fast as it can gets.

    python3 benchmarks/bench_overshoot.py [--limits 64M,256M,1G] [--runs 3]

For each limit L: a fresh group; ``eat`` (tests/helpers/eat.c: mmap, then touch page
after page) is put into it and told to eat 2L + 256M. Modes:

* ``tasks``: eat joins through ``tasks``; it is OOM-killed; its peak resident set
  comes from wait4() (ru_maxrss), which is the group's real peak usage;
* ``exec``: eat started by ``cgemu exec`` (which becomes eat: the peak is again
  from wait4());
* ``stop``: ``oom_kill_disable 1``; eat is stopped; its VmHWM is read while stopped.

Prints the peak past L per run and the bound L + max(16 MiB, 10 % L). Every process
started here is stopped by its pid.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from _daemon import mounted_daemon

HERE = os.path.dirname(os.path.abspath(__file__))
M = 1 << 20


def build_eat(work: str) -> str:
    exe = os.path.join(work, "eat")
    subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "..", "tests", "helpers", "eat.c")],
                   check=True)
    return exe


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def run_tasks(mnt: str, g: str, eat: str, mib: int) -> float:
    p = subprocess.Popen([eat, str(mib), "-w"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        write(os.path.join(mnt, g, "tasks"), str(p.pid))
        time.sleep(0.05)
        p.stdin.write(b"x")
        p.stdin.flush()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = status
    finally:
        if p.returncode is None:
            p.kill()
            p.wait()
        p.stdin.close()
    assert os.WIFSIGNALED(status), "eat was not killed"
    return ru.ru_maxrss * 1024


def run_exec(mnt: str, g: str, eat: str, mib: int) -> float:
    p = subprocess.Popen([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "exec", "-m", mnt,
                          "-g", g, "--", eat, str(mib)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, cwd=os.path.dirname(HERE))
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = status
    # cgemu exec runs eat in its own place: eat is the process we waited for
    assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 137, f"eat was not killed ({status})"
    return ru.ru_maxrss * 1024


def run_stop(mnt: str, g: str, eat: str, mib: int) -> float:
    gdir = os.path.join(mnt, g)
    write(os.path.join(gdir, "memory.oom_control"), "1")
    p = subprocess.Popen([eat, str(mib), "-w"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        write(os.path.join(gdir, "tasks"), str(p.pid))
        time.sleep(0.05)
        p.stdin.write(b"x")
        p.stdin.flush()
        deadline = time.monotonic() + 30
        while True:
            with open(os.path.join(gdir, "memory.oom_control")) as f:
                if "under_oom 1" in f.read():
                    break
            assert time.monotonic() < deadline, "eat was never stopped"
            time.sleep(0.01)
        time.sleep(0.05)
        with open(f"/proc/{p.pid}/status") as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) * 1024
    finally:
        p.kill()  # our own child, stopped or not
        p.wait()
        p.stdin.close()
    return hwm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limits", default="64M,256M,1G")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", default="tasks,exec,stop")
    ap.add_argument("--options", default="", help="extra mount options")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="cgemu-overshoot-")
    try:
        eat = build_eat(work)
        opts = "socket={work}/s" + ("," + args.options if args.options else "")
        with mounted_daemon(opts) as (mnt, _, daemon):
            print(f"{'limit':>6} {'mode':>6}  peak past the limit per run (MiB)      bound (MiB)")
            worst_ok = True
            n = 0
            for text in args.limits.split(","):
                limit = int(text[:-1]) * {"M": M, "G": 1024 * M}[text[-1]]
                bound = max(16 * M, limit // 10)
                for mode in args.modes.split(","):
                    over = []
                    for _ in range(args.runs):
                        n += 1
                        g = f"o{n}"
                        os.mkdir(os.path.join(mnt, g))
                        write(os.path.join(mnt, g, "memory.limit_in_bytes"), str(limit))
                        mib = 2 * limit // M + 256
                        peak = {"tasks": run_tasks, "exec": run_exec,
                                "stop": run_stop}[mode](mnt, g, eat, mib)
                        over.append((peak - limit) / M)
                        time.sleep(0.3)
                        os.rmdir(os.path.join(mnt, g))
                    worst_ok &= max(over) * M <= bound
                    print(f"{text:>6} {mode:>6}  " + " ".join(f"{o:7.1f}" for o in over)
                          + f"      <= {bound / M:.1f}" + ("" if max(over) * M <= bound else "  OVER"))
            print("all within the bound" if worst_ok else "SOME RUNS PASSED THE BOUND")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
