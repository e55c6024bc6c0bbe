"""Testing with real cgroupfs_emu mounts: the pytest plugin (``plugin``, registered
as the ``pytest11`` entry point ``cgroupfs_emu``) and what it is built on, usable
without pytest too::

    from cgroupfs_emu.testing import CgroupFS
    fs = CgroupFS("/tmp/work", "kernel=linux-6").start()
    try:
        g = fs.mkdir("jobs/a", limit="64M")
        print(g.run(["sh", "-c", "echo hi"]).stdout, g.usage)
    finally:
        fs.stop()

docs/testing.md is the guide.
"""

from .group import Event, Group
from .mount import HAVE_FUSE, CgroupFS, DaemonFailed, option_string

__all__ = ["CgroupFS", "DaemonFailed", "Event", "Group", "HAVE_FUSE", "option_string"]
