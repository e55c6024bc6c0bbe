"""Following real processes: fork inheritance and memory read from /proc.

A process is *followed* once its thread-group leader is in a non-root group (written
into ``tasks`` or ``cgroup.procs``, or forked by a followed process) and it is not a
socket client (those say themselves what they use). Every poll (``-o poll_ms``,
default 500 ms) the tracker:

* adopts new processes whose parent is in a group, and new threads of followed
  processes, into that group (fork inheritance; latency: one poll). A child's
  baseline is what it still shares with its parent, so what it allocated between the
  fork and the poll is charged; a child that already exec'd is charged from zero;
* reads ``/proc/PID/status`` of every followed process and charges what changed since
  the last poll: ``RssAnon`` -> anon (rss), ``RssShmem`` -> shmem (cache, shmem,
  mapped_file), ``RssFile`` without the pages of the program's own executable and
  libraries and of system files (from ``smaps``, read only when RssFile changed) ->
  mapped file pages (cache, mapped_file), ``VmLck`` -> unevictable;
* resumes tasks it stopped for an OOM'ing group with oom_kill_disable once their
  growth fits, and forgets processes that exited (their charges go).

Only memory touched after joining is charged: at the moment a process joins a group
(the write to ``tasks``, synchronously) the tracker records what it already uses as its
baseline. What a process frees is uncharged from what it was charged, never below
zero; freeing below the baseline lowers the baseline instead. A process that execs
gets a new address space (seen as a change of its code and stack addresses): its
baseline drops to zero, since everything in the new image is touched after joining
(its program files excepted, as always).
"""

from __future__ import annotations

import logging
import os
import signal

import attrs

from ..core.charge import FOLLOWED_KINDS, Owner
from ..core.errors import NoMemory
from ..core.hierarchy import Hierarchy
from ..core.page_counter import PAGE_SIZE
from .host import Host
from .server import oom_kill
from .signals import Signaller

log = logging.getLogger("cgroupfs_emu.tracker")

_STATUS_KEYS = {b"RssAnon:": "anon", b"RssShmem:": "shmem", b"RssFile:": "file",
                b"VmLck:": "locked"}
_KB_PER_PAGE = PAGE_SIZE // 1024


@attrs.frozen
class MemSample:
    """One reading of a process: pages per kind, and its address-space identity."""

    pages: dict[str, int]
    mm: tuple[int, int]
    start_time: int
    threads: int = 1


def read_sample(proc: str, pid: int) -> MemSample | None:
    """/proc/PID/status (memory) and /proc/PID/stat (start time, code and stack
    addresses), with plain os.read: this runs for every followed process every poll."""
    try:
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
        fd = os.open(f"{proc}/{pid}/status", os.O_RDONLY)
        try:
            status = os.read(fd, 8192)
        finally:
            os.close(fd)
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has no memory left
    pages = {}
    for key, kind in _STATUS_KEYS.items():
        i = status.find(key)
        if i < 0:
            pages[kind] = 0
            continue
        i += len(key)
        pages[kind] = int(status[i:status.index(b" kB", i)]) // _KB_PER_PAGE
    # fields[17] num_threads, fields[19] starttime, fields[23] startcode, fields[25]
    # startstack (man 5 proc: fields 20, 22, 26 and 28)
    return MemSample(pages, (int(fields[23]), int(fields[25])), int(fields[19]),
                     int(fields[17]))


#: files below these directories (libraries, locales, fonts, configuration) are taken
#: to be in the page cache already, charged to whoever read them first
SYSTEM_PREFIXES = (b"/usr/", b"/lib", b"/etc/", b"/bin/", b"/sbin/", b"/opt/", b"/var/lib/")


def _resident(sample: MemSample) -> int:
    """RssAnon + RssFile + RssShmem: what /proc/PID/statm calls resident."""
    return sample.pages["anon"] + sample.pages["shmem"] + sample.pages["file"]


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


