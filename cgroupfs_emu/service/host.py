"""Facts about real processes, read from /proc.

Synchronous and cheap; used by the control files that name processes (tasks,
cgroup.procs) or file descriptors (cgroup.event_control). Nothing here signals or
changes a process.
"""

from __future__ import annotations

import os

import attrs

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

    def is_alive(self, tid: int) -> bool:
        """True while the task the emulator learned of still runs (not a reused tid)."""
        info = self.task(tid)
        alive = info is not None and info.start_time == self._start_times.get(tid)
        if not alive:
            self._start_times.pop(tid, None)
        return alive

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
