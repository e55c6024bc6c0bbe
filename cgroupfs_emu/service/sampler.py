"""Adaptive memory sampling of followed tasks, and the stop-first guard near a limit.

The slow poll (``poll_ms``, default 500 ms) still reads every followed task. On top:

* **Fast schedule** (:class:`Schedule`): a task that grew since its last sample, or
  that was just forked, exec'd or joined (it is likely to allocate), or whose group or
  an ancestor has less than :data:`NEAR_PAGES` (or a quarter of its limit) left, is
  *hot* and is sampled every ``fast_ms`` (10 ms) by the daemon's main loop, which
  charges its growth at once; a task given its own rate (``cgemu exec --poll-ms``) is
  sampled at that rate. A hot task that stays still for :data:`HOT_LINGER` seconds
  becomes idle again. The cost is bounded: at most ``budget`` samples a second go to
  the fast schedule (1000: about 3-4 % of a core); with more hot tasks the fast
  period stretches.
* **Stop-first guard** (:class:`HotWatch`): the main loop's 10 ms is too slow for a
  task that faults in gigabytes a second (16 MiB take ~5 ms). So for every hot task
  in a group with a limit, a dedicated thread reads ``/proc/PID/statm`` (one pread of
  an open descriptor, a few microseconds) every millisecond and compares the
  resident set with a *trip* point: the resident size at the last charged sample
  plus the room left under the tightest limit above the task (shared among the hot
  tasks under that limit). At the trip the thread stops the task *first* (a
  ptrace-stop through Signaller.stop_from_thread, stopper.py; SIGSTOP where
  refused) and tells
  the main loop, which samples the stopped task, charges what it really used and
  decides like the kernel at a failed charge: continue it (the growth fit),
  OOM-kill, or keep it stopped (``oom_kill_disable``). The
  overshoot past the limit is what the task touches between two reads plus the
  signal's delivery: with a 1 ms period, a few MiB at the fastest fault rates.

A task idle for longer than HOT_LINGER that suddenly allocates is woken up by its
perf page-fault counter (fault_watch.py) after a few faults; where perf events are
not available it is noticed at its next slow sample (``poll_ms``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable

import attrs
import trio

log = logging.getLogger("cgroupfs_emu.sampler")

#: seconds a task stays hot after it last grew (or was born, exec'd, joined)
HOT_LINGER = 1.0
#: a group with fewer pages than this left under a limit makes its tasks hot (64 MiB)
NEAR_PAGES = 16384
#: an idle task whose page-fault counter has not fired is read at every this many
#: slow polls only: it grew by less than fault_watch.PERIOD faults (what shrank, or
#: VmLck, is seen that late)
QUIET_POLLS = 4


@attrs.define
class Due:
    """One task in the fast schedule."""

    #: its own sampling period (cgemu exec --poll-ms), 0.0 for none
    own: float
    #: hot (sampled every fast period) until then
    hot_until: float
    #: when its next sample is due
    next_due: float
    #: hot at the last look (a task that cools down is reported once)
    was_hot: bool


class Schedule:
    """Which followed tasks the fast loop samples, and when."""

    def __init__(self, fast_ms: int = 10, budget: int = 1000):
        self.fast = fast_ms / 1000
        #: samples per second the fast schedule may take at most
        self.budget = budget
        self.entries: dict[int, Due] = {}
        #: tasks that cooled down since the last take_cooled()
        self.cooled: list[int] = []
        #: idle tgid -> slow polls it skipped in a row (quiet())
        self.skipped: dict[int, int] = {}

    def period(self) -> float:
        """The fast period, stretched so that all hot tasks fit the budget."""
        return max(self.fast, len(self.entries) / self.budget)

    def heat(self, tgid: int, now: float, own_period: float | None = None) -> None:
        """*tgid* grew, was born, exec'd or is near a limit: sample it fast."""
        e = self.entries.get(tgid)
        if e is None:
            self.entries[tgid] = Due(own_period or 0.0, now + HOT_LINGER, now, True)
        else:
            e.hot_until = max(e.hot_until, now + HOT_LINGER)
            e.was_hot = True

    def due_now(self, tgid: int, now: float) -> None:
        """Sample *tgid* at the next look (something woke it: its page faults)."""
        e = self.entries.get(tgid)
        if e is not None:
            e.next_due = now

    def own_rate(self, tgid: int, period: float, now: float) -> None:
        """A task with its own sampling period (never dropped while it lives)."""
        e = self.entries.setdefault(tgid, Due(period, float("-inf"), now, False))
        e.own = period

    def forget(self, tgid: int) -> None:
        self.entries.pop(tgid, None)
        self.skipped.pop(tgid, None)

    def quiet(self, idle) -> set[int]:
        """Of the *idle* tasks (nothing woke them), those the slow poll skips this
        time: each is read at every QUIET_POLLS-th poll."""
        out = set()
        for tgid in idle:
            n = self.skipped.get(tgid, 0) + 1
            self.skipped[tgid] = n % QUIET_POLLS
            if n % QUIET_POLLS:
                out.add(tgid)
        return out

    def due(self, now: float) -> list[int]:
        """Tasks whose sample is due; tasks that cooled down leave the schedule (and
        are listed in :attr:`cooled`)."""
        fast = self.period()
        out = []
        for tgid, e in list(self.entries.items()):
            if e.hot_until < now and e.was_hot:
                e.was_hot = False
                self.cooled.append(tgid)
            if e.hot_until < now and not e.own:
                del self.entries[tgid]
                continue
            if now >= e.next_due:
                out.append(tgid)
                e.next_due = now + (fast if e.hot_until >= now else max(e.own, fast))
        return out

    def take_cooled(self) -> list[int]:
        out, self.cooled = self.cooled, []
        return out

    def next_wake(self, now: float) -> float | None:
        """Seconds until the next sample is due, None when nothing is scheduled."""
        if not self.entries:
            return None
        return max(0.0, min(e.next_due for e in self.entries.values()) - now)

    def is_hot(self, tgid: int, now: float) -> bool:
        e = self.entries.get(tgid)
        return e is not None and e.hot_until >= now


