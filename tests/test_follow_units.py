"""The process follower's mechanisms one by one, without a mount: the connector's parser and the
live connector, pidfd exit watching, the seccomp fork guard, the fast schedule, the
stop-first thread, charging up to the limit and the OOM report. Every process
signalled here is one the test started."""

from __future__ import annotations

import errno
import os
import select
import signal
import struct
import subprocess
import sys
import time

import pytest

from cgroupfs_emu.cli.options import UsageError, parse_args
from cgroupfs_emu.core import SEEDS, RecordingEffects, memory_hierarchy
from cgroupfs_emu.service import fork_guard, proc_events
from cgroupfs_emu.service.signals import Signaller
from cgroupfs_emu.host.fds import take_fd
from cgroupfs_emu.service.oom_report import report, task_numbers
from cgroupfs_emu.service.sampler import HOT_LINGER, HotWatch, Schedule

from conftest import started, wait_until

ROOT = os.geteuid() == 0


def _datagram(what: int, *fields: int, ts: int = 0) -> bytes:
    body = struct.pack("=IIQ", what, 0, ts) + struct.pack(f"={len(fields)}I", *fields)
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_parse_fork_exec_exit():
    FORK, EXEC, EXIT = (proc_events.PROC_EVENT_FORK, proc_events.PROC_EVENT_EXEC,
                        proc_events.PROC_EVENT_EXIT)
    out = []
    for d in (_datagram(FORK, 10, 10, 11, 11, ts=5),
              _datagram(FORK, 10, 10, 12, 10, ts=6),  # a thread: tgid is its process
              _datagram(EXEC, 7, 7, 0, 0, ts=7),
              _datagram(EXIT, 8, 7, 0, 17, 1, 1, ts=8),
              _datagram(0x40000000, 1, 2, 3, 4),  # an event we ignore
              b"short"):
        proc_events.parse_raw(d, out)
    # (what, pid, tgid, parent tgid, the kernel's timestamp)
    assert out == [(FORK, 11, 11, 10, 5), (FORK, 12, 10, 10, 6), (EXEC, 7, 7, 0, 7),
                   (EXIT, 8, 7, 0, 8)]


@pytest.mark.skipif(not ROOT, reason="the proc connector needs root (CI runs as root)")
def test_connector_reports_fork_and_exit_of_a_child():
    conn = proc_events.ProcConnector.open()
    assert conn is not None
    try:
        with started(["sh", "-c", "sleep 0.05 & wait"]) as p:
            p.wait(timeout=10)
        seen = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not {"fork", "exit"} <= seen:
            select.select([conn], [], [], 0.2)
            events, _ = conn.read_raw()  # the daemon's own reader
            for what, _, tgid, ptgid, ts in events:
                if what == proc_events.PROC_EVENT_FORK and ptgid == p.pid:
                    seen.add("fork")
                    assert abs(ts - time.monotonic_ns()) < 10 * 10**9  # one clock
                if what == proc_events.PROC_EVENT_EXIT and tgid == p.pid:
                    seen.add("exit")
        assert seen == {"fork", "exit"}
    finally:
        conn.close()


def test_exit_watch_reports_an_exited_process():
    watch = proc_events.ExitWatch.open()
    try:
        with started(["sleep", "0.1"]) as p:
            fd = os.pidfd_open(p.pid)
            watch.add(p.pid, fd)
            assert watch.exited() == []
            assert wait_until(lambda: watch.exited() == [p.pid], timeout=5)
            assert proc_events.is_exited(fd)
            watch.remove(fd)
            os.close(fd)
    finally:
        watch.close()


def test_children_files_or_none():
    kids = proc_events.children("/proc", os.getpid())
    assert kids is None or isinstance(kids, list)


# ---------------------------------------------------------------------- fork guard


@pytest.mark.parametrize("machine", sorted(fork_guard.ARCHES))
def test_filter_jumps_land_on_the_returns(machine):
    prog = fork_guard.program(machine)
    allow, notify = len(prog) - 2, len(prog) - 1
    assert prog[allow][3] == fork_guard.SECCOMP_RET_ALLOW
    assert prog[notify][3] == fork_guard.SECCOMP_RET_USER_NOTIF
    assert 2 + prog[1][2] == allow  # another ABI: allowed
    nrs = set(fork_guard.ARCHES[machine][2].values())
    for i, (code, jt, jf, k) in enumerate(prog[3:allow], start=3):
        assert code == fork_guard.BPF_JEQ_K and k in nrs and i + 1 + jt == notify


