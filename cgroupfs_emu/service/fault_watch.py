"""Waking up when an idle task starts to fault pages in: perf page-fault counters.

An idle task is sampled only at the slow poll (``poll_ms``); if it suddenly allocated
at full speed, it could overshoot its limit by everything it touches in that time.
So while a followed task is idle, the daemon holds a software perf counter on it
(``perf_event_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_PAGE_FAULTS)``) that overflows
every :data:`PERIOD` page faults and writes a record to a two-page ring buffer; the
daemon waits for each counter's descriptor to turn readable (one trio wait per
counter: a perf descriptor cannot sit in a nested epoll set, since perf_poll()
clears its readiness when polled, and the outer set polls it first). The first overflow
(32 KiB of 4 KiB faults, or 16 MiB of transparent huge pages) makes the task hot: it
is sampled every ``fast_ms`` and the stop-first thread guards it (sampler.py). While
a task is hot its counter is disabled, so a busy task costs no wake-ups; it is
enabled again when the task cools down.

Costs nothing while tasks are idle (no polling); each counter holds a descriptor and
8 KiB of locked memory. Needs perf events on other processes (root, or
``perf_event_paranoid`` <= 2 for one's own processes); without them this module is
off and an idle task's burst is seen at its next slow sample.

Not covered: page faults of threads other than the thread-group leader (a counter
follows one thread; ``inherit`` cannot be combined with the ring buffer).
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import mmap
import os
import platform
import struct
from typing import Callable

import trio

log = logging.getLogger("cgroupfs_emu.fault_watch")

PERF_TYPE_SOFTWARE = 1
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
_ATTR_SIZE = 128
_FLAG_DISABLED = 1 << 0
_FLAG_EXCLUDE_HV = 1 << 6
_SYSCALL = {"x86_64": 298, "aarch64": 241}
#: page faults between two overflows
PERIOD = 8
_PAGE = mmap.PAGESIZE
_DATA_HEAD = 1024  # offsetof(struct perf_event_mmap_page, data_head)
_DATA_TAIL = 1032

_libc = ctypes.CDLL(None, use_errno=True)


def _attr() -> ctypes.Array:
    buf = bytearray(_ATTR_SIZE)
    # type, size, config, sample_period, sample_type, read_format, flags,
    # wakeup_events
    struct.pack_into("=IIQQQQQI", buf, 0, PERF_TYPE_SOFTWARE, _ATTR_SIZE,
                     PERF_COUNT_SW_PAGE_FAULTS, PERIOD, 0, 0,
                     _FLAG_DISABLED | _FLAG_EXCLUDE_HV, 1)
    return (ctypes.c_char * _ATTR_SIZE).from_buffer_copy(buf)


class _Counter:
    __slots__ = ("pid", "fd", "ring", "enabled")

    def __init__(self, pid: int, fd: int, ring: mmap.mmap):
        self.pid = pid
        self.fd = fd
        self.ring = ring
        self.enabled = False


class FaultWatch:
    def __init__(self):
        self.by_pid: dict[int, _Counter] = {}
        self._nr = _SYSCALL.get(platform.machine())
        self.available = False
        self._nursery: trio.Nursery | None = None
        self._on_fault: Callable[[int], None] | None = None

    def start(self) -> bool:
        """Find out whether perf counters may be opened here (once)."""
        self.available = self._nr is not None and self._probe()
        return self.available

    async def serve(self, on_fault: Callable[[int], None],
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Call *on_fault* with the pid of every watched task whose counter overflows,
        for as long as the daemon runs: one waiter per counter, in this nursery."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery, self._on_fault = nursery, on_fault
                for c in list(self.by_pid.values()):
                    nursery.start_soon(self._wait, c)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def watch(self, pid: int) -> None:
        """*pid* cooled down: from now on its page faults wake its sampling. The
        counter is made only now, not at fork: a new task is hot anyway, and most
        short-lived ones (a fork bomb's, a shell's) never cool down."""
        if pid not in self.by_pid:
            if self.add(pid) is None:
                return
            if self._nursery is not None:
                self._nursery.start_soon(self._wait, self.by_pid[pid])
        self.enable(pid)

    async def _wait(self, counter: _Counter) -> None:
        """This waiter belongs to one counter: once that counter is removed (the task
        exited, or stopped being followed and was followed again under the same pid,
        whose new counter may even reuse the descriptor number, before this waiter
        first ran) it ends, and never waits on a descriptor another waiter owns
        (trio's BusyResourceError would end the nursery)."""
        pid, fd = counter.pid, counter.fd
        try:
            while self.by_pid.get(pid) is counter:
                await trio.lowlevel.wait_readable(fd)
                if self.fire(pid):
                    self._on_fault(pid)
                else:
                    await trio.sleep(0.001)  # readable without an overflow (exit: HUP)
        except (trio.ClosedResourceError, OSError):
            return
        except Exception:
            log.exception("page-fault watch of pid %d failed", pid)

    def _probe(self) -> bool:
        fd = self._open(os.getpid())
        if fd < 0:
            log.info("perf page-fault counters unavailable (%s): idle tasks are "
                     "watched by the slow poll only", os.strerror(-fd))
            return False
        os.close(fd)
        return True

    def _open(self, pid: int) -> int:
        fd = _libc.syscall(self._nr, _attr(), pid, -1, -1, PERF_FLAG_FD_CLOEXEC)
        return fd if fd >= 0 else -ctypes.get_errno()

    def add(self, pid: int) -> int | None:
        """A counter on *pid*, created disabled (a new task is hot anyway). Returns
        the descriptor to wait on (readable at an overflow), or None."""
        if not self.available or pid in self.by_pid:
            return None
        fd = self._open(pid)
        if fd < 0:
            return None
        try:
            ring = mmap.mmap(fd, 2 * _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(fd)
            return None
        self.by_pid[pid] = _Counter(pid, fd, ring)
        return fd

    def enable(self, pid: int) -> None:
        """The task cooled down: wake up at its next PERIOD faults."""
        c = self.by_pid.get(pid)
        if c is not None and not c.enabled:
            self._consume(c)
            try:
                fcntl.ioctl(c.fd, PERF_EVENT_IOC_ENABLE, 0)
                c.enabled = True
            except OSError:
                pass

    def disable(self, pid: int) -> None:
        c = self.by_pid.get(pid)
        if c is not None and c.enabled:
            try:
                fcntl.ioctl(c.fd, PERF_EVENT_IOC_DISABLE, 0)
            except OSError:
                pass
            c.enabled = False

    @staticmethod
    def _consume(c: _Counter) -> None:
        head = struct.unpack_from("Q", c.ring, _DATA_HEAD)[0]
        struct.pack_into("Q", c.ring, _DATA_TAIL, head)

    def fire(self, pid: int) -> bool:
        """*pid*'s descriptor turned readable: True if its counter had overflowed
        while enabled (it is disabled now, until enable())."""
        c = self.by_pid.get(pid)
        if c is None:
            return False
        head = struct.unpack_from("Q", c.ring, _DATA_HEAD)[0]
        tail = struct.unpack_from("Q", c.ring, _DATA_TAIL)[0]
        if not c.enabled or head == tail:
            return False
        self.disable(pid)
        self._consume(c)
        return True

    def armed(self) -> list[int]:
        """Tasks whose counter waits for their next faults (enabled, not fired)."""
        return [pid for pid, c in self.by_pid.items() if c.enabled]

    def fired(self) -> list[int]:
        """Without an event loop: every task whose counter overflowed (ring buffer
        not empty), each disabled now."""
        return [pid for pid in list(self.by_pid) if self.fire(pid)]

    def remove(self, pid: int) -> None:
        c = self.by_pid.pop(pid, None)
        if c is None:
            return
        c.ring.close()
        if self._nursery is not None:
            trio.lowlevel.notify_closing(c.fd)  # its waiter ends
        os.close(c.fd)

    def close(self) -> None:
        for pid in list(self.by_pid):
            self.remove(pid)
