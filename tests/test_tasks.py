"""Unmodified processes put into groups through tasks and
cgroup.procs, their memory followed from /proc. The workload is tests/helpers/memhog.c,
built here: it uses exactly the memory it is told to and nothing else."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import pytest

from conftest import (P, Helper, asleep, compiled_helper, errno_of, group, needs_fuse, num, read,
                      started, stat_of, wait_until, write)

pytestmark = [pytest.mark.mount, needs_fuse]

#: a followed task's change shows within one poll (500 ms); allow for a slow CI box
SEEN = 3.0
#: /proc state of a task the daemon stopped: a ptrace-stop ("t", service/stopper.py), or
#: SIGSTOP ("T") where ptrace is refused
STOPPED = ("t", "T")


@pytest.fixture(scope="module")
def memhog_exe():
    with compiled_helper("memhog", "-O1") as exe:
        yield exe


class MemHog(Helper):
    def __init__(self, exe: str, *args: str):
        super().__init__(exe, *args)
        self.signal_mode = bool(args)
        assert self.first == "ready"

    def stop(self) -> None:
        if self.signal_mode and self.proc.poll() is None:
            self.proc.terminate()  # it reads no stdin in signal mode; our own child
        super().stop()

    def state(self) -> str:
        with open(f"/proc/{self.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def hogs(memhog_exe, tmp_path):
    started: list[MemHog] = []

    def start(*args: str) -> MemHog:
        started.append(MemHog(memhog_exe, *args))
        return started[-1]

    try:
        yield start
    finally:
        for h in started:
            if h.proc.poll() is None and h.state() in STOPPED:
                h.proc.send_signal(signal.SIGCONT)  # our own child
            h.stop()


def usage_is(g: str, pages: int) -> bool:
    return wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == pages * P, timeout=SEEN)


# ---------------------------------------------------------------------- accounting


def test_only_memory_touched_after_joining_is_charged_exactly(mnt, hogs, tmp_path):
    g = group(mnt, "g")
    hog = hogs()
    assert hog.do("a 40") == "ok"  # before joining: stays with the root
    write(f"{g}/cgroup.procs", str(hog.pid))
    assert hog.do("a 65") == "ok"
    assert usage_is(g, 65)
    s = stat_of(f"{g}/memory.stat")
    assert (s["rss"], s["cache"], s["mapped_file"], s["unevictable"]) == (65 * P, 0, 0, 0)
    assert hog.do("l 10") == "ok"  # mlocked anon
    assert usage_is(g, 75)
    assert stat_of(f"{g}/memory.stat")["unevictable"] == 10 * P
    assert hog.do("m 3") == "ok" and hog.do("s 4") == "ok"  # MAP_SHARED anon, SysV shm
    assert usage_is(g, 82)
    s = stat_of(f"{g}/memory.stat")
    assert (s["rss"], s["shmem"], s["cache"], s["mapped_file"]) == (75 * P, 7 * P, 7 * P, 7 * P)
    assert hog.do(f"f 5 {tmp_path / 'data'}") == "ok"  # a mapped file
    assert usage_is(g, 87)
    s = stat_of(f"{g}/memory.stat")
    assert (s["cache"], s["mapped_file"]) == (12 * P, 12 * P)
    numa = read(f"{g}/memory.numa_stat").splitlines()
    assert numa[3] == "unevictable=10 N0=10"
    for _ in range(5):  # free everything touched after joining, newest first
        hog.do("x")
    assert usage_is(g, 0)
    s = stat_of(f"{g}/memory.stat")
    assert (s["rss"], s["cache"], s["unevictable"]) == (0, 0, 0)
    assert hog.do("x") == "ok"  # frees the pre-join region: nothing to uncharge
    assert usage_is(g, 0) and num(f"{g}/memory.max_usage_in_bytes") == 87 * P


@pytest.mark.parametrize("kind,keys", [
    ("a", ("rss",)), ("l", ("rss", "unevictable")),
    ("s", ("cache", "shmem", "mapped_file")), ("m", ("cache", "shmem", "mapped_file")),
])
def test_a_signal_driven_helper_is_seen_page_exact(mnt, hogs, kind, keys):
    """A helper that allocates 65 pages on SIGUSR1 and frees them on the next, watched
    the way a shell script would: polling usage_in_bytes and memory.stat."""
    g = group(mnt, "g")
    hog = hogs(kind, "65")
    write(f"{g}/tasks", str(hog.pid))
    for _ in range(2):
        hog.proc.send_signal(signal.SIGUSR1)  # our own child
        assert hog.line() == "ok"
        assert usage_is(g, 65)
        s = stat_of(f"{g}/memory.stat")
        assert all(s[k] == 65 * P for k in keys), s
        hog.proc.send_signal(signal.SIGUSR1)
        assert hog.line() == "ok"
        assert usage_is(g, 0)
        assert all(v == 0 for k, v in stat_of(f"{g}/memory.stat").items()
                   if k in ("rss", "cache", "shmem", "mapped_file", "unevictable"))


def test_moving_keeps_earlier_charges_where_they_were(mnt, hogs):
    a, b = group(mnt, "a"), group(mnt, "b")
    hog = hogs()
    write(f"{a}/tasks", str(hog.pid))
    hog.do("a 20")
    assert usage_is(a, 20)
    write(f"{b}/tasks", str(hog.pid))
    hog.do("a 10")
    assert usage_is(b, 10) and num(f"{a}/memory.usage_in_bytes") == 20 * P
    hog.do("x")  # frees from the current group first
    assert usage_is(b, 0) and num(f"{a}/memory.usage_in_bytes") == 20 * P
    hog.do("x")
    assert usage_is(a, 0)


def test_exit_uncharges_and_rmdir_succeeds_right_after(mnt, hogs):
    g = group(mnt, "g")
    hog = hogs()
    write(f"{g}/tasks", str(hog.pid))
    hog.do("a 30")
    assert usage_is(g, 30)
    hog.send("q")
    hog.proc.wait(timeout=5)
    os.rmdir(g)  # no wait: an exited pid never keeps a group busy


def test_lowering_a_limit_under_real_usage_is_ebusy_at_once(mnt, hogs):
    g = group(mnt, "g")
    hog = hogs()
    write(f"{g}/tasks", str(hog.pid))
    hog.do("a 40")
    assert usage_is(g, 40)
    assert errno_of(write, f"{g}/memory.limit_in_bytes", str(20 * P)) == errno.EBUSY
    assert num(f"{g}/memory.limit_in_bytes") == 9223372036854771712
    assert hog.proc.poll() is None


# ---------------------------------------------------------------------- OOM


def test_over_the_limit_the_task_is_killed_within_5s(mnt, hogs):
    g = group(mnt, "g", limit_in_bytes=str(100 * P))
    hog = hogs()
    write(f"{g}/tasks", str(hog.pid))
    hog.do("a 50")
    assert usage_is(g, 50)
    hog.send("a 80")
    assert hog.proc.wait(timeout=5) == -signal.SIGKILL
    assert num(f"{g}/memory.failcnt") >= 1
    assert read(f"{g}/memory.oom_control").endswith("oom_kill 1\n")
    assert usage_is(g, 0)


def test_an_ancestor_limit_kills_the_biggest_task_below_it(mnt, hogs):
    p = group(mnt, "p")
    c1, c2 = group(mnt, "p/c1"), group(mnt, "p/c2")  # 16 pages of kernel data in p
    write(f"{p}/memory.limit_in_bytes", str(116 * P))
    big, small = hogs(), hogs()
    write(f"{c1}/tasks", str(big.pid))
    write(f"{c2}/tasks", str(small.pid))
    big.do("a 60")
    assert usage_is(c1, 60)
    small.do("a 20")
    assert usage_is(c2, 20)
    small.do("a 30")  # p would need 126 pages
    assert big.proc.wait(timeout=5) == -signal.SIGKILL
    assert small.proc.poll() is None
    assert num(f"{p}/memory.failcnt") >= 1 and num(f"{c2}/memory.failcnt") == 0
    assert read(f"{c1}/memory.oom_control").endswith("oom_kill 1\n")
    assert usage_is(c2, 50)


def test_oom_score_adj_makes_a_smaller_task_the_victim(mnt, hogs):
    g = group(mnt, "g", limit_in_bytes=str(100 * P))
    big, small = hogs(), hogs()
    with open(f"/proc/{small.pid}/oom_score_adj", "w") as f:  # our own child; raising
        f.write("1000")                                       # needs no privilege
    for hog in (big, small):
        write(f"{g}/tasks", str(hog.pid))
    big.do("a 60")
    small.do("a 20")
    assert usage_is(g, 80)
    big.do("a 30")  # 110 pages: small scores 20 + 1000/1000 of the limit, big 60
    assert small.proc.wait(timeout=5) == -signal.SIGKILL
    assert big.proc.poll() is None
    assert usage_is(g, 90)


def test_oom_kill_disable_stops_and_resumes_the_task(mnt, hogs):
    g = group(mnt, "g", limit_in_bytes=str(50 * P), oom_control="1")
    hog = hogs()
    write(f"{g}/tasks", str(hog.pid))
    hog.do("a 30")
    assert usage_is(g, 30)
    # The kernel's task would sleep in its page fault until the group recovers, so
    # it may be stopped before it could answer: the answer is read once it goes on.
    hog.send("a 40")
    # (a stop-first trip may stop it for a moment before: settled, it goes on)
    assert wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"),
                      timeout=SEEN)
    assert wait_until(lambda: hog.state() in STOPPED, timeout=SEEN)
    assert num(f"{g}/memory.usage_in_bytes") <= 50 * P
    write(f"{g}/memory.limit_in_bytes", str(100 * P))
    assert wait_until(lambda: hog.state() not in STOPPED, timeout=SEEN)
    assert hog.line() == "ok"
    assert usage_is(g, 70)
    assert "under_oom 0" in read(f"{g}/memory.oom_control")
    # stopped again, then woken by memory freed elsewhere in the group
    hog.send("a 40")
    assert wait_until(lambda: hog.state() in STOPPED, timeout=SEEN)
    write(f"{g}/memory.oom_control", "0")  # now the killer may act: it is the victim
    assert hog.proc.wait(timeout=5) == -signal.SIGKILL


def test_oom_kill_none_never_signals(mount_with, hogs):
    m = mount_with("oom_kill=none")
    g = group(m, "g", limit_in_bytes=str(20 * P))
    hog = hogs()
    write(f"{g}/tasks", str(hog.pid))
    hog.do("a 40")
    assert wait_until(lambda: num(f"{g}/memory.failcnt") >= 1, timeout=SEEN)
    assert hog.proc.poll() is None and hog.state() not in STOPPED
    assert read(f"{g}/memory.oom_control").endswith("oom_kill 0\n")


def test_writing_every_host_pid_kills_nobody(mnt, hogs):
    """Only growth after joining counts, so a big group of idle processes is fine."""
    g = group(mnt, "g", limit_in_bytes=str(64 * P))
    hog = hogs()
    hog.do("a 100")  # already in use before joining
    with started(["sleep", "60"]) as sleeper:
        # join only once sleep is asleep: what a process touches while starting up
        # after joining (an exec, the loader's work) is charged to the group
        assert wait_until(lambda: asleep(sleeper, "sleep"))
        time.sleep(0.2)
        for pid in (hog.pid, sleeper.pid):
            write(f"{g}/cgroup.procs", str(pid))
        hog.do("a 10")
        assert usage_is(g, 10)
        assert hog.proc.poll() is None and sleeper.poll() is None
        assert read(f"{g}/memory.oom_control").endswith("oom_kill 0\n")


# ---------------------------------------------------------------------- move_charge


@pytest.mark.parametrize("mask,moved", [(0, 0), (1, 20), (2, 5), (3, 25)])
def test_move_charge_at_immigrate_masks(mnt, hogs, mask, moved):
    src, dst = group(mnt, "src"), group(mnt, "dst")
    write(f"{dst}/memory.move_charge_at_immigrate", str(mask))
    hog = hogs()
    write(f"{src}/cgroup.procs", str(hog.pid))
    hog.do("a 20")
    hog.do("m 5")
    assert usage_is(src, 25)
    write(f"{dst}/cgroup.procs", str(hog.pid))
    assert num(f"{dst}/memory.usage_in_bytes") == moved * P
    assert num(f"{src}/memory.usage_in_bytes") == (25 - moved) * P
    if mask & 1:
        assert stat_of(f"{dst}/memory.stat")["rss"] == 20 * P


def test_move_charge_fails_with_enomem_and_the_task_stays(mnt, hogs):
    src, dst = group(mnt, "src"), group(mnt, "dst", limit_in_bytes=str(10 * P))
    write(f"{dst}/memory.move_charge_at_immigrate", "1")
    hog = hogs()
    write(f"{src}/cgroup.procs", str(hog.pid))
    hog.do("a 20")
    assert usage_is(src, 20)
    assert errno_of(write, f"{dst}/cgroup.procs", str(hog.pid)) == errno.ENOMEM
    assert read(f"{src}/cgroup.procs").split() == [str(hog.pid)]
    assert num(f"{src}/memory.usage_in_bytes") == 20 * P


# ---------------------------------------------------------------------- tasks


def test_fork_inheritance(mnt, hogs):
    g = group(mnt, "g")
    hog = hogs()
    write(f"{g}/cgroup.procs", str(hog.pid))
    hog.do("a 20")
    assert usage_is(g, 20)
    reply = hog.do("c 10")  # the child touches 10 new pages right after fork
    child = int(reply.split()[1])
    assert wait_until(lambda: str(child) in read(f"{g}/tasks").split(), timeout=SEEN)
    assert str(child) in read(f"{g}/cgroup.procs").split()
    assert str(child) not in read(mnt.p("tasks")).split()
    # the pages it shares with its parent stay the parent's; its own are charged
    assert usage_is(g, 30)


def test_nul_padded_pid_writes_at_growing_offsets_on_one_fd(mnt, hogs):
    a, b = group(mnt, "a"), group(mnt, "b")
    h1, h2 = hogs(), hogs()
    fd = os.open(f"{a}/tasks", os.O_WRONLY)
    try:
        for hog in (h1, h2):
            os.write(fd, f"{hog.pid}".encode() + b"\0junk")
    finally:
        os.close(fd)
    assert read(f"{a}/tasks").split() == sorted([str(h1.pid), str(h2.pid)], key=int)
    write(f"{b}/tasks", f"{h1.pid}\n".encode())
    assert errno_of(write, f"{b}/tasks", "999999999") == errno.ESRCH
    assert errno_of(write, f"{b}/tasks", "12x") == errno.EINVAL
    assert read(f"{b}/tasks").split() == [str(h1.pid)]


# ---------------------------------------------------------------------- cgemu


def test_cgemu_exec_charges_from_the_first_page_and_passes_the_status(mnt, memhog_exe):
    g = group(mnt, "g")
    with started(["cgemu", "exec", "-m", mnt.path, "-g", "g", "--", memhog_exe],
                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline().strip() == "ready"
        assert wait_until(lambda: len(read(f"{g}/cgroup.procs").split()) == 1)
        hog_pid = int(read(f"{g}/cgroup.procs"))
        assert hog_pid == p.pid  # exec in place: the command has cgemu exec's pid
        # the new image's own pages (stack, libc data) were touched after joining
        assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") > 0, timeout=SEEN)
        time.sleep(1.2)  # busy tasks are sampled every 10 ms (docs/real-processes.md): let it settle
        before = num(f"{g}/memory.usage_in_bytes")
        p.stdin.write("a 65\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "ok"
        assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == before + 65 * P,
                          timeout=SEEN)
        listing = subprocess.run(["cgemu", "ps", "-m", mnt.path], capture_output=True,
                                 text=True).stdout
        assert f"{hog_pid}  /g" in listing and "memhog" in listing
        p.stdin.write("q\n")
        p.stdin.flush()
        assert p.wait(timeout=10) == 0
    status = subprocess.run(["cgemu", "exec", "-m", mnt.path, "-g", "g", "--",
                             "sh", "-c", "exit 7"]).returncode
    assert status == 7
    assert subprocess.run(["cgemu", "exec", "-m", mnt.path, "-g", "nope", "--",
                           "true"], capture_output=True).returncode == 1
