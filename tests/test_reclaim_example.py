"""examples/reclaim_daemon.py, seed 004's user-space reclaim loop, against a real mount:
a usage threshold (cgroup.event_control) wakes it, it writes memory.shrink_in_bytes,
a socket client's page cache is reclaimed below the low mark and the limit never moves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import P, group, needs_fuse, num, read, started, wait_until

pytestmark = [pytest.mark.mount, needs_fuse]

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "reclaim_daemon.py")
HIGH, LOW = 256 * P, 128 * P


class Daemon:
    """The example, started by this test, read line by line."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    def line(self, timeout: float = 10.0) -> str:
        import select
        assert select.select([self.proc.stdout], [], [], timeout)[0], "daemon said nothing"
        return self.proc.stdout.readline().strip()


def start(group_dir: str, *extra: str):
    return started([sys.executable, EXAMPLE, group_dir, "--high", str(HIGH),
                    "--low", str(LOW), *extra],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_threshold_event_drives_shrink_in_bytes_in_a_loop(mnt, chargers):
    g = group(mnt, "job", limit_in_bytes="64M")
    with start(g) as proc:
        d = Daemon(proc)
        assert d.line() == f"watching {g} mode=eventfd high={HIGH} low={LOW}"
        c = chargers(mnt.path, "--no-stock")
        c.do(f"join {g}/tasks")
        assert c.do(f"charge anon {32 * P}") == "ok 32"  # not reclaimable without swap
        evicted = 0
        for round_ in range(2):  # the daemon keeps watching after a shrink
            assert c.do(f"charge file {300 * P}") == "ok 300"  # crosses HIGH
            before, arrow, after = d.line().split()[1:]
            expected = (32 + 300) * P if round_ == 0 else LOW + 300 * P
            assert (int(before), arrow, int(after)) == (expected, "->", LOW)
            evicted += expected - LOW
            # page cache went (its owner is told), anon stayed, the limit never moved
            assert num(f"{g}/memory.usage_in_bytes") == LOW
            assert read(f"{g}/memory.limit_in_bytes") == f"{64 << 20}\n"
            assert int(c.do("events").split()[1]) == evicted
        status = dict(kv.split("=") for kv in c.do("status").split()[1:])
        assert int(status["anon"]) == 32 * P
        assert int(status["file"]) == LOW - 32 * P
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_ebusy_when_usage_cannot_go_below_low(mnt, chargers):
    g = group(mnt, "job")
    with start(g) as proc:
        d = Daemon(proc)
        d.line()
        c = chargers(mnt.path, "--no-stock")
        c.do(f"join {g}/tasks")
        assert c.do(f"charge anon {300 * P}") == "ok 300"  # anon without swap: stays
        assert d.line() == f"busy {300 * P} -> {300 * P}"
        assert num(f"{g}/memory.usage_in_bytes") == 300 * P
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_daemon_exits_when_its_group_is_removed(mnt):
    g = group(mnt, "job")
    with start(g) as proc:
        Daemon(proc).line()
        os.rmdir(g)  # rmdir signals the registration once, then the files are gone
        line = Daemon(proc).line()
        assert line == "gone", proc.stderr.read()
        assert proc.wait(timeout=10) == 0


def test_without_event_control_it_polls(mnt, chargers, tmp_path):
    """A 2008 kernel had no cgroup.event_control: the daemon falls back to reading
    memory.usage_in_bytes. Simulated here by a directory of symlinks to the group's
    files that lacks cgroup.event_control."""
    g = group(mnt, "job")
    view = tmp_path / "view"
    view.mkdir()
    for name in ("memory.usage_in_bytes", "memory.shrink_in_bytes"):
        os.symlink(os.path.join(g, name), view / name)
    with start(str(view), "--poll", "0.05") as proc:
        d = Daemon(proc)
        assert d.line() == f"watching {view} mode=poll high={HIGH} low={LOW}"
        c = chargers(mnt.path, "--no-stock")
        c.do(f"join {g}/tasks")
        c.do(f"charge file {300 * P}")
        before, _, after = d.line().split()[1:]
        assert int(before) == 300 * P and int(after) <= LOW
        assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") <= LOW)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
