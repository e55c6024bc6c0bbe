"""cgroup.event_control written from another mount namespace: a command inside
`cgemu run` (the emulator bound at /sys/fs/cgroup/memory) or one that reaches a group
through a bind mount of its own. The descriptors it names are paths of its namespace;
the daemon finds the file through the mount they were opened on (host/mounts.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
