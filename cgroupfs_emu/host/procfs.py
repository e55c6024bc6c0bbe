"""Facts about real processes, read from /proc: the one place that parses it.

Synchronous and cheap; nothing here signals or changes a process. The control files
get a :class:`Host` handed to them (tasks, cgroup.procs, cgroup.event_control), the
process tracker reads :func:`read_sample` for every followed process every poll, and
the OOM killer's guard reads :func:`protected_pids`.

``/proc/PID/stat`` is parsed by :func:`stat_fields` alone: the command name may hold
spaces and parentheses, so fields start after the last ``)``. The indexes below count
from the field after it (man 5 proc numbers them from 1 and from pid: subtract 3).
"""

from __future__ import annotations

import os
import platform

import attrs

from ..units import KIB, PAGE_SIZE
from . import mounts
from .fds import EventFd, same_files, take_eventfd

#: The write-family syscalls a writer of a control file can be blocked in, by
#: architecture. write/pwrite64 carry the byte count in their third argument; the
#: vectored ones an iovec count.
_WRITE_SYSCALLS = {
    "x86_64": {"write": 1, "pwrite64": 18, "writev": 20, "pwritev": 296, "pwritev2": 328},
    "aarch64": {"write": 64, "writev": 66, "pwrite64": 68, "pwritev": 70, "pwritev2": 287},
    "riscv64": {"write": 64, "writev": 66, "pwrite64": 68, "pwritev": 70, "pwritev2": 287},
}.get(platform.machine(), {})
_COUNTED = {_WRITE_SYSCALLS[n] for n in ("write", "pwrite64") if n in _WRITE_SYSCALLS}

#: task->flags bits (include/linux/sched.h)
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000

#: /proc/PID/stat fields after the command name (man 5 proc field N is index N - 3)
STAT_STATE = 0
STAT_PPID = 1
STAT_FLAGS = 6
STAT_NUM_THREADS = 17
STAT_STARTTIME = 19
STAT_RSS = 21
STAT_STARTCODE = 23
STAT_STARTSTACK = 25
#: states whose memory is gone (zombie, dead)
_DEAD_STATES = (b"Z", b"X")
#: one read is enough for stat; status is longer
_STAT_READ = 4096
_STATUS_READ = 8192

_KB_PER_PAGE = PAGE_SIZE // KIB
#: /proc/PID/status lines a memory sample reads, and the kind each counts
_STATUS_KEYS = {b"RssAnon:": "anon", b"RssShmem:": "shmem", b"RssFile:": "file",
                b"VmLck:": "locked"}
#: files below these directories (libraries, locales, fonts, configuration) are taken
#: to be in the page cache already, charged to whoever read them first
SYSTEM_PREFIXES = (b"/usr/", b"/lib", b"/etc/", b"/bin/", b"/sbin/", b"/opt/", b"/var/lib/")


