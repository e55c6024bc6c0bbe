"""A fork under the seccomp fork guard behaves as the kernel's while signals rain on
the forking process (service/guard_recv.py): it succeeds, or fails with the kernel's
own errno for the limit (ENOMEM at the kmem limit), never because a signal came.

Every process signalled here is one the test started (the forker's own child sends
them, bounded in time and count)."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import pytest

from conftest import group, needs_fuse, num, write

pytestmark = [pytest.mark.mount, needs_fuse]

M = 1 << 20

FORKER = textwrap.dedent("""\
    import errno, os, signal, sys, time
    kmem = sys.argv[1]
    seen = {"SIGCHLD": 0, "SIGUSR1": 0}
    def count(sig, frame):
        seen[signal.Signals(sig).name] += 1
    for sig in (signal.SIGCHLD, signal.SIGUSR1):
        signal.signal(sig, count)
        signal.siginterrupt(sig, False)  # SA_RESTART, as signal(3) and bash install them
    me = os.getpid()
    pacer = os.fork()
    if pacer == 0:  # SIGUSR1 every 0.2 ms, bounded by time and count
        end = time.monotonic() + 60
        for _ in range(300_000):
            if time.monotonic() > end or os.getppid() != me:
                break
            os.kill(me, signal.SIGUSR1)
            time.sleep(0.0002)
        os._exit(0)
    def reap(pid):
        while True:
            try:
                return os.waitpid(pid, 0)
            except InterruptedError:
                continue
    # 1: 2000 forks, each child gone before the next: none may fail
    failed = {}
    for _ in range(2000):
        try:
            pid = os.fork()
        except OSError as e:
            failed[errno.errorcode[e.errno]] = failed.get(errno.errorcode[e.errno], 0) + 1
            continue
        if pid == 0:
            os._exit(0)
        reap(pid)
    # 2: children kept alive until a fork fails: it fails at the limit, with ENOMEM.
    # The daemon uncharges an exited child's stack when it hears of the exit, after
    # waitpid() here: wait until the usage holds still, or a late uncharge leaves room
    # for one fork more than "before" says (bounded: 5 s)
    before, end = int(open(kmem).read()), time.monotonic() + 5
    while time.monotonic() < end:
        time.sleep(0.05)
        now = int(open(kmem).read())
        if now == before:
            break
        before = now
    r, w = os.pipe()
    kids, err = [], None
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError as e:
            err = errno.errorcode[e.errno]
            break
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        kids.append(pid)
    at_failure = int(open(kmem).read())
    os.close(w)
    for pid in kids:
        reap(pid)
    os.kill(pacer, signal.SIGKILL)
    reap(pacer)
    failed = ",".join(f"{k}:{v}" for k, v in failed.items()) or "none"
    print(f"failed={failed} before={before} at_failure={at_failure} live={len(kids)} err={err} "
          f"usr1={seen['SIGUSR1']} chld={seen['SIGCHLD']}", flush=True)
    """)


def test_forks_under_the_guard_never_fail_because_of_a_signal(mount_with, tmp_path):
    """Without a stack reserved once per asking thread, every fork the kernel itself
    restarted for a signal (copy_process(): -ERESTARTNOINTR after the guard said yes)
    held a second reservation, and the group's kmem limit refused sequential forks."""
    m, g, fields, stderr = run_guarded(mount_with, tmp_path, "f", FORKER, 240)
    assert "fork guard" not in stderr, stderr
    assert fields["failed"] == "none", fields
    assert int(fields["usr1"]) >= 500 and int(fields["chld"]) >= 2000, fields  # it rained
    fit = (1 * M - int(fields["before"])) // (16 * 1024)
    assert fields["err"] == errno.errorcode[errno.ENOMEM], fields
    assert int(fields["live"]) == fit, fields
    # and the refusal came exactly at the limit: no room left for one more stack
    assert 1 * M - 16 * 1024 < int(fields["at_failure"]) <= 1 * M, fields
    assert num(f"{g}/memory.kmem.failcnt") >= 1


def run_guarded(mount_with, tmp_path, name: str, program: str, timeout: int):
    """*program* under `cgemu exec` in a new group *name* with a 1M kmem limit, on a
    profile that charges thread stacks; (mount, group path, its key=value output,
    its stderr)."""
    m = mount_with("kernel=linux-5.10")
    g = group(m, name)
    write(f"{g}/memory.kmem.limit_in_bytes", "1M")
    script = tmp_path / f"{name}.py"
    script.write_text(program)
    r = subprocess.run([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "exec", "-m", m.path,
                        "-g", name, "--", sys.executable, str(script),
                        f"{g}/memory.kmem.usage_in_bytes"],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r
    return m, g, dict(kv.split("=", 1) for kv in r.stdout.split()), r.stderr


def test_a_kernel_without_wait_killable_recv_gets_the_guard_and_one_warning():
    """Before 5.19 seccomp(2) refuses the flag with EINVAL; this kernel refuses an
    unknown flag the same way, which stands in for it here (in a child: a filter
    cannot be removed)."""
    prog = textwrap.dedent("""\
        import os
        from cgroupfs_emu.service import fork_guard
        fork_guard.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 30  # unknown: EINVAL
        fd = fork_guard.install()
        print("listener", fork_guard.is_listener(fd), flush=True)
        """)
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r
    assert r.stdout == "listener True\n"
    assert r.stderr.count("no SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV") == 1, r.stderr


QUICK = textwrap.dedent("""\
    import os, sys, time
    kmem = sys.argv[1]
    base = int(open(kmem).read())
    lingered = 0
    for _ in range(150):  # a child that is gone before the daemon can adopt it
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        end = time.monotonic() + 1.0  # a lingering reservation lives 2 s
        while int(open(kmem).read()) != base and time.monotonic() < end:
            time.sleep(0.01)
        lingered += int(open(kmem).read()) != base
    print(f"base={base} lingered={lingered}", flush=True)
    """)


def test_a_child_gone_before_adoption_gives_its_stack_back(mount_with, tmp_path):
    """free_task() frees a dead child's stack whether or not anyone looked at it: a
    guarded fork's reservation whose child exited before the daemon could adopt it
    is spent, not held (it was, for PENDING_TTL, and the thread's next fork took it
    for a restart and charged nothing: one fork past the kmem limit)."""
    _, _, fields, _ = run_guarded(mount_with, tmp_path, "q", QUICK, 120)
    assert int(fields["base"]) > 0, fields  # the forker's own stack is charged
    assert fields["lingered"] == "0", fields
