"""Wait for the next FUSE request without a trio scheduler round when one is queued.

pyfuse3's session loop waits for every request in ``_wait_fuse_readable()``: it takes
a ``trio.Lock`` (one scheduler round, for loops with several reader tasks) and then
``trio.lowlevel.wait_readable()`` (an epoll registration, a park, an epoll_wait and a
deregistration). On one CPU that costs more than our handlers and more than the whole
C server answering the same request: ``cat`` of a control file needs five requests.

This daemon runs one reader task (``pyfuse3.main(min_tasks=1, max_tasks=1)``), so the
lock guards nothing. When the kernel already queued the next request (the client was
woken by our reply and asked again before we looped back), a zero-timeout poll(2) says
so and the request is read at once; otherwise, and after every ``FAIRNESS`` requests
in a row, the wait goes through trio so the socket server and the watcher run.

What is not done: nothing here reads or answers requests; pyfuse3 still does.
"""

from __future__ import annotations

import logging
import os
import select

import pyfuse3
import trio

log = logging.getLogger(__name__)

#: requests answered in a row without letting other trio tasks run
FAIRNESS = 32


def fuse_fds() -> set[int]:
    """Descriptors of this process open on /dev/fuse."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                fds.add(int(name))
        except OSError:
            pass  # closed since listdir (the listing's own descriptor)
    return fds


def install_fast_wait(fd: int) -> bool:
    """Replace pyfuse3's wait for a readable session descriptor *fd*; False (and
    pyfuse3's own wait kept) if this pyfuse3 has no such hook."""
    if not hasattr(pyfuse3, "_wait_fuse_readable"):
        log.info("pyfuse3 %s: keeping its own request wait", pyfuse3.__version__)
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poll = poller.poll
    wait_readable = trio.lowlevel.wait_readable
    streak = 0

    async def wait_fuse_readable() -> bool:
        """True when a request (or the unmount) can be read; False when the loop must
        end (pyfuse3.terminate() closed the descriptor for trio)."""
        nonlocal streak
        if streak < FAIRNESS and poll(0):
            streak += 1
            return True
        streak = 0
        try:
            await wait_readable(fd)
        except trio.ClosedResourceError:
            return False
        return True

    pyfuse3._wait_fuse_readable = wait_fuse_readable
    return True
