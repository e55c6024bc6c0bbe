"""ControlTree: the hierarchy as directories of control files, for the FUSE adapter.

The adapter sees groups as opaque directory objects and control files as rows with a
name and a mode; everything it asks goes through here, so it knows nothing of memory.
The tree is handed what it serves (the hierarchy, the memory controller, the host
facts); it builds none of them.
"""

from __future__ import annotations

from ..core.cgroup import Cgroup, Hierarchy
from ..core.memcg import MemoryController
from ..host.procfs import Host
from ..units import PAGE_SIZE
from .kernfs import Kernfs
from .request import Caller, Request
from .table import ControlFile, files_for, read_file, write_file

#: see ControlTree.xattrs
TASK_MEMORY_XATTR = "user.cgroupfs_emu.task_memory"


class ControlTree:
    def __init__(self, hierarchy: Hierarchy, memory: MemoryController, host: Host,
                 mountpoint: str = "", uid: int | None = None, gid: int | None = None):
        self.hierarchy = hierarchy
        self.memory = memory
        self.host = host
        self.profile = memory.profile
        #: the node tree (inodes, modes, owners, times) of this mount
        self.nodes = Kernfs(self, mountpoint, uid, gid)

    @property
    def root(self) -> Cgroup:
        return self.hierarchy.root

    def subgroups(self, group: Cgroup) -> dict[str, Cgroup]:
        return group.children

    def files(self, group: Cgroup) -> dict[str, ControlFile]:
        return files_for(self.profile, group.parent is None)

    def xattrs(self, group: Cgroup) -> dict[str, bytes]:
        """Read-only extended attributes of a group directory. Not a kernel interface:
        ``user.cgroupfs_emu.task_memory`` tells `cgemu ps` what the emulator charged
        per task (the kernel keeps no such per-task account; its per-task view is
        /proc/PID/status). One line per charged task of the group:
        ``PID ANON SHMEM FILE`` in bytes, what the task holds in every group."""
        lines = []
        for owner in sorted(self.memory.owners, key=lambda o: o.pid):
            if owner.alive and owner.pid in group.tasks:
                held = [sum(led[kind] for led in owner.ledgers.values()) * PAGE_SIZE
                        for kind in ("anon", "shmem", "file")]
                lines.append(" ".join(map(str, [owner.pid, *held])) + "\n")
        return {TASK_MEMORY_XATTR: "".join(lines).encode()}

    def mkdir(self, parent: Cgroup, name: str) -> Cgroup:
        return self.hierarchy.mkdir(parent, name)

    def rmdir(self, group: Cgroup) -> None:
        # An exited task must never keep a group busy.
        if group.tasks:
            self.hierarchy.prune(self.host.is_alive)
        self.hierarchy.rmdir(group)
        self.nodes.removed(group)

    def rename(self, group: Cgroup, new_parent: Cgroup, new_name: str) -> None:
        self.hierarchy.rename(group, new_parent, new_name)

    def read(self, group: Cgroup, cf: ControlFile, caller: Caller) -> bytes:
        return read_file(Request(group, cf, caller, self))

    def write(self, group: Cgroup, cf: ControlFile, caller: Caller, buf: bytes) -> None:
        write_file(Request(group, cf, caller, self), buf)
