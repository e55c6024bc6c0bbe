"""The event-driven half of following real processes (issue 13).

The ProcessTracker (tracker.py) knows how to start following a task, read and charge
its memory and forget it. This module decides *when*:

* events (proc_events.py): forks adopt the child into its parent's group at once,
  execs make a task hot, exits release a task's charges at once. Before any growth is
  charged, every exit already reported is applied first, so an OOM never picks a task
  that is gone and a kill is never counted for one;
* sampling (sampler.py): hot tasks every ``fast_ms``, tasks with their own rate
  (``cgemu exec --poll-ms``) at that rate, everything else at the slow poll; the
  stop-first thread guards hot tasks near a limit;
* thread stacks (seed 003, in profiles with ``charges_thread_stacks``): every followed
  task and thread holds THREAD_SIZE of kmem while it lives. A new task that cannot be
  charged is refused: inside a guarded ``cgemu exec`` tree its fork/clone fails with
  ENOMEM before it happens (fork_guard.py); a task forked by a process that joined
  through ``tasks`` is killed at once (the kernel never lets it exist; we can only
  learn of it after the fact), and the refusal is counted in ``kmem.failcnt``.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import signal
import threading
import time

import trio

from ..core.errors import CgroupError, NoMemory
from ..units import PAGE_SIZE
from . import fork_guard
from .guard_recv import GuardReceiver
from .fault_watch import FaultWatch
from .proc_events import (PROC_EVENT_EXIT, PROC_EVENT_FORK, ExitWatch, ProcConnector,
                          children, is_exited)
from .sampler import NEAR_PAGES, HotWatch, Schedule

log = logging.getLogger("cgroupfs_emu.follower")

#: THREAD_SIZE on x86_64 and arm64 (16 KiB), in pages
STACK_PAGES = 16384 // PAGE_SIZE
#: a reservation made for a guarded fork that no fork event claimed is dropped
PENDING_TTL = 2.0
#: children adopted from one batch of connector events before it is read again
ADOPT_BATCH = 4
#: the daemon's nice value while it follows processes (when it may lower it)
DAEMON_NICE = -5
#: refused children of one process that may be dying at once before the process is
#: held (SIGSTOP) until they are gone
DYING_MAX = 8
#: how often (seconds) refused children are looked for while some are exiting
DYING_POLL = 0.001
#: without the connector, busy tasks' children are looked for this often (seconds)
SCAN_PERIOD = 0.02
SCAN_SHARE = 0.02
#: a room larger than this is "no limit"
_NO_LIMIT = 1 << 40


class Follower:
    def __init__(self, tracker, signals, fast_ms: int = 10, budget: int = 1000,
                 events: str = "auto", stacks: bool | None = None, hot_period: float = 0.001,
                 faults: bool = True):
        self.tracker = tracker
        self.memory = tracker.memory
        self.host = tracker.host
        _raise_nofile()
        self.signals = signals
        #: the connector is open only while some task is followed: every event of the
        #: host costs the daemon a wake-up, so an idle mount pays nothing
        self.connector: ProcConnector | None = None
        self.use_connector = False
        if events in ("auto", "connector"):
            probe = ProcConnector.open()
            if probe is not None:
                probe.close()
                self.use_connector = True
        self.exits = ExitWatch()
        self.faults = FaultWatch() if faults else None
        self.schedule = Schedule(fast_ms, budget)
        self.stacks = (self.memory.profile.charges_thread_stacks if stacks is None
                       else stacks)
        self.token: trio.lowlevel.TrioToken | None = None
        self.hot = HotWatch(self._tripped_in_thread, period=hot_period, proc=self.host.proc,
                            stop=self.signals.stop_pid)
        self.tripped: set[int] = set()
        self.wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._guards: list[int] = []
        self._next_scan = 0.0
        #: entries holding stack reservations of guarded forks
        self._reserving: set = set()
        #: tid of a guarded caller -> (entry, stamp) of the reservation made for it
        self._asked: dict = {}
        #: refused children still exiting (pidfds), per forking followed process, and
        #: the processes held until theirs are gone (see _hold_forker)
        self._dying: dict = {}
        #: connector events were lost: scan /proc once the others are applied
        self._rescan_pending = False
        self._held: set = set()
        #: None: not known yet whether /proc/PID/task/TID/children exists
        self._children_files: bool | None = None
        #: forks refused so far (killed after the fact, or failed inside a guarded tree)
        self.refused_forks = 0
        tracker.driver = self  # the one hand-over: the tracker calls back into this
        log.info("following processes with %s", "the proc connector" if self.use_connector
                 else "pidfds and /proc scans")

    @property
    def hierarchy(self):
        """The cgroup core (tasks and groups), bound to the tracker by now."""
        return self.tracker.hierarchy

    def _memcg(self, tgid: int):
        return self.memory.memcg_of_task(tgid)

    # ------------------------------------------------------------------ tracker hooks

    def _connector_on(self) -> None:
        if self.connector is None and self.use_connector:
            self.connector = ProcConnector.open()
            if self.connector is None:
                self.use_connector = False
            elif self._nursery is not None:
                self._spawn(self._nursery, self._watch_connector, self.connector)

    def _connector_off(self) -> None:
        if self.connector is not None:
            trio_fd = self.connector.fileno()
            if self._nursery is not None:
                trio.lowlevel.notify_closing(trio_fd)
            self.connector.close()
            self.connector = None

    def started(self, entry, parent=None) -> None:
        """The tracker follows a new task: watch its exit, sample it fast for a while,
        charge its stacks."""
        self._connector_on()
        entry.sampled_at = time.monotonic()
        pidfd = self.signals.pidfd(entry.owner)
        if pidfd is not None:
            self.exits.add(entry.tgid, pidfd)
        if parent is not None and entry.poll_ms is None:
            entry.poll_ms = parent.poll_ms
        if parent is not None and parent.pending:
            # the guarded fork reserved this child's stack in the parent's name
            parent.pending.pop(0)
            self._uncharge_stacks(parent, 1, reserved=True)
        self.schedule.heat(entry.tgid, entry.sampled_at, self._own_period(entry))
        # A task joining through tasks/cgroup.procs is not in its new group yet (this
        # runs just before the attach): its stacks are charged at its first sample.
        if self.stacks and parent is not None:
            if not self._charge_stacks(entry, max(1, entry.nthreads)):
                self._refuse_child(entry)
        self.wake.set()

    def _reconcile_stacks(self, entry) -> None:
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
                if not self._charge_stacks(entry, 1):
                    entry.stacks_refused_at = entry.nthreads
                    break
        else:
            self._uncharge_stacks(entry, entry.stacks - entry.nthreads)

    def sampled(self, entry, before: int) -> None:
        """After every sample: heat a task that grew or is near a limit, set its trip
        point for the stop-first thread, reconcile its stacks with its threads."""
        now = entry.sampled_at = time.monotonic()
        if sum(entry.last.values()) > before:
            self.schedule.heat(entry.tgid, now, self._own_period(entry))
        group = self._memcg(entry.tgid)
        room, limit = self._room(group)
        near = room < _NO_LIMIT and room < max(NEAR_PAGES, limit // 4)
        if near:
            self.schedule.heat(entry.tgid, now, self._own_period(entry))
        self._reconcile_stacks(entry)
        # -o oom_kill=none promises a task is never signalled: no stop-first there
        # never a task the daemon may not signal (pid 1, itself, its ancestors), nor
        # one whose growth is refused already (no victim: it would be stopped and
        # continued every millisecond)
        if (room < _NO_LIMIT and entry.stopped_in is None and self.memory.oom_kill
                and entry.refused_at is None and self.signals.may_signal(entry.tgid)
                and self.schedule.is_hot(entry.tgid, now)):
            pidfd = self.signals.pidfd(entry.owner)
            if pidfd is not None:
                sharing = 1 + sum(1 for pid in self.hot.watched if pid != entry.tgid and
                                  self._memcg(pid) is group)
                self.hot.arm(entry.tgid, pidfd, entry.resident + max(0, room) // sharing)
        elif entry.tgid in self.hot.watched:
            if self.hot.disarm(entry.tgid):
                self.tripped.add(entry.tgid)  # stopped by the thread: settle it

    def forgotten(self, entry) -> None:
        if self.faults is not None:
            self.faults.remove(entry.tgid, trio.lowlevel.notify_closing)
        self.schedule.forget(entry.tgid)
        stopped_by_watch = self.hot.disarm(entry.tgid) or entry.tgid in self.tripped
        self.tripped.discard(entry.tgid)
        if stopped_by_watch and entry.stopped_in is None:
            # The stop-first thread stopped it, and it stops being followed (a hello,
            # a move to the root) before the main loop settled the trip: nothing will
            # decide about it any more, so it goes on. A task kept stopped on purpose
            # (oom_kill_disable: stopped_in) is the OOM executor's to continue.
            self.signals.cont(entry.owner)
        self._release_forker(entry)
        pidfd = self.signals.pidfd(entry.owner)
        if pidfd is not None:
            self.exits.remove(pidfd)
        entry.pending.clear()
        if len(self.tracker.followed) <= 1:  # this was the last one
            self._connector_off()

    def before_charge(self) -> None:
        """Exits first: called before any growth is charged."""
        self.apply_events()

    # ------------------------------------------------------------------ events

    def apply_events(self) -> None:
        if self.connector is not None:
            self._apply_connector_events()
            if self._rescan_pending:
                self._rescan_pending = False
                log.warning("process events were lost; scanning /proc for new tasks")
                self.tracker.scan_new_processes()
        for pid in self.exits.exited():
            entry = self.tracker.followed.get(pid)
            if entry is not None:
                self.tracker.exited_now(entry)
        self._expire_pending()

    def _read_connector(self) -> list:
        try:
            events, lost = self.connector.read_raw()
        except OSError:
            log.exception("proc connector failed; falling back to /proc scans")
            self._connector_off()
            self.use_connector = False
            return []
        if lost:
            # the socket overflowed: forks were missed, so look for them in /proc
            # now (after the events that did arrive) rather than at the next poll
            self._rescan_pending = True
        return events

    def _apply_connector_events(self) -> None:
        """Every fork, exec and exit of the host arrives: the ones that concern no
        followed task are dropped before anything else is done with them. While
        adopting children (slow: /proc reads) the connector is read again every
        ADOPT_BATCH adoptions, so that a fork bomb's refused children are killed as
        they come rather than after the backlog."""
        task_group = self.hierarchy.task_group
        followed = self.tracker.followed
        events = collections.deque(self._read_connector())
        refused = set(self._refuse_forks_first(events)) if self.stacks else set()
        adopted = 0
        while events:
            what, pid, tgid, ptgid = events.popleft()
            if what == PROC_EVENT_FORK:
                # a new thread's event names its process's parent (real_parent is
                # shared by the thread group): the thread belongs to its own process
                if pid != tgid:
                    ptgid = tgid
                if ptgid in task_group and pid not in refused:
                    self._forked(pid, tgid, ptgid)
                    adopted += 1
                    if adopted % ADOPT_BATCH == 0 and self.connector is not None:
                        fresh = self._read_connector()
                        if self.stacks:
                            refused.update(self._refuse_forks_first(fresh))
                        events.extend(fresh)
            elif tgid in followed:
                if what == PROC_EVENT_EXIT:
                    self._exit_event(pid, tgid)
                else:  # exec: a new image, likely to allocate
                    self.schedule.heat(tgid, time.monotonic(),
                                       self._own_period(followed[tgid]))
                    self.wake.set()

    def _refuse_forks_first(self, events) -> set[int]:
        """Decide the stack of every new process in a batch before adopting any of
        them. Adopting a child reads /proc and takes a while; a fork bomb's events
        come in batches, and a child that must not exist has to die at once, not
        after the adoption of the ones before it. Each child that fits gets its
        stack reserved in its parent's name (as a guarded fork's is, decide_clone);
        its adoption turns the reservation into its own charge."""
        refused: set[int] = set()
        followed = self.tracker.followed
        covered: dict[int, int] = {}  # reservations already made (guarded forks)
        for what, pid, tgid, ptgid in events:
            if what != PROC_EVENT_FORK or pid != tgid or pid in followed:
                continue
            parent = followed.get(ptgid)
            if parent is None:
                continue
            left = covered.setdefault(ptgid, len(parent.pending))
            if left:
                covered[ptgid] = left - 1
                continue
            group = self._memcg(ptgid)
            if not self._reserve_stack(parent, group):
                self._kill_refused(pid, group, parent)
                refused.add(pid)
        return refused

    def _reserve_stack(self, entry, group) -> bool:
        """Charge a new task's stack in *entry*'s name, held until the new task is
        adopted (started() hands it over) or PENDING_TTL passes; False at the kmem
        limit (the refusal counts in failcnt, as the kernel's failed charge does)."""
        if not self._charge_one_stack(entry.owner, group):
            return False
        entry.pending.append(time.monotonic())
        self._reserving.add(entry)
        return True

    def _forked(self, pid: int, tgid: int, ptgid: int) -> None:
        """*pid* was created by *ptgid* (for a new thread: *ptgid* is its own
        process, *tgid*)."""
        h = self.hierarchy
        group = h.task_group.get(ptgid)
        if group is None or not group.online:
            return
        parent = self.tracker.followed.get(ptgid)
        if pid != tgid:  # a new thread of a followed process
            if h.task_group.get(pid) is not group:
                info = self.host.task(pid)
                if info is None:
                    return
                self.host.remember(info)
                h.attach(pid, group)
            entry = self.tracker.followed.get(tgid)
            if entry is not None and self.stacks:
                if entry.pending:
                    entry.pending.pop(0)
                    entry.stacks += 1
                elif not self._charge_stacks(entry, 1):
                    self.refused_forks += 1
                    log.warning("thread %d of pid %d: stack cannot be charged in %s",
                                pid, tgid, group.path())
            if entry is not None:
                entry.nthreads += 1
            return
        if pid in self.tracker.followed:
            return
        if (self.stacks and parent is not None and not parent.pending
                and not self._stack_fits(parent, self.memory.of(group))):
            self._kill_refused(pid, group, parent)  # cheap: never followed at all
            return
        info = self.host.task(pid)
        if info is None:
            return
        self.host.remember(info)
        h.attach(pid, group)
        self.tracker.start_child(pid, parent)

    def _stack_fits(self, parent, group) -> bool:
        """Would a new task's stack fit in *group*? (A real try_charge, so a refusal
        counts in failcnt; undone at once when it fits: the child charges it.)"""
        if not self._charge_one_stack(parent.owner, group):
            return False
        self.memory.uncharge(parent.owner, group, "kmem", STACK_PAGES)
        return True

    def _charge_one_stack(self, owner, group) -> bool:
        """One THREAD_SIZE of kmem, a real try_charge that never waits or kills (a
        stack allocation fails instead: copy_process() returns ENOMEM)."""
        try:
            verdict = self.memory.charge(owner, group, "kmem", STACK_PAGES, may_wait=False)
        except NoMemory:
            return False
        return verdict is None

    def _kill_refused(self, pid: int, group, parent=None) -> None:
        self.refused_forks += 1
        if not self.signals.may_signal(pid):
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # gone already
        if parent is not None and self.host.ppid(pid) != parent.tgid:
            os.close(pidfd)  # the child is gone and its pid taken by another process
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            os.close(pidfd)
            return
        log.warning("fork of pid %d refused in %s: kmem limit reached; killed",
                    pid, group.path())
        if parent is None:
            os.close(pidfd)
        else:
            self._hold_forker(parent, pidfd)

    def _hold_forker(self, parent, pidfd: int) -> None:
        """A refused child costs its parent a fork and the host an exit, where the
        kernel's refused fork costs nothing: a fork bomb forks faster than its killed
        children finish exiting, and the host would hold ever more of them. So once
        DYING_MAX refused children of one process are still exiting, the process is
        held (SIGSTOP) until they are gone (_release_dead_children, every
        millisecond): its next fork waits, as if the failed one took that long."""
        dying = self._dying.setdefault(parent, [])
        dying.append(pidfd)
        if (len(dying) > DYING_MAX and parent not in self._held
                and parent.stopped_in is None
                and self.signals.stop(parent.owner)):
            self._held.add(parent)
        self.wake.set()

    def _release_dead_children(self) -> None:
        for parent, dying in list(self._dying.items()):
            for fd in [fd for fd in dying if is_exited(fd)]:
                dying.remove(fd)
                os.close(fd)
            if not dying:
                self._release_forker(parent)

    def _release_forker(self, parent) -> None:
        """Stop holding *parent* (its refused children are gone, or it is no longer
        followed); one kept stopped on purpose (oom_kill_disable) stays stopped."""
        for fd in self._dying.pop(parent, ()):
            os.close(fd)
        if parent in self._held:
            self._held.discard(parent)
            if parent.stopped_in is None:
                self.signals.cont(parent.owner)

    def _exit_event(self, pid: int, tgid: int) -> None:
        entry = self.tracker.followed.get(tgid)
        if entry is None:
            return
        if pid != tgid:
            entry.nthreads = max(1, entry.nthreads - 1)
            if self.stacks and entry.stacks > entry.nthreads:
                self._uncharge_stacks(entry, entry.stacks - entry.nthreads)
            return
        pidfd = self.signals.pidfd(entry.owner)
        if pidfd is None or is_exited(pidfd):
            self.tracker.exited_now(entry)

    # ------------------------------------------------------------------ stacks

    def _charge_stacks(self, entry, n: int) -> bool:
        group = self._memcg(entry.tgid)
        try:
            verdict = self.memory.charge(entry.owner, group, "kmem", n * STACK_PAGES,
                                         may_wait=False)
        except NoMemory:
            return False
        if verdict is not None:
            return False  # a stack charge never waits or kills here: the fork fails
        entry.stacks += n
        return True

    def _uncharge_stacks(self, entry, n: int, reserved: bool = False) -> None:
        group = self._memcg(entry.tgid)
        try:
            self.memory.uncharge(entry.owner, group, "kmem", n * STACK_PAGES)
        except CgroupError:
            pass
        if not reserved:
            entry.stacks -= n

    def _refuse_child(self, entry) -> None:
        """A task forked outside a guarded tree whose stack cannot be charged: it must
        not exist, so it is killed at once (and never followed)."""
        self.refused_forks += 1
        group = self._memcg(entry.tgid)
        log.warning("fork of pid %d refused in %s: kmem limit reached; killed",
                    entry.tgid, group.path())
        self.signals.send(entry.owner, signal.SIGKILL)
        self.tracker.exited_now(entry)

    def _expire_pending(self) -> None:
        if not self._reserving:
            return
        now = time.monotonic()
        for entry in list(self._reserving):
            while entry.pending and now - entry.pending[0] > PENDING_TTL:
                entry.pending.pop(0)
                self._uncharge_stacks(entry, 1, reserved=True)
            if not entry.pending or self.tracker.followed.get(entry.tgid) is not entry:
                self._reserving.discard(entry)
        self._asked = {tid: held for tid, held in self._asked.items()
                       if held[1] in held[0].pending}

    def decide_clone(self, tid: int) -> int:
        """A guarded task is about to create a task: 0 to let it, or the errno."""
        self.apply_events()
        if not self.stacks:
            return 0
        tgid = self.host.tgid_of(tid)
        if tgid is None:
            return 0
        entry = self.tracker.followed.get(tgid)
        if entry is None:
            entry = self.tracker.adopt_if_child(tgid)
            if entry is None:
                return 0
        self._reconcile_stacks(entry)
        held = self._asked.pop(tid, None)
        if held is not None and held[0] is entry and held[1] in entry.pending:
            # The same thread asks again before a task from its last answer appeared:
            # that fork never happened. copy_process() gives up a fork a signal came
            # into (-ERESTARTNOINTR) and the clone restarts, after the guard said yes;
            # the stack reserved for it is still this thread's.
            self._asked[tid] = held
            return 0
        if not self._reserve_stack(entry, self._memcg(tgid)):
            self.refused_forks += 1
            return errno.ENOMEM
        self._asked[tid] = (entry, entry.pending[-1])
        return 0

    # ------------------------------------------------------------------ limits

    @staticmethod
    def _room(group) -> tuple[int, int]:
        """(pages left under the tightest memory/memsw limit at or above *group*, that
        limit)."""
        room, limit = 1 << 62, 1 << 62
        for counter in (group.memory, group.memsw):
            for c in counter.ancestors():
                left = c.max - c.usage
                if left < room:
                    room, limit = left, c.max
        return room, limit

    def _own_period(self, entry) -> float | None:
        return entry.poll_ms / 1000 if entry.poll_ms else None

    # ------------------------------------------------------------------ hot thread

    def _tripped_in_thread(self, pid: int) -> None:
        token = self.token
        if token is not None:
            token.run_sync_soon(self._tripped, pid)

    def _tripped(self, pid: int) -> None:
        self.tripped.add(pid)
        self.wake.set()

    def _settle_trips(self) -> None:
        for pid in list(self.tripped):
            self.tripped.discard(pid)
            entry = self.tracker.followed.get(pid)
            if entry is None:
                continue
            try:
                self.tracker.sample(entry)
            finally:  # whatever the sample did, a task stopped by the thread goes on
                if pid in self.tracker.followed and entry.stopped_in is None:
                    self._continue_tripped(entry)

    def _continue_tripped(self, entry) -> None:
        """Undo the stop-first thread's SIGSTOP. Only ever armed on tasks the daemon
        may signal (sampled()), so this is the daemon undoing its own stop."""
        self.signals.cont(entry.owner)

    # ------------------------------------------------------------------ requests

    def follow_request(self, peer_pid: int, peer_uid: int, pid: int, guard_fd: int | None,
                       poll_ms: int | None) -> dict:
        """``follow PID [guard=FD] [poll_ms=MS]`` from ``cgemu exec``: give PID (already
        in a group) its own slow rate, and take the seccomp listener FD of the peer."""
        info = self.host.task(pid)
        if info is None:
            raise OSError(errno.ESRCH, f"no process {pid}")
        if peer_uid != 0 and peer_uid != info.uid:
            raise OSError(errno.EPERM, f"pid {pid} belongs to another user")
        self.apply_events()
        entry = self.tracker.followed.get(pid)
        if entry is None and self.hierarchy.task_group.get(pid) is not None:
            entry = self.tracker.start_joined(pid)
        if entry is not None:
            self._reconcile_stacks(entry)
        if entry is not None and poll_ms:
            entry.poll_ms = poll_ms
            self.schedule.own_rate(pid, poll_ms / 1000, time.monotonic())
            self.wake.set()
        guarded = False
        if guard_fd is not None:
            fd = _take_fd(pid, guard_fd)  # from the guarded child itself
            if not fork_guard.is_listener(fd):
                os.close(fd)
                raise OSError(errno.EBADF, f"descriptor {guard_fd} is not a seccomp listener")
            self._guards.append(fd)
            if self._nursery is not None:
                self._spawn(self._nursery, self._serve_guard, fd)
            guarded = True
        return {"pid": pid, "followed": int(entry is not None), "guard": int(guarded)}

    async def _serve_guard(self, fd: int) -> None:
        try:
            await GuardReceiver(fd, self.decide_clone).serve()
        finally:
            self._guards.remove(fd)
            os.close(fd)

    def table(self) -> list[dict]:
        """For ``cgemu ps``: every followed process, its charge and sample age."""
        now = time.monotonic()
        rows = []
        for e in sorted(self.tracker.followed.values(), key=lambda e: e.tgid):
            charged = sum(e.owner.charged.values()) + e.stacks * STACK_PAGES
            rows.append({"pid": e.tgid, "bytes": charged * PAGE_SIZE,
                         "age_ms": int((now - e.sampled_at) * 1000),
                         "hot": int(self.schedule.is_hot(e.tgid, now))})
        return rows

    # ------------------------------------------------------------------ loop

    @staticmethod
    def _spawn(nursery, fn, *args) -> None:
        """Start a watcher whose failure is logged, never propagated: one watcher's
        unexpected exception must not end the follower's nursery, and with it the
        mount."""
        async def supervised():
            try:
                await fn(*args)
            except Exception:
                log.exception("%s%r failed", fn.__name__, args)
        nursery.start_soon(supervised, name=fn.__name__)

    async def run(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        # The daemon stands in for the kernel, whose bookkeeping the tasks it accounts
        # cannot starve: a fork bomb or an allocator holding the CPUs must not delay
        # the refusal of their next fork or page. Where allowed (root), the daemon's
        # thread runs a little above the default.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DAEMON_NICE)
        except OSError:
            pass
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for fd in list(self._guards):
                self._spawn(nursery, self._serve_guard, fd)
            if self.connector is not None:
                self._spawn(nursery, self._watch_connector, self.connector)
            self._spawn(nursery, self._watch_fd, self.exits.fileno())
            if self.faults is not None:
                for pid, c in list(self.faults.by_pid.items()):
                    self._spawn(nursery, self._watch_faults, pid, c)
            await self._fast_loop()

    async def _watch_connector(self, conn: ProcConnector) -> None:
        """Events as they come, for as long as *conn* is the open connector."""
        while self.connector is conn:
            try:
                await trio.lowlevel.wait_readable(conn.sock)
            except (trio.ClosedResourceError, OSError, ValueError):
                return  # closed: nothing followed any more
            try:
                self.apply_events()
            except Exception:
                log.exception("applying process events failed")
                await trio.sleep(0.01)

    async def _watch_fd(self, fd: int) -> None:
        while True:
            try:
                await trio.lowlevel.wait_readable(fd)
            except trio.ClosedResourceError:
                return  # the connector was closed: nothing followed any more
            try:
                self.apply_events()
            except Exception:
                log.exception("applying process events failed")
                await trio.sleep(0.01)

    def _watch_faults_of(self, tgid: int) -> None:
        """*tgid* cooled down: from now on its page faults wake its sampling. The
        counter is made only now, not at fork: a new task is hot anyway, and most
        short-lived ones (a fork bomb's, a shell's) never cool down."""
        if tgid not in self.tracker.followed:
            return
        if tgid not in self.faults.by_pid:
            if self.faults.add(tgid) is None:
                return
            self._spawn(self._nursery, self._watch_faults, tgid, self.faults.by_pid[tgid])
        self.faults.enable(tgid)

    async def _watch_faults(self, pid: int, counter) -> None:
        """An idle task's page-fault counter overflowed: sample it now. This waiter
        belongs to one counter: once that counter is removed (the task exited, or
        stopped being followed and was followed again under the same pid, whose new
        counter may even reuse the descriptor number, before this waiter first ran) it
        ends, and never waits on a descriptor another waiter owns (trio's
        BusyResourceError would end the follower)."""
        fd = counter.fd
        try:
            while self.faults.by_pid.get(pid) is counter:
                await trio.lowlevel.wait_readable(fd)
                if self.faults.fire(pid):
                    entry = self.tracker.followed.get(pid)
                    if entry is not None:
                        now = time.monotonic()
                        self.schedule.heat(pid, now, self._own_period(entry))
                        self.schedule.entries[pid][2] = now
                        self.wake.set()
                else:
                    await trio.sleep(0.001)  # readable without an overflow (exit: HUP)
        except (trio.ClosedResourceError, OSError):
            return
        except Exception:
            log.exception("page-fault watch of pid %d failed", pid)

    async def _fast_loop(self) -> None:
        while True:
            try:
                self.apply_events()
                self._settle_trips()
                if self._dying:
                    self._release_dead_children()
                now = time.monotonic()
                if not self.use_connector and self.tracker.followed:
                    self._scan_forks(now)
                for n, tgid in enumerate(self.schedule.due(now), 1):
                    entry = self.tracker.followed.get(tgid)
                    if entry is None:
                        self.schedule.forget(tgid)
                    else:
                        self.tracker.sample(entry)
                    if n % ADOPT_BATCH == 0 and self.connector is not None:
                        # many hot tasks (a fork bomb's children): events between
                        # their samples, so that a refused fork never waits for all
                        self.apply_events()
                if self.faults is not None:
                    for tgid in self.schedule.take_cooled():
                        self._watch_faults_of(tgid)
                now = time.monotonic()
                wait = self.schedule.next_wake(now)
                if not self.use_connector and self.tracker.followed:
                    scan = max(0.0, self._next_scan - now)
                    wait = scan if wait is None else min(wait, scan)
                if self._dying:  # refused children still exiting: look again soon
                    wait = DYING_POLL if wait is None else min(wait, DYING_POLL)
            except Exception:
                log.exception("fast sampling failed")
                wait = 0.1
            if not self.tripped:
                self.wake = trio.Event()
                with trio.move_on_after(wait if wait is not None else 3600):
                    await self.wake.wait()

    def _scan_forks(self, now: float) -> None:
        """Without the connector, forks are found by scanning: the children files of
        followed tasks where the kernel has them (CONFIG_PROC_CHILDREN), else /proc.
        Every SCAN_PERIOD, stretched so that scanning takes at most SCAN_SHARE of a
        core (a /proc of a few thousand processes takes about a millisecond)."""
        if now < self._next_scan:
            return
        t0 = time.perf_counter()
        if self._children_files is not False:
            for tgid in list(self.tracker.followed):
                kids = children(self.host.proc, tgid)
                if kids is None:
                    self._children_files = False
                    break
                self._children_files = True
                for kid in kids:
                    if kid not in self.tracker.followed:
                        self.tracker.adopt_if_child(kid)
        if self._children_files is False:
            self.tracker.scan_new_processes()
        spent = time.perf_counter() - t0
        self._next_scan = time.monotonic() + max(SCAN_PERIOD, spent / SCAN_SHARE)

    def close(self) -> None:
        for pid in self.hot.close():  # stopped by the thread, never settled
            self.tripped.add(pid)
        for parent in list(self._dying):
            self._release_forker(parent)
        for pid in list(self.tripped):
            entry = self.tracker.followed.get(pid)
            if entry is not None and entry.stopped_in is None:
                self.signals.cont(entry.owner)
        self.exits.close()
        if self.faults is not None:
            self.faults.close()
        if self.connector is not None:
            self.connector.close()
        for fd in self._guards:
            os.close(fd)
        self._guards.clear()


def _raise_nofile() -> None:
    """Each followed process holds a pidfd and a perf counter: lift the soft limit on
    descriptors to the hard one (1024 would stop following at ~500 tasks)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError):
            pass


_libc = ctypes.CDLL(None, use_errno=True)
SYS_PIDFD_GETFD = 438


def _take_fd(pid: int, fd: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        ours = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if ours < 0:
            e = ctypes.get_errno()
            raise OSError(e, f"pidfd_getfd({pid}, {fd}): {os.strerror(e)}")
        return ours
    finally:
        os.close(pidfd)