CHILD = """
import os, sys
from cgroupfs_emu.service import fork_guard
fd = fork_guard.install()
print(fd, flush=True)
sys.stdin.readline()
for _ in range(2):
    try:
        pid = os.fork()
    except OSError as e:
        print("errno", e.errno, flush=True)
        continue
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    print("forked", flush=True)
"""


@pytest.mark.skipif(not fork_guard.supported(), reason="no fork guard for this architecture")
def test_guard_fails_a_fork_with_the_answer_given_then_lets_one_through():
    with started([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        fd = take_fd(p.pid, int(p.stdout.readline()))
        try:
            assert fork_guard.is_listener(fd)
            p.stdin.write("go\n")
            p.stdin.flush()
            answers = [errno.ENOMEM, 0]
            while answers:
                assert select.select([fd], [], [], 10)[0]
                got = fork_guard.receive(fd)
                if got is None:
                    continue
                nid, tid, nr = got
                assert tid == p.pid
                fork_guard.respond(fd, nid, answers.pop(0))
            assert p.stdout.readline().split() == ["errno", str(errno.ENOMEM)]
            assert p.stdout.readline().strip() == "forked"
            assert p.wait(timeout=10) == 0
        finally:
            os.close(fd)


# ---------------------------------------------------------------------- sampling


def test_schedule_heats_cools_and_stretches_to_its_budget():
    s = Schedule(fast_ms=10, budget=100)
    s.heat(1, 0.0)
    assert s.due(0.0) == [1] and s.due(0.005) == [] and s.due(0.011) == [1]
    assert s.is_hot(1, 0.5)
    assert s.due(HOT_LINGER + 0.1) == [] and 1 not in s.entries  # cooled down
    assert s.take_cooled() == [1] and s.take_cooled() == []
    s.own_rate(2, 0.05, 0.0)
    assert s.due(0.0) == [2] and s.due(0.03) == [] and s.due(0.06) == [2]
    assert s.due(100.0) == [2]  # its own rate never cools down
    for t in range(3, 13):
        s.heat(t, 100.0)
    assert s.period() == pytest.approx(11 / 100)  # 11 scheduled, 100 samples/s


def test_hot_watch_stops_a_task_at_its_trip_point():
    trips = []
    signals = Signaller()
    watch = HotWatch(trips.append, signals.stop_from_thread, period=0.001)
    watch.start()
    try:
        with started(["sleep", "30"]) as p:
            fd = os.pidfd_open(p.pid)
            try:
                watch.arm(p.pid, fd, 1 << 40)  # far away: nothing happens
                time.sleep(0.05)
                assert trips == []
                watch.arm(p.pid, fd, 0)  # any resident set reaches it
                assert wait_until(lambda: trips == [p.pid], timeout=5)

                def state():
                    with open(f"/proc/{p.pid}/stat") as f:
                        return f.read().rsplit(")", 1)[1].split()[0]
                assert wait_until(lambda: state() == "t", timeout=5)  # a ptrace-stop
                assert signals.stopper.cont(p.pid)
                assert wait_until(lambda: state() == "S", timeout=5)
                watch.disarm(p.pid)
                assert not watch.is_armed(p.pid)
            finally:
                os.close(fd)
    finally:
        watch.close()
        signals.close()


def test_fault_watch_fires_when_an_idle_task_faults_pages_in():
    from cgroupfs_emu.service.fault_watch import FaultWatch
    watch = FaultWatch()
    watch.start()
    if not watch.available:
        watch.close()
        pytest.skip("perf events unavailable here")
    prog = ("import sys; print('ready', flush=True); sys.stdin.readline(); "
            "x = bytearray(8 << 20); sys.stdin.readline()")
    try:
        with started([sys.executable, "-c", prog], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, text=True) as p:
            assert p.stdout.readline().strip() == "ready"
            time.sleep(0.05)  # into its read(2)
            assert watch.add(p.pid) is not None
            watch.enable(p.pid)
            time.sleep(0.2)
            assert watch.fired() == []  # blocked in read: no faults
            p.stdin.write("go\n")
            p.stdin.flush()
            assert wait_until(lambda: watch.fired() == [p.pid], timeout=5)
            assert watch.fired() == []  # disabled after firing, until enabled again
            watch.remove(p.pid)
            p.stdin.write("end\n")
            p.stdin.flush()
            p.wait(timeout=10)
    finally:
        watch.close()


# ---------------------------------------------------------------------- OOM


def _memcg(name: str, pages: int):
    h, memory = memory_hierarchy(SEEDS, RecordingEffects())
    g = memory.of(h.mkdir(h.root, name))
    memory.resize_max(g, pages, memsw=False)
    return h, memory, g


def test_growth_that_does_not_fit_fills_the_group_to_its_limit():
    h, memory, g = _memcg("g", 100)
    h.attach(123, g.cgroup)
    o = memory.new_owner(123, followed=True)
    assert memory.follow(o, g, {"anon": 60}, 0) is None
    verdict = memory.follow(o, g, {"anon": 150}, 0)
    assert verdict is not None and verdict.victim is o
    assert g.memory.usage == g.memory.watermark == 100  # as far as a faulting task gets
    assert g.memory.failcnt >= 1
    assert o.charged["anon"] == 100


def test_oom_report_has_the_kernel_lines():
    h, memory, g = _memcg("r", 25600)
    g.memory.charge(25600)
    g.memory.failcnt = 3
    numbers = task_numbers("/proc", os.getpid())
    lines = report(g, g, os.getpid(), numbers)
    assert lines[0] == "memory: usage 102400kB, limit 102400kB, failcnt 3"
    assert lines[1].startswith("memory+swap: usage ")
    assert lines[2].startswith("kmem: usage ")
    assert lines[3].startswith("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
                               "oom_memcg=/r,task_memcg=/r,task=")
    assert lines[4].startswith(f"Memory cgroup out of memory: Killed process {os.getpid()} (")
    for key in ("total-vm:", "anon-rss:", "file-rss:", "shmem-rss:", "UID:", "pgtables:",
                "oom_score_adj:"):
        assert key in lines[4]
    assert numbers["RssAnon"] > 0 and numbers["VmSize"] > numbers["RssAnon"]


def test_mount_options_of_the_follower():
    cfg = parse_args(["-o", "events=scan,fast_ms=20,thread_stacks=1", "/mnt"])
    assert (cfg.events, cfg.fast_ms, cfg.thread_stacks) == ("scan", 20, True)
    assert parse_args(["/mnt"]).thread_stacks is None
    for bad in ("events=netlink", "fast_ms=0", "thread_stacks=2"):
        with pytest.raises(UsageError):
            parse_args(["-o", bad, "/mnt"])


def test_a_sample_stops_at_stat_only_while_stat_shows_no_change():
    """An idle followed process costs one read of /proc/PID/stat per look; a process
    that touched memory, started a thread or exec'd is read in full."""
    from cgroupfs_emu.host.procfs import UNCHANGED, read_sample
    prog = ("import sys, threading, time\n"
            "print('ready', flush=True)\n"
            "sys.stdin.readline(); x = bytearray(8 << 20)\n"
            "print('grew', flush=True); sys.stdin.readline()\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "print('thread', flush=True); sys.stdin.readline()\n")
    with started([sys.executable, "-c", prog], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline() == "ready\n"  # started, and now blocked
        first = read_sample("/proc", p.pid)
        assert read_sample("/proc", p.pid, first.key) is UNCHANGED
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "grew\n"
        grown = read_sample("/proc", p.pid, first.key)
        assert grown is not UNCHANGED and grown.pages["anon"] >= first.pages["anon"] + 2000
        assert read_sample("/proc", p.pid, grown.key) is UNCHANGED
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline() == "thread\n"
        threaded = read_sample("/proc", p.pid, grown.key)
        assert threaded is not UNCHANGED and threaded.threads == 2
        p.stdin.write("\n")
        p.stdin.close()
        p.wait(timeout=10)
    assert read_sample("/proc", p.pid, first.key) is None  # gone: never UNCHANGED
