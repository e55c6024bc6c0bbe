"""Facts about real processes, read from /proc, and the eventfds they register.

Synchronous and cheap; used by the control files that name processes (tasks,
cgroup.procs) or file descriptors (cgroup.event_control). Nothing here signals or
changes a process.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform

import attrs

#: pidfd_getfd(2) is 438 on every architecture that has the unified syscall table
#: (x86_64, aarch64, riscv64, ...); Python's os module has no wrapper for it.
SYS_PIDFD_GETFD = 438
log = logging.getLogger("cgroupfs_emu.host")
_libc = ctypes.CDLL(None, use_errno=True)

#: kcmp(2): 312 on x86_64, 272 on the unified table (aarch64, riscv64, ...)
SYS_KCMP = {"x86_64": 312}.get(platform.machine(), 272)
KCMP_FILES = 2
#: The write-family syscalls a writer of a control file can be blocked in, by
#: architecture: name -> number. write/pwrite64 carry the byte count in their third
#: argument; the vectored ones carry an iovec count.
_WRITE_SYSCALLS = {
    "x86_64": {"write": 1, "pwrite64": 18, "writev": 20, "pwritev": 296, "pwritev2": 328},
    "aarch64": {"write": 64, "writev": 66, "pwrite64": 68, "pwritev": 70, "pwritev2": 287},
    "riscv64": {"write": 64, "writev": 66, "pwrite64": 68, "pwritev": 70, "pwritev2": 287},
}.get(platform.machine(), {})
_COUNTED = {_WRITE_SYSCALLS[n] for n in ("write", "pwrite64") if n in _WRITE_SYSCALLS}

#: task->flags bits (include/linux/sched.h)
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000


@attrs.frozen
class TaskInfo:
    tid: int
    tgid: int
    start_time: int
    flags: int
    uid: int
    suid: int


class Host:
    """Reads /proc (or another procfs root, for tests of the parser)."""

    def __init__(self, proc: str = "/proc"):
        self.proc = proc
        #: tid -> start time when the emulator first learned of it: a tid reused by the
        #: kernel for a new task has another start time and is not the same task.
        self._start_times: dict[int, int] = {}

    def task(self, tid: int) -> TaskInfo | None:
        """The task with this TID (a thread or a process), or None."""
        try:
            with open(f"{self.proc}/{tid}/stat", "rb") as f:
                stat = f.read()
            with open(f"{self.proc}/{tid}/status", "rb") as f:
                status = f.read()
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            return None
        # comm may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(b")") + 2:].split()
        flags = int(fields[6])
        start_time = int(fields[19])
        tgid = uid = suid = 0
        for line in status.splitlines():
            if line.startswith(b"Tgid:"):
                tgid = int(line.split()[1])
            elif line.startswith(b"Uid:"):
                ids = line.split()
                uid, suid = int(ids[1]), int(ids[3])
        return TaskInfo(tid, tgid, start_time, flags, uid, suid)

    def threads(self, tgid: int) -> list[int]:
        try:
            return sorted(int(t) for t in os.listdir(f"{self.proc}/{tgid}/task"))
        except (FileNotFoundError, ProcessLookupError):
            return []

    def all_tids(self) -> list[int]:
        tids = []
        for entry in os.listdir(self.proc):
            if entry.isdigit():
                tids.extend(self.threads(int(entry)))
        return tids

    def remember(self, info: TaskInfo) -> None:
        self._start_times[info.tid] = info.start_time

    def start_time(self, tid: int) -> int | None:
        try:
            fd = os.open(f"{self.proc}/{tid}/stat", os.O_RDONLY)
        except OSError:
            return None
        try:
            stat = os.read(fd, 4096)
        except OSError:
            return None
        finally:
            os.close(fd)
        return int(stat[stat.rindex(b")") + 2:].split()[19])

    def is_alive(self, tid: int) -> bool:
        """True while the task the emulator learned of still runs (not a reused tid)."""
        start = self.start_time(tid)
        alive = start is not None and start == self._start_times.get(tid)
        if not alive:
            self._start_times.pop(tid, None)
        return alive

    def oom_score_adj(self, pid: int) -> int:
        """/proc/PID/oom_score_adj (-1000..1000); 0 when it cannot be read."""
        try:
            with open(f"{self.proc}/{pid}/oom_score_adj", "rb") as f:
                return int(f.read())
        except (OSError, ValueError):
            return 0

    def tgid_of(self, tid: int) -> int | None:
        info = self.task(tid)
        return info.tgid if info else None

    def fd_target(self, pid: int, fd: int) -> str | None:
        """What descriptor *fd* of process *pid* refers to (readlink of
        /proc/PID/fd/FD: a path, or e.g. 'anon_inode:[eventfd]'), None if not open."""
        try:
            return os.readlink(f"{self.proc}/{pid}/fd/{fd}")
        except (FileNotFoundError, ProcessLookupError):
            return None

    # ------------------------------------------------------------------ writers

    def blocked_writes(self, size: int) -> list[tuple[int, int, int]]:
        """(tgid, tid, fd) of every task now blocked in a write-family syscall whose
        byte count may be *size* (write and pwrite64 must match it exactly).

        A FUSE write with direct I/O is synchronous: the writer sleeps in its
        syscall until the daemon answers, so while the daemon handles the request,
        /proc/TID/syscall of the writer names the descriptor it writes. Reading it
        needs ptrace rights over the task (root, or the same user): tasks the daemon
        may not inspect are not found."""
        if not _WRITE_SYSCALLS:
            return []
        nrs = set(_WRITE_SYSCALLS.values())
        found = []
        for entry in os.listdir(self.proc):
            if not entry.isdigit():
                continue
            tgid = int(entry)
            try:
                tids = os.listdir(f"{self.proc}/{tgid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"{self.proc}/{tgid}/task/{tid}/syscall", "rb") as f:
                        words = f.read().split()
                except OSError:
                    continue
                if len(words) < 4 or not words[0].isdigit() or int(words[0]) not in nrs:
                    continue
                nr, fd, count = int(words[0]), int(words[1], 16), int(words[3], 16)
                if nr in _COUNTED and count != size:
                    continue
                found.append((tgid, int(tid), fd))
        return found

    def shares_files(self, tgid: int, tid: int) -> bool:
        """Does thread *tid* use the descriptor table of its process *tgid*?
        (kcmp(KCMP_FILES); a thread made by clone() without CLONE_FILES does not)"""
        if tgid == tid:
            return True
        return _libc.syscall(SYS_KCMP, tgid, tid, KCMP_FILES, 0, 0) == 0

    def fs_creds(self, tid: int) -> tuple[int, int] | None:
        """(fsuid, fsgid) of a task: what the kernel checks file access with."""
        try:
            with open(f"{self.proc}/{tid}/status", "rb") as f:
                status = f.read()
        except OSError:
            return None
        uid = gid = None
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                uid = int(line.split()[4])
            elif line.startswith(b"Gid:"):
                gid = int(line.split()[4])
        return None if uid is None or gid is None else (uid, gid)

    def take_eventfd(self, pid: int, fd: int) -> EventFd:
        """Our own duplicate of descriptor *fd* of process *pid* (pidfd_getfd)."""
        from ..core.errors import NotPermitted
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            raise NotPermitted(f"pidfd_open({pid}): {e.strerror}") from None
        try:
            ours = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            if ours < 0:
                code = ctypes.get_errno()
                raise NotPermitted(f"pidfd_getfd({pid}, {fd}) on {platform.machine()}: "
                                   f"{os.strerror(code)} (needs root or ptrace rights)")
        finally:
            os.close(pidfd)
        return EventFd(ours, pid, fd, self.proc)


def _eventfd_id(path: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("eventfd-id:"):
                    return line.split()[1]
    except OSError:
        return None
    return ""


class EventFd:
    """The emulator's duplicate of a listener's eventfd."""

    def __init__(self, fd: int, pid: int, their_fd: int, proc: str = "/proc"):
        self.fd = fd
        self.pid = pid
        self.their_fd = their_fd
        self.proc = proc
        self.id = _eventfd_id(f"/proc/self/fdinfo/{fd}")

    def signal(self) -> None:
        """eventfd_signal(): add 1 to the counter. Delivery never fails the operation
        that caused it: a saturated counter already has events pending, and a
        descriptor that went bad is dropped at the next poll."""
        if self.fd < 0:
            return
        try:
            os.write(self.fd, (1).to_bytes(8, "little"))
        except OSError as e:
            if e.errno != errno.EAGAIN:
                log.warning("cannot signal eventfd of pid %d: %s", self.pid, e.strerror)

    def listener_closed(self) -> bool:
        """True once the registering process no longer holds this eventfd at the
        number it registered (closed it, or exited). Recent kernels print an
        eventfd-id in fdinfo; without it, any eventfd at that number counts as ours."""
        theirs = _eventfd_id(f"{self.proc}/{self.pid}/fdinfo/{self.their_fd}")
        if theirs is None:
            return True
        return theirs != self.id

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
