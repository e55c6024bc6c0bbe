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
import time

import attrs

from ..core.cgroup import Hierarchy, TaskSet
from ..core.errors import NoMemory
from ..core.memcg import KINDS, MemoryController, Owner
from ..host.fds import open_pidfd
from ..host.procfs import UNCHANGED, Host, MemSample, program_file_pages, read_sample
from .oom import OomExecutor
from .proc_events import children

log = logging.getLogger("cgroupfs_emu.tracker")

#: the kinds a sample's pages are charged as (the rest of the sample: "file", the
#: RssFile the mapped pages come from, and "locked")
_FOLLOWED = tuple(k.name for k in KINDS.values() if k.followed)


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
    #: threads counted at the last poll: more means new threads to adopt, and the
    #: thread ids there were then (only others are new: a thread that was there when
    #: its leader joined stays where it is, as the kernel moves one thread per write)
    threads: int = 1
    tids: frozenset = frozenset()
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
    #: thread count at which a stack charge was last refused (not retried until it
    #: changes)
    stacks_refused_at: int = -1
    #: boot-time clock ticks when following began, and the children it had then
    #: (they stay where they are: joining moves no children)
    since: int = 0
    old_children: frozenset = frozenset()

    def born_before(self, pid: int, info) -> bool:
        """Was child *pid* there before this process was followed? Exact where the
        kernel lists children (/proc/PID/task/TID/children); else by start time,
        to the clock tick."""
        return pid in self.old_children or info.start_time < self.since
    #: /proc/PID/stat's key at the last full sample, and how many more looks may
    #: stop at stat when it is unchanged (FULL_EVERY: then status is read anyway)
    key: tuple = ()
    light_left: int = 0

    def mapped(self, tracker_proc: str, file_total: int) -> int:
        """Data-file pages mapped: RssFile without the program's own files (smaps is
        read again only when RssFile changed)."""
        if file_total != self.file_seen:
            self.program_pages = program_file_pages(tracker_proc, self.tgid)
            self.file_seen = file_total
        return max(0, file_total - self.program_pages)


