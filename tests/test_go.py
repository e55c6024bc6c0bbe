"""Go container tooling inside `cgemu run`: tests/go/v1check, a Go test package built
CGO_ENABLED=0 against Debian's runc (libcontainer/cgroups) and containerd/cgroups,
runs in `cgemu run -g box` with no explicit path and no TestMode. It finds the
emulator as a v1 host's memory hierarchy, makes a child group of /box, puts a real
process in it, sets a limit and reads the usage back (its assertions are in Go; each
test here runs one Go test and checks from outside the view what it left).

The static C program making raw syscalls is tests/test_view.py's probe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import group, needs_fuse
from golang import GO_DIR, go_env, require_go

pytestmark = [pytest.mark.mount, needs_fuse]

CGEMU = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu"]


@pytest.fixture(scope="session")
def v1check():
    """The test binary of tests/go/v1check, built once per session (the time it took
    is printed with -s)."""
    go = require_go()
    d = tempfile.mkdtemp(prefix="cgemu-go-")
    exe = os.path.join(d, "v1check.test")
    start = time.monotonic()
    r = subprocess.run([go, "test", "-c", "-o", exe, "./v1check"], cwd=GO_DIR, env=go_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"go test -c failed:\n{r.stderr}{r.stdout}"
    print(f"\ntests/go/v1check built in {time.monotonic() - start:.1f} s")
    try:
        yield exe
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_go_test(m, exe: str, name: str) -> str:
    """Go test *name* inside `cgemu run -g box`; its verbose output."""
    r = subprocess.run(CGEMU + ["run", "-m", m.path, "-g", "box", "--",
                                exe, "-test.v", "-test.run", f"^{name}$", "-cgroup", "/box"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and f"--- PASS: {name}" in out, out
    return out


def children(m, name: str) -> list[str]:
    return [e for e in os.listdir(m.p(name)) if os.path.isdir(m.p(name, e))]


def test_runc_finds_the_view_as_a_v1_memory_hierarchy(mnt, v1check):
    """IsCgroup2UnifiedMode false, FindCgroupMountpoint, FindCgroupMountpointAndRoot,
    GetOwnCgroup == /box, GetOwnCgroupPath, fs.NewManager's paths (memory only)."""
    group(mnt, "box")
    out = run_go_test(mnt, v1check, "TestRuncDiscovery")
    assert "runc: own memory cgroup /box" in out


def test_runc_fs_manager_applies_sets_reads_and_destroys_a_child_group(mnt, v1check):
    """Apply (mkdir + cgroup.procs), Set (a 64M limit), GetStats (limit and the real
    usage of the process moved in), Destroy; the group is gone afterwards."""
    group(mnt, "box")
    out = run_go_test(mnt, v1check, "TestRuncFsManager")
    assert f"runc: limit {64 << 20}" in out
    assert children(mnt, "box") == []


def test_containerd_mode_is_legacy(mnt, v1check):
    group(mnt, "box")
    run_go_test(mnt, v1check, "TestContainerdMode")


def test_containerd_new_stat_oom_event_load_and_delete(mnt, v1check):
    """cgroups.V1 (memory only), New with a 32M limit, Add, Load, Stat (limit, usage),
    OOMEventFD firing when the emulator kills the process past its limit, Delete."""
    group(mnt, "box")
    out = run_go_test(mnt, v1check, "TestContainerdLifecycle")
    assert "containerd: own memory cgroup /box" in out
    assert f"containerd: limit {32 << 20}" in out
    assert children(mnt, "box") == []
    assert "Killed process" in mnt.log()
