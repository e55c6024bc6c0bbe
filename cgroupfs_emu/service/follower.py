"""The scheduler of following real processes: the one place that decides *when*.

The ProcessTracker (tracker.py) starts following a task, samples and charges it and
forgets it, and returns what it did; it knows nothing of this module. Facts come
from event sources, each with a ``serve(task_status)`` this scheduler's nursery runs:

* the proc connector (connector_source.py, root): forks adopt the child into the
  group it was forked in at once, execs make a task hot, exits release it at once;
* exit pidfds (proc_events.ExitWatch): every followed process's exit;
* page-fault counters (fault_watch.py): an idle task that faults pages in is
  sampled at once;
* the seccomp fork guard (guard_server.py): a guarded clone waits for decide_clone;
* the stop-first thread (sampler.HotWatch): a hot task near a limit is stopped at
  its trip point and sampled here.

Without the connector, forks are found by looking at /proc (births.py). Exits
already reported are applied before any growth is charged, so an OOM never picks a
task that is gone. Sampling (sampler.Schedule): hot tasks every ``fast_ms``, tasks
with their own rate at that rate, the rest at the slow poll (``poll_ms``), where an
idle task whose page faults woke nothing is read only every QUIET_POLLS polls.
Thread stacks and refused forks: forks.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import trio

from ..core.cgroup import StatelessSubsystem
from ..core.memcg import limits
from .births import BirthScan
from .fault_watch import FaultWatch
from .forkhold import DYING_POLL
from .forks import Forks
from .guard_server import GuardServer
from .connector_source import ConnectorSource
from .proc_events import ExitWatch
from .sampler import NEAR_PAGES, HotWatch, Schedule

log = logging.getLogger("cgroupfs_emu.follower")

#: a slow poll applies the events that came meanwhile every this many samples, the
#: fast loop every this many (a fork bomb's children are all hot)
EVENTS_EVERY = 16
EVENTS_EVERY_FAST = 4
#: the daemon's nice value while it follows processes (when it may lower it)
DAEMON_NICE = -5
#: without the connector, busy tasks' children are looked for this often (seconds),
#: stretched so that looking takes at most SCAN_SHARE of a core
SCAN_PERIOD = 0.02
SCAN_SHARE = 0.02
#: a room larger than this is "no limit"
_NO_LIMIT = 1 << 40


class Follower(StatelessSubsystem):
    """Also a cgroup subsystem without files, bound after memory: its attach guards a
    task that a write to ``tasks`` moved, before the write returns."""

    name = "follow-scheduler"

    def __init__(self, tracker, signals, fast_ms: int = 10, budget: int = 1000,
                 events: str = "auto", stacks: bool | None = None, hot_period: float = 0.001,
                 faults: bool = True, poll_ms: int = 500):
        self.tracker = tracker
        self.memory = tracker.memory
        self.host = tracker.host
        self.signals = signals
        self.connector = ConnectorSource(events)
        self.exits: ExitWatch | None = None
        self.faults = FaultWatch() if faults else None
        self.schedule = Schedule(fast_ms, budget)
        self.forks = Forks(tracker, signals, self.memory.profile.charges_thread_stacks
                           if stacks is None else stacks)
        self.guards = GuardServer(self.decide_clone)
        self.token: trio.lowlevel.TrioToken | None = None
        self.hot = HotWatch(self._tripped_in_thread, signals.stop_from_thread,
                            period=hot_period, proc=self.host.proc)
        self.tripped: set[int] = set()
        self.wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._next_scan = 0.0
        self.poll_period = poll_ms / 1000
        self._next_poll = 0.0
        #: the tracker's entries this scheduler started watching
        self._entries: set = set()
        #: forks found by looking at /proc (without the connector, or after it lost
        #: events)
        self.births = BirthScan(self.host.proc)

    def start(self) -> None:
        """Before the mount exists: choose the event sources and take over the
        tracker's hooks, so that the first write to ``tasks`` is followed."""
        self.connector.probe()
        self.exits = ExitWatch.open()
        if self.faults is not None:
            self.faults.start()
        log.info("following processes with %s", "the proc connector" if self.connector.wanted
                 else "pidfds and /proc scans")

    @property
    def hierarchy(self):  # the cgroup core, bound to the tracker by now
        return self.tracker.hierarchy

    # ------------------------------------------------------------------ subsystem

    def attach(self, tset) -> None:
        """The leader is in its new group now (the tracker settled it first): guard it
        there at once (its limits, its stop-first trip point), before the write to
        ``tasks`` returns and the task goes on; not at its first fast sample, which a
        task allocating gigabytes a second would outrun."""
        entry = self.tracker.followed.get(tset.leader) if tset.leader is not None else None
        self._drain()
        if entry is not None:
            if entry not in self._entries:
                self.started(entry)
            self.sampled(entry, sum(entry.seen.last.values()))

    # ------------------------------------------------------------------ tracker hooks

    def _drain(self) -> None:
        """Stop watching what the tracker forgot, then close its pidfds."""
        for entry, kept_stopped in self.tracker.take_gone():
            self.forgotten(entry, kept_stopped)
            self.signals.forget(entry.owner)

    def _sample(self, entry) -> None:
        before = self.tracker.sample(entry)
        self._drain()
        if before is not None:
            self.sampled(entry, before)

    def stop_following(self, pid: int) -> None:
        """*pid* connected to the socket: it says itself what it uses from now on."""
        self.tracker.stop_following(pid)
        self._drain()

    def started(self, entry, parent=None) -> None:
        """The tracker follows a new task: watch its exit, sample it fast for a while,
        charge its stacks."""
        if entry is None:
            return
        self._entries.add(entry)
        self.connector.open()
        entry.sampled_at = time.monotonic()
        pidfd = self.signals.pidfd(entry.owner)
        if pidfd is not None:
            self.exits.add(entry.tgid, pidfd)
        if parent is None:
            self.births.joined(entry.tgid, self.tracker.followed, self.hierarchy.task_group.get)
        else:
            self.births.born(entry.tgid)
        if parent is not None and entry.poll_ms is None:
            entry.poll_ms = parent.poll_ms
        self.schedule.heat(entry.tgid, entry.sampled_at, self._own_period(entry))
        self.forks.started(entry, parent)
        self._drain()  # a refused child is gone already
        self.wake.set()

    def sampled(self, entry, before: int) -> None:
        """After every sample: heat a task that grew or is near a limit, set its trip
        point for the stop-first thread, reconcile its stacks with its threads."""
        now = entry.sampled_at = time.monotonic()
        if sum(entry.seen.last.values()) > before:
            self.schedule.heat(entry.tgid, now, self._own_period(entry))
        group = self.memory.memcg_of_task(entry.tgid)
        room, limit = limits.room(group)
        near = room < _NO_LIMIT and room < max(NEAR_PAGES, limit // 4)
        if near:
            self.schedule.heat(entry.tgid, now, self._own_period(entry))
        self.forks.reconcile(entry)
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
                                  self.memory.memcg_of_task(pid) is group)
                self.hot.arm(entry.tgid, pidfd, entry.seen.resident + max(0, room) // sharing)
        elif self.hot.is_armed(entry.tgid):
            if self.hot.disarm(entry.tgid):
                self.tripped.add(entry.tgid)  # stopped by the thread: settle it

    def forgotten(self, entry, kept_stopped: bool) -> None:
        self._entries.discard(entry)
        if self.faults is not None:
            self.faults.remove(entry.tgid)
        self.schedule.forget(entry.tgid)
        self.births.forget(entry.tgid)
        stopped_by_watch = self.hot.disarm(entry.tgid) or entry.tgid in self.tripped
        self.tripped.discard(entry.tgid)
        if stopped_by_watch and not kept_stopped:
            # The stop-first thread stopped it, and it stops being followed (a hello,
            # a move to the root) before the main loop settled the trip: nothing will
            # decide about it any more, so it goes on. A task kept stopped on purpose
            # (oom_kill_disable: stopped_in) is the OOM executor's to continue.
            self.signals.cont(entry.owner)
        self.forks.forgotten(entry)
        pidfd = self.signals.pidfd(entry.owner)
        if pidfd is not None:
            self.exits.remove(pidfd)
        if not self.tracker.followed:  # this was the last one
            self.connector.close()

    # ------------------------------------------------------------------ events

    def apply_events(self) -> None:
        if self.connector.conn is not None:
            self._apply_connector_events()
            if self.connector.take_lost():
                log.warning("process events were lost; scanning /proc for new tasks")
                self._adopt_births()
        for pid in self.exits.exited():
            entry = self.tracker.followed.get(pid)
            if entry is not None:
                self.tracker.exited(entry)
        self.forks.expire_pending()
        self._drain()

    def _apply_connector_events(self) -> None:
        followed = self.tracker.followed

        def forked(pid, tgid, ptgid, born_ns):
            parent = followed.get(ptgid)
            self.started(self.forks.forked(pid, tgid, ptgid, born_ns), parent)

        def execed(tgid):  # a new image, likely to allocate
            self.schedule.heat(tgid, time.monotonic(), self._own_period(followed[tgid]))
            self.wake.set()
        self.connector.dispatch(self.hierarchy.task_group, followed, self.forks.refuse_first,
                                forked, self.forks.exited, execed)

    def decide_clone(self, tid: int) -> int:
        """A guarded task is about to create a task: 0 to let it, or the errno."""
        self.apply_events()
        if not self.forks.stacks:
            return 0
        tgid = self.host.tgid_of(tid)
        if tgid is None:
            return 0
        entry = self.tracker.followed.get(tgid)
        if entry is None and not self.connector.wanted:
            # a fork the last look at /proc has not found yet
            self._scan_forks(time.monotonic(), force=True)
            entry = self.tracker.followed.get(tgid)
        return 0 if entry is None else self.forks.decide_clone(entry, tid)

    def follow(self, pid: int, poll_ms: int | None):
        """``follow``: *pid*, in a group, followed from now on (at its own slow rate
        *poll_ms*); its entry, or None."""
        self.apply_events()
        entry = self.tracker.followed.get(pid)
        if entry is None and self.hierarchy.task_group.get(pid) is not None:
            entry = self.tracker.start(pid)
            self.started(entry)
            entry = self.tracker.followed.get(pid)
        if entry is not None:
            self.forks.reconcile(entry)
        if entry is not None and poll_ms:
            entry.poll_ms = poll_ms
            self.schedule.own_rate(pid, poll_ms / 1000, time.monotonic())
            self.wake.set()
        return entry

    @staticmethod
    def _own_period(entry) -> float | None:
        return entry.poll_ms / 1000 if entry.poll_ms else None

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
                self._sample(entry)
            finally:  # whatever the sample did, a task stopped by the thread goes on
                if pid in self.tracker.followed and entry.stopped_in is None:
                    # only ever armed on tasks the daemon may signal (sampled()):
                    # the daemon undoes its own stop
                    self.signals.cont(entry.owner)

    # ------------------------------------------------------------------ loop

    def _spawn(self, fn, *args) -> None:
        """Start a source whose failure is logged, never propagated: one source's
        unexpected exception must not end the follower's nursery, and with it the
        mount."""
        async def supervised():
            try:
                await fn(*args)
            except Exception:
                log.exception("%s%r failed", fn.__qualname__, args)
        self._nursery.start_soon(supervised, name=fn.__qualname__)

    def _on_fault(self, pid: int) -> None:
        """An idle task's page-fault counter overflowed: sample it now."""
        entry = self.tracker.followed.get(pid)
        if entry is not None:
            now = time.monotonic()
            self.schedule.heat(pid, now, self._own_period(entry))
            self.schedule.due_now(pid, now)
            self.wake.set()

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.token = trio.lowlevel.current_trio_token()
        # The daemon stands in for the kernel, whose bookkeeping the tasks it accounts
        # cannot starve: a fork bomb or an allocator holding the CPUs must not delay
        # the refusal of their next fork or page. Where allowed (root), the daemon's
        # thread runs a little above the default.
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DAEMON_NICE)
        except OSError:
            pass
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._spawn(self.hot.serve)
                self._spawn(self.guards.serve)
                self._spawn(self.connector.serve, self.apply_events)
                self._spawn(self.exits.serve, self.apply_events)
                if self.faults is not None:
                    self._spawn(self.faults.serve, self._on_fault)
                task_status.started()
                await self._fast_loop()
        finally:
            self._nursery = None

    async def _fast_loop(self) -> None:
        while True:
            try:
                self.apply_events()
                self._settle_trips()
                if self.forks.hold.dying:
                    self.forks.hold.release_dead()
                now = time.monotonic()
                if now >= self._next_poll:
                    self._next_poll = now + self.poll_period
                    self._slow_poll()
                if not self.connector.wanted and self.tracker.followed:
                    self._scan_forks(now)
                for n, tgid in enumerate(self.schedule.due(now), 1):
                    entry = self.tracker.followed.get(tgid)
                    if entry is None:
                        self.schedule.forget(tgid)
                    else:
                        self._sample(entry)
                    if n % EVENTS_EVERY_FAST == 0 and self.connector.conn is not None:
                        # many hot tasks (a fork bomb's children): events between
                        # their samples, so that a refused fork never waits for all
                        self.apply_events()
                if self.faults is not None:
                    for tgid in self.schedule.take_cooled():
                        if tgid in self.tracker.followed:
                            self.faults.watch(tgid)
                now = time.monotonic()
                wait = self.schedule.next_wake(now)
                poll = max(0.0, self._next_poll - now)
                wait = poll if wait is None else min(wait, poll)
                if not self.connector.wanted and self.tracker.followed:
                    scan = max(0.0, self._next_scan - now)
                    wait = scan if wait is None else min(wait, scan)
                if self.forks.hold.dying:  # refused children still exiting: look soon
                    wait = DYING_POLL if wait is None else min(wait, DYING_POLL)
            except Exception:
                log.exception("fast sampling failed")
                wait = 0.1
            if not self.tripped:
                self.wake = trio.Event()
                with trio.move_on_after(wait if wait is not None else 3600):
                    await self.wake.wait()

    def _slow_poll(self) -> None:
        """Every poll_ms: every followed task is read, but one whose page-fault
        counter has not fired (nothing woke it) only every QUIET_POLLS polls; tasks
        that exited leave their groups."""
        tracker = self.tracker
        self.apply_events()  # exits first, then growth
        for entry in tracker.settle_members():
            self.started(entry)
        self._drain()
        for entry in [e for e in tracker.followed.values() if e not in self._entries]:
            self.started(entry)  # followed by a move that was refused after all
        # a task refused or stopped is looked at in full
        idle = [] if self.faults is None else [
            t for t in self.faults.armed() if t in tracker.followed
            and tracker.followed[t].refused_at is None and not tracker.followed[t].stopped_in]
        quiet = self.schedule.quiet(idle)
        for n, entry in enumerate(list(tracker.followed.values()), 1):
            if entry.tgid not in quiet and tracker.followed.get(entry.tgid) is entry:
                self._sample(entry)
            if n % EVENTS_EVERY == 0:
                # a poll of thousands of tasks takes a while: the exits and forks
                # that happen meanwhile (a fork bomb's) are not left waiting for it
                self.apply_events()
        # every leader still followed was read just now (its start time checked) or
        # is quiet (its pidfd says it lives)
        alive = set(tracker.followed)
        self.hierarchy.prune(lambda tid: tid in alive or self.host.is_alive(tid))

    def _adopt_births(self) -> None:
        for entry, parent in self.births.adopt(self.tracker):
            self.started(entry, parent)

    def _scan_forks(self, now: float, force: bool = False) -> None:
        """Without the connector, forks are found by looking (births.py) every
        SCAN_PERIOD, stretched so that looking takes at most SCAN_SHARE of a core (a
        /proc of a few thousand processes takes about a millisecond)."""
        if now < self._next_scan and not force:
            return
        t0 = time.perf_counter()
        self._adopt_births()
        spent = time.perf_counter() - t0
        self._next_scan = time.monotonic() + max(SCAN_PERIOD, spent / SCAN_SHARE)

    def close(self) -> None:
        for pid in self.hot.close():  # stopped by the thread, never settled
            self.tripped.add(pid)
        self.forks.close()
        for pid in list(self.tripped):
            entry = self.tracker.followed.get(pid)
            if entry is not None and entry.stopped_in is None:
                self.signals.cont(entry.owner)
        if self.exits is not None:
            self.exits.close()
        if self.faults is not None:
            self.faults.close()
        self.connector.close()
        self.guards.close()
        self.tracker.close()  # at unmount: never leave a task stopped
