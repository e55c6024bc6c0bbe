"""Real processes followed as they happen. Exact OOM accounting,
the kernel's OOM report, short-lived work seen, bounded overshoot, and a fork bomb that
stops at the kmem limit (inside a guarded ``cgemu exec`` tree: fork fails with ENOMEM;
for a task joined through ``tasks``: the excess children are killed).

Every process signalled here is one the test started (or a descendant it forked)."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import compiled_helper, group, needs_fuse, num, read, started, wait_until, write

pytestmark = [pytest.mark.mount, needs_fuse]

M = 1 << 20


@pytest.fixture(scope="module")
def eat_exe():
    with compiled_helper("eat", "-O2") as exe:
        yield exe


def cgemu(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", *args],
                          capture_output=True, text=True, timeout=60, **kw)


def oom_kills(g: str) -> int:
    return int(read(f"{g}/memory.oom_control").split("oom_kill ")[1])


# ---------------------------------------------------------------------- OOM accounting


EVENTS = pytest.mark.parametrize("events", ["connector", "scan"])


@EVENTS
def test_issue_repro_counts_one_kill(mount_with, events):
    """The issue's repro: a 60M task exits just before a 200M one grows past a 150M
    limit. Exits are applied first, so only the live 200M task is killed, once."""
    mnt = mount_with(f"events={events}")
    assert f"following processes with {'the proc connector' if events == 'connector' else 'pidfds'}" in mnt.log()
    g = group(mnt, "r", limit_in_bytes="150M")
    script = textwrap.dedent(f"""\
        echo $$ > {g}/tasks
        python3 -c "import time; time.sleep(1); x = bytearray(200 << 20); time.sleep(2)" & H=$!
        sleep .1
        python3 -c "x = bytearray(60 << 20); import time; time.sleep(.85)"
        wait $H
        echo "H=$?"
        """)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert "H=137" in out.stdout, out
    assert oom_kills(g) == 1
    assert num(f"{g}/memory.failcnt") >= 1
    killed = re.findall(r"Killed process (\d+)", mnt.log())
    assert len(killed) == 1, mnt.log()


def test_kill_leaves_max_usage_at_the_limit_and_the_kernel_report(mnt):
    g = group(mnt, "k", limit_in_bytes="100M")
    r = cgemu("exec", "-m", mnt.path, "-g", "k", "--", sys.executable, "-c",
              "import time; x = bytearray(200 << 20); time.sleep(2)")
    assert r.returncode == -9, r  # cgemu exec runs the command in its own place
    assert num(f"{g}/memory.max_usage_in_bytes") >= 100 * M
    assert num(f"{g}/memory.failcnt") >= 1
    assert oom_kills(g) == 1
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") < 4 * M)
    log = mnt.log()
    m = re.search(r"Memory cgroup out of memory: Killed process (\d+) \((\S+)\) "
                  r"total-vm:(\d+)kB, anon-rss:(\d+)kB, file-rss:(\d+)kB, shmem-rss:(\d+)kB", log)
    assert m, log
    assert m.group(2).startswith("python")
    assert int(m.group(4)) >= 90 * 1024  # the victim's real anon-rss, read before the kill
    u = re.search(r"memory: usage (\d+)kB, limit (\d+)kB, failcnt (\d+)", log)
    assert u, log
    assert int(u.group(1)) == int(u.group(2)) == 100 * 1024  # charged up to the limit
    assert int(u.group(3)) >= 1


# ---------------------------------------------------------------------- short-lived work


@EVENTS
def test_fork_and_exit_child_is_seen(mount_with, events):
    """A child that allocates 40M and exits after 150 ms, well within one slow poll
    (500 ms): the fork event (or the fast scan of a busy parent's children) adopts it
    at once and it is sampled fast."""
    mnt = mount_with(f"events={events}")
    g = group(mnt, "f")
    prog = textwrap.dedent("""\
        import os, sys, time
        sys.stdin.readline()
        pid = os.fork()
        if pid == 0:
            x = bytearray(40 << 20)
            time.sleep(0.15)
            os._exit(0)
        os.waitpid(pid, 0)
        print("done", flush=True)
        sys.stdin.readline()
        """)
    with started([sys.executable, "-c", prog], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        write(f"{g}/tasks", str(p.pid))
        time.sleep(1.3)  # past the first slow poll and cooled down: nothing is hot
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"
        assert num(f"{g}/memory.max_usage_in_bytes") >= 38 * M
        # the child's charges went with it
        assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") < 8 * M)
        p.stdin.close()
        p.wait(timeout=10)


@EVENTS
def test_a_storm_of_short_lived_children_leaves_the_follower_alive(mount_with, events):
    """Hundreds of children forked and gone within a tick each: a child's page-fault
    waiter may start only after the child is gone and its descriptor number was given
    to the next child's counter. The follower must neither die on it (trio refuses a
    second waiter on one descriptor) nor lose track: every child is adopted and its
    charges go with it."""
    mnt = mount_with(f"events={events}")
    g = group(mnt, "s")
    with started(["sh", "-c", "read go; for i in $(seq 300); do /bin/true; done; echo done; "
                  "read end"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 text=True) as p:
        write(f"{g}/tasks", str(p.pid))
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "done"
        # the mount answers, the follower still follows the shell, nothing was logged
        assert read(f"{g}/tasks").split() == [str(p.pid)]
        write(f"{g}/memory.limit_in_bytes", "64M")
        assert num(f"{g}/memory.limit_in_bytes") == 64 * M
        p.stdin.write("end\n")
        p.stdin.close()
        p.wait(timeout=10)
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 0)
    assert "Traceback" not in mnt.log() and " failed" not in mnt.log()


def test_burst_of_100ms_over_the_limit_is_caught(mnt):
    g = group(mnt, "b", limit_in_bytes="100M")
    r = cgemu("exec", "-m", mnt.path, "-g", "b", "--", sys.executable, "-c",
              "import time; x = bytearray(150 << 20); time.sleep(0.1)")
    caught = r.returncode == -9 or num(f"{g}/memory.failcnt") > 0
    assert caught, (r, read(f"{g}/memory.failcnt"))
    assert r.returncode == -9 and oom_kills(g) == 1


# ---------------------------------------------------------------------- overshoot


@pytest.mark.parametrize("idle", [0.05, 1.5], ids=["fresh", "idle-first"])
def test_overshoot_is_bounded_at_64M(mnt, eat_exe, idle):
    """eat touches pages as fast as it can; the group's real usage (the task's peak
    resident set, from wait4) stays under L + max(16 MiB, 10 % of L), whether it
    starts at once or after idling past the hot period (then its page-fault counter
    wakes the daemon)."""
    limit = 64 * M
    group(mnt, "o", limit_in_bytes=str(limit))
    with started([eat_exe, "1024", "-w"], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE) as p:
        write(mnt.p("o", "tasks"), str(p.pid))
        time.sleep(idle)
        p.stdin.write(b"x")
        p.stdin.flush()
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = status
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    peak = ru.ru_maxrss * 1024
    assert peak <= limit + max(16 * M, limit // 10), f"peak {peak / M:.1f} MiB " + mnt.log()[-2500:]
    assert oom_kills(mnt.p("o")) == 1


def test_overshoot_with_oom_kill_disabled_stops_the_task(mnt, eat_exe):
    limit = 64 * M
    g = group(mnt, "s", limit_in_bytes=str(limit), oom_control="1")
    with started([eat_exe, "1024", "-w"], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE) as p:
        write(f"{g}/tasks", str(p.pid))
        time.sleep(0.05)
        p.stdin.write(b"x")
        p.stdin.flush()
        assert wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"))

        def state():
            with open(f"/proc/{p.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        assert wait_until(lambda: state() in "tT")  # ptrace-stop, or SIGSTOP
        with open(f"/proc/{p.pid}/status") as f:
            hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) * 1024
        assert hwm <= limit + 16 * M, f"peak {hwm / M:.1f} MiB"
        assert num(f"{g}/memory.usage_in_bytes") == limit
        write(f"{g}/memory.oom_control", "0")  # the killer may act now: it is the victim
        p.wait(timeout=10)
        assert p.returncode == -9


# ---------------------------------------------------------------------- fork bomb

BOMB = textwrap.dedent("""\
    import errno, os, sys, time
    kmem = sys.argv[1]
    if len(sys.argv) > 2:
        sys.stdin.readline()  # wait until the test has put us into the group
    before = int(open(kmem).read())
    r, w = os.pipe()
    kids, err = [], 0
    live, peak = set(), 0  # children not (yet) killed, and the most seen at once
    for i in range(2000):  # bounded: never more than 2000 forks
        try:
            pid = os.fork()
        except OSError as e:
            err = e.errno
            break
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        kids.append(pid)
        live.add(pid)
        for kid in list(live):
            if os.waitpid(kid, os.WNOHANG) != (0, 0):
                live.discard(kid)
        peak = max(peak, len(live))
        if len(sys.argv) > 2 and len(kids) >= 200:
            break
    time.sleep(1.0)  # the daemon kills what it must within this
    for kid in list(live):
        if os.waitpid(kid, os.WNOHANG) != (0, 0):
            live.discard(kid)
    print(f"before={before} forked={len(kids)} alive={len(live)} errno={err} peak={peak}",
          flush=True)
    os.close(w)
    for pid in live:
        os.waitpid(pid, 0)
    """)


def _kmem_group(m, name: str) -> str:
    g = group(m, name)
    if os.path.exists(f"{g}/memory.kmem.independent_kmem_limit"):  # seed 001's switch
        write(f"{g}/memory.kmem.independent_kmem_limit", "1")
    # before any task joins: 3.8-4.5 activate kmem accounting at this write (EBUSY later)
    write(f"{g}/memory.kmem.limit_in_bytes", "1M")
    return g


def _bomb_setup(mount_with, options: str, tmp_path):
    """A mount with *options*, a group with a 1M kmem limit, the bomb's script."""
    m = mount_with(options)
    script = tmp_path / "bomb.py"
    script.write_text(BOMB)
    return m, _kmem_group(m, "bomb"), script