class _Watched:
    __slots__ = ("pid", "pidfd", "statm", "trip", "tripped", "closed")

    def __init__(self, pid: int, pidfd: int, statm: int, trip: int):
        self.pid = pid
        self.pidfd = pidfd
        self.statm = statm
        self.trip = trip
        self.tripped = False
        self.closed = False


class HotWatch:
    """The stop-first thread (see the module docstring). It owns its descriptors (its
    own duplicate of each pidfd and an open statm), so the main loop closing a pidfd
    can never make it signal another process."""

    def __init__(self, on_trip: Callable[[int], None], stop: Callable[[int, int], bool],
                 period: float = 0.001, proc: str = "/proc", max_tasks: int = 64):
        #: called from the thread with the pid it stopped (must be thread-safe)
        self.on_trip = on_trip
        #: stop(pid, pidfd) through a pidfd this watch owns (Signaller.stop_from_thread:
        #: a ptrace-stop job control does not see, where the host allows)
        self.stop = stop
        self.period = period
        self.proc = proc
        #: at most this many tasks watched at once (a cost bound: ~5 us a read)
        self.max_tasks = max_tasks
        self.watched: dict[int, _Watched] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.thread: threading.Thread | None = None

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run the thread for as long as the daemon runs (close() stops it: the
        tasks it stopped are the caller's to continue)."""
        self.start()
        task_status.started()
        await trio.sleep_forever()

    def start(self) -> None:
        """Start the thread (once)."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="cgemu-hotwatch",
                                           daemon=True)
            self.thread.start()

    def arm(self, pid: int, pidfd: int, trip_pages: int) -> None:
        """Stop *pid* as soon as its resident set reaches *trip_pages*."""
        with self.lock:
            w = self.watched.get(pid)
            if w is not None:
                w.trip = trip_pages
                w.tripped = False
                return
            if len(self.watched) >= self.max_tasks:
                return
            try:
                statm = os.open(f"{self.proc}/{pid}/statm", os.O_RDONLY)
            except OSError:
                return
            try:
                mine = os.dup(pidfd)
            except OSError:
                os.close(statm)
                return
            self.watched[pid] = _Watched(pid, mine, statm, trip_pages)
        self.wake.set()

    def disarm(self, pid: int) -> bool:
        """Stop watching *pid*; True when this thread had stopped it (a trip the main
        loop has not settled yet)."""
        with self.lock:
            w = self.watched.pop(pid, None)
            if w is None:
                return False
            w.closed = True
            os.close(w.statm)
            os.close(w.pidfd)
            return w.tripped

    def is_armed(self, pid: int) -> bool:
        return pid in self.watched

    def _run(self) -> None:
        # A late read is overshoot: on a loaded machine this thread must win the CPU
        # (a higher priority where the daemon may raise it: root) and the GIL (the
        # main thread is asked to hand it over after 0.5 ms instead of 5 ms while a
        # task is watched).
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        except OSError:
            pass
        default_switch = sys.getswitchinterval()
        while not self.stopping:
            if not self.watched:
                sys.setswitchinterval(default_switch)
                self.wake.wait(0.5)
                self.wake.clear()
                sys.setswitchinterval(min(default_switch, 0.0005))
                continue
            for w in list(self.watched.values()):
                if w.tripped:
                    continue
                with self.lock:
                    if w.closed:
                        continue
                    try:
                        resident = int(os.pread(w.statm, 64, 0).split()[1])
                    except (OSError, IndexError, ValueError):
                        continue
                    if resident < w.trip:
                        continue
                    if not self.stop(w.pid, w.pidfd):
                        continue
                    w.tripped = True
                try:
                    self.on_trip(w.pid)
                except Exception:  # the daemon is shutting down
                    log.debug("trip of %d not delivered", w.pid, exc_info=True)
            time.sleep(self.period)

    def close(self) -> list[int]:
        """Stop the thread; the pids it had stopped whose trip was not settled (the
        caller continues them)."""
        self.stopping = True
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=2)
        return [pid for pid in list(self.watched) if self.disarm(pid)]
