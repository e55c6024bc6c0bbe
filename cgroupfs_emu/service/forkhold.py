"""Forks refused after the fact, and the fork-bomb hold.

A task forked by a process that joined through ``tasks`` (no fork guard) is learned
of only once it exists. When its thread stack cannot be charged (seed 003: the kmem
limit) it must not exist, so it is killed at once, never followed; the kernel's
copy_process() would have failed with ENOMEM instead.

A refused child costs its parent a fork and the host an exit, where the kernel's
refused fork costs nothing: a fork bomb forks faster than its killed children finish
exiting, and the host would hold ever more of them. So once :data:`DYING_MAX`
refused children of one process are still exiting, the process is held (stopped)
until they are gone (checked every :data:`DYING_POLL`): its next fork waits, as if
the failed one took that long. A process kept stopped on purpose (oom_kill_disable)
is never continued from here.
"""

from __future__ import annotations

import logging
import os

from .proc_events import is_exited

log = logging.getLogger("cgroupfs_emu.follower")

#: refused children of one process that may be dying at once before the process is
#: held (stopped) until they are gone
DYING_MAX = 8
#: how often (seconds) refused children are looked for while some are exiting
DYING_POLL = 0.001


class ForkHold:
    def __init__(self, signals, host):
        self.signals = signals
        self.host = host
        #: refused children still exiting (pidfds), per forking followed process
        self.dying: dict = {}
        #: the processes held until theirs are gone
        self.held: set = set()

    def kill(self, pid: int, group, parent=None) -> None:
        """Kill refused child *pid* (forked by the followed *parent*, if known)."""
        # once its pidfd is open: is the pid still the refused child, not a process
        # that took the pid of a child gone meanwhile?
        pidfd = self.signals.kill_unfollowed(
            pid, lambda: parent is None or self.host.ppid(pid) == parent.tgid)
        if pidfd is None:
            return
        log.warning("fork of pid %d refused in %s: kmem limit reached; killed",
                    pid, group.path())
        if parent is None:
            os.close(pidfd)
            return
        dying = self.dying.setdefault(parent, [])
        dying.append(pidfd)
        if (len(dying) > DYING_MAX and parent not in self.held
                and parent.stopped_in is None
                and self.signals.stop(parent.owner)):
            self.held.add(parent)

    def release_dead(self) -> None:
        """Forget refused children that are gone; continue their parents once all of
        theirs are."""
        for parent, dying in list(self.dying.items()):
            for fd in [fd for fd in dying if is_exited(fd)]:
                dying.remove(fd)
                os.close(fd)
            if not dying:
                self.release(parent)

    def release(self, parent) -> None:
        """Stop holding *parent* (its refused children are gone, or it is no longer
        followed); one kept stopped on purpose (oom_kill_disable) stays stopped."""
        for fd in self.dying.pop(parent, ()):
            os.close(fd)
        if parent in self.held:
            self.held.discard(parent)
            if parent.stopped_in is None:
                self.signals.cont(parent.owner)

    def close(self) -> None:
        for parent in list(self.dying):
            self.release(parent)
