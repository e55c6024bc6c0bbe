"""The only place the daemon signals processes.

Every process it may signal was handed to it: a socket client (its peer pid) or a task
written into ``tasks``/``cgroup.procs``. Each gets a pidfd when the daemon first learns
of it, and signals go through that pidfd, so a pid the kernel reused for another
process is never hit. pid 1, the daemon and its ancestors are never signalled.
"""

from __future__ import annotations

import logging
import os
import signal

from ..host.procfs import protected_pids

log = logging.getLogger("cgroupfs_emu.signals")


class Signaller:
    def __init__(self):
        self.protected = protected_pids()
        #: owner (core.memcg.Owner) -> pidfd
        self.pidfds: dict[object, int] = {}

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
