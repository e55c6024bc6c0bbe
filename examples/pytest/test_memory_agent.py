"""Tests of a (tiny) memory agent against a fake cgroup v1 memory hierarchy.

Run with `pytest` once cgroupfs_emu is installed: the plugin comes with the package.
"""

import errno
import subprocess
import sys
import time

import pytest

M = 1 << 20
HOG = [sys.executable, "-c", "import sys, time; x = b'x' * (int(sys.argv[1]) << 20); "
       "print('ready', flush=True); sys.stdin.read()"]


def eventually(predicate, timeout: float = 10.0) -> bool:
    """Real processes are followed from /proc: their pages are counted within
    milliseconds, not at the instant they are touched."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def pressure(group) -> float:
    """The agent under test: how full is this group?"""
    return group.usage / int(group.read("limit_in_bytes"))


def test_a_real_process_is_charged_to_its_group(cgroupfs):
    g = cgroupfs.mkdir("jobs/a", limit="256M")
    with g.popen(HOG + ["64"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline() == "ready\n"
        assert p.pid in g.tasks
        assert eventually(lambda: g.usage >= 64 * M)
        assert g.stat["rss"] >= 64 * M
        assert 0.25 <= pressure(g) < 1
        p.stdin.close()


def test_the_kernel_refuses_a_limit_below_a_memsw_limit(cgroupfs):
    g = cgroupfs.mkdir("jobs/b", limit="64M", memsw="64M")
    with pytest.raises(OSError) as e:
        g.write("limit_in_bytes", "128M")  # memory may not exceed memory+swap
    assert e.value.errno == errno.EINVAL


def test_a_threshold_notification_fires(cgroupfs):
    g = cgroupfs.mkdir("jobs/c", limit="256M")
    with g.events("usage_in_bytes", "32M") as crossed:
        assert not crossed.fired()
        with g.popen(HOG + ["48"], stdin=subprocess.PIPE) as p:
            assert crossed.wait(timeout=10)
            p.stdin.close()


def test_the_oom_killer_kills_and_notifies(cgroupfs):
    g = cgroupfs.mkdir("jobs/d", limit="32M")
    with g.events("oom_control") as oom:
        r = g.run(HOG + ["96"], stdin=subprocess.DEVNULL)
        assert r.returncode == -9  # SIGKILL: the command ran in cgemu exec's place
        assert oom.wait(timeout=10)
    assert "oom_kill 1" in g.read("oom_control").splitlines()


@pytest.mark.cgroupfs(kernel="linux-3.10", swap="64M")
def test_an_old_kernel_with_swap(cgroupfs):
    g = cgroupfs.mkdir("jobs/e", limit="32M", memsw="64M")
    assert "swap" in g.stat
    assert int(g.read("memsw.limit_in_bytes")) == 64 * M


def test_code_with_hard_coded_paths_runs_unmodified(cgroupfs):
    cgroupfs.mkdir("jobs/f", limit="16M")
    r = cgroupfs.view(["cat", "/sys/fs/cgroup/memory/jobs/f/memory.limit_in_bytes"],
                      group="/jobs/f")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{16 * M}\n"


def test_the_session_mount_is_shared(cgroupfs_session, request):
    g = cgroupfs_session.mkdir(request.node.name, limit="8M")  # one group per test
    assert g.run(["sh", "-c", "echo $$"]).stdout.strip().isdigit()
