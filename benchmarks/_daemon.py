"""A cgroupfs-emu daemon for one benchmark run: mounted in a temporary directory,
unmounted and waited for at the end, whatever happens."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def _served(argv_for, log_path_for):
    """Start the FUSE server argv_for(work, mnt) on a fresh mount point in a fresh
    work directory; yield (work, mnt, Popen) once mounted. Unmounted, waited for and
    cleaned up at the end, whatever happens."""
    work = tempfile.mkdtemp(prefix="cgemu-bench-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    log = open(log_path_for(work), "wb")
    proc = subprocess.Popen(argv_for(work, mnt), stdout=log, stderr=log,
                            cwd=os.path.dirname(HERE))
    try:
        deadline = time.monotonic() + 15
        while not os.path.ismount(mnt):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{argv_for(work, mnt)[0]} did not mount")
            time.sleep(0.02)
        yield work, mnt, proc
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=False)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def mounted_daemon(options: str):
    """Yield (mount point, work directory, daemon Popen); *options* may use {work}."""
    argv = lambda work, mnt: [sys.executable, "-m", "cgroupfs_emu", "-f", "-o",  # noqa: E731
                              options.format(work=work), "memory", mnt]
    with _served(argv, lambda work: os.path.join(work, "daemon.log")) as (work, mnt, proc):
        yield mnt, work, proc


# ---------------------------------------------------------------------- C baselines

BUILD = os.path.join(HERE, "_build")


def build_c(name: str, fuse: bool = True, static: bool = False) -> str:
    """Compile benchmarks/<name>.c (with libfuse3 when *fuse*, linked statically when
    *static*) into _build/; return it."""
    os.makedirs(BUILD, exist_ok=True)
    flags = ["-static"] if static else []
    if fuse:
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "fuse3"], check=True,
                               capture_output=True, text=True).stdout.split()
    out = os.path.join(BUILD, name)
    subprocess.run(["gcc", "-O2", "-o", out, os.path.join(HERE, f"{name}.c"), *flags],
                   check=True)
    return out


def pinned(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def emu_command(options: str = "kernel=linux-6", debug: bool = False) -> list[str]:
    return [sys.executable, "-m", "cgroupfs_emu", "-f", *(["-d"] if debug else []),
            "-o", options, "memory"]


@contextlib.contextmanager
def serving(argv: list[str], log_path: str | None = None):
    """Run a FUSE server whose last argument is a fresh mount point; yield (mount
    point, Popen). Unmounted and waited for at the end, whatever happens."""
    with _served(lambda work, mnt: [*argv, mnt],
                 lambda work: log_path or os.devnull) as (_, mnt, proc):
        yield mnt, proc


def quiet_size(path: str, settle: float = 0.1) -> int:
    """Size of a debug log once it stopped growing (RELEASE arrives after close)."""
    size = -1
    while size != os.path.getsize(path):
        size = os.path.getsize(path)
        time.sleep(settle)
    return size


def opcodes(path: str, start: int) -> list[str]:
    """The FUSE opcodes libfuse's debug log (-d) recorded after byte *start*."""
    import re
    with open(path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return re.findall(r"unique: \d+, opcode: (\w+)", text)
