"""Shared fixtures: a real FUSE mount served by the real daemon in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

HAVE_FUSE = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
needs_fuse = pytest.mark.skipif(not HAVE_FUSE, reason="/dev/fuse or fusermount3 missing")


def wait_until(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Mount:
    """One foreground daemon and its mount point. Always call stop()."""

    def __init__(self, options: str = "", source: str = "memory"):
        self.dir = tempfile.mkdtemp(prefix="cgemu-")
        os.chmod(self.dir, 0o755)  # other users reach allow_other mounts through it
        self.path = os.path.join(self.dir, "mnt")
        os.mkdir(self.path)
        cmd = [sys.executable, "-m", "cgroupfs_emu", "-f"]
        if options:
            cmd += ["-o", options]
        cmd += [source, self.path]
        self.stderr_path = os.path.join(self.dir, "daemon.log")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=self._stderr)
        if not wait_until(lambda: os.path.ismount(self.path) or self.proc.poll() is not None):
            self.stop(check=False)
            raise RuntimeError("mount did not appear")
        if self.proc.poll() is not None:
            self.stop(check=False)
            raise RuntimeError(f"daemon exited: {self.log()}")

    def p(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def log(self) -> str:
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, check: bool = True) -> int | None:
        """Unmount with fusermount3 -u and wait for the daemon; returns its status."""
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", self.path], check=False)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its pid
            rc = self.proc.wait()
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", "-z", self.path], check=False)
        self._stderr.close()
        log = self.log()
        shutil.rmtree(self.dir, ignore_errors=True)
        if check:
            assert rc == 0, f"daemon exited {rc}: {log}"
            assert "Traceback" not in log, log
        return rc


def _mount_fixture(options: str):
    @pytest.fixture
    def fixture():
        if not HAVE_FUSE:
            pytest.skip("/dev/fuse or fusermount3 missing")
        m = Mount(options)
        try:
            yield m
        finally:
            m.stop()
    return fixture


mnt = _mount_fixture("")  # the default profile (seeds)


@pytest.fixture
def mount_with():
    """A factory for mounts with particular options; every one is stopped at the end."""
    if not HAVE_FUSE:
        pytest.skip("/dev/fuse or fusermount3 missing")
    mounts = []

    def make(options: str = "") -> Mount:
        mounts.append(Mount(options))
        return mounts[-1]

    try:
        yield make
    finally:
        for m in mounts:
            m.stop()
linux6 = _mount_fixture("kernel=linux-6")


def write(path: str, data: bytes | str) -> None:
    """Exactly one write(2) of *data* (O_WRONLY|O_TRUNC, like a shell redirection)."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0
