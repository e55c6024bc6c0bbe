"""Following real processes: what each was charged, from what /proc says of it.

A process is *followed* once its thread-group leader is in a non-root group (written
into ``tasks`` or ``cgroup.procs``, or forked in a group: :meth:`ProcessTracker.forked`,
the one door, keeps the kernel's rule that a task's group is the one it was forked
in) and it is not a socket client (those say themselves what they use). Each sample
(when: follower.py) reads ``/proc/PID/status`` and charges what changed: ``RssAnon``
-> anon (rss), ``RssShmem`` -> shmem (cache, shmem, mapped_file), ``RssFile``
without the pages of the program's own executable and libraries and of system files
(from ``smaps``, read only when RssFile changed) -> mapped file pages (cache,
mapped_file), ``VmLck`` -> unevictable. New threads of a followed process join its
group; tasks stopped for an OOM'ing group with oom_kill_disable resume once their
growth fits; processes that exited are forgotten (their charges go).

Only memory touched after joining is charged: at the moment a process joins a group
(the write to ``tasks``, synchronously) the tracker records what it already uses as its
baseline. A forked child's baseline is what it still shares with its parent, or
nothing once it has exec'd. What a process frees is uncharged from what it was
charged, never below zero; freeing below the baseline lowers the baseline instead. A
process that execs gets a new address space (seen as a change of its code and stack
addresses): its baseline drops to zero (its program files excepted, as always).
"""

from __future__ import annotations

import logging
import os
import time

import attrs

from ..core.cgroup import Hierarchy, StatelessSubsystem, TaskSet
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
class Sampled:
    """What the last reading of a followed process's /proc said."""

    #: its address space (code and stack addresses): another one means an exec
    mm: tuple[int, int]
    #: /proc/PID/stat's key at the last full sample, and how many more looks may
    #: stop at stat when it is unchanged (FULL_EVERY: then status is read anyway)
    key: tuple = ()
    light_left: int = 0
    #: pages per kind (a forked child's baseline comes from it), resident pages
    last: dict = attrs.field(factory=dict)
    resident: int = 0
    #: threads /proc listed: more than before means new threads to adopt, and their
    #: ids then (only others are new: a thread there when its leader joined stays
    #: where it is, as the kernel moves one thread per write to tasks)
    threads: int = 1
    tids: frozenset = frozenset()
    #: RssFile at the last smaps scan, and the program pages found then
    file_seen: int = -1
    program_pages: int = 0

    def mapped(self, proc: str, tgid: int, file_total: int) -> int:
        """Data-file pages mapped: RssFile without the program's own files (smaps is
        read again only when RssFile changed)."""
        if file_total != self.file_seen:
            self.program_pages = program_file_pages(proc, tgid)
            self.file_seen = file_total
        return max(0, file_total - self.program_pages)


@attrs.define(eq=False)
class Followed:
    """A followed process: what it was charged and what the follower decided of it."""

    tgid: int
    owner: Owner
    start_time: int
    #: pages per kind it used when it joined (charged: what it touched since)
    base: dict[str, int]
    seen: Sampled
    #: the group whose OOM stopped this task (oom_kill_disable), or None
    stopped_in: object = None
    #: recover generation at which growth was last refused (retry after a change)
    refused_gen: int = -1
    refused_at: dict | None = None
    #: when last sampled (monotonic), and its own slow rate (cgemu exec --poll-ms)
    sampled_at: float = 0.0
    poll_ms: int | None = None
    #: live threads (kept by fork and exit events between samples), thread stacks
    #: charged, stack reservations made by guarded forks not yet seen, and the thread
    #: count at which a stack charge was last refused (not retried until it changes)
    nthreads: int = 1
    stacks: int = 0
    pending: list = attrs.field(factory=list)
    stacks_refused_at: int = -1
    #: when it joined a group by a write, in boot-time clock ticks and in
    #: CLOCK_MONOTONIC ns (the proc connector's clock), and the children it had then
    #: (they stay where they are: joining moves no children); all 0 and empty for a
    #: process forked in its group
    since: int = 0
    joined_ns: int = 0
    old_children: frozenset = frozenset()
    #: its last move between groups (CLOCK_MONOTONIC ns) and the group it left: a
    #: fork event from before the move, read after it, is the old group's
    moved_ns: int = 0
    left: object = None

    def born_before(self, pid: int, info, born_ns: int | None = None) -> bool:
        """Was child *pid* forked before this process joined its group? Exact for a
        fork event (its kernel timestamp) and where the kernel lists children
        (/proc/PID/task/TID/children); else by start time, to the clock tick."""
        if born_ns is not None:
            return born_ns < self.joined_ns
        return pid in self.old_children or (info is not None and info.start_time < self.since)


