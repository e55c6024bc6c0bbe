"""A fork of a followed task: its group, its thread stack, or its refusal.

Where the profile charges thread stacks (``charges_thread_stacks``, seed 003 as
merged in 3.8), every followed task and thread holds THREAD_SIZE of kmem while it
lives (core/memcg/stacks.py charges them). A new task whose stack cannot be charged
is refused: inside a guarded ``cgemu exec`` tree its fork/clone fails with ENOMEM
before it happens (:meth:`Forks.decide_clone`, for the guard server); a task forked
by a process that joined through ``tasks`` is killed at once, never followed
(forkhold.py), and the refusal counts in ``kmem.failcnt``.

A guarded fork reserves its child's stack in the parent's name; the child's adoption
turns the reservation into its own charge (a child gone before it could be adopted
spends it), and a reservation no fork event claims within :data:`PENDING_TTL` is
dropped. A batch of fork events is decided (stack
reserved, or the child killed) before any child of it is adopted: adopting reads
/proc and takes a while, and a fork bomb's refused child has to die at once.

Every new process enters its group through the tracker's one door
(ProcessTracker.forked), which keeps the kernel's rule: a task's group is the one it
was forked in.
"""

from __future__ import annotations

import errno
import logging
import signal
import time

from ..core.errors import CgroupError
from .forkhold import ForkHold
from .proc_events import PROC_EVENT_FORK, is_exited

log = logging.getLogger("cgroupfs_emu.follower")

#: a reservation made for a guarded fork that no fork event claimed is dropped
PENDING_TTL = 2.0