#: the profiles whose kmem design charges thread stacks (seed 003), and the default
#: profile with the charging switched on by hand
STACK_PROFILES = pytest.mark.parametrize("options", [
    "kernel=kmem-2012", "kernel=linux-3.10", "kernel=linux-4.19", "kernel=linux-5.10",
    "thread_stacks=1"])


@STACK_PROFILES
def test_fork_bomb_in_cgemu_exec_fails_with_enomem_at_the_kmem_limit(mount_with, tmp_path,
                                                                    options):
    m, g, script = _bomb_setup(mount_with, options, tmp_path)
    r = cgemu("exec", "-m", m.path, "-g", "bomb", "--", sys.executable, str(script),
              f"{g}/memory.kmem.usage_in_bytes")
    assert r.returncode == 0, r
    fields = dict(kv.split("=") for kv in r.stdout.split())
    fit = (1 * M - int(fields["before"])) // (16 * 1024)
    assert int(fields["before"]) == 16 * 1024  # the bomb's own stack
    assert int(fields["forked"]) == fit == 63
    assert int(fields["alive"]) == fit
    assert int(fields["peak"]) == fit  # refused before the task existed
    assert int(fields["errno"]) == errno.ENOMEM
    assert num(f"{g}/memory.kmem.failcnt") >= 1
    assert wait_until(lambda: num(f"{g}/memory.kmem.usage_in_bytes") == 0)