def _read(path: str, size: int) -> bytes | None:
    """One read(2) with plain os calls (cheaper than open(): this runs per followed
    process per poll); None when the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def stat_fields(raw: bytes) -> list[bytes]:
    """/proc/PID/stat split into fields, starting after the command name."""
    return raw[raw.rindex(b")") + 2:].split()


def read_stat(proc: str, pid: int) -> list[bytes] | None:
    raw = _read(f"{proc}/{pid}/stat", _STAT_READ)
    return None if not raw else stat_fields(raw)


@attrs.frozen
class TaskInfo:
    tid: int
    tgid: int
    start_time: int
    flags: int
    uid: int
    suid: int


@attrs.frozen
class MemSample:
    """One reading of a process: pages per kind, and its address-space identity."""

    pages: dict[str, int]
    mm: tuple[int, int]
    start_time: int
    threads: int = 1
    #: what /proc/PID/stat alone says of the process (see :func:`read_sample`)
    key: tuple = ()


#: read_sample()'s answer when /proc/PID/stat shows nothing changed
UNCHANGED = object()


def read_sample(proc: str, pid: int, unless: tuple | None = None):
    """/proc/PID/status (memory) and /proc/PID/stat (start time, code and stack
    addresses, thread count); None for a process that is gone or a zombie.

    With *unless* (a previous sample's ``key``): when stat shows the same resident
    size, threads, address space and start time, :data:`UNCHANGED`, without reading
    status. stat costs about 60 % of status and holds everything but the split of the
    resident set into anon, file and shmem and VmLck, which can change at an unchanged
    total only in rare cases (the caller reads status from time to time anyway)."""
    fields = read_stat(proc, pid)
    if fields is None or fields[STAT_STATE] in _DEAD_STATES:
        return None
    seen = (fields[STAT_RSS], fields[STAT_NUM_THREADS], fields[STAT_STARTCODE],
            fields[STAT_STARTSTACK], fields[STAT_STARTTIME])
    if seen == unless:
        return UNCHANGED
    status = _read(f"{proc}/{pid}/status", _STATUS_READ)
    if status is None:
        return None
    pages = {}
    for key, kind in _STATUS_KEYS.items():
        i = status.find(key)
        if i < 0:
            pages[kind] = 0
            continue
        i += len(key)
        pages[kind] = int(status[i:status.index(b" kB", i)]) // _KB_PER_PAGE
    return MemSample(pages, (int(fields[STAT_STARTCODE]), int(fields[STAT_STARTSTACK])),
                     int(fields[STAT_STARTTIME]), int(fields[STAT_NUM_THREADS]), seen)


def program_file_pages(proc: str, pid: int) -> int:
    """Resident pages of files the process maps that were in the page cache before
    it ran: its executable and libraries (any file it maps executable) and system
    files (SYSTEM_PREFIXES: locale archives and the like). Their page cache was charged
    to whoever read it first, so they never count as the task's mapped_file; RssFile
    minus this is."""
    try:
        with open(f"{proc}/{pid}/smaps", "rb") as f:
            data = f.read()
    except OSError:
        return 0
    rss: dict[bytes, int] = {}
    programs = set()
    path = None
    for line in data.split(b"\n"):
        if not line:
            continue
        first = line.split(None, 5)
        if b"-" in first[0] and not first[0].endswith(b":"):  # a mapping's header
            path = first[5] if len(first) == 6 and first[4] != b"0" else None
            if path is not None and (first[1][2:3] == b"x" or path.startswith(SYSTEM_PREFIXES)):
                programs.add(path)
            continue
        if path is not None:
            # file pages of a mapping: Rss without its private (anonymous) copies
            if line.startswith(b"Rss:"):
                rss[path] = rss.get(path, 0) + int(line.split()[1]) // _KB_PER_PAGE
            elif line.startswith(b"Anonymous:"):
                rss[path] -= int(line.split()[1]) // _KB_PER_PAGE
    return sum(n for p, n in rss.items() if p in programs)


def protected_pids(proc: str = "/proc") -> set[int]:
    """pid 1, this process and every ancestor of it: never signalled."""
    pids = {1, os.getpid()}
    pid = os.getpid()
    while pid > 1:
        fields = read_stat(proc, pid)
        if fields is None:
            break
        pid = int(fields[STAT_PPID])
        pids.add(pid)
    return pids


class Host:
    """Reads /proc (or another procfs root, for tests of the parser)."""

    def __init__(self, proc: str = "/proc"):
        self.proc = proc
        #: tid -> start time when the emulator first learned of it: a tid reused by the
        #: kernel for a new task has another start time and is not the same task.
        self._start_times: dict[int, int] = {}
        self._mnt_ns: str | None = None

    def task(self, tid: int) -> TaskInfo | None:
        """The task with this TID (a thread or a process), or None."""
        fields = read_stat(self.proc, tid)
        if fields is None:
            return None
        try:
            with open(f"{self.proc}/{tid}/status", "rb") as f:
                status = f.read()
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            return None
        tgid = uid = suid = 0
        for line in status.splitlines():
            if line.startswith(b"Tgid:"):
                tgid = int(line.split()[1])
            elif line.startswith(b"Uid:"):
                ids = line.split()
                uid, suid = int(ids[1]), int(ids[3])
        return TaskInfo(tid, tgid, int(fields[STAT_STARTTIME]), int(fields[STAT_FLAGS]),
                        uid, suid)

    def threads(self, tgid: int) -> list[int]:
        try:
            return sorted(int(t) for t in os.listdir(f"{self.proc}/{tgid}/task"))
        except (FileNotFoundError, ProcessLookupError):
            return []

    def pids(self) -> list[int]:
        """Every process (thread-group leader) now."""
        return [int(e) for e in os.listdir(self.proc) if e.isdigit()]

    def all_tids(self) -> list[int]:
        tids = []
        for pid in self.pids():
            tids.extend(self.threads(pid))
        return tids

    def remember(self, info: TaskInfo) -> None:
        self._start_times[info.tid] = info.start_time

    def learn(self, tids) -> list[int]:
        """The tasks among *tids* that exist, remembered by their start time (so a
        reused tid is not taken for them later): the tids a group may hold."""
        live = []
        for tid in tids:
            info = self.task(tid)
            if info is not None:
                self.remember(info)
                live.append(tid)
        return live

    def learn_threads(self, tgid: int) -> list[int]:
        """Every thread of process *tgid*, learned (see learn)."""
        return self.learn(self.threads(tgid))

    def start_time(self, tid: int) -> int | None:
        fields = read_stat(self.proc, tid)
        return None if fields is None else int(fields[STAT_STARTTIME])

    def ppid(self, pid: int) -> int | None:
        fields = read_stat(self.proc, pid)
        return None if fields is None else int(fields[STAT_PPID])

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
        /proc/PID/fd/FD: a path, or e.g. 'anon_inode:[eventfd]'), None if not open.
        A path is given as our own namespace sees that file (mounts.translate) when
        PID lives in another mount namespace, as a command in `cgemu run` does;
        'mnt:[...]' when no mount of ours shows it."""
        try:
            target = os.readlink(f"{self.proc}/{pid}/fd/{fd}")
            if not target.startswith("/"):
                return target
            ns = os.readlink(f"{self.proc}/{pid}/ns/mnt")
        except (FileNotFoundError, ProcessLookupError):
            return None
        if ns == self._own_mnt_ns():
            return target
        return mounts.translate(self.proc, pid, fd, target) or ns

    def _own_mnt_ns(self) -> str:
        if self._mnt_ns is None:
            self._mnt_ns = os.readlink(f"{self.proc}/self/ns/mnt")
        return self._mnt_ns

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
        for tgid in self.pids():
            try:
                tids = os.listdir(f"{self.proc}/{tgid}/task")
            except OSError:
                continue
            for tid in tids:
                raw = _read(f"{self.proc}/{tgid}/task/{tid}/syscall", 256)
                words = raw.split() if raw else []
                if len(words) < 4 or not words[0].isdigit() or int(words[0]) not in nrs:
                    continue
                nr, fd, count = int(words[0]), int(words[1], 16), int(words[3], 16)
                if nr in _COUNTED and count != size:
                    continue
                found.append((tgid, int(tid), fd))
        return found

    def shares_files(self, tgid: int, tid: int) -> bool:
        """Does thread *tid* use the descriptor table of its process *tgid*?"""
        return same_files(tgid, tid)

    def fs_creds(self, tid: int) -> tuple[int, int] | None:
        """(fsuid, fsgid) of a task: what the kernel checks file access with."""
        status = _read(f"{self.proc}/{tid}/status", _STATUS_READ)
        if status is None:
            return None
        uid = gid = None
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                uid = int(line.split()[4])
            elif line.startswith(b"Gid:"):
                gid = int(line.split()[4])
        return None if uid is None or gid is None else (uid, gid)

    def take_eventfd(self, pid: int, fd: int) -> EventFd:
        """Our own duplicate of descriptor *fd* of process *pid* (see fds)."""
        return take_eventfd(pid, fd, self.proc)
