"""``tasks`` moves one thread, ``cgroup.procs`` the whole thread group, as cgroup v1's
__cgroup1_procs_write(..., threadgroup) does; both files list what the kernel lists.
The expected listings are the ones a real Linux 6.18 printed for the same writes
(tests/data/tasks_threads.linux-6.18.txt, recorded by record_tasks_threads.sh in a
private named hierarchy).

Every process written into a group here is one the test started."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import group, needs_fuse, read, started, wait_until, write

pytestmark = [pytest.mark.mount, needs_fuse]

DATA = os.path.join(os.path.dirname(__file__), "data", "tasks_threads.linux-6.18.txt")

#: a leader L and threads T1..T3; "spawn" on stdin makes L create a thread L+
PROBE = textwrap.dedent("""\
    import os, sys, threading
    ts = [threading.Thread(target=threading.Event().wait, daemon=True) for _ in range(3)]
    for t in ts:
        t.start()
    print("L", os.getpid(), *(f"T{i} {t.native_id}" for i, t in enumerate(ts, 1)), flush=True)
    for line in sys.stdin:
        t = threading.Thread(target=threading.Event().wait, daemon=True)
        t.start()
        print("L+", t.native_id, flush=True)
    """)


def recorded() -> dict[str, dict[str, list[str]]]:
    steps, step = {}, None
    with open(DATA) as f:
        for line in f:
            if line.startswith("## "):
                step = steps.setdefault(line[3:].strip(), {})
            elif step is not None and ":" in line:
                name, _, labels = line.partition(":")
                step[name] = labels.split()
    return steps


def listing(mnt, child: str, labels: dict[int, str]) -> dict[str, list[str]]:
    out = {}
    for name, d in (("root", mnt.path), ("child", child)):
        for f in ("tasks", "cgroup.procs"):
            ids = [int(x) for x in read(f"{d}/{f}").split()]
            out[f"{name}/{f}"] = [labels[i] for i in ids if i in labels]
    return out


@pytest.mark.parametrize("events", ["connector", "scan"])
def test_tasks_moves_one_thread_and_procs_the_thread_group_as_linux_6_18(mount_with, events):
    mnt = mount_with(f"events={events}")
    child = group(mnt, "child")
    kernel = recorded()
    with started([sys.executable, "-c", PROBE], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        words = p.stdout.readline().split()
        ids = {k: int(v) for k, v in zip(words[::2], words[1::2])}
        labels = {v: k for k, v in ids.items()}

        def step(name: str) -> None:
            want = {f: [x for x in ls if x in ids] for f, ls in kernel[name].items()}
            time.sleep(0.3)  # a poll or two: the follower must not move more meanwhile
            assert listing(mnt, child, labels) == want, name

        step("start: all in root")
        write(f"{child}/tasks", str(ids["T1"]))
        step("echo T1 > child/tasks")
        write(f"{child}/tasks", str(ids["L"]))
        step("echo L > child/tasks")
        for t in ("L", "T1"):
            write(f"{mnt.path}/tasks", str(ids[t]))
        step("L, T1 and T1+ written back to root/tasks")
        write(f"{child}/cgroup.procs", str(ids["T2"]))
        step("echo T2 > child/cgroup.procs (a thread id, not the leader)")
        write(f"{mnt.path}/cgroup.procs", str(ids["L"]))
        step("echo L > root/cgroup.procs")


@pytest.mark.parametrize("events", ["connector", "scan"])
def test_a_new_thread_joins_the_group_of_the_leader_that_created_it(mount_with, events):
    """The kernel puts a new thread in its creator's group (cgroup_post_fork()); the
    creator here is the leader, alone in the group: the new thread joins it, and the
    threads that stayed in the root stay there."""
    mnt = mount_with(f"events={events}")
    child = group(mnt, "child")
    with started([sys.executable, "-c", PROBE], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        words = p.stdout.readline().split()
        ids = {k: int(v) for k, v in zip(words[::2], words[1::2])}
        write(f"{child}/tasks", str(ids["L"]))
        p.stdin.write("spawn\n")
        p.stdin.flush()
        new = int(p.stdout.readline().split()[1])
        in_child = lambda: {int(x) for x in read(f"{child}/tasks").split()}
        assert wait_until(lambda: in_child() == {ids["L"], new}, timeout=3), in_child()
        time.sleep(0.6)  # past a slow poll: nothing else moved in
        assert in_child() == {ids["L"], new}
        root = {int(x) for x in read(f"{mnt.path}/tasks").split()}
        assert {ids["T1"], ids["T2"], ids["T3"]} <= root
        assert read(f"{child}/cgroup.procs").split() == [str(ids["L"])]
