"""Wait for the next FUSE request without a trio scheduler round when one is queued.

pyfuse3's session loop waits for every request in ``_wait_fuse_readable()``: it takes
a ``trio.Lock`` (one scheduler round, for loops with several reader tasks) and then
``trio.lowlevel.wait_readable()`` (an epoll registration, a park, an epoll_wait and a
deregistration). On one CPU that costs more than our handlers and more than the whole
C server answering the same request: ``cat`` of a control file needs five requests.

This daemon runs one reader task (``pyfuse3.main(min_tasks=1, max_tasks=1)``), so the
lock guards nothing. When the kernel already queued the next request, a zero-timeout
poll(2) says so and the request is read at once; otherwise, and after every
``FAIRNESS`` requests in a row, the wait goes through trio so the socket server and
the watcher run.

Why the poll alone rarely finds a request, and what the yield between two polls buys:
our reply (a write to /dev/fuse, ``fuse_dev_do_write()`` -> ``fuse_request_end()``)
wakes the client blocked in ``request_wait_answer()``, and the client's next request
(``fuse_dev_queue_req()``) wakes whoever waits in ``fuse_dev_do_read()`` or polls the
device. Where the client and the daemon share one CPU, the woken client does not
preempt the daemon, which runs at nice -5 when it may (``service/follower.py``,
``DAEMON_NICE``): the daemon loops back, polls before the client ran, finds nothing
and parks in trio's epoll wait, about 2.3 times per ``cat``. One ``sched_yield(2)``
hands the CPU to the woken client, which makes its next system call, sends the next
request and blocks on it; the second poll then finds it queued. The context switches
are the same ones the park would cost; the epoll registration and trio's scheduler
pass are saved. Where nothing else is runnable the yield returns at once (a syscall,
well under a microsecond).

On a busy CPU a yield can hand the CPU to a task that runs for its whole slice, while
a daemon parked in epoll would be woken (and, at a lower nice, run) the moment the
request arrives. So a yield that takes longer than ``YIELD_SLOW_NS`` stops yielding
for ``YIELD_BACKOFF_NS``.

What is not done: nothing here reads or answers requests; pyfuse3 still does.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Awaitable, Callable

import attrs
import pyfuse3
import trio

log = logging.getLogger(__name__)

#: requests answered in a row without letting other trio tasks run
FAIRNESS = 32
#: a sched_yield(2) slower than this ran another task for real (not the client's
#: next system call): stop yielding for YIELD_BACKOFF_NS
YIELD_SLOW_NS = 200_000
YIELD_BACKOFF_NS = 1_000_000_000


@attrs.define
class WaitCounts:
    """How each wait for a request ended, for the daemon's debug log at shutdown."""

    #: the first poll found a request queued
    queued: int = 0
    #: queued after one sched_yield(2)
    after_yield: int = 0
    #: went through trio's wait (nothing queued, or FAIRNESS reached)
    trio: int = 0
    #: yields slower than YIELD_SLOW_NS, each followed by YIELD_BACKOFF_NS without yielding
    slow_yields: int = 0

    def __str__(self) -> str:
        return (f"{self.queued} queued, {self.after_yield} after a yield, "
                f"{self.trio} through trio, {self.slow_yields} slow yields")


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


def make_wait(fd: int, counts: WaitCounts, *,
              wait_readable: Callable[[int], Awaitable[None]] = trio.lowlevel.wait_readable,
              sched_yield: Callable[[], None] = os.sched_yield,
              clock: Callable[[], int] = time.monotonic_ns,
              ) -> Callable[[], Awaitable[bool]]:
    """The wait for a readable descriptor *fd* that pyfuse3's session loop calls,
    counting its outcomes in *counts*. *wait_readable*, *sched_yield* and *clock* are
    trio's, the kernel's and the monotonic clock; tests pass their own."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poll = poller.poll
    streak = 0
    #: clock() before which no yield is tried (after a slow one)
    quiet_until = 0

    async def wait_fuse_readable() -> bool:
        """True when a request (or the unmount) can be read; False when the loop must
        end (pyfuse3.terminate() closed the descriptor for trio)."""
        nonlocal streak, quiet_until
        if streak < FAIRNESS:
            if poll(0):
                streak += 1
                counts.queued += 1
                return True
            start = clock()
            if start >= quiet_until:
                sched_yield()
                took = clock() - start
                if took > YIELD_SLOW_NS:
                    counts.slow_yields += 1
                    quiet_until = start + took + YIELD_BACKOFF_NS
                if poll(0):
                    streak += 1
                    counts.after_yield += 1
                    return True
        streak = 0
        counts.trio += 1
        try:
            await wait_readable(fd)
        except trio.ClosedResourceError:
            return False
        return True

    return wait_fuse_readable


def install_fast_wait(fd: int) -> WaitCounts | None:
    """Replace pyfuse3's wait for a readable session descriptor *fd*; returns the
    counts the new wait keeps, or None (and pyfuse3's own wait kept) if this pyfuse3
    has no such hook."""
    if not hasattr(pyfuse3, "_wait_fuse_readable"):
        log.info("pyfuse3 %s: keeping its own request wait", pyfuse3.__version__)
        return None
    counts = WaitCounts()
    pyfuse3._wait_fuse_readable = make_wait(fd, counts)
    return counts