@STACK_PROFILES
def test_fork_bomb_joined_through_tasks_loses_its_excess_children(mount_with, tmp_path,
                                                                 options):
    m, g, script = _bomb_setup(mount_with, options, tmp_path)
    with started([sys.executable, str(script), f"{g}/memory.kmem.usage_in_bytes", "wait"],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        write(f"{g}/tasks", str(p.pid))
        p.stdin.write("go\n")
        p.stdin.flush()
        out = p.stdout.readline()
        p.wait(timeout=30)
    fields = dict(kv.split("=") for kv in out.split())
    fit = (1 * M - int(fields["before"])) // (16 * 1024)
    assert int(fields["forked"]) == 200  # forks succeed: the kernel side cannot refuse
    assert int(fields["alive"]) <= fit
    assert int(fields["alive"]) >= fit - 2  # only the excess was killed
    # and killed at once (the daemon refuses within a fraction of a millisecond of
    # the fork event, and holds the bomb while more than a few refused children are
    # still exiting): the host never held many more live tasks than fit. Seen on a
    # loaded 2-CPU machine: 3-17 over in 50 runs in a row, rarely ~55.
    assert int(fields["peak"]) <= fit + 64, (fields, m.log()[-2000:])
    assert num(f"{g}/memory.kmem.failcnt") >= 200 - fit
    assert wait_until(lambda: num(f"{g}/memory.kmem.usage_in_bytes") == 0)


# ---------------------------------------------------------------------- cgemu


def test_cgemu_ps_shows_charge_and_sample_age_and_poll_ms_applies(mnt, tmp_path):
    group(mnt, "p")
    ready = tmp_path / "ready"
    stop = tmp_path / "stop"
    prog = (f"import os, time; x = bytearray(8 << 20); open({str(ready)!r}, 'w').close()\n"
            f"for _ in range(600):\n"
            f"    if os.path.exists({str(stop)!r}): break\n"
            f"    time.sleep(0.05)")
    with started([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "exec", "-m", mnt.path,
                  "-g", "p", "--poll-ms", "40", "--", sys.executable, "-c", prog]) as p:
        assert wait_until(ready.exists)
        time.sleep(1.2)  # cooled down: only its own 40 ms rate keeps sampling it
        ages = []
        for _ in range(9):
            r = cgemu("ps", "-m", mnt.path)
            assert r.returncode == 0, r
            rows = [line.split() for line in r.stdout.splitlines()[1:]]
            row = next(x for x in rows if x[1] == "/p")
            assert row[2].endswith("M") and float(row[2][:-1]) >= 8  # ANON
            assert row[5].endswith("ms")  # SAMPLED
            ages.append(int(row[5][:-2]))
            time.sleep(0.013)
        # sampled every 40 ms, not every 500: nearly every reading is recent
        assert sum(a < 100 for a in ages) >= 7, ages
        stop.touch()
        assert p.wait(timeout=10) == 0


@EVENTS
def test_threads_of_a_child_that_moved_join_the_childs_group(mount_with, events):
    """A thread's fork event names its process's parent (real_parent is shared by a
    thread group): the new threads of a child that moved itself to another group
    are in the child's group, not its parent's."""
    mnt = mount_with(f"events={events}")
    a, b = group(mnt, "a"), group(mnt, "b")
    prog = textwrap.dedent(f"""\
        import os, sys, threading, time
        sys.stdin.readline()
        pid = os.fork()
        if pid == 0:
            with open({b + '/tasks'!r}, "w") as f:
                f.write(str(os.getpid()))
            ts = [threading.Thread(target=time.sleep, args=(3,)) for _ in range(3)]
            for t in ts:
                t.start()
            print(os.getpid(), *[t.native_id for t in ts], flush=True)
            for t in ts:
                t.join()
            os._exit(0)
        os.waitpid(pid, 0)
        """)
    with started([sys.executable, "-c", prog], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        write(f"{a}/tasks", str(p.pid))
        p.stdin.write("go\n")
        p.stdin.flush()
        child, *threads = (int(x) for x in p.stdout.readline().split())

        def placed():
            in_b = {int(x) for x in read(f"{b}/tasks").split()}
            return {child, *threads} <= in_b
        assert wait_until(placed, timeout=2), (read(f"{a}/tasks"), read(f"{b}/tasks"))
        assert not set(threads) & {int(x) for x in read(f"{a}/tasks").split()}
        p.wait(timeout=10)


def test_cgemu_exec_forks_go_through_when_the_daemon_does_not_take_the_guard(mnt):
    """The daemon cannot be asked (here: a socket that is not there), so nobody
    would answer the guard's notifications: the stand-in forked before the guard
    existed lets every fork of the command proceed, and holds none of its pipes."""
    group(mnt, "ng")
    env = dict(os.environ, CGROUPFS_EMU_MOUNT=mnt.path,
               CGROUPFS_EMU_SOCKET=os.path.join(mnt.dir, "no-such.sock"))
    # one child at a time: dash's signal handlers lack SA_RESTART, so a background
    # child's SIGCHLD in the microseconds before the stand-in receives the fork's
    # notification would fail it with EINTR (docs/real-tasks.md)
    r = cgemu("exec", "-g", "ng", "--", "sh", "-c",
              "for i in 1 2 3; do (echo child $i); done; echo done", env=env)
    assert r.returncode == 0, r
    assert sorted(r.stdout.split("\n")) == ["", "child 1", "child 2", "child 3", "done"]
    assert "did not take the fork guard" in r.stderr


@EVENTS
def test_children_born_before_their_parent_joined_stay_where_they_are(mount_with, events):
    """Joining moves one process; the kernel moves none of its existing children.
    The fork scan (and the connector) adopt only children born after the join."""
    mnt = mount_with(f"events={events}")
    g = group(mnt, "j")
    prog = ("import subprocess, sys, time\n"
            "old = subprocess.Popen(['sleep', '30'])\n"
            "print(old.pid, flush=True); sys.stdin.readline()\n"
            "new = subprocess.Popen(['sleep', '30'])\n"
            "print(new.pid, flush=True); sys.stdin.readline()\n"
            "old.kill(); new.kill(); old.wait(); new.wait()\n")
    with started([sys.executable, "-c", prog], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        old = int(p.stdout.readline())
        write(f"{g}/tasks", str(p.pid))
        time.sleep(0.3)  # the parent is hot: its children are looked for meanwhile
        p.stdin.write("\n")
        p.stdin.flush()
        new = int(p.stdout.readline())
        assert wait_until(lambda: str(new) in read(f"{g}/tasks").split(), timeout=2)
        time.sleep(0.3)
        listed = {int(x) for x in read(f"{g}/tasks").split()}
        assert old not in listed and {p.pid, new} <= listed, listed
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(timeout=10)
