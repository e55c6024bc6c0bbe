"""cgroup.event_control written from another mount namespace: a command inside
`cgemu run` (the emulator bound at /sys/fs/cgroup/memory) or one that reaches a group
through a bind mount of its own. The descriptors it names are paths of its namespace;
the daemon finds the file through the mount they were opened on (host/mounts.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cgroupfs_emu.host import mounts
from conftest import HELPERS, group, needs_fuse, started

pytestmark = [pytest.mark.mount, needs_fuse]

LISTENER = os.path.join(HELPERS, "listener.py")
CGEMU = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu"]


def _in_view(m, tmp_path):
    # the listener stays in the root group: its own pages are not g's usage
    return CGEMU + ["run", "-m", m.path, "--",
                    sys.executable, LISTENER, "/sys/fs/cgroup/memory/g", "memory.usage_in_bytes",
                    "4K"]


def _through_bind(m, tmp_path):
    """A private namespace where a bind mount of the group itself (mount root g, not
    /) is the only way in."""
    at = tmp_path / "bound"
    at.mkdir()
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f'mount --bind "$0/g" "$1" && exec "$2" "$3" "$1" memory.usage_in_bytes 4K',
            m.path, str(at), sys.executable, LISTENER]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a mount namespace; pidfd_getfd)")
@pytest.mark.parametrize("argv", [_in_view, _through_bind], ids=["cgemu-run", "bind-of-a-group"])
def test_a_listener_in_another_mount_namespace_registers_and_hears(mnt, chargers, tmp_path, argv):
    group(mnt, "g")
    with started(argv(mnt, tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True) as listener:
        first = listener.stdout.readline().strip()
        assert first == "registered", first + listener.stderr.read()
        c = chargers(mnt.path, "--no-stock")
        c.do(f"join {mnt.p('g', 'tasks')}")
        assert c.do("charge anon 8192") == "ok 2"
        assert listener.stdout.readline().split() == ["event", "1"]


def _fake_proc(tmp_path, theirs: str, ours: str):
    """A procfs root where pid 5's descriptor 3 was opened on mount 40."""
    (tmp_path / "5" / "fdinfo").mkdir(parents=True)
    (tmp_path / "5" / "fdinfo" / "3").write_text("pos:\t0\nflags:\t02100001\nmnt_id:\t40\n")
    (tmp_path / "5" / "mountinfo").write_text(theirs)
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(ours)
    return str(tmp_path)


OURS = ("22 1 0:21 / /sys rw - sysfs sysfs rw\n"
        "30 22 0:50 / /tmp/a\\040b/mnt rw,nosuid - fuse.cgroupfs_emu memory rw\n")


@pytest.mark.parametrize("theirs,path,expected", [
    # cgemu run: the whole emulator bound at /sys/fs/cgroup/memory
    ("40 39 0:50 / /sys/fs/cgroup/memory rw - fuse.cgroupfs_emu memory rw\n",
     "/sys/fs/cgroup/memory/g/memory.oom_control", "/tmp/a b/mnt/g/memory.oom_control"),
    # a bind of one group: the mount's root is that group
    ("40 39 0:50 /g /bound rw - fuse.cgroupfs_emu memory rw\n",
     "/bound/memory.oom_control", "/tmp/a b/mnt/g/memory.oom_control"),
    # another filesystem at the same path is not ours
    ("40 39 0:51 / /sys/fs/cgroup/memory rw - fuse.cgroupfs_emu memory rw\n",
     "/sys/fs/cgroup/memory/g/memory.oom_control", None),
    # the descriptor's mount is not in the table
    ("41 39 0:50 / /sys/fs/cgroup/memory rw - fuse.cgroupfs_emu memory rw\n",
     "/sys/fs/cgroup/memory/g/memory.oom_control", None),
])
def test_a_descriptor_of_another_namespace_is_found_through_its_mount(tmp_path, theirs,
                                                                     path, expected):
    assert mounts.translate(_fake_proc(tmp_path, theirs, OURS), 5, 3, path) == expected
