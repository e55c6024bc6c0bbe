"""What the view's renderer (preload/cgview.c, cgemu_render()) reads from the emulator
to print /proc/cgroups and /proc/PID/cgroup: every read is a FUSE round trip made while
the program that opened the file waits, so a render must not walk the whole tree.

The FUSE requests are counted in libfuse's own debug log (-d), as tests/test_requests.py
does: a render of /proc/cgroups opens no file at all (it only counts groups) and lists
only the directories that have subgroups; the numbers stay those of the whole tree."""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import time

import pytest

from cgroupfs_emu.preload import library_path
from conftest import needs_fuse, wait_until

pytestmark = [pytest.mark.mount, needs_fuse]

OPCODE = re.compile(r"unique: \d+, opcode: (\w+)")

#: nested and flat groups: a chain four deep, siblings under it, leaves at the root
TREE = ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/x", "a/y", "e", *(f"leaf{k}" for k in range(12))]


class Renderer:
    """The library's renderer in this process, pointed at a mount whose daemon logs
    every FUSE request."""

    def __init__(self, m):
        self.m = m
        self.lib = ctypes.CDLL(library_path())  # RTLD_LOCAL: nothing here is interposed
        self.lib.cgemu_set_view(os.fsencode(m.path))

    def _quiet(self) -> int:
        size = -1
        while size != os.path.getsize(self.m.stderr_path):
            size = os.path.getsize(self.m.stderr_path)
            time.sleep(0.1)
        return size

    def render(self, path: str, pid: int) -> tuple[str, list[str]]:
        """The text of *path* as *pid* opens it, and the opcodes the kernel sent."""
        start = self._quiet()
        fd = self.lib.cgemu_render(os.fsencode(path), os.O_RDONLY | os.O_CLOEXEC, pid, pid)
        assert fd >= 0, path
        try:
            text = os.read(fd, 1 << 20).decode()
        finally:
            os.close(fd)

        def log() -> str:
            with open(self.m.stderr_path, "rb") as f:
                f.seek(start)
                return f.read().decode(errors="replace")

        # RELEASEDIR follows closedir() in the background: wait for every one
        assert wait_until(lambda: log().count("opcode: RELEASEDIR") >=
                          log().count("opcode: OPENDIR"), timeout=5), log()
        time.sleep(0.1)
        return text, OPCODE.findall(log())


@pytest.fixture
def renderer(cgroupfs_factory):
    m = cgroupfs_factory("kernel=linux-6", flags=("-d",))
    for name in TREE:
        os.mkdir(m.p(name))
    yield Renderer(m)
    for name in sorted(TREE, key=lambda n: n.count("/"), reverse=True):
        os.rmdir(m.p(name))


def with_subgroups(root: str) -> int:
    """Directories of the tree (the root included) that hold a group."""
    return sum(1 for _, dirs, _ in os.walk(root) if dirs)


def test_proc_cgroups_counts_every_group_without_opening_a_file(renderer):
    text, ops = renderer.render("/proc/cgroups", os.getpid())
    memory = [line.split("\t") for line in text.splitlines() if line.startswith("memory\t")]
    groups = sum(1 for _ in os.walk(renderer.m.path))
    assert groups == len(TREE) + 1
    assert len(memory) == 1 and memory[0][2] == str(groups), text
    assert ops.count("OPEN") == 0, ops  # no group's tasks file is read to count it
    assert ops.count("OPENDIR") == with_subgroups(renderer.m.path), ops


def test_a_task_s_group_is_found_in_a_nested_group_and_leaves_are_not_listed(renderer):
    child = subprocess.Popen(["sleep", "60"])
    try:
        with open(renderer.m.p("a/b/c/d", "tasks"), "w") as f:
            f.write(str(child.pid))
        text, ops = renderer.render(f"/proc/{child.pid}/cgroup", child.pid)
        memory = [line for line in text.splitlines() if ":memory:" in line]
        assert [line.split(":", 2)[2] for line in memory] == ["/a/b/c/d"], text
        assert ops.count("OPENDIR") <= with_subgroups(renderer.m.path), ops
        # a task in the root is unlisted everywhere: every group's tasks is read, and
        # still no leaf is listed as a directory
        with open(renderer.m.p("tasks"), "w") as f:
            f.write(str(child.pid))
        text, ops = renderer.render(f"/proc/{child.pid}/cgroup", child.pid)
        memory = [line for line in text.splitlines() if ":memory:" in line]
        assert [line.split(":", 2)[2] for line in memory] == ["/"], text
        assert ops.count("OPEN") == len(TREE), ops
        assert ops.count("OPENDIR") == with_subgroups(renderer.m.path), ops
    finally:
        child.kill()  # our own child
        child.wait()
