"""Forks found by looking at /proc, for a daemon that does not get fork events.

The kernel's rule: a task is born into the css_set of the task that forked it
(``cgroup_fork()``, ``cgroup_post_fork()``), and re-parenting moves nothing: an orphan
that ``forget_original_parent()`` hands to a subreaper or to its namespace's init keeps
the group it was forked in. The proc connector reports each fork with the forking
process, so the daemon knows who a child was born to. A scan of /proc does not: it
sees a child's *current* parent, which for an orphan is whoever collected it (pid 1,
a subreaper; nothing in /proc says which processes are subreapers).

So a new child of a followed process Q is taken as born in Q's group only when
nothing outside Q's group can have orphaned it since the last look: every process
below Q that is not a task of Q's group (its children from before it joined, a child
moved out, their descendants) is still there with an unchanged /proc/PID/stat (same
start time, faults, CPU time and threads: a process that forked, or reaped a child, has
faulted pages or run meanwhile), nothing new appeared among them, and no task was
moved out of a group. Otherwise the child stays where it is (its own group, the root),
which is the kernel's answer for every orphan; a child really forked by Q in such a
look is missed, which only a daemon with the proc connector can avoid.

Not emulated: CLONE_PARENT (the kernel places the child in the forking task's group,
the connector and /proc name its parent's parent).
"""

from __future__ import annotations

import os

import attrs

from ..host.procfs import (STAT_NUM_THREADS, STAT_PPID, STAT_STARTTIME, read_stat)
from .proc_events import children

#: /proc/PID/stat fields that change when a process runs at all: minflt, cminflt,
#: utime, stime (stat(5) fields 10, 11, 14, 15, counted after the command name)
_RAN = (7, 8, 11, 12)


def _signature(proc: str, pid: int) -> tuple | None:
    fields = read_stat(proc, pid)
    if fields is None:
        return None
    return (pid, fields[STAT_STARTTIME], fields[STAT_NUM_THREADS],
            *(fields[i] for i in _RAN))


@attrs.define
class BirthScan:
    """Which processes a /proc look may take as forked by a followed process."""

    proc: str = "/proc"
    #: every process seen under a followed process at an earlier look: not new
    known: set = attrs.field(factory=set)
    #: followed tgid -> the processes outside its group below it at the last look
    outside: dict = attrs.field(factory=dict)
    #: tracker.moves_out at the last look (a task left a group meanwhile)
    moves_seen: int = 0
    #: None: not known yet whether /proc/PID/task/TID/children exists
    children_files: bool | None = None

    def _kids_of(self):
        """A function pid -> children: the kernel's children files where it has
        them (CONFIG_PROC_CHILDREN), else the parent field of every /proc/PID/stat."""
        if self.children_files is not False:
            def kids(pid: int) -> list[int]:
                found = children(self.proc, pid)
                if found is None:
                    raise LookupError
                self.children_files = True
                return found
            try:
                if self.children_files is None:
                    kids(os.getpid())
                return kids
            except LookupError:
                self.children_files = False
        by_parent: dict[int, list[int]] = {}
        for e in os.listdir(self.proc):
            if e.isdigit():
                fields = read_stat(self.proc, int(e))
                if fields is not None:
                    by_parent.setdefault(int(fields[STAT_PPID]), []).append(int(e))
        return lambda pid: by_parent.get(pid, [])

    def _below(self, kids, tgid: int, group_of, followed) -> tuple[list, frozenset, list]:
        """(new children of *tgid*, the signature of what lies outside its group
        below it, followed processes of its group below it)."""
        group = group_of(tgid)
        new, outside, inner = [], [], []
        stack = [(kid, True) for kid in kids(tgid)]
        while stack:
            pid, direct = stack.pop()
            if pid in followed and group_of(pid) is group:
                inner.append(pid)  # its own look covers what lies below it
                continue
            if direct and pid not in self.known and pid not in followed:
                new.append(pid)
                continue
            # Its children before its stat, and one listed but gone counts as a
            # change: a parent that reaps a child between the two reads changes its
            # counters first (wait_task_zombie(): cmin_flt) and its children after
            # (release_task()), so the other order could see neither change and take
            # an orphan of that child for a fork of the followed process.
            below = kids(pid)
            outside.append(_signature(self.proc, pid) or (pid, None))
            stack.extend((kid, False) for kid in below)
        return new, frozenset(outside), inner

    def _signatures(self, pids) -> frozenset:
        return frozenset(s for s in (_signature(self.proc, p) for p in pids) if s is not None)

    def joined(self, tgid: int, followed, group_of) -> None:
        """*tgid* joined a group by a write: what lies below it now is old."""
        kids = self._kids_of()
        new, outside, _ = self._below(kids, tgid, group_of, followed)
        self.known.update(new)
        self.outside[tgid] = outside | self._signatures(new)

    def born(self, tgid: int) -> None:
        """*tgid* was forked in its group: nothing lies below it yet."""
        self.outside[tgid] = frozenset()

    def forget(self, tgid: int) -> None:
        self.outside.pop(tgid, None)

    def look(self, followed, group_of, moves_out: int) -> list[tuple[int, int]]:
        """(pid, parent tgid) of every process new below a followed process whose
        birth in that process's group is certain (see the module docstring)."""
        kids = self._kids_of()
        moved = moves_out != self.moves_seen
        self.moves_seen = moves_out
        found: dict[int, tuple] = {}
        for tgid in list(followed):
            found[tgid] = self._below(kids, tgid, group_of, followed)
        tainted: dict[int, bool] = {}

        def taint(tgid: int, seen: frozenset = frozenset()) -> bool:
            if tgid not in tainted:
                new, outside, inner = found[tgid]
                tainted[tgid] = moved or self.outside.get(tgid) != outside or any(
                    taint(p, seen | {tgid}) for p in inner if p in found and p not in seen)
            return tainted[tgid]

        out = []
        known = set()
        for tgid, (new, outside, _) in found.items():
            known.update(new)
            if taint(tgid):
                # left where they are: from now on they lie outside, below tgid
                self.outside[tgid] = outside | self._signatures(new)
            else:
                self.outside[tgid] = outside
                out.extend((pid, tgid) for pid in new)
        self.known = known | {s[0] for _, o, _ in found.values() for s in o}
        for tgid in [t for t in self.outside if t not in followed]:
            del self.outside[tgid]
        return out

    def adopt(self, tracker) -> list:
        """Every process new below a followed one whose birth in its group is sure
        enters it through the tracker's one door (ProcessTracker.forked): (entry,
        parent entry) of each."""
        out = []
        for pid, ptgid in self.look(tracker.followed, tracker.hierarchy.task_group.get,
                                    tracker.moves_out):
            parent = tracker.followed.get(ptgid)
            entry = tracker.forked(pid, ptgid)
            if entry is not None:
                out.append((entry, parent))
        return out
