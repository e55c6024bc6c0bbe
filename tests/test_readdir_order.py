"""Directory order through a real mount, against a real kernel's order.

kernfs profiles (4.19, 5.10, 6.18): the expected order and every d_off come from
tests/data/kernfs_order.linux-6.18.txt, what getdents64 returned on a real 6.18 kernel
(names placed by their recorded hash, never by the emulator's function). 3.10: the
order dcache_readdir() gives, derived from the 3.10 sources in
docs/kernel-generations.md (newest first).

Also: libcgroup's cgget, which keeps the status of the last entry it reads, exits 0.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

import pytest

from cgroupfs_emu.core.generations import CREATION_ORDER_3_10
from conftest import HELPERS

DATA = os.path.join(os.path.dirname(__file__), "data", "kernfs_order.linux-6.18.txt")
INT_MAX = 2**31 - 1
KERNFS_PROFILES = ("linux-4.19", "linux-5.10", "linux-6.18", "linux-6")


def _real_hashes() -> dict[str, int]:
    """name -> the position the real kernel gave it (the d_off of the entry before)."""
    hashes: dict[str, int] = {}
    prev_off = None
    with open(DATA) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("# "):
                prev_off = None
                continue
            off, name = line.split(" ", 1)
            if prev_off is not None and name not in (".", ".."):
                hashes[name] = prev_off
            prev_off = int(off)
    return hashes


REAL = _real_hashes()


@pytest.fixture(scope="module")
def getdents():
    d = tempfile.mkdtemp(prefix="cgemu-getdents-")
    exe = os.path.join(d, "getdents")
    subprocess.run(["cc", "-Wall", "-Werror", "-o", exe,
                    os.path.join(HELPERS, "getdents.c")], check=True)
    try:
        yield exe
    finally:
        shutil.rmtree(d, ignore_errors=True)


def listing(exe, path, bufsize=65536):
    out = subprocess.run([exe, path, str(bufsize)], check=True, capture_output=True,
                         text=True).stdout
    return [(int(off), name) for off, name in (ln.split(" ", 1) for ln in out.splitlines())]


def expected_kernfs(names):
    """The real kernel's listing of a directory holding *names*: by recorded hash, then
    name; d_off = the next entry's hash, INT_MAX at the end."""
    body = sorted(names, key=lambda n: (REAL[n], n.encode()))
    offs = [REAL[n] for n in body[1:]] + [INT_MAX]
    return [(1, "."), (REAL[body[0]], "..")] + list(zip(offs, body))


CHILDREN = ["child1", "zeta", "a", "tasks2", "x9"]


@pytest.mark.parametrize("profile", KERNFS_PROFILES)
def test_kernfs_group_with_children_matches_real_kernel(mount_with, getdents, profile):
    m = mount_with(f"kernel={profile}")
    os.mkdir(m.p("G"))
    for c in CHILDREN:
        os.mkdir(m.p("G", c))
    try:
        got = listing(getdents, m.p("G"))
        names = [n for _, n in got if n not in (".", "..")]
        assert set(names) <= set(REAL), set(names) - set(REAL)
        assert got == expected_kernfs(names)
        # small getdents buffers resume by offset and give the same listing
        assert listing(getdents, m.p("G"), 80) == got
    finally:
        for c in CHILDREN:
            os.rmdir(m.p("G", c))
        os.rmdir(m.p("G"))


@pytest.mark.parametrize("profile", KERNFS_PROFILES)
def test_kernfs_root_matches_real_kernel(mount_with, getdents, profile):
    m = mount_with(f"kernel={profile}")
    os.mkdir(m.p("x9"))
    try:
        got = listing(getdents, m.p(""))
        names = [n for _, n in got if n not in (".", "..")]
        assert {"release_agent", "cgroup.sane_behavior", "x9"} <= set(names)
        assert got == expected_kernfs(names)
        assert names[-1] == "cgroup.clone_children"
    finally:
        os.rmdir(m.p("x9"))


