"""Eventfd listeners in their own processes, registered through
cgroup.event_control exactly as runtimes do, and the release agent."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys

import pytest

from conftest import P, Mount, group, needs_fuse, read, wait_until, write

pytestmark = [pytest.mark.mount, needs_fuse]


def daemon_fds(m: Mount) -> int:
    """Eventfds the daemon holds (other descriptors come and go with its polls)."""
    n = 0
    for fd in os.listdir(f"/proc/{m.proc.pid}/fd"):
        try:
            n += os.readlink(f"/proc/{m.proc.pid}/fd/{fd}") == "anon_inode:[eventfd]"
        except FileNotFoundError:
            pass
    return n


# ---------------------------------------------------------------------- thresholds


def test_usage_threshold_fires_on_each_crossing_in_both_directions(mnt, chargers, listeners):
    g = group(mnt, "g")
    up = listeners(g, "memory.usage_in_bytes", "64K")
    assert up.first == "registered"
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge anon 61440") == "ok 15"
    assert up.events(0.5) == 0  # 60K: still below
    assert c.do("charge anon 4096") == "ok 1"
    assert up.events() == 1  # 64K: threshold <= usage
    assert c.do("charge anon 4096") == "ok 1"
    assert up.events(0.5) == 0  # no new crossing
    assert c.do("uncharge anon 8192") == "ok 2"
    assert up.events() == 1  # back below
    # registering where usage already is fires nothing
    late = listeners(g, "memory.usage_in_bytes", "4K")
    assert late.first == "registered" and late.events(0.5) == 0


def test_memsw_threshold_and_thresholds_of_ancestors(mnt, chargers, listeners):
    p = group(mnt, "p")
    child = group(mnt, "p/c")  # p already holds the child's kernel data
    with open(os.path.join(p, "memory.memsw.usage_in_bytes")) as f:
        held = int(f.read())
    assert held > 0
    on_parent = listeners(p, "memory.memsw.usage_in_bytes", str(held + 16384))
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {child}/tasks")
    c.do("charge shmem 16384")
    assert on_parent.events() == 1  # the child's data + 4 pages, charged in the child


def test_root_threshold_uses_global_usage(mnt, chargers, listeners):
    root = listeners(mnt.path, "memory.usage_in_bytes", "8K")
    c = chargers(mnt.path, "--no-stock")
    c.do("charge anon 8192")
    assert root.events() == 1


# ---------------------------------------------------------------------- OOM


def test_oom_event_for_the_group_and_its_descendants_and_on_late_registration(
        mnt, chargers, listeners):
    g = group(mnt, "g")
    child = group(mnt, "g/c")
    write(f"{g}/memory.limit_in_bytes", "48K")  # 8 pages are the child's data
    write(f"{g}/memory.oom_control", "1")
    on_g = listeners(g, "memory.oom_control")
    on_child = listeners(child, "memory.oom_control")
    on_root = listeners(mnt.path, "memory.oom_control")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    c.do("charge anon 16384")
    c.send("charge anon 8192")  # waits under OOM
    assert on_g.events() == 1 and on_child.events() == 1
    assert on_root.events(0.3) == 0  # not an ancestor's listener: no notification up
    late = listeners(child, "memory.oom_control")
    assert late.events() == 1  # registered while already under OOM
    write(f"{g}/memory.limit_in_bytes", "1M")
    assert c.line() == "ok 2"


def test_oom_event_when_the_killer_runs(mnt, chargers, listeners):
    g = group(mnt, "g", limit_in_bytes="16K")
    on_g = listeners(g, "memory.oom_control", "ignored args")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    c.send("charge anon 32768")
    assert on_g.events() == 1
    c.proc.wait(timeout=5)
    assert read(f"{g}/memory.oom_control").endswith("oom_kill 1\n")


# ---------------------------------------------------------------------- pressure


def test_pressure_levels_and_propagation(mnt, chargers, listeners):
    p = group(mnt, "p")
    g = group(mnt, "p/g")
    low_g = listeners(g, "memory.pressure_level", "low")
    crit_g = listeners(g, "memory.pressure_level", "critical")
    default_p = listeners(p, "memory.pressure_level", "low,default")
    hier_p = listeners(p, "memory.pressure_level", "low,hierarchy")
    local_p = listeners(p, "memory.pressure_level", "low,local")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    c.do(f"charge file {600 * P}")
    c.do(f"charge anon {10 * P}")
    # 600 page-cache pages reclaimed of 600 scanned: a full window, level low
    write(f"{g}/memory.limit_in_bytes", str(10 * P))
    assert low_g.events() == 1 and crit_g.events(0.3) == 0
    assert hier_p.events() == 1  # hierarchy: always
    assert default_p.events(0.3) == 0  # default: g's listener was signalled first
    assert local_p.events(0.3) == 0  # local: only its own group
    # only anon left and no swap: nothing reclaimed, critical, then EBUSY
    with pytest.raises(OSError) as e:
        write(f"{g}/memory.limit_in_bytes", str(5 * P))
    assert e.value.errno == errno.EBUSY
    assert crit_g.events() == 1 and low_g.events() == 1
    assert hier_p.events() == 1 and default_p.events(0.3) == 0
    # pressure from p's own limit reaches p's default and local listeners
    write(f"{g}/memory.limit_in_bytes", "-1")
    c.do(f"charge file {600 * P}")
    write(f"{p}/memory.limit_in_bytes", str(100 * P))  # 8 + 10 + 600 pages: 518 go
    assert local_p.events() == 1 and default_p.events() == 1 and hier_p.events() == 1
    assert low_g.events(0.3) == 0  # reclaim in p's subtree is p's pressure, not g's


# ---------------------------------------------------------------------- lifetime


def test_rmdir_signals_every_registration_once_and_releases_the_descriptors(
        mnt, listeners):
    g = group(mnt, "g")
    base = daemon_fds(mnt)
    regs = [listeners(g, "memory.usage_in_bytes", "1M"), listeners(g, "memory.oom_control"),
            listeners(g, "memory.pressure_level", "medium")]
    assert all(r.first == "registered" for r in regs)
    assert daemon_fds(mnt) == base + 3
    os.rmdir(g)
    assert [r.events() for r in regs] == [1, 1, 1]
    assert daemon_fds(mnt) == base


def test_closing_the_eventfd_unregisters(mnt, chargers, listeners):
    g = group(mnt, "g")
    base = daemon_fds(mnt)
    reg = listeners(g, "memory.usage_in_bytes", "4K")
    assert daemon_fds(mnt) == base + 1
    assert reg.do("close") == "closed"
    assert wait_until(lambda: daemon_fds(mnt) == base, timeout=5)
    reg.stop()
    gone = listeners(g, "memory.oom_control")
    gone.proc.kill()  # a listener that dies unregisters too (our own child)
    gone.proc.wait()
    assert wait_until(lambda: daemon_fds(mnt) == base, timeout=5)


def test_registration_errors_from_a_real_listener(mnt, listeners):
    g = group(mnt, "g")
    other = group(mnt, "o")
    assert listeners(g, "memory.pressure_level", "severe").first == f"error {errno.EINVAL}"
    assert listeners(g, "memory.usage_in_bytes", "12Q").first == f"error {errno.EINVAL}"
    assert listeners(g, "memory.stat").first == f"error {errno.EINVAL}"
    # a control file of another group
    code = subprocess.run([sys.executable, "-c", f"""
