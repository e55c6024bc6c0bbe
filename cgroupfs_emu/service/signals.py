"""The only place the daemon signals processes (scripts/check-layers holds it).

Every process it may signal was handed to it: a socket client (its peer pid) or a task
written into ``tasks``/``cgroup.procs``, or forked by one. Each gets a pidfd when the
daemon first learns of it, and signals go through that pidfd, so a pid the kernel
reused for another process is never hit. pid 1, the daemon and its ancestors are never
signalled.

Stops and continues go through :meth:`Signaller.stop` / :meth:`Signaller.cont`: a
ptrace-stop that job control does not see where the host allows it (stopper.py),
else SIGSTOP and SIGCONT.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Callable

from ..host.procfs import protected_pids
from .stopper import Stopper

log = logging.getLogger("cgroupfs_emu.signals")


class Signaller:
    def __init__(self, stopper: Stopper | None = None):
        self.protected = protected_pids()
        #: owner (core.memcg.Owner) -> pidfd
        self.pidfds: dict[object, int] = {}
        self.stopper = stopper or Stopper()

    def may_signal(self, pid: int) -> bool:
        return pid not in self.protected

    def adopt(self, owner, pidfd: int) -> None:
        self.pidfds[owner] = pidfd

    def pidfd(self, owner) -> int | None:
        return self.pidfds.get(owner)

    def forget(self, owner) -> None:
        fd = self.pidfds.pop(owner, None)
        if fd is not None:
            os.close(fd)

    def send(self, owner, signum: int) -> bool:
        """Signal the owner's process; False if it is gone or may not be signalled."""
        fd = self.pidfds.get(owner)
        if fd is None or not self.may_signal(owner.pid):
            return False
        try:
            signal.pidfd_send_signal(fd, signum)
        except ProcessLookupError:
            return False
        log.info("sent %s to pid %d", signal.Signals(signum).name, owner.pid)
        return True

    def stop(self, owner) -> bool:
        """Stop the owner's process (see the module docstring); False if it is gone
        or may not be signalled."""
        fd = self.pidfds.get(owner)
        if fd is None:
            return False
        return self.stop_from_thread(owner.pid, fd)

    def stop_from_thread(self, pid: int, pidfd: int) -> bool:
        """stop() through a pidfd of *pid* the caller owns (the stop-first thread's
        own duplicate, sampler.HotWatch): safe from any thread, it touches nothing
        the main thread does (the stopper takes requests from any thread)."""
        if not self.may_signal(pid):
            return False
        try:
            if self.stopper.stop(pid, pidfd):
                log.info("stopped pid %d (ptrace)", pid)
                return True
            signal.pidfd_send_signal(pidfd, signal.SIGSTOP)
        except ProcessLookupError:
            return False
        log.info("sent SIGSTOP to pid %d", pid)
        return True

    def cont(self, owner) -> bool:
        """Continue what stop() stopped."""
        if self.stopper.cont(owner.pid):
            log.info("continued pid %d (ptrace)", owner.pid)
            return True
        return self.send(owner, signal.SIGCONT)

    def close(self) -> None:
        """At daemon exit: let every ptrace-stopped task go."""
        self.stopper.close()

    def kill_unfollowed(self, pid: int, still_ours: Callable[[], bool]) -> int | None:
        """SIGKILL a task the daemon refused before following it (a fork past the kmem
        limit). *still_ours* is asked once the pidfd is open (the pid still names
        the refused task, not a process that reused it). The pidfd is returned for
        the caller to watch the task exit and to close; None when it is gone or may
        not be signalled."""
        if not self.may_signal(pid):
            return None
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return None  # gone already
        try:
            if not still_ours():
                raise ProcessLookupError
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            os.close(pidfd)
            return None
        return pidfd
