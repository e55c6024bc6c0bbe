"""The FUSE loop's wait for the next request (fs/session.py): a poll, one yield and a
second poll before trio's wait, FAIRNESS, the back-off after a slow yield.

The wait is driven with a pipe standing in for /dev/fuse: a byte in the pipe is a
queued request. trio's wait_readable, sched_yield and the clock are injected only to
see (or steer) what the wait does; the poll is the real one.
"""

from __future__ import annotations

import os
import re

import pyfuse3
import pytest
import trio
import trio.testing

from cgroupfs_emu.fs.session import (FAIRNESS, YIELD_BACKOFF_NS, YIELD_SLOW_NS, WaitCounts,
                                     install_fast_wait, make_wait)
from conftest import Mount, needs_fuse, read


class Pipe:
    """A pipe whose read end is the "session descriptor"; queue() is a request."""

    def __init__(self):
        self.r, self.w = os.pipe()

    def queue(self) -> None:
        os.write(self.w, b"r")

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


@pytest.fixture
def pipe():
    p = Pipe()
    yield p
    p.close()


class Recorder:
    """What the wait did: trio waits, yields, and a clock the yields move."""

    def __init__(self, pipe: Pipe, *, yield_queues: bool = False, yield_ns: int = 1_000,
                 trio_queues: bool = False):
        self.pipe = pipe
        self.trio_waits = 0
        self.yields = 0
        self.now = 10**12
        self.yield_queues, self.yield_ns, self.trio_queues = yield_queues, yield_ns, trio_queues

    async def wait_readable(self, fd: int) -> None:
        self.trio_waits += 1
        if self.trio_queues:  # the request arrives while parked
            self.pipe.queue()
        await trio.lowlevel.wait_readable(fd)

    def sched_yield(self) -> None:
        self.yields += 1
        self.now += self.yield_ns
        if self.yield_queues:  # the woken client ran and sent its next request
            self.pipe.queue()

    def clock(self) -> int:
        return self.now

    def wait(self, counts: WaitCounts):
        return make_wait(self.pipe.r, counts, wait_readable=self.wait_readable,
                         sched_yield=self.sched_yield, clock=self.clock)


def run(wait, times: int = 1) -> list[bool]:
    async def main():
        with trio.fail_after(5):  # a wait that parks with nothing to come fails
            return [await wait() for _ in range(times)]
    return trio.run(main)


def test_a_queued_request_is_read_without_a_yield_or_trio(pipe):
    pipe.queue()
    rec, counts = Recorder(pipe), WaitCounts()
    assert run(rec.wait(counts)) == [True]
    assert (rec.trio_waits, rec.yields) == (0, 0)
    assert (counts.queued, counts.after_yield, counts.trio) == (1, 0, 0)


def test_a_request_queued_during_the_yield_is_read_without_trio(pipe):
    rec, counts = Recorder(pipe, yield_queues=True), WaitCounts()
    assert run(rec.wait(counts)) == [True]
    assert (rec.trio_waits, rec.yields) == (0, 1)
    assert (counts.queued, counts.after_yield, counts.trio) == (0, 1, 0)


def test_nothing_queued_after_the_yield_waits_through_trio(pipe):
    rec, counts = Recorder(pipe, trio_queues=True), WaitCounts()
    assert run(rec.wait(counts)) == [True]
    assert (rec.trio_waits, rec.yields) == (1, 1)
    assert (counts.queued, counts.after_yield, counts.trio) == (0, 0, 1)
    assert os.read(pipe.r, 16) == b"r"  # the wait read nothing itself


def test_after_fairness_requests_in_a_row_the_wait_goes_through_trio(pipe):
    pipe.queue()  # never read: the descriptor stays readable throughout
    rec, counts = Recorder(pipe), WaitCounts()
    wait = rec.wait(counts)
    assert run(wait, FAIRNESS) == [True] * FAIRNESS
    assert rec.trio_waits == 0
    assert run(wait) == [True]
    assert rec.trio_waits == 1 and counts.trio == 1
    # and the streak starts over
    assert run(wait, FAIRNESS) == [True] * FAIRNESS
    assert rec.trio_waits == 1 and counts.queued == 2 * FAIRNESS
    assert rec.yields == 0