import os
efd = os.eventfd(0); cfd = os.open({other!r} + "/memory.oom_control", os.O_RDONLY)
try:
    os.write(os.open({g!r} + "/cgroup.event_control", os.O_WRONLY), f"{{efd}} {{cfd}}".encode())
except OSError as e:
    raise SystemExit(e.errno)
"""]).returncode
    assert code == errno.EINVAL


# ---------------------------------------------------------------------- release agent


@pytest.fixture
def agent(tmp_path):
    record = tmp_path / "released"
    script = tmp_path / "agent.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $HOME $PATH $#" >> {record}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script), record


def test_release_agent_runs_when_the_last_task_leaves_or_exits(mnt, agent, chargers):
    script, record = agent
    write(mnt.p("release_agent"), script)
    g = group(mnt, "g", )
    write(f"{g}/notify_on_release", "1")
    c = chargers(mnt.path)
    c.do(f"join {g}/tasks")
    c.do(f"join {mnt.p('tasks')}")
    assert wait_until(lambda: record.exists() and record.read_text())
    assert record.read_text() == "/g / /sbin:/bin:/usr/sbin:/usr/bin 1\n"
    c.do(f"join {g}/tasks")
    c.stop()  # the task exits: found by the daemon's poll
    assert wait_until(lambda: record.read_text().count("\n") == 2, timeout=5)


def test_release_agent_runs_when_the_last_child_goes_and_from_the_mount_option(
        mount_with, agent):
    script, record = agent
    m = mount_with(f"release_agent={script}")
    assert read(m.p("release_agent")) == script + "\n"
    p = group(m, "p")
    write(f"{p}/notify_on_release", "1")
    group(m, "p/c")  # inherits notify_on_release
    group(m, "p/c/d")
    os.rmdir(m.p("p/c/d"))
    assert wait_until(lambda: record.exists() and "/p/c " in record.read_text())
    os.rmdir(m.p("p/c"))
    assert wait_until(lambda: "/p " in record.read_text())
    quiet = group(m, "q")  # notify_on_release 0: nothing
    os.rmdir(quiet)
    assert "/q " not in record.read_text()
