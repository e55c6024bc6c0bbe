"""The daemon's descriptor budget.

Every client costs the daemon descriptors (its socket, a pidfd per process it charges
for), so a user who may connect could otherwise run the daemon out of them; then
accept(2) fails with EMFILE, and so would the /proc reads and pidfd_open(2) calls the
mount needs. The budget:

* raises the soft RLIMIT_NOFILE to the hard limit at start (what an unprivileged
  process may do on its own);
* keeps ``reserve`` descriptors back for the mount: a new connection, or a new pidfd
  for a client, is refused while fewer than that would be left.

Counting is exact (``/proc/self/fd``) but only done when the cheap signs say the limit
may be near: the number of the descriptor just allocated (the kernel hands out the
lowest free one, so every lower one is in use) or the number of open connections.
"""

from __future__ import annotations

import logging
import os
import resource
import time

log = logging.getLogger("cgroupfs_emu.service")


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE := hard. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def open_fds() -> int:
    """Descriptors this process has open (the one listdir itself uses not counted)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1
    except OSError:
        return 0


class FdBudget:
    def __init__(self, limit: int | None = None, reserve: int | None = None):
        self._limit = limit
        self._reserve = reserve
        #: client connections open now (the server counts them)
        self.connections = 0
        self._refused = 0
        self._warned_at = 0.0

    @property
    def limit(self) -> int:
        """The soft RLIMIT_NOFILE now (read each time: it is raised at start, and may
        be changed from outside with prlimit)."""
        if self._limit is not None:
            return self._limit
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return 1 << 20 if soft == resource.RLIM_INFINITY else soft

    @property
    def reserve(self) -> int:
        """Kept for the mount: /proc reads of tasks and event_control, pidfd_open,
        eventfd duplicates, the release agent's pipes."""
        if self._reserve is not None:
            return self._reserve
        return max(16, min(64, self.limit // 16))

    def _near(self, newest_fd: int) -> bool:
        half = (self.limit - self.reserve) // 2
        return newest_fd >= half or 2 * self.connections >= half

    def may_keep(self, newest_fd: int, need: int = 1) -> bool:
        """May the daemon keep descriptor *newest_fd*, just allocated, and still open
        *need* more for it, leaving the reserve untouched?"""
        if not self._near(newest_fd):
            return True
        return open_fds() + need + self.reserve <= self.limit

    def may_open(self) -> bool:
        """May the daemon open one more descriptor for a client?"""
        if not self._near(0):
            return True
        return open_fds() + 1 + self.reserve <= self.limit

    def refused(self, what: str) -> None:
        """Log a refusal: at most one warning a second, with the count since."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= 1.0:
            log.warning("descriptor budget: %s refused (%d since the last warning; "
                        "limit %d, %d kept for the mount)",
                        what, self._refused, self.limit, self.reserve)
            self._warned_at = now
            self._refused = 0
