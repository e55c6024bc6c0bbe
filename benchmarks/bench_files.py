#!/usr/bin/env python3
"""Control-file latency of cgroupfs-emu against a minimal C libfuse server, same run.

    python3 benchmarks/bench_files.py [--rounds N] [--cpu K]

Builds benchmarks/one_file_server.c and file_client.c (libfuse3-dev, pkg-config, gcc),
mounts the C server and a cgroupfs-emu linux-6 mount, and pins both servers and the
client to one CPU. Measures open+read+close of memory.usage_in_bytes and
open+write+close of memory.limit_in_bytes, against the same calls on the C server's
file. Prints medians and the ratios (targets: read <= 2.4x, write <= 4x). Ratios, not
absolute times: machines are noisy.
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

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "_build")


def build() -> tuple[str, str]:
    os.makedirs(BUILD, exist_ok=True)
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                           capture_output=True, text=True).stdout.split()
    server = os.path.join(BUILD, "one_file_server")
    client = os.path.join(BUILD, "file_client")
    subprocess.run(["gcc", "-O2", "-o", server, os.path.join(HERE, "one_file_server.c"),
                    *flags], check=True)
    subprocess.run(["gcc", "-O2", "-o", client, os.path.join(HERE, "file_client.c")],
                   check=True)
    return server, client


def wait_mount(path: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if os.path.ismount(path):
            return
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        time.sleep(0.02)
    raise SystemExit("mount did not appear")


def measure(client: str, cpu: int, mode: str, path: str, rounds: int) -> float:
    out = subprocess.run(["taskset", "-c", str(cpu), client, mode, path, str(rounds)],
                         check=True, capture_output=True, text=True).stdout.split()
    samples = [int(x) for x in out]
    return statistics.median(samples[rounds // 10:])  # first 10% are warm-up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20000)
    ap.add_argument("--cpu", type=int, default=0)
    args = ap.parse_args()
    server, client = build()
    tmp = tempfile.mkdtemp(prefix="cgemu-bench-")
    c_mnt, py_mnt = os.path.join(tmp, "c"), os.path.join(tmp, "py")
    os.mkdir(c_mnt)
    os.mkdir(py_mnt)
    pin = ["taskset", "-c", str(args.cpu)]
    procs = []
    try:
        c_proc = subprocess.Popen([*pin, server, c_mnt])
        procs.append((c_proc, c_mnt))
        wait_mount(c_mnt, c_proc)
        py_proc = subprocess.Popen([*pin, sys.executable, "-m", "cgroupfs_emu", "-f",
                                    "-o", "kernel=linux-6", "memory", py_mnt])
        procs.append((py_proc, py_mnt))
        wait_mount(py_mnt, py_proc)
        os.mkdir(os.path.join(py_mnt, "bench"))
        c_file = os.path.join(c_mnt, "value")
        usage = os.path.join(py_mnt, "bench", "memory.usage_in_bytes")
        limit = os.path.join(py_mnt, "bench", "memory.limit_in_bytes")
        results = {}
        for name, mode, ours in (("read", "r", usage), ("write", "w", limit)):
            base = measure(client, args.cpu, mode, c_file, args.rounds)
            emu = measure(client, args.cpu, mode, ours, args.rounds)
            results[name] = (base, emu)
        os.rmdir(os.path.join(py_mnt, "bench"))
    finally:
        for proc, mnt in reversed(procs):
            subprocess.run(["fusermount3", "-u", mnt], check=False)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    targets = {"read": 2.4, "write": 4.0}
    print(f"{'operation':<28} {'C server':>10} {'cgroupfs-emu':>13} {'ratio':>7} {'target':>7}")
    for name, (base, emu) in results.items():
        label = "open+read+close usage" if name == "read" else "open+write+close limit"
        print(f"{label:<28} {base / 1000:>8.1f}us {emu / 1000:>11.1f}us "
              f"{emu / base:>6.2f}x {targets[name]:>6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