class Forks:
    def __init__(self, tracker, signals, stacks: bool):
        self.tracker = tracker
        self.memory = tracker.memory
        self.host = tracker.host
        self.signals = signals
        #: thread stacks are charged (the profile's choice, or -o thread_stacks)
        self.stacks = stacks
        self.hold = ForkHold(signals, tracker.host)
        #: entries holding stack reservations of guarded forks
        self._reserving: set = set()
        #: tid of a guarded caller -> (entry, stamp) of the reservation made for it
        self._asked: dict = {}

    def _memcg(self, tgid: int):
        return self.memory.memcg_of_task(tgid)

    # ------------------------------------------------------------------ stacks

    def charge(self, entry, n: int) -> bool:
        if not self.memory.charge_stacks(entry.owner, self._memcg(entry.tgid), n):
            return False
        entry.stacks += n
        return True

    def uncharge(self, entry, n: int, reserved: bool = False) -> None:
        try:
            self.memory.uncharge_stacks(entry.owner, self._memcg(entry.tgid), n)
        except CgroupError:
            pass
        if not reserved:
            entry.stacks -= n

    def reconcile(self, entry) -> None:
        """One THREAD_SIZE per live thread, charged in the task's group."""
        if not self.stacks or entry.nthreads == entry.stacks:
            return
        if self._memcg(entry.tgid).is_root:
            return
        if entry.nthreads > entry.stacks:
            # charge what fits, one stack at a time (a thread whose stack cannot be
            # charged is not refused here: it exists already); a refusal is tried
            # again only when the thread count changes, so failcnt counts it once
            if entry.nthreads == entry.stacks_refused_at:
                return
            while entry.nthreads > entry.stacks:
                if not self.charge(entry, 1):
                    entry.stacks_refused_at = entry.nthreads
                    break
        else:
            self.uncharge(entry, entry.stacks - entry.nthreads)

    def _reserve(self, entry, group) -> bool:
        """Charge a new task's stack in *entry*'s name, held until the new task is
        adopted (started() hands it over) or PENDING_TTL passes; False at the kmem
        limit (the refusal counts in failcnt, as the kernel's failed charge does)."""
        if not self.memory.charge_stacks(entry.owner, group, 1):
            return False
        entry.pending.append(time.monotonic())
        self._reserving.add(entry)
        return True

    def _fits(self, parent, group) -> bool:
        """Would a new task's stack fit in *group*? (A real try_charge, so a refusal
        counts in failcnt; undone at once when it fits: the child charges it.)"""
        if not self.memory.charge_stacks(parent.owner, group, 1):
            return False
        self.memory.uncharge_stacks(parent.owner, group, 1)
        return True

    def expire_pending(self) -> None:
        if not self._reserving:
            return
        now = time.monotonic()
        for entry in list(self._reserving):
            while entry.pending and now - entry.pending[0] > PENDING_TTL:
                entry.pending.pop(0)
                self.uncharge(entry, 1, reserved=True)
            if not entry.pending or self.tracker.followed.get(entry.tgid) is not entry:
                self._reserving.discard(entry)
        self._asked = {tid: held for tid, held in self._asked.items()
                       if held[1] in held[0].pending}

    # ------------------------------------------------------------------ tasks

    def started(self, entry, parent) -> None:
        """*entry* is followed from now on, forked by *parent* (None: it joined)."""
        if parent is None:
            # not in its new group yet (this runs just before the attach): its
            # stacks are charged at its first sample
            return
        if parent.pending:
            # the guarded fork reserved this child's stack in the parent's name
            parent.pending.pop(0)
            self.uncharge(parent, 1, reserved=True)
        if self.stacks and not self.charge(entry, max(1, entry.nthreads)):
            group = self._memcg(entry.tgid)
            log.warning("fork of pid %d refused in %s: kmem limit reached; killed",
                        entry.tgid, group.path())
            self.signals.send(entry.owner, signal.SIGKILL)
            self.tracker.exited(entry)

    def forgotten(self, entry) -> None:
        self.hold.release(entry)
        entry.pending.clear()

    def refuse_first(self, events) -> set[int]:
        """Decide the stack of every new process in a batch of fork events before
        adopting any of them (see the module docstring); the pids refused."""
        refused: set[int] = set()
        if not self.stacks:
            return refused
        followed = self.tracker.followed
        covered: dict[int, int] = {}  # reservations already made (guarded forks)
        for what, pid, tgid, ptgid, born_ns in events:
            if what != PROC_EVENT_FORK or pid != tgid or pid in followed:
                continue
            parent = followed.get(ptgid)
            if parent is None or parent.born_before(pid, None, born_ns):
                continue  # forked before its parent joined: not the group's
            left = covered.setdefault(ptgid, len(parent.pending))
            if left:
                covered[ptgid] = left - 1
                continue
            group = self._memcg(ptgid)
            if not self._reserve(parent, group):
                self.hold.kill(pid, group, parent)
                refused.add(pid)
        return refused

    def forked(self, pid: int, tgid: int, ptgid: int, born_ns: int):
        """A fork event: *pid* was created by *ptgid* at *born_ns* (for a new thread:
        *ptgid* is its own process, *tgid*). The entry of a process followed from now
        on, or None."""
        tracker = self.tracker
        h = tracker.hierarchy
        group = h.task_group.get(ptgid)
        if group is None or not group.online:
            return None
        if pid != tgid:  # a new thread of a followed process
            if h.task_group.get(pid) is not group:
                info = self.host.task(pid)
                if info is None:
                    return None
                self.host.remember(info)
                h.attach(pid, group)
            entry = tracker.followed.get(tgid)
            if entry is not None and self.stacks:
                if entry.pending:
                    entry.pending.pop(0)
                    entry.stacks += 1
                elif not self.charge(entry, 1):
                    log.warning("thread %d of pid %d: stack cannot be charged in %s",
                                pid, tgid, group.path())
            if entry is not None:
                entry.nthreads += 1
            return None
        if pid in tracker.followed:
            return None
        group = tracker.birth_group(pid, ptgid, born_ns)
        if group is None:
            return None  # e.g. forked before its parent joined: it stays where it is
        parent = tracker.followed.get(ptgid)
        if (self.stacks and parent is not None and not parent.pending
                and not self._fits(parent, self.memory.of(group))):
            self.hold.kill(pid, group, parent)  # cheap: never followed at all
            return None
        entry = tracker.forked(pid, ptgid, born_ns)
        if entry is None and parent is not None and parent.pending:
            # The child is gone before it could be adopted (it exited at once). Its
            # fork happened, so the stack reserved for it is spent and freed, as
            # free_task() frees a dead child's; held until PENDING_TTL instead, the
            # parent's next fork took it for a restarted one and charged nothing.
            parent.pending.pop(0)
            self.uncharge(parent, 1, reserved=True)
        return entry

    def exited(self, pid: int, tgid: int) -> None:
        """An exit event of *pid*, a thread (or the leader) of followed *tgid*."""
        entry = self.tracker.followed.get(tgid)
        if entry is None:
            return
        if pid != tgid:
            entry.nthreads = max(1, entry.nthreads - 1)
            if self.stacks and entry.stacks > entry.nthreads:
                self.uncharge(entry, entry.stacks - entry.nthreads)
            return
        pidfd = self.signals.pidfd(entry.owner)
        if pidfd is None or is_exited(pidfd):
            self.tracker.exited(entry)

    def decide_clone(self, entry, tid: int) -> int:
        """Guarded thread *tid* of followed *entry* is about to create a task: 0 to
        let it, or the errno its clone fails with."""
        if not self.stacks:
            return 0
        self.reconcile(entry)
        held = self._asked.pop(tid, None)
        if held is not None and held[0] is entry and held[1] in entry.pending:
            # The same thread asks again before a task from its last answer appeared:
            # that fork never happened. copy_process() gives up a fork a signal came
            # into (-ERESTARTNOINTR) and the clone restarts, after the guard said yes;
            # the stack reserved for it is still this thread's.
            self._asked[tid] = held
            return 0
        if not self._reserve(entry, self._memcg(entry.tgid)):
            return errno.ENOMEM
        self._asked[tid] = (entry, entry.pending[-1])
        return 0

    def close(self) -> None:
        self.hold.close()
