"""Executing the memory controller's OOM verdicts: kill, wait, stop and continue.

The core decides (core/memcg/oom.py) and never acts; this is the one place that acts,
shared by the socket server (a client's charge) and the process tracker (a followed
task's growth):

* a victim is sent SIGKILL through its pidfd and its memory freed at once (the OOM
  reaper), then the charge is retried;
* with oom_kill_disable a client's charge sleeps on the group's OOM wait queue until
  the group recovers (or the client exits); a real task is stopped (Signaller.stop:
  a ptrace-stop) and continued once its growth fits.
"""

from __future__ import annotations

import errno
import logging
import signal

import trio

from ..core.memcg import MemCgroup, MemoryController, OomVerdict, Owner
from ..protocol import ProtocolError
from .oom_report import report as oom_report, task_numbers
from .proc_events import is_exited
from .signals import Signaller

log = logging.getLogger("cgroupfs_emu.oom")


class OomWaitQueue:
    """memcg_oom_waitq: charges waiting for an OOM'ing group to recover. Every
    recovery wakes every waiter, which retries (memcg_oom_wake_function)."""

    def __init__(self):
        self._recovered = trio.Event()
        self.waiters = 0

    def wake(self, group: MemCgroup | None = None) -> None:
        if self.waiters:
            self._recovered.set()
            self._recovered = trio.Event()

    async def wait(self, pidfd: int | None, gone=None) -> bool:
        """Sleep until the next recovery, or until the process behind *pidfd* exits
        (its pidfd turns readable: a killed waiter must not keep under_oom set), or
        until *gone* (an async callable: the client closed its connection, which the
        protocol counts as an exit) returns True. Returns True if it exited."""
        exited = False
        recovered = self._recovered
        self.waiters += 1
        try:
            async with trio.open_nursery() as nursery:
                async def wake():
                    await recovered.wait()
                    nursery.cancel_scope.cancel()

                async def death():
                    nonlocal exited
                    await trio.lowlevel.wait_readable(pidfd)
                    exited = True
                    nursery.cancel_scope.cancel()
                async def hangup():
                    nonlocal exited
                    if await gone():
                        exited = True
                        nursery.cancel_scope.cancel()
                nursery.start_soon(wake)
                if pidfd is not None:
                    nursery.start_soon(death)
                if gone is not None:
                    nursery.start_soon(hangup)
        finally:
            self.waiters -= 1
        return exited


class OomExecutor:
    def __init__(self, memory: MemoryController, signals: Signaller, queue: OomWaitQueue,
                 proc: str = "/proc"):
        self.memory = memory
        #: where the victim's numbers for the report are read
        self.proc = proc
        self.signals = signals
        self.queue = queue

    def kill(self, verdict: OomVerdict) -> bool:
        """oom_kill_process(): SIGKILL the victim, count it, free its memory, and log
        the kernel's report (oom_report.py).

        Only a live task is killed and counted: a victim whose process already
        exited (its pidfd is readable; the kernel skips exiting tasks,
        task_will_free_mem()) is released without a kill, and False is returned, so
        the caller retries the charge and the next choice is a live task."""
        victim = verdict.victim
        pidfd = self.signals.pidfd(victim)
        if pidfd is not None and is_exited(pidfd):
            log.info("OOM victim pid %d already exited: released, not counted", victim.pid)
            self.memory.release(victim)
            return False
        # Frozen first, as the kernel's victim is (it sits in its page fault while the
        # report is written): a running process would go on allocating while its
        # numbers are read.
        self.signals.stop(victim)
        numbers = task_numbers(self.proc, victim.pid)
        lines = oom_report(verdict.group, self.memory.memcg_of_task(victim.pid), victim.pid,
                           numbers)
        if not self.signals.send(victim, signal.SIGKILL):
            self.memory.release(victim)
            return False
        for line in lines:
            log.warning("%s", line)
        self.memory.oom_killed(victim)
        return True

    async def charge(self, owner: Owner, kind: str, nr: int,
                     verdict: OomVerdict | None = None, gone=None) -> None:
        """Charge *nr* pages of *kind* for a client, killing or waiting as the core
        decides, until done or refused (ProtocolError ENOMEM, or the core's
        NoMemory). *verdict*: the outcome of a first attempt already made. *gone*:
        see OomWaitQueue.wait (a hang-up ends an OOM wait like an exit)."""
        memory = self.memory
        while True:
            if verdict is None:
                verdict = memory.charge(owner, memory.memcg_of_task(owner.pid), kind, nr)
            if verdict is None:
                return
            if verdict.victim is not None:
                self.kill(verdict)
                if verdict.victim.pid == owner.pid:
                    raise ProtocolError(errno.ENOMEM, "killed by the OOM killer")
                if memory.profile.oom_kill_fails_charge:
                    # seed 002 patch 7: mem_cont_out_of_memory(), then the charge fails
                    raise ProtocolError(errno.ENOMEM, "Memory container out of memory")
                verdict = None
                continue
            # oom_kill_disable: sleep on the group's OOM wait queue
            memory.mark_under_oom(verdict.group, +1)
            try:
                exited = await self.queue.wait(self.signals.pidfd(owner), gone)
            finally:
                memory.mark_under_oom(verdict.group, -1)
            if exited or not owner.alive:
                raise ProtocolError(errno.ENOMEM, "killed while waiting for memory")
            verdict = None

    def stop(self, owner: Owner, group: MemCgroup) -> bool:
        """A real task cannot sleep in our page fault: stop it while its group is
        under OOM. False if it could not be stopped."""
        if not self.signals.stop(owner):
            return False
        self.memory.mark_under_oom(group, +1)
        return True

    def resume(self, owner: Owner, group: MemCgroup, signal_it: bool = True) -> None:
        """The stopped task's group recovered (or the task is gone): continue it."""
        self.memory.mark_under_oom(group, -1)
        if signal_it:
            self.signals.cont(owner)