def test_a_slow_yield_stops_yielding_for_the_backoff_window(pipe):
    rec, counts = Recorder(pipe, trio_queues=True, yield_ns=YIELD_SLOW_NS + 1), WaitCounts()
    wait = rec.wait(counts)

    def one() -> None:
        assert run(wait) == [True]
        os.read(pipe.r, 16)  # "answer" the request

    one()
    assert rec.yields == 1 and counts.slow_yields == 1
    rec.now += YIELD_BACKOFF_NS - 1  # still inside the window: straight to trio
    one()
    assert rec.yields == 1 and rec.trio_waits == 2
    rec.now += 2 + YIELD_SLOW_NS  # the window is over
    rec.yield_ns = YIELD_SLOW_NS  # not slow: yielding goes on
    one()
    one()
    assert rec.yields == 3 and counts.slow_yields == 1


def test_a_closed_descriptor_ends_the_loop(pipe):
    counts = WaitCounts()
    wait = make_wait(pipe.r, counts, sched_yield=lambda: None)

    async def main():
        async with trio.open_nursery() as nursery:
            result = []

            async def waiter():
                result.append(await wait())
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.notify_closing(pipe.r)  # what pyfuse3.terminate() does
        return result

    assert trio.run(main) == [False]
    assert counts.trio == 1


def test_install_replaces_pyfuse3s_wait_and_keeps_it_without_the_hook(pipe, monkeypatch):
    monkeypatch.setattr(pyfuse3, "_wait_fuse_readable", "pyfuse3's own", raising=False)
    counts = install_fast_wait(pipe.r)
    assert isinstance(counts, WaitCounts)
    assert pyfuse3._wait_fuse_readable.__qualname__ == \
        f"{make_wait.__name__}.<locals>.wait_fuse_readable"
    pipe.queue()
    assert run(pyfuse3._wait_fuse_readable) == [True] and counts.queued == 1

    monkeypatch.delattr(pyfuse3, "_wait_fuse_readable")
    assert install_fast_wait(pipe.r) is None
    assert not hasattr(pyfuse3, "_wait_fuse_readable")


def test_the_default_yield_and_clock_are_the_kernels(pipe):
    """Without injection, nothing queued: a real sched_yield, a real trio wait."""
    counts = WaitCounts()
    wait = make_wait(pipe.r, counts)

    async def main():
        async with trio.open_nursery() as nursery:
            async def late_request():
                await trio.sleep(0.01)
                pipe.queue()
            nursery.start_soon(late_request)
            return await wait()

    assert trio.run(main) is True
    assert (counts.queued, counts.after_yield, counts.trio) == (0, 0, 1)


WAITS = re.compile(r"FUSE request waits: (\d+) queued, (\d+) after a yield, (\d+) through "
                   r"trio, (\d+) slow yields")


@pytest.mark.mount
@needs_fuse
def test_a_mount_logs_how_its_waits_ended():
    m = Mount("kernel=linux-6", flags=("-d",))
    try:
        os.mkdir(m.p("g"))
        reads = 200
        for _ in range(reads):
            read(m.p("g", "memory.usage_in_bytes"))
        os.rmdir(m.p("g"))
    finally:
        m.stop()
    found = WAITS.findall(m.final_log)
    assert len(found) == 1, m.final_log[-2000:]
    queued, after_yield, through_trio, _slow = map(int, found[0])
    # every read is at least OPEN, READ and RELEASE, each one wait
    assert queued + after_yield + through_trio >= 3 * reads
    assert through_trio >= 1  # at least the first request, which nothing preceded
