"""ControlTree: the hierarchy as directories of control files, for the FUSE adapter.

The adapter sees groups as opaque directory objects and control files as rows with a
name and a mode; everything it asks goes through here, so it knows nothing of memory.
"""

from __future__ import annotations

from typing import Callable

from ..core.hierarchy import Hierarchy
from ..core.memcg import MemCgroup
from ..service.host import Host
from .table import Caller, ControlFile, Request, files_for, read_file, write_file


class ControlTree:
    def __init__(self, hierarchy: Hierarchy, host: Host | None = None):
        self.hierarchy = hierarchy
        self.host = host or Host()
        #: set by the adapter: path as /proc/PID/fd shows it -> (group, name, readable)
        self.resolve: Callable | None = None

    @property
    def root(self) -> MemCgroup:
        return self.hierarchy.root

    @property
    def dir_order(self):
        """The profile's directory order (cgroupfs_emu.dirorder)."""
        return getattr(self.hierarchy.profile, "dir_order", None)

    @property
    def file_creation_order(self) -> tuple[str, ...]:
        """Control-file names in the order the kernel creates them (3.10 order)."""
        return getattr(self.hierarchy.profile, "file_creation_order", ())

    def subgroups(self, group: MemCgroup) -> dict[str, MemCgroup]:
        return group.children

    def files(self, group: MemCgroup) -> dict[str, ControlFile]:
        return files_for(group)

    def mkdir(self, parent: MemCgroup, name: str) -> MemCgroup:
        group = self.hierarchy.mkdir(parent, name)
        self.hierarchy.check_thresholds()  # the parent was charged the child's data
        return group

    def rmdir(self, group: MemCgroup) -> None:
        # An exited task must never keep a group busy.
        if group.tasks:
            self.hierarchy.prune(self.host.is_alive)
        self.hierarchy.rmdir(group)

    def rename(self, group: MemCgroup, new_parent: MemCgroup, new_name: str) -> None:
        self.hierarchy.rename(group, new_parent, new_name)

    def _request(self, group, cf, caller) -> Request:
        return Request(group, cf, caller, self.host, self.resolve)

    def read(self, group: MemCgroup, cf: ControlFile, caller: Caller) -> bytes:
        return read_file(self._request(group, cf, caller))

    def write(self, group: MemCgroup, cf: ControlFile, caller: Caller, buf: bytes) -> None:
        try:
            write_file(self._request(group, cf, caller), buf)
        finally:
            # a write may have reclaimed (a lower limit, force_empty, shrink_in_bytes)
            self.hierarchy.check_thresholds()
