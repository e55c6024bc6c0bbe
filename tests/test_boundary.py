"""Handlers called directly (no mount): the error boundary never lets an exception
escape into pyfuse3, where it would kill the whole mount."""

import errno
import logging

import pyfuse3
import pytest
import trio

from cgroupfs_emu.core import LINUX_6, memory_hierarchy
from cgroupfs_emu.files import ControlTree
from cgroupfs_emu.fs import CgroupFS
from cgroupfs_emu.host import Host


def tree():
    return ControlTree(*memory_hierarchy(LINUX_6), Host())


def _open(ops, name):
    ctx = pyfuse3.RequestContext()
    attrs = trio.run(ops.lookup, pyfuse3.ROOT_INODE, name.encode(), ctx)
    return trio.run(ops.open, attrs.st_ino, 0, ctx).fh


def test_unexpected_exception_is_eio_with_a_logged_traceback(caplog):
    t = tree()
    ops = CgroupFS(t)
    fh = _open(ops, "memory.stat")

    def broken(*args):
        raise RuntimeError("bug in a handler")

    t.read = broken
    with caplog.at_level(logging.ERROR):
        with pytest.raises(pyfuse3.FUSEError) as e:
            trio.run(ops.read, fh, 0, 4096)
    assert e.value.errno == errno.EIO
    assert "RuntimeError: bug in a handler" in caplog.text


def test_core_errors_become_their_errno():
    ops = CgroupFS(tree())
    fh = _open(ops, "memory.limit_in_bytes")
    with pytest.raises(pyfuse3.FUSEError) as e:
        trio.run(ops.write, fh, 0, b"100M")  # the root cannot be limited
    assert e.value.errno == errno.EINVAL