@attrs.define(eq=False)
class Followed:
    tgid: int
    owner: Owner
    start_time: int
    base: dict[str, int]
    mm: tuple[int, int]
    #: the group whose OOM stopped this task (oom_kill_disable), or None
    stopped_in: object = None
    #: recover generation at which growth was last refused (retry after a change)
    refused_gen: int = -1
    refused_at: dict | None = None
    #: RssFile at the last smaps scan, and the program pages found then
    file_seen: int = -1
    program_pages: int = 0
    #: threads counted at the last poll: more means new threads to adopt
    threads: int = 1
    #: pages per kind at the last reading (a forked child's baseline comes from it)
    last: dict = attrs.field(factory=dict)
    #: issue 13 (follower.py): when last sampled (monotonic), its own slow rate
    #: (cgemu exec --poll-ms), resident pages and threads at the last sample, thread
    #: stacks charged, stack reservations made by guarded forks not yet seen
    sampled_at: float = 0.0
    poll_ms: int | None = None
    resident: int = 0
    nthreads: int = 1
    stacks: int = 0
    pending: list = attrs.field(factory=list)

    def mapped(self, tracker_proc: str, file_total: int) -> int:
        """Data-file pages mapped: RssFile without the program's own files (smaps is
        read again only when RssFile changed)."""
        if file_total != self.file_seen:
            self.program_pages = program_file_pages(tracker_proc, self.tgid)
            self.file_seen = file_total
        return max(0, file_total - self.program_pages)


