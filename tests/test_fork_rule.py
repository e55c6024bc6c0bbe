"""A task belongs to the group it was forked in; re-parenting moves nothing.

The orphan that a subreaper (or pid 1) collects keeps the group it was forked in
(cgroup_fork(); forget_original_parent() moves no task between groups). A daemon
that adopted such orphans into its collector's group put every daemonized process of
a host into a group once pid 1 was written into it, and that group's OOM killer then
killed them. Here a subreaper of the test's own (P) stands in for pid 1: pid 1 is never
written anywhere.

Both event modes: the proc connector (root) and the /proc look of a daemon without it.
Every process signalled here is one the test started or a descendant of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import group, needs_fuse, num, ppid_of, read, started, wait_until, write

pytestmark = [pytest.mark.mount, needs_fuse]

M = 1 << 20
EVENTS = pytest.mark.parametrize("events", ["connector", "scan"])

# P: a subreaper that forks A before it joins; A forks B after the join and exits, so
# B (40M of its own) is re-parented to P; then P forks C itself, in the group.
SUBREAPER = textwrap.dedent("""\
    import ctypes, os, sys, time
    PR_SET_CHILD_SUBREAPER = 36
    assert ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    r, w = os.pipe()
    a = os.fork()
    if a == 0:
        os.close(w)
        os.read(r, 1)
        b = os.fork()
        if b == 0:
            x = b"x" * (40 << 20)
            time.sleep(60)
            os._exit(0)
        print(b, flush=True)
        os._exit(0)
    os.close(r)
    print(a, flush=True)
    sys.stdin.readline()           # P is in the group now
    os.write(w, b"g")
    b = int(sys.stdin.readline())  # the test read B's pid
    os.waitpid(a, 0)               # A is gone: B is P's now
    print("orphaned", flush=True)
    sys.stdin.readline()
    c = os.fork()
    if c == 0:
        time.sleep(60)
        os._exit(0)
    print(c, flush=True)
    sys.stdin.readline()
    for pid in (b, c):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    """)


def _tasks(g: str) -> set[int]:
    return {int(x) for x in read(f"{g}/tasks").split()}


@EVENTS
def test_an_orphan_collected_by_a_followed_subreaper_keeps_its_group(mount_with, events):
    mnt = mount_with(f"events={events}")
    g = group(mnt, "g")
    left: list[int] = []
    with started([sys.executable, "-c", SUBREAPER], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        try:
            a = int(p.stdout.readline())
            write(f"{g}/tasks", str(p.pid))
            assert _tasks(g) == {p.pid}
            time.sleep(0.3)  # the daemon looks at P meanwhile (scans, polls)
            p.stdin.write("\n")
            p.stdin.flush()
            b = int(p.stdout.readline())
            left.append(b)
            p.stdin.write(f"{b}\n")
            p.stdin.flush()
            assert p.stdout.readline().strip() == "orphaned"
            assert ppid_of(b) == p.pid  # re-parented to the subreaper, as pid 1 would
            deadline = time.monotonic() + 1.5  # three slow polls, many scans
            while time.monotonic() < deadline:
                listed = _tasks(g)
                assert b not in listed and a not in listed, listed
                time.sleep(0.05)
            assert b in {int(x) for x in read(mnt.p("tasks")).split()}
            assert num(f"{g}/memory.usage_in_bytes") < 16 * M  # B's 40M are not g's
            # P's own child is the group's, in both modes
            p.stdin.write("\n")
            p.stdin.flush()
            c = int(p.stdout.readline())
            left.append(c)
            assert wait_until(lambda: c in _tasks(g), timeout=3), _tasks(g)
            assert b not in _tasks(g)
            p.stdin.write("\n")
            p.stdin.close()
            assert p.wait(timeout=10) == 0
        finally:
            for pid in left:  # never a stray process, even if P died first
                if ppid_of(pid) in (p.pid, 1):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