#: a followed process whose /proc/PID/stat is unchanged is read in full (status too)
#: at least every this many samples: at the slow poll, every 4 s (VmLck, or anon
#: turned into file pages at an equal total, are seen that late)
FULL_EVERY = 8
#: a poll hands over to the event-driven half (exits, forks) every this many samples
EVENTS_EVERY = 16


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _boot_ticks() -> int:
    """Now, in the unit of /proc/PID/stat's start time (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK)


def _resident(sample: MemSample) -> int:
    """RssAnon + RssFile + RssShmem: what /proc/PID/statm calls resident."""
    return sample.pages["anon"] + sample.pages["shmem"] + sample.pages["file"]


class ProcessTracker:
    """Follows real processes. A cgroup subsystem without files: the cgroup core
    calls its can_attach before the memory controller's, so a leader's usage is
    settled in its old group before its charges move."""

    name = "follow"

    def __init__(self, memory: MemoryController, host: Host, executor: OomExecutor):
        self.memory = memory
        self.host = host
        self.executor = executor
        self.signals = executor.signals
        #: the hierarchy, once bound (Subsystem.bind)
        self.hierarchy: Hierarchy | None = None
        self.followed: dict[int, Followed] = {}
        #: pid -> start time of every process seen so far (new ones may be children)
        self.seen: dict[int, int] | None = None
        self.alive: set[int] = set()
        #: the event-driven half (service/follower.py), which hands itself over
        #: when it is built on top of this tracker
        self.driver = None

    # ------------------------------------------------------------------ subsystem

    def bind(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy

    def css_alloc(self, cgroup, parent_css) -> None:
        return None

    def css_offline(self, css) -> None:
        pass

    def css_free(self, css) -> None:
        pass

    def can_attach(self, tset: TaskSet) -> None:
        if tset.leader is not None:
            self.before_move(tset.leader)

    def attach(self, tset: TaskSet) -> None:
        """The leader is in its new group now: let the driver guard it there at once
        (its limits, its stop-first trip point), before the write to ``tasks``
        returns and the task is told to go on; not at its first fast sample, which a
        task allocating gigabytes a second would outrun."""
        entry = self.followed.get(tset.leader) if tset.leader is not None else None
        if entry is not None and self.driver is not None:
            self.driver.sampled(entry, sum(entry.last.values()))

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
            pidfd = open_pidfd(tgid)
        except OSError:
            return None
        owner = self.memory.new_owner(tgid, followed=True)
        self.signals.adopt(owner, pidfd)
        # light_left 0: the first look reads everything and charges what the task
        # used between its adoption sample and then
        entry = Followed(tgid, owner, sample.start_time, {}, sample.mm, key=sample.key,
                         light_left=0, since=_boot_ticks(),
                         old_children=(frozenset(children(self.host.proc, tgid) or ())
                                       if parent is None else frozenset()))
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
        entry.nthreads = entry.threads = sample.threads
        entry.tids = (frozenset((tgid,)) if sample.threads == 1
                      else frozenset(self.host.threads(tgid)))
        self.followed[tgid] = entry
        if self.driver is not None:
            self.driver.started(entry, parent)
        return entry if tgid in self.followed else None

    # ------------------------------------------------------------------ for the driver

    def start_child(self, pid: int, parent: Followed | None) -> Followed | None:
        """A fork event: *pid* was just forked by *parent* (already attached)."""
        self._seen_now(pid)
        return self._start(pid, parent)

    def _seen_now(self, pid: int) -> None:
        """A child adopted from an event is not new to the next /proc scan: were it
        moved elsewhere meanwhile, the scan must not attach it to its parent's group
        again."""
        if self.seen is not None:
            self.seen[pid] = 0

    def start_joined(self, pid: int) -> Followed | None:
        return self._start(pid)

    def adopt_if_child(self, tgid: int) -> Followed | None:
        """A task not yet known whose parent is followed: adopt it now (a fork the
        /proc scan has not seen yet)."""
        parent = self.host.ppid(tgid)
        group = self.hierarchy.task_group.get(parent) if parent else None
        if group is None or not group.online or not self.signals.may_signal(tgid):
            return None
        parent_entry = self.followed.get(parent)
        info = self.host.task(tgid)
        if info is None or (parent_entry is not None and parent_entry.born_before(tgid, info)):
            return None  # older than its parent's joining: the kernel moves no children
        self.hierarchy.attach_all(self.host.learn_threads(tgid), group)
        self._seen_now(tgid)
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
            self._exited(entry, settle=False)

    def _is_client(self, pid: int) -> bool:
        return any(o.pid == pid and not o.followed for o in self.memory.owners)

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
        clients = {o.pid for o in self.memory.owners if not o.followed}
        for n, entry in enumerate(list(self.followed.values()), 1):
            if entry.tgid in clients:
                # it connected to the socket: from now on it says what it uses
                self._exited(entry, settle=False)
            elif self.followed.get(entry.tgid) is entry:
                self._follow(entry)
            if n % EVENTS_EVERY == 0 and self.driver is not None:
                # a poll of thousands of tasks takes a while: the exits and forks
                # that happen meanwhile (a fork bomb's) are not left waiting for it
                self.driver.before_charge()

    def _inherit(self) -> None:
        """Fork inheritance: processes new since the last poll whose parent is in a
        group join it; so do new threads of processes in a group."""
        h = self.hierarchy
        current = dict.fromkeys(self.host.pids(), 0)
        if self.seen is None:  # first poll: everything that exists is old
            self.seen = current
            return
        for pid in current:
            if pid in self.seen:
                continue
            info = self.host.task(pid)
            if info is None:
                continue
            parent = self.host.ppid(pid)
            group = h.task_group.get(parent) if parent else None
            parent_entry = self.followed.get(parent)
            if parent_entry is not None and parent_entry.born_before(pid, info):
                continue  # born before its parent joined: the kernel moves no children
            if group is not None and group.online:
                h.attach_all(self.host.learn_threads(pid), group)
                self._start(pid, self.followed.get(parent))
        self.seen = current

    def _adopt_threads(self, entry: Followed, count: int) -> None:
        """New threads of a process in a group join the group (checked only when the
        thread count grew since the last poll). A kernel puts a new thread in its
        creator's group (cgroup_post_fork()); /proc does not say which thread
        created it, so here it is the leader's."""
        if count <= entry.threads:
            entry.threads = count
            return
        entry.threads = count
        h = self.hierarchy
        group = h.task_group.get(entry.tgid)
        tids = self.host.threads(entry.tgid)
        new = [t for t in tids if t not in entry.tids and t not in h.task_group]
        entry.tids = frozenset(tids)
        if group is not None:
            h.attach_all(self.host.learn(new), group)

    def _follow(self, entry: Followed) -> None:
        before = sum(entry.last.values())
        self._follow_once(entry)
        if self.driver is not None and self.followed.get(entry.tgid) is entry:
            self.driver.sampled(entry, before)

    def _follow_once(self, entry: Followed) -> None:
        # A task nothing was refused for (a stopped task must be looked at in full
        # again when its group recovers) stops at stat when stat shows no change.
        light = (entry.key if entry.light_left > 0 and entry.refused_at is None
                 and entry.stopped_in is None else None)
        sample = read_sample(self.host.proc, entry.tgid, light)
        if sample is UNCHANGED:
            entry.light_left -= 1
            if entry.owner.alive:
                self.alive.add(entry.tgid)
                return
            sample = read_sample(self.host.proc, entry.tgid)
        entry.light_left = FULL_EVERY
        if sample is not None:
            entry.key = sample.key
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
        memory = self.memory
        if entry.refused_at == usage and entry.refused_gen == memory.recover_gen:
            return  # refused before and nothing changed since
        group = memory.memcg_of_task(entry.tgid)
        try:
            verdict = memory.follow(entry.owner, group, {k: usage[k] for k in _FOLLOWED},
                                    usage["locked"])
        except NoMemory as e:
            log.warning("pid %d: growth in %s refused: %s", entry.tgid, group.path(), e)
            entry.refused_at, entry.refused_gen = usage, memory.recover_gen
            self._resume(entry)
            return
        entry.refused_at = None
        if verdict is None:
            self._resume(entry)
        elif verdict.victim is not None:
            killed = self.executor.kill(verdict)
            if verdict.victim is entry.owner:
                self._exited(entry, killed=killed)
                return
            self._resume(entry)
            self._follow_once(entry)  # the retry, now that the victim's memory is gone
        elif entry.stopped_in is None:
            # oom_kill_disable: the task sleeps in its page fault until the group
            # recovers; a real task is stopped instead
            if self.executor.stop(entry.owner, verdict.group):
                entry.stopped_in = verdict.group
            else:
                entry.refused_at, entry.refused_gen = usage, memory.recover_gen

    def _resume(self, entry: Followed, signal_it: bool = True) -> None:
        if entry.stopped_in is not None:
            self.executor.resume(entry.owner, entry.stopped_in, signal_it)
            entry.stopped_in = None

    def _exited(self, entry: Followed, killed: bool = False, settle: bool = True) -> None:
        if self.followed.get(entry.tgid) is not entry:
            return
        if settle and not killed and entry.owner.alive:
            # growth seen before the exit but never charged (refused, or seen at the
            # adoption sample only): charge what fits (up to the limit, so max_usage
            # shows it) and count the failure, then release
            usage = entry.refused_at or {k: max(0, entry.last.get(k, 0) - entry.base.get(k, 0))
                                         for k in _FOLLOWED}
            charged = entry.owner.charged
            if any(usage[k] > charged.get(k, 0) for k in _FOLLOWED):
                try:
                    self.memory.follow(entry.owner, self.memory.memcg_of_task(entry.tgid),
                                       {k: usage[k] for k in _FOLLOWED}, 0)
                except NoMemory:
                    pass
        if self.driver is not None:
            self.driver.forgotten(entry)
        self._resume(entry, signal_it=False)
        self.memory.release(entry.owner)
        self.signals.forget(entry.owner)
        self.followed.pop(entry.tgid, None)

    def close(self) -> None:
        """At unmount: never leave a task stopped."""
        for entry in list(self.followed.values()):
            self._resume(entry)
            self.signals.forget(entry.owner)
