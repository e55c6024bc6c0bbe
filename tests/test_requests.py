"""FUSE requests per operation, counted in libfuse's own debug log (-d), and the
promise that cached entries and attributes are never stale after a change returns.

The counts are what a minimal C libfuse server needs for the same system calls
(benchmarks/one_file_server.c, measured by benchmarks/bench_files.py), except where a
comment says why one more request remains. A new request per operation makes every
cat and echo slower, so a regression must fail here.
"""

from __future__ import annotations

import os
import re
import stat
import time

import pytest

from conftest import Mount, needs_fuse, wait_until

pytestmark = [pytest.mark.mount, needs_fuse]

OPCODE = re.compile(r"unique: \d+, opcode: (\w+)")


class Counted:
    """A linux-6 mount whose daemon logs every FUSE request (libfuse -d)."""

    def __init__(self, m: Mount):
        self.m = m

    def _quiet(self) -> int:
        """Wait until the log stops growing (a RELEASE of the previous operation may
        still be on its way); return its size."""
        size = -1
        while size != os.path.getsize(self.m.stderr_path):
            size = os.path.getsize(self.m.stderr_path)
            time.sleep(0.1)
        return size

    def requests(self, op, done: str = "RELEASE") -> list[str]:
        """Opcodes the kernel sent while *op* ran. RELEASE is sent after close(2)
        returns (in the background), so wait for the request that ends *op*, then a
        little longer for stragglers."""
        start = self._quiet()
        op()

        def text():
            with open(self.m.stderr_path, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")

        if done:
            assert wait_until(lambda: f"opcode: {done}" in text(), timeout=5), text()
        time.sleep(0.1)
        return OPCODE.findall(text())


@pytest.fixture
def counted(cgroupfs_factory):
    m = cgroupfs_factory("kernel=linux-6", flags=("-d",))
    os.mkdir(m.p("g"))
    yield Counted(m)
    os.rmdir(m.p("g"))


def _read(path: str, fstat: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if fstat:
            os.fstat(fd)  # as cat does
        while os.read(fd, 4096):
            pass
    finally:
        os.close(fd)


def _write(path: str, data: bytes, flags: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | flags)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_read_and_write_need_what_a_c_server_needs(counted):
    usage = counted.m.p("g", "memory.usage_in_bytes")
    limit = counted.m.p("g", "memory.limit_in_bytes")
    # Warm up: the first lookups, and the one FLUSH the kernel sends before it
    # learns (ENOSYS) that close needs none.
    _read(usage, fstat=True)
    _write(limit, b"4M", os.O_TRUNC)

    assert counted.requests(lambda: _read(usage)) == ["OPEN", "READ", "READ", "RELEASE"]
    # fstat after a direct-I/O read: the kernel dropped the atime it had cached
    # (fuse_invalidate_atime) and asks again; the C server gets the same GETATTR.
    assert counted.requests(lambda: _read(usage, fstat=True)) == [
        "OPEN", "GETATTR", "READ", "READ", "RELEASE"]
    assert counted.requests(lambda: _write(limit, b"8M")) == ["OPEN", "WRITE", "RELEASE"]
    # A shell redirection opens with O_TRUNC: do_truncate() asks for
    # security.capability unless the server negotiated handle_killpriv_v2, which
    # pyfuse3 cannot; the answer is immediate (ENODATA).
    assert counted.requests(lambda: _write(limit, b"4M", os.O_CREAT | os.O_TRUNC)) == [
        "OPEN", "GETXATTR", "WRITE", "RELEASE"]


def test_lookups_and_attributes_are_cached(counted):
    path = counted.m.p("g", "memory.stat")
    os.stat(path)
    assert counted.requests(lambda: [os.stat(path) for _ in range(5)], done="") == []
    # a listing returns every entry's attributes (readdirplus): no request per entry
    names = os.listdir(counted.m.p("g"))
    ops = counted.requests(lambda: [os.stat(counted.m.p("g", n)) for n in names]
                           + os.listdir(counted.m.p("g")), done="RELEASEDIR")
    # one GETATTR of the directory itself: the last listing dropped its cached atime
    # (fuse_readdir -> fuse_invalidate_atime), as it does on the C server
    assert set(ops) <= {"OPENDIR", "GETATTR", "READDIRPLUS", "RELEASEDIR"}, ops
    assert ops.count("GETATTR") <= 1 and ops.count("READDIRPLUS") <= 3, ops


def test_no_stale_attributes_or_listings_after_a_change(counted):
    """Entries and attributes are cached for seconds: every change a stat shows
    must be visible the moment the system call returns."""
    g = counted.m.p("g")
    st = os.stat(g)
    names = set(os.listdir(g))
    time.sleep(0.01)

    os.mkdir(os.path.join(g, "c"))
    after = os.stat(g)
    assert after.st_nlink == st.st_nlink + 1
    assert after.st_mtime_ns > st.st_mtime_ns
    assert set(os.listdir(g)) == names | {"c"}
    assert stat.S_ISDIR(os.stat(os.path.join(g, "c")).st_mode)

    os.rename(os.path.join(g, "c"), os.path.join(g, "d"))
    assert set(os.listdir(g)) == names | {"d"}
    assert not os.path.exists(os.path.join(g, "c"))
    assert os.stat(os.path.join(g, "d", "memory.stat"))

    os.chmod(os.path.join(g, "d"), 0o700)
    assert stat.S_IMODE(os.stat(os.path.join(g, "d")).st_mode) == 0o700
    os.chown(os.path.join(g, "d", "tasks"), 1234, 5678)
    st_tasks = os.stat(os.path.join(g, "d", "tasks"))
    assert (st_tasks.st_uid, st_tasks.st_gid) == (1234, 5678)

    limit = os.path.join(g, "d", "memory.limit_in_bytes")
    before = os.stat(limit).st_mtime_ns
    time.sleep(0.01)
    _write(limit, b"1M")
    assert os.stat(limit).st_mtime_ns > before

    os.rmdir(os.path.join(g, "d"))
    assert os.stat(g).st_nlink == st.st_nlink
    assert set(os.listdir(g)) == names
    assert not os.path.exists(os.path.join(g, "d"))
    assert not os.path.exists(limit)
