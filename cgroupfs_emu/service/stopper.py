"""Stopping a real task the way a kernel task over its limit sleeps: unseen by job
control.

The daemon stops a task for the stop-first guard (sampler.py HotWatch), while its
group is under OOM with oom_kill_disable (oom.py), and to hold a fork bomb
(follower.py). A kernel task in those places sleeps in its page fault or in fork;
its shell never hears of it. A SIGSTOP, though, is a group-stop that the parent's
``waitpid(WUNTRACED)`` reports, and an interactive shell then lists the job as
Stopped (and keeps it so after the SIGCONT).

So a task is stopped in a *ptrace-stop*: every thread is seized (PTRACE_SEIZE, with
PTRACE_O_TRACECLONE so a thread created meanwhile is traced and starts stopped) and
interrupted (PTRACE_INTERRUPT); it is continued by detaching each thread. All of it
happens in one thread of the daemon (:class:`Stopper`), since ptrace requests for a
tracee are only taken from the thread that seized it; that thread also collects
every report of its tracees (their exits included: a traced task's parent hears of
its exit only once the tracer has), and

* a signal caught in a signal-delivery-stop is given back at the detach, so nothing
  the task was sent is lost; other signals stay pending while it is stopped, as for
  a task sleeping in the kernel (TASK_KILLABLE);
* a stopped task sent a signal that would end it (not caught, ignored or blocked)
  is let go at once, to die of it, as a TASK_KILLABLE sleep ends for it;
* a tracer that dies detaches its tracees (exit_ptrace()): a crashed daemon leaves
  no task ptrace-stopped.

Where ptrace is refused (no CAP_SYS_PTRACE under Yama, another user's task, a task
already traced by gdb or strace) the task gets SIGSTOP/SIGCONT as before, and the
log says so once.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading

from ..host import ptrace
from .proc_events import is_exited

log = logging.getLogger("cgroupfs_emu.stopper")

#: how often the tracer thread looks at its tracees while it has any (seconds)
LOOK_EVERY = 0.005


class _Stopped:
    """One process the tracer has stopped: its traced threads, the signal each gave
    in a signal-delivery-stop, and whether it is to be let go."""

    __slots__ = ("tgid", "pidfd", "threads", "signals", "stopped", "leaving")

    def __init__(self, tgid: int, pidfd: int):
        self.tgid = tgid
        self.pidfd = pidfd
        self.threads: set[int] = set()
        self.signals: dict[int, int] = {}
        self.stopped: set[int] = set()
        self.leaving = False


class Stopper:
    """Stops and continues processes from one tracer thread; ``stop`` and ``cont``
    may be called from any thread."""

    def __init__(self, proc: str = "/proc"):
        self.proc = proc
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()
        #: tgid -> _Stopped (the tracer thread's own)
        self.stopped: dict[int, _Stopped] = {}
        self.refused_said = False
        self.closed = False

    # ------------------------------------------------------------------ any thread

    def stop(self, tgid: int, pidfd: int) -> bool:
        """Put every thread of *tgid* (whose pidfd proves it is still that process)
        in a ptrace-stop; False where ptrace is refused (the caller sends SIGSTOP)."""
        return self._ask("stop", tgid, pidfd)

    def cont(self, tgid: int) -> bool:
        """Let *tgid* go if this stopper stopped it (False: it did not)."""
        return self._ask("cont", tgid, -1)

    def close(self) -> None:
        """Let every stopped task go and end the thread."""
        if self.thread is not None and not self.closed:
            self._ask("close", 0, -1)
        self.closed = True  # later requests are not waited for
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _ask(self, what: str, tgid: int, pidfd: int) -> bool:
        with self.start_lock:
            if self.closed:
                return False
            if self.thread is None:
                if what != "stop":
                    return False
                self.thread = threading.Thread(target=self._run, name="cgemu-tracer",
                                               daemon=True)
                self.thread.start()
        done = threading.Event()
        answer = [False]
        self.requests.put((what, tgid, pidfd, done, answer))
        done.wait(5)
        return answer[0]

    # ------------------------------------------------------------------ tracer thread

    def _run(self) -> None:
        try:
            # a stop is overshoot's end: win the CPU like the stop-first thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), -10)
        except OSError:
            pass
        closing = False
        while not (closing and not self.stopped):
            try:
                what, tgid, pidfd, done, answer = self.requests.get(
                    timeout=LOOK_EVERY if self.stopped or closing else None)
            except queue.Empty:
                what = None
            if what is not None:
                try:
                    if what == "stop":
                        answer[0] = self._stop(tgid, pidfd)
                    elif what == "cont":
                        answer[0] = self._let_go(tgid)
                    else:
                        closing = True
                        for tgid in list(self.stopped):
                            self._let_go(tgid)
                        answer[0] = True
                except Exception:
                    log.exception("%s of pid %d failed", what, tgid)
                finally:
                    done.set()
            self._collect()

    def _stop(self, tgid: int, pidfd: int) -> bool:
        s = self.stopped.get(tgid)
        if s is not None:
            s.leaving = False  # stopped again before every thread was let go
        else:
            s = _Stopped(tgid, os.dup(pidfd))
        try:
            for _ in range(3):  # threads created while seizing: seize those too
                new = [t for t in self._threads(tgid) if t not in s.threads]
                if not new:
                    break
                for tid in new:
                    try:
                        ptrace.seize(tid)
                    except OSError as e:
                        if e.errno == errno.ESRCH:
                            continue  # that thread exited
                        if s.threads:
                            s.leaving = True  # let go of the ones taken, once stopped
                            self.stopped[tgid] = s
                        elif self.stopped.get(tgid) is not s:
                            os.close(s.pidfd)
                        self._refused(tgid, e)
                        return False
                    s.threads.add(tid)
                    ptrace.interrupt(tid)
            self.stopped[tgid] = s
            if is_exited(s.pidfd):  # the pid may name another process by now
                raise ProcessLookupError
        except ProcessLookupError:
            s.leaving = True
            return False
        return True

    def _refused(self, tgid: int, e: OSError) -> None:
        if not self.refused_said:
            self.refused_said = True
            log.warning("ptrace refused (pid %d: %s): tasks are stopped with SIGSTOP, "
                        "which job control sees", tgid, os.strerror(e.errno))

    def _let_go(self, tgid: int) -> bool:
        s = self.stopped.get(tgid)
        if s is None:
            return False
        s.leaving = True
        self._collect_one(s)
        return True

    def _threads(self, tgid: int) -> list[int]:
        try:
            return [int(t) for t in os.listdir(f"{self.proc}/{tgid}/task")]
        except OSError:
            return []

    def _collect(self) -> None:
        for s in list(self.stopped.values()):
            if not s.leaving and ptrace.fatal_pending(self.proc, s.tgid):
                s.leaving = True  # it would die in the kernel's killable sleep
            self._collect_one(s)

    def _collect_one(self, s: _Stopped) -> None:
        """Take every report of *s*'s threads; detach the stopped ones if it leaves."""
        for tid in list(s.threads):
            while True:
                got = ptrace.poll_stop(tid)
                if got is None:
                    break
                kind, sig, event = got
                if kind == "gone":
                    s.threads.discard(tid)
                    s.stopped.discard(tid)
                    break
                s.stopped.add(tid)
                if event == ptrace.PTRACE_EVENT_CLONE:
                    try:
                        s.threads.add(ptrace.event_msg(tid))
                    except OSError:
                        pass
                elif event == 0:  # signal-delivery-stop: given back at the detach
                    s.signals[tid] = sig
            if s.leaving and tid in s.stopped:
                try:
                    ptrace.detach(tid, s.signals.get(tid, 0))
                except OSError:
                    # not in a ptrace-stop after all (killed meanwhile): still traced,
                    # so its exit is this thread's to collect, or its parent never
                    # hears of it
                    s.stopped.discard(tid)
                    continue
                s.signals.pop(tid, None)
                s.threads.discard(tid)
                s.stopped.discard(tid)
        if not s.threads:  # let go, or gone (an OOM kill)
            del self.stopped[s.tgid]
            os.close(s.pidfd)
