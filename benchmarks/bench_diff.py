#!/usr/bin/env python3
"""What `cgemu diff` costs, and where the time goes.

    flock /tmp/cgemu-heavy.lock python3 benchmarks/bench_diff.py [--repeat R]

1. End to end: `cgemu diff -- sh -c '<the three-line 4097 script>'` over the four
   generations (the default), as a user runs it; target <= 3 s on the 2-CPU machine.
   Same run, the baseline: the same four profiles done the straightforward way, one
   after the other, each a fresh `cgroupfs_emu -f` interpreter waited for by polling
   the mount, then `cgemu run` as a command (what a script around the existing tools
   does, and what cgemu diff did before its start-up was cut).
2. The breakdown of one profile: interpreter start, the daemon's imports, building the
   daemon, socket bind and FUSE mount, the readiness wait, the hierarchy reads, the
   `cgemu run` view (namespace and mounts) against a bare fork+exec, and the stop.

Every figure is the median of R runs (min and max beside it). Needs root or user
namespaces, /dev/fuse and fusermount3.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from _daemon import HERE

sys.path.insert(0, os.path.dirname(HERE))

from cgroupfs_emu.cli import diff, diff_report  # noqa: E402

SCRIPT = ("cd /sys/fs/cgroup/memory/diff && mkdir box\n"
          "echo 4097 > box/memory.limit_in_bytes\n"
          "cat box/memory.limit_in_bytes")
CGEMU = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu"]


def timed(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def stats(values: list[float]) -> str:
    return (f"{statistics.median(values) * 1000:7.0f} ms "
            f"({min(values) * 1000:.0f}-{max(values) * 1000:.0f})")


def end_to_end() -> None:
    r = subprocess.run(CGEMU + ["diff", "--", "sh", "-c", SCRIPT], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 1 or "+8192" not in r.stdout:
        raise SystemExit(f"cgemu diff gave {r.returncode}: {r.stdout}{r.stderr}")


def one_by_one() -> None:
    """The baseline: each profile mounted by a fresh daemon process (mount polled
    every 20 ms, as the test fixtures and the other benchmarks wait), `cgemu run` run
    as a command, the mount read, the daemon stopped; one profile after the other."""
    for profile in diff.DEFAULT_PROFILES:
        work = tempfile.mkdtemp(prefix="cgemu-bench-diff-")
        mnt = os.path.join(work, "mnt")
        os.mkdir(mnt)
        p = subprocess.Popen([sys.executable, "-m", "cgroupfs_emu", "-f", "-o",
                              f"kernel={profile},socket={work}/sock", "memory", mnt],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not os.path.ismount(mnt):
                if p.poll() is not None:
                    raise SystemExit("the daemon did not mount")
                time.sleep(0.02)
            os.mkdir(os.path.join(mnt, "diff"))
            diff_report.capture(mnt)
            subprocess.run(CGEMU + ["run", "-m", mnt, "-g", "diff", "--", "sh", "-c", SCRIPT],
                           capture_output=True, check=True, timeout=60)
            diff_report.capture(mnt)
        finally:
            p.terminate()  # our own child
            p.wait()
            shutil.rmtree(work, ignore_errors=True)


def _in_child(fn) -> float:
    """Seconds *fn* takes in a forked child (it may mount, unshare, exec...)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            os.write(w, repr(fn()).encode())
        except BaseException as e:  # report, never return into the benchmark
            os.write(w, f"-1 {e!r}".encode())
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    if text.startswith("-1 "):
        raise SystemExit(f"child failed: {text}")
    return float(text)


def daemon_steps() -> dict[str, float]:
    """One daemon built in a child of this process: construction, socket bind and
    FUSE mount (Daemon.start), then unmounted again."""
    from cgroupfs_emu.cli.daemon import Daemon
    from cgroupfs_emu.cli.options import parse_args
    work = tempfile.mkdtemp(prefix="cgemu-bench-diff-")
    os.mkdir(os.path.join(work, "mnt"))
    out = {}
    try:
        def build():
            cfg = parse_args(["-f", "-o", f"socket={work}/sock", "memory", f"{work}/mnt"])
            return timed(lambda: Daemon(cfg))

        def start():
            cfg = parse_args(["-f", "-o", f"socket={work}/sock", "memory", f"{work}/mnt"])
            daemon = Daemon(cfg)
            with contextlib.ExitStack() as stack:
                return timed(lambda: daemon.start(stack))
        out["build the Daemon (every collaborator)"] = _in_child(build)
        out["socket bind + FUSE mount (Daemon.start)"] = _in_child(start)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def view_steps() -> dict[str, float]:
    """`cgemu run`'s view around `true` against a bare fork+exec of `true`, and the
    hierarchy reads, on one mounted profile."""
    from cgroupfs_emu.cli import run as run_cmd
    runs = [diff.Run("linux-6.18", tempfile.mkdtemp(prefix="cgemu-bench-diff-"))]
    out = {}
    try:
        diff._start_daemon(runs[0])
        diff._wait_ready(runs)
        mnt = runs[0].mount
        out["readiness wait (fork to READY=1)"] = runs[0].times["ready"] - runs[0].times["spawn"]
        out["read the hierarchy (root + /diff)"] = timed(
            lambda: (os.mkdir(os.path.join(mnt, "diff")), diff_report.capture(mnt)))

        def bare():
            pid = os.fork()
            if pid == 0:
                os.execvp("true", ["true"])
            os.waitpid(pid, 0)
        out["fork+exec true, bare"] = timed(bare)
        devnull = os.open(os.devnull, os.O_WRONLY)

        def view():
            os.dup2(devnull, 2)
            return timed(lambda: run_cmd.run(mnt, "/diff", run_cmd.DEFAULT_AT, ["true"],
                                             lambda: mnt))
        out["fork+exec true in `cgemu run`'s view"] = _in_child(view)
        os.close(devnull)
    finally:
        out["stop (SIGTERM to exit, unmounted)"] = timed(lambda: diff._stop_daemons(runs))
        runs[0].notify.close()
        shutil.rmtree(runs[0].tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    signal.signal(signal.SIGINT, signal.default_int_handler)

    whole, base = [], []
    for _ in range(args.repeat):  # alternated, so machine noise hits both
        whole.append(timed(end_to_end))
        base.append(timed(one_by_one))
    ratios = [b / w for w, b in zip(whole, base)]
    print(f"cgemu diff, 4 generations, 3-line script:  {stats(whole)}   target <= 3000 ms")
    print(f"baseline, one by one, fresh interpreters:  {stats(base)}")
    print(f"baseline / cgemu diff: {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}-{max(ratios):.2f})")

    steps: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, cmd in (("interpreter start (python -c pass)", "pass"),
                          ("... + the daemon's imports (cli.mount)",
                           "import cgroupfs_emu.cli.mount"),
                          ("... + cgemu diff's imports (cli.cgemu)",
                           "import cgroupfs_emu.cli.cgemu")):
            steps.setdefault(name, []).append(timed(lambda: subprocess.run(
                [sys.executable, "-c", cmd], check=True)))
        for name, value in {**daemon_steps(), **view_steps()}.items():
            steps.setdefault(name, []).append(value)
    print("\none profile, step by step:")
    for name, values in steps.items():
        print(f"  {name:<45} {stats(values)}")


if __name__ == "__main__":
    main()