#: a followed process whose /proc/PID/stat is unchanged is read in full (status too)
#: at least every this many samples: at the slow poll, every 4 s (VmLck, or anon
#: turned into file pages at an equal total, are seen that late)
FULL_EVERY = 8


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _boot_ticks() -> int:
    """Now, in the unit of /proc/PID/stat's start time (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * _CLK_TCK)


def _resident(sample: MemSample) -> int:
    """RssAnon + RssFile + RssShmem: what /proc/PID/statm calls resident."""
    return sample.pages["anon"] + sample.pages["shmem"] + sample.pages["file"]


class ProcessTracker(StatelessSubsystem):
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
        #: tasks moved out of a group so far (births.py: a moved task's orphans
        #: were not forked in the group its collector is in)
        self.moves_out = 0
        #: entries forgotten, and whether each was kept stopped (oom_kill_disable),
        #: until whoever drives the tracker takes them (take_gone): their pidfds stay
        #: open till then, so nothing watching them can mistake another process
        self.gone: list[tuple[Followed, bool]] = []

    # ------------------------------------------------------------------ subsystem

    def bind(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy

    def can_attach(self, tset: TaskSet) -> None:
        if tset.leader is not None:
            if tset.src is not None and not tset.src.is_root:
                self.moves_out += 1
            self.before_move(tset.leader)

    # ------------------------------------------------------------------ joining

    def before_move(self, tgid: int) -> None:
        """A thread-group leader is about to change groups: settle what it used in
        its old group, or start following it with what it uses now as baseline."""
        entry = self.followed.get(tgid)
        if entry is not None:
            self.sample(entry)
            entry.moved_ns, entry.left = time.monotonic_ns(), self.hierarchy.group_of(tgid)
        else:
            self.start(tgid)

    def start(self, tgid: int, parent: Followed | None = None) -> Followed | None:
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
        entry = Followed(tgid, owner, sample.start_time, {},
                         Sampled(sample.mm, key=sample.key, light_left=0))
        if parent is None:  # joined by a write (or found in a group): not born there
            entry.since, entry.joined_ns = _boot_ticks(), time.monotonic_ns()
            entry.old_children = frozenset(children(self.host.proc, tgid) or ())
        seen = entry.seen
        if parent is not None and sample.mm == parent.seen.mm and parent.seen.file_seen >= 0:
            # a fresh fork maps what its parent maps: take the parent's program
            # pages instead of reading smaps (a fork bomb must be cheap to follow)
            seen.file_seen = sample.pages["file"]
            seen.program_pages = min(parent.seen.program_pages, seen.file_seen)
        pages = self._pages(entry, sample)
        if parent is None:
            entry.base = pages
        elif sample.mm != parent.seen.mm:
            entry.base = dict.fromkeys(pages, 0)
        else:
            entry.base = {k: min(n, parent.seen.last.get(k, 0)) for k, n in pages.items()}
        seen.last = pages
        seen.resident = _resident(sample)
        entry.nthreads = seen.threads = sample.threads
        seen.tids = (frozenset((tgid,)) if sample.threads == 1
                     else frozenset(self.host.threads(tgid)))
        self.followed[tgid] = entry
        return entry

    # ------------------------------------------------------------------ forks

    def birth_group(self, pid: int, ptgid: int, born_ns: int | None = None,
                    info=None):
        """The group process *pid* was forked in, if it is one to follow: the group
        of *ptgid*, the process that forked it (a fork event says so; a /proc look
        has made sure, service/births.py), unless *pid* was forked before *ptgid*
        joined that group. A task's group is the one it was forked in
        (cgroup_fork()); joining moves no children and re-parenting moves nothing.
        None for a protected pid (the daemon, its ancestors, pid 1): the daemon
        never accounts them."""
        group = self.hierarchy.task_group.get(ptgid)
        parent = self.followed.get(ptgid)
        if parent is not None and born_ns is not None and born_ns < parent.moved_ns:
            group = parent.left  # forked before its parent moved on
        if (group is None or group.is_root or not group.online
                or not self.signals.may_signal(pid)):
            return None
        if parent is not None and (parent.joined_ns or parent.since):
            if born_ns is None and info is None and pid not in parent.old_children:
                info = self.host.task(pid)
                if info is None:
                    return None
            if parent.born_before(pid, info, born_ns):
                return None
        return group

    def forked(self, pid: int, ptgid: int, born_ns: int | None = None) -> Followed | None:
        """The one door through which a fork enters a group: process *pid*, forked
        by *ptgid* (at *born_ns*, from a fork event), joins the group it was forked
        in (birth_group) and is followed from now on."""
        if pid in self.followed:
            return self.followed[pid]
        info = self.host.task(pid)
        if info is None or info.tgid != pid:
            return None
        group = self.birth_group(pid, ptgid, born_ns, info)
        if group is None:
            return None
        self.host.remember(info)
        self.hierarchy.attach_all(self.host.learn_threads(pid), group)
        return self.start(pid, self.followed.get(ptgid))

    def _pages(self, entry: Followed, sample: MemSample) -> dict[str, int]:
        pages = dict(sample.pages)
        pages["mapped"] = entry.seen.mapped(self.host.proc, entry.tgid, pages.pop("file"))
        return pages

    def stop_following(self, pid: int) -> None:
        """*pid* connected to the socket: what it was charged from /proc goes."""
        entry = self.followed.get(pid)
        if entry is not None:
            self.exited(entry, settle=False)

    def _is_client(self, pid: int) -> bool:
        return any(o.pid == pid and not o.followed for o in self.memory.owners)

    # ------------------------------------------------------------------ polling

    def settle_members(self) -> list[Followed]:
        """Before a slow poll: leaders in a group not followed yet are followed (the
        entries started), clients are not (they say themselves what they use)."""
        started = []
        for tgid in [t for t in self.hierarchy.task_group if t not in self.followed]:
            if self.host.tgid_of(tgid) == tgid:
                entry = self.start(tgid)
                if entry is not None:
                    started.append(entry)
        clients = {o.pid for o in self.memory.owners if not o.followed}
        for entry in [e for e in self.followed.values() if e.tgid in clients]:
            self.exited(entry, settle=False)
        return started

    def take_gone(self) -> list[tuple[Followed, bool]]:
        """The entries forgotten since the last call; the caller closes their pidfds
        (Signaller.forget) once it stopped watching them."""
        gone, self.gone = self.gone, []
        return gone

    def _adopt_threads(self, entry: Followed, count: int) -> None:
        """New threads of a process in a group join the group (checked only when the
        thread count grew since the last poll). A kernel puts a new thread in its
        creator's group (cgroup_post_fork()); /proc does not say which thread
        created it, so here it is the leader's."""
        seen = entry.seen
        if count <= seen.threads:
            seen.threads = count
            return
        seen.threads = count
        h = self.hierarchy
        group = h.task_group.get(entry.tgid)
        tids = self.host.threads(entry.tgid)
        new = [t for t in tids if t not in seen.tids and t not in h.task_group]
        seen.tids = frozenset(tids)
        if group is not None:
            h.attach_all(self.host.learn(new), group)

    def sample(self, entry: Followed) -> int | None:
        """Read *entry* and charge what changed; the pages it had before, or None
        when it is not followed any more (it exited, was killed)."""
        before = sum(entry.seen.last.values())
        self._follow_once(entry)
        return before if self.followed.get(entry.tgid) is entry else None

    def _follow_once(self, entry: Followed) -> None:
        # A task nothing was refused for (a stopped task must be looked at in full
        # again when its group recovers) stops at stat when stat shows no change.
        seen = entry.seen
        light = (seen.key if seen.light_left > 0 and entry.refused_at is None
                 and entry.stopped_in is None else None)
        sample = read_sample(self.host.proc, entry.tgid, light)
        if sample is UNCHANGED:
            seen.light_left -= 1
            if entry.owner.alive:
                return
            sample = read_sample(self.host.proc, entry.tgid)
        seen.light_left = FULL_EVERY
        if sample is not None:
            seen.key = sample.key
        if (sample is None or sample.start_time != entry.start_time
                or not entry.owner.alive):  # exited, or an OOM victim already
            self.exited(entry)
            return
        self._adopt_threads(entry, sample.threads)
        pages = self._pages(entry, sample)
        seen.last = pages
        seen.resident = _resident(sample)
        entry.nthreads = sample.threads
        if sample.mm != seen.mm:  # exec: a new address space, all of it touched anew
            seen.mm = sample.mm
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
                self.exited(entry, killed=killed)
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

    def exited(self, entry: Followed, killed: bool = False, settle: bool = True) -> None:
        if self.followed.get(entry.tgid) is not entry:
            return
        if settle and not killed and entry.owner.alive:
            # growth seen before the exit but never charged (refused, or seen at the
            # adoption sample only): charge what fits (up to the limit, so max_usage
            # shows it) and count the failure, then release
            usage = entry.refused_at or {k: max(0, entry.seen.last.get(k, 0) - entry.base.get(k, 0))
                                         for k in _FOLLOWED}
            charged = entry.owner.charged
            if any(usage[k] > charged.get(k, 0) for k in _FOLLOWED):
                try:
                    self.memory.follow(entry.owner, self.memory.memcg_of_task(entry.tgid),
                                       {k: usage[k] for k in _FOLLOWED}, 0)
                except NoMemory:
                    pass
        self.gone.append((entry, entry.stopped_in is not None))
        self._resume(entry, signal_it=False)
        self.memory.release(entry.owner)
        self.followed.pop(entry.tgid, None)

    def close(self) -> None:
        """At unmount: never leave a task stopped."""
        for entry in list(self.followed.values()):
            self._resume(entry)
            self.signals.forget(entry.owner)
        for entry, _ in self.take_gone():
            self.signals.forget(entry.owner)