class ProcessTracker:
    def __init__(self, hierarchy: Hierarchy, host: Host, signals: Signaller):
        self.hierarchy = hierarchy
        self.charges = hierarchy.charges
        self.host = host
        self.signals = signals
        self.followed: dict[int, Followed] = {}
        #: pid -> start time of every process seen so far (new ones may be children)
        self.seen: dict[int, int] | None = None
        self.alive: set[int] = set()
        #: the event-driven half (service/follower.py), when there is one
        self.driver = None
        hierarchy.before_move = self.before_move

    # ------------------------------------------------------------------ joining

    def before_move(self, tgid: int) -> None:
        """A thread-group leader is about to change groups: settle what it used in
        its old group, or start following it with what it uses now as baseline."""
        entry = self.followed.get(tgid)
        if entry is not None:
            self._follow(entry)
        else:
            self._start(tgid)

    def _start(self, tgid: int, parent: Followed | None = None) -> Followed | None:
        """Follow *tgid* from now on. Its baseline is what it uses now; for a child
        forked by a followed *parent*, only what it shares with the parent (a fresh
        fork maps the parent's pages copy-on-write; those stay the parent's), or
        nothing if it has already exec'd."""
        if tgid in self.followed or self._is_client(tgid):
            return self.followed.get(tgid)
        sample = read_sample(self.host.proc, tgid)
        if sample is None:
            return None
        try:
            pidfd = os.pidfd_open(tgid)
        except OSError:
            return None
        owner = self.charges.new_owner(tgid, followed=True)
        self.signals.adopt(owner, pidfd)
        entry = Followed(tgid, owner, sample.start_time, {}, sample.mm)
        if parent is not None and sample.mm == parent.mm and parent.file_seen >= 0:
            # a fresh fork maps what its parent maps: take the parent's program
            # pages instead of reading smaps (a fork bomb must be cheap to follow)
            entry.file_seen = sample.pages["file"]
            entry.program_pages = min(parent.program_pages, entry.file_seen)
        pages = self._pages(entry, sample)
        if parent is None:
            entry.base = pages
        elif sample.mm != parent.mm:
            entry.base = dict.fromkeys(pages, 0)
        else:
            entry.base = {k: min(n, parent.last.get(k, 0)) for k, n in pages.items()}
        entry.last = pages
        entry.resident = _resident(sample)
        entry.nthreads = sample.threads
        self.followed[tgid] = entry
        if self.driver is not None:
            self.driver.started(entry, parent)
        return entry if tgid in self.followed else None

    # ------------------------------------------------------------------ for the driver

    def start_child(self, pid: int, parent: Followed | None) -> Followed | None:
        """A fork event: *pid* was just forked by *parent* (already attached)."""
        return self._start(pid, parent)

    def start_joined(self, pid: int) -> Followed | None:
        return self._start(pid)

    def adopt_if_child(self, tgid: int) -> Followed | None:
        """A task not yet known whose parent is followed: adopt it now (a fork the
        /proc scan has not seen yet)."""
        parent = self._ppid(tgid)
        group = self.hierarchy.task_group.get(parent) if parent else None
        if group is None or not group.online:
            return None
        for tid in self.host.threads(tgid):
            t = self.host.task(tid)
            if t is not None:
                self.host.remember(t)
                self.hierarchy.attach(tid, group)
        return self._start(tgid, self.followed.get(parent))

    def scan_new_processes(self) -> None:
        """Fork inheritance by a /proc scan, now (the driver's fallback)."""
        self._inherit()

    def sample(self, entry: Followed) -> None:
        self._follow(entry)

    def exited_now(self, entry: Followed) -> None:
        self._exited(entry)

    def _pages(self, entry: Followed, sample: MemSample) -> dict[str, int]:
        pages = dict(sample.pages)
        pages["mapped"] = entry.mapped(self.host.proc, pages.pop("file"))
        return pages

    def stop_following(self, pid: int) -> None:
        """*pid* connected to the socket: what it was charged from /proc goes."""
        entry = self.followed.get(pid)
        if entry is not None:
            self._exited(entry)

    def _is_client(self, pid: int) -> bool:
        return any(o.pid == pid and not o.followed for o in self.charges.owners)

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        #: leaders seen alive (same start time) in this poll: no need to look again
        self.alive: set[int] = set()
        if self.driver is not None:
            self.driver.before_charge()  # exits first, then growth
        self._inherit()
        h = self.hierarchy
        for tgid in [t for t in h.task_group if t not in self.followed]:
            if self.host.tgid_of(tgid) == tgid:
                self._start(tgid)
        clients = {o.pid for o in self.charges.owners if not o.followed}
        for entry in list(self.followed.values()):
            if entry.tgid in clients:
                # it connected to the socket: from now on it says what it uses
                self._exited(entry)
            else:
                self._follow(entry)

    def _inherit(self) -> None:
        """Fork inheritance: processes new since the last poll whose parent is in a
        group join it; so do new threads of processes in a group."""
        h = self.hierarchy
        current = {}
        for name in os.listdir(self.host.proc):
            if name.isdigit():
                current[int(name)] = 0
        if self.seen is None:  # first poll: everything that exists is old
            self.seen = current
            return
        for pid in current:
            if pid in self.seen:
                continue
            info = self.host.task(pid)
            if info is None:
                continue
            parent = self._ppid(pid)
            group = h.task_group.get(parent) if parent else None
            if group is not None and group.online:
                for tid in self.host.threads(pid):
                    t = self.host.task(tid)
                    if t is not None:
                        self.host.remember(t)
                        h.attach(tid, group)
                self._start(pid, self.followed.get(parent))
        self.seen = current

    def _adopt_threads(self, entry: Followed, count: int) -> None:
        """New threads of a process in a group join the group (checked only when the
        thread count grew since the last poll)."""
        if count <= entry.threads:
            entry.threads = count
            return
        entry.threads = count
        h = self.hierarchy
        group = h.task_group.get(entry.tgid)
        if group is None:
            return
        for tid in self.host.threads(entry.tgid):
            if tid not in h.task_group:
                t = self.host.task(tid)
                if t is not None:
                    self.host.remember(t)
                    h.attach(tid, group)

    def _ppid(self, pid: int) -> int | None:
        try:
            with open(f"{self.host.proc}/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return None
        return int(stat[stat.rindex(b")") + 2:].split()[1])

    def _follow(self, entry: Followed) -> None:
        before = sum(entry.last.values())
        self._follow_once(entry)
        if self.driver is not None and self.followed.get(entry.tgid) is entry:
            self.driver.sampled(entry, before)

    def _follow_once(self, entry: Followed) -> None:
        sample = read_sample(self.host.proc, entry.tgid)
        if (sample is None or sample.start_time != entry.start_time
                or not entry.owner.alive):  # exited, or an OOM victim already
            self._exited(entry)
            return
        self.alive.add(entry.tgid)
        self._adopt_threads(entry, sample.threads)
        pages = self._pages(entry, sample)
        entry.last = pages
        entry.resident = _resident(sample)
        entry.nthreads = sample.threads
        if sample.mm != entry.mm:  # exec: a new address space, all of it touched anew
            entry.mm = sample.mm
            entry.base = dict.fromkeys(pages, 0)
        usage = {}
        for kind, now in pages.items():
            if now < entry.base[kind]:
                entry.base[kind] = now
            usage[kind] = now - entry.base[kind]
        if entry.refused_at == usage and entry.refused_gen == self.hierarchy.recover_gen:
            return  # refused before and nothing changed since
        group = self.hierarchy.group_of(entry.tgid)
        try:
            verdict = self.charges.follow(entry.owner, group,
                                          {k: usage[k] for k in FOLLOWED_KINDS}, usage["locked"])
        except NoMemory as e:
            log.warning("pid %d: growth in %s refused: %s", entry.tgid, group.path(), e)
            entry.refused_at, entry.refused_gen = usage, self.hierarchy.recover_gen
            self._resume(entry)
            return
        entry.refused_at = None
        if verdict is None:
            self._resume(entry)
        elif verdict.victim is not None:
            killed = oom_kill(self.charges, self.signals, verdict.victim, verdict.group)
            if verdict.victim is entry.owner:
                self._exited(entry, killed=killed)
                return
            self._resume(entry)
            self._follow_once(entry)  # the retry, now that the victim's memory is gone
        elif entry.stopped_in is None:
            # oom_kill_disable: the task sleeps in its page fault until the group
            # recovers; a real task is stopped instead
            if self.signals.send(entry.owner, signal.SIGSTOP):
                entry.stopped_in = verdict.group
                self.charges.mark_under_oom(verdict.group, +1)
            else:
                entry.refused_at, entry.refused_gen = usage, self.hierarchy.recover_gen

    def _resume(self, entry: Followed) -> None:
        if entry.stopped_in is not None:
            self.charges.mark_under_oom(entry.stopped_in, -1)
            entry.stopped_in = None
            self.signals.send(entry.owner, signal.SIGCONT)

    def _exited(self, entry: Followed, killed: bool = False) -> None:
        if self.followed.get(entry.tgid) is not entry:
            return
        if entry.refused_at is not None and not killed and entry.owner.alive:
            # growth seen before the exit but never charged: charge what fits (up to
            # the limit, so max_usage shows it) and count the failure, then release
            try:
                self.charges.follow(entry.owner, self.hierarchy.group_of(entry.tgid),
                                    {k: entry.refused_at[k] for k in FOLLOWED_KINDS}, 0)
            except NoMemory:
                pass
        if self.driver is not None:
            self.driver.forgotten(entry)
        if entry.stopped_in is not None:
            self.charges.mark_under_oom(entry.stopped_in, -1)
            entry.stopped_in = None
        self.charges.release(entry.owner)
        self.signals.forget(entry.owner)
        self.followed.pop(entry.tgid, None)

    def close(self) -> None:
        """At unmount: never leave a task stopped."""
        for entry in list(self.followed.values()):
            self._resume(entry)
            self.signals.forget(entry.owner)

    def table(self) -> list[tuple[int, str, dict[str, int]]]:
        """(tgid, group path, charged pages per kind) of every followed process."""
        return [(e.tgid, self.hierarchy.group_of(e.tgid).path(), dict(e.owner.charged))
                for e in sorted(self.followed.values(), key=lambda e: e.tgid)]