def getdents64(fd: int, size: int) -> list[tuple[int, str]]:
    """One getdents64(2) call: [(d_off, name)], [] at the end."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(size)
    n = libc.syscall(217, fd, buf, size)  # SYS_getdents64 on x86_64
    if n < 0:
        raise OSError(ctypes.get_errno(), "getdents64")
    out, i = [], 0
    while i < n:
        d_off = int.from_bytes(buf.raw[i + 8:i + 16], "little", signed=True)
        reclen = int.from_bytes(buf.raw[i + 16:i + 18], "little")
        name = buf.raw[i + 19:i + reclen].split(b"\0", 1)[0].decode()
        out.append((d_off, name))
        i += reclen
    return out


@pytest.mark.parametrize("profile", ["linux-6.18", "linux-3.10"])
def test_resume_across_concurrent_mkdir_and_rmdir(mount_with, profile):
    """One open directory read a few entries per getdents64 call while groups come
    and go between calls: nothing present throughout is skipped, nothing is listed
    twice."""
    m = mount_with(f"kernel={profile}")
    for c in CHILDREN:
        os.mkdir(m.p(c))
    fd = os.open(m.p(""), os.O_RDONLY | os.O_DIRECTORY)
    seen, calls = [], 0
    try:
        while True:
            batch = getdents64(fd, 120)  # a few entries per call
            if not batch:
                break
            seen += [name for _, name in batch]
            calls += 1
            if calls == 2:
                os.mkdir(m.p("late_a"))
                os.rmdir(m.p("zeta"))
                os.mkdir(m.p("late_b"))
    finally:
        os.close(fd)
        for c in CHILDREN + ["late_a", "late_b"]:
            if os.path.isdir(m.p(c)):
                os.rmdir(m.p(c))
    assert calls > 3
    assert len(seen) == len(set(seen)), seen
    assert {"a", "child1", "tasks2", "x9", "tasks", "memory.stat",
            "memory.kmem.tcp.failcnt", "cgroup.procs"} <= set(seen)


#: 3.10 creation order, as the profile holds it (transcribed from kernel/cgroup.c
#: files[], mm/memcontrol.c and net/ipv4/tcp_memcontrol.c; no 3.10 kernel to record
#: from): what is tested here is the listing built from it, newest first, with the
#: root-only files, children and offsets where dcache_readdir() puts them
CREATED_3_10 = list(CREATION_ORDER_3_10)
ROOT_ONLY = {"cgroup.sane_behavior", "release_agent"}


def test_3_10_lists_newest_first(mount_with, getdents):
    m = mount_with("kernel=linux-3.10")
    os.mkdir(m.p("G"))
    for c in CHILDREN:
        os.mkdir(m.p("G", c))
    try:
        got = listing(getdents, m.p("G"))
        files = [n for n in reversed(CREATED_3_10) if n not in ROOT_ONLY]
        expected = [".", ".."] + list(reversed(CHILDREN)) + files
        assert [n for _, n in got] == expected
        assert [off for off, _ in got] == list(range(1, len(expected) + 1))
        assert listing(getdents, m.p("G"), 80) == got
        root = [n for _, n in listing(getdents, m.p(""))]
        assert root == [".", "..", "G"] + list(reversed(CREATED_3_10))
    finally:
        for c in CHILDREN:
            os.rmdir(m.p("G", c))
        os.rmdir(m.p("G"))


@pytest.fixture(scope="module")
def mounts_shim():
    d = tempfile.mkdtemp(prefix="cgemu-shim-")
    so = os.path.join(d, "mounts_shim.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-Wall", "-Werror", "-o", so,
                    os.path.join(HELPERS, "mounts_shim.c"), "-ldl"], check=True)
    try:
        yield d, so
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("profile", ["linux-6.18", "linux-5.10", "linux-4.19"])
def test_cgget_reads_a_group(mount_with, mounts_shim, profile):
    """libcgroup 2.0.2 keeps the status of the last directory entry it reads; on a
    real kernel that is cgroup.clone_children and cgget exits 0."""
    cgget = shutil.which("cgget")
    assert cgget, "cgget (cgroup-tools) is installed by scripts/install --test"
    d, so = mounts_shim
    m = mount_with(f"kernel={profile}")
    os.mkdir(m.p("G"))
    try:
        mounts = os.path.join(d, f"mounts-{profile}")
        with open(mounts, "w") as f:
            f.write(f"cgroup {m.path} cgroup rw,relatime,memory 0 0\n")
        env = dict(os.environ, LD_PRELOAD=so, CGEMU_TEST_MOUNTS=mounts)
        r = subprocess.run([cgget, "-g", "memory", "/G"], env=env, capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, (r.returncode, r.stderr)
        assert "memory.limit_in_bytes:" in r.stdout
    finally:
        os.rmdir(m.p("G"))
