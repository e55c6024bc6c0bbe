"""ControlTree: the hierarchy as directories of control files, for the FUSE adapter.

The adapter sees groups as opaque directory objects and control files as rows with a
name and a mode; everything it asks goes through here, so it knows nothing of memory.
The tree is handed what it serves (the hierarchy, the memory controller, the host
facts); it builds none of them.
"""

from __future__ import annotations

from ..core.cgroup import Cgroup, Hierarchy
from ..core.errors import BadFd
from ..core.memcg import MemoryController
from ..host.procfs import Host
from ..units import PAGE_SIZE
from .kernfs import Kernfs
from .request import Caller, Request
from .table import BY_WRITER, ControlFile, files_for, read_file, write_file

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

    @property
    def dir_order(self):
        """The profile's directory order (cgroupfs_emu.dirorder)."""
        return getattr(self.profile, "dir_order", None)

    @property
    def file_creation_order(self) -> tuple[str, ...]:
        """Control-file names in the order the kernel creates them (3.10 order)."""
        return getattr(self.profile, "file_creation_order", ())

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

    def writer(self, group: Cgroup, cf: ControlFile, size: int) -> Caller:
        """The process that issued the write(2) being served, for rows that act on
        the writer (BY_WRITER: cgroup.event_control's descriptor numbers belong to
        the writer's table, memcg_write_event_control()).

        FUSE tells the daemon who opened a file, not who writes it (pyfuse3's write
        handler gets no request context), and the opener may have handed the
        descriptor to another process or dropped privileges. A direct-I/O write is
        synchronous, so the writer is the one task blocked in a write-family
        syscall on a descriptor that names this very file (Host.blocked_writes).
        Where that cannot be established the write is refused with EBADF, never
        answered from the opener's table:
        * the daemon may not inspect the writer (not root, another user; Yama);
        * two tasks write this same file with the same byte count at once;
        * the writer's path to the file differs from the daemon's (another mount
          namespace or chroot), or the write came through io_uring or AIO;
        * a thread with a descriptor table of its own (clone without CLONE_FILES).
        """
        found = set()
        for tgid, tid, fd in self.host.blocked_writes(size):
            target = self.host.fd_target(tid, fd)
            if target is None:
                continue
            where = self.nodes.resolve(target, Caller(tid, 0, 0))
            if where is None or where[0] is not group or self.files(group).get(where[1]) is not cf:
                continue
            found.add((tgid, tid))
        if len(found) != 1:
            raise BadFd("cannot establish the writing process" if not found
                        else "several processes write this file at once")
        (tgid, tid), = found
        creds = self.host.fs_creds(tid)
        if creds is None or not self.host.shares_files(tgid, tid):
            raise BadFd("cannot establish the writing process's descriptor table")
        return Caller(tgid, *creds)

    def write(self, group: Cgroup, cf: ControlFile, caller: Caller, buf: bytes) -> None:
        if BY_WRITER in cf.flags and group.online and len(buf) <= PAGE_SIZE:
            caller = self.writer(group, cf, len(buf))
        write_file(Request(group, cf, caller, self), buf)
