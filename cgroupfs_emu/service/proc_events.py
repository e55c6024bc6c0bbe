"""Learning of fork, exec and exit when they happen, instead of at the next poll.

Two sources, chosen at start:

* **The proc connector** (root, CAP_NET_ADMIN): a ``NETLINK_CONNECTOR`` socket bound to
  the ``CN_IDX_PROC`` multicast group, subscribed with ``PROC_CN_MCAST_LISTEN``. The
  kernel sends one message per event from inside the forking or exiting task
  (``proc_fork_connector()`` in ``copy_process()``, ``proc_exec_connector()`` in
  ``exec_binprm()``, ``proc_exit_connector()`` in ``do_exit()`` after ``exit_mm()``).
  The daemon reads the socket as soon as trio sees it readable: latency is one
  scheduler wake-up of the daemon, typically well under a millisecond on an idle
  machine. Every event on the host arrives (the socket cannot filter by group), so
  each is parsed and dropped unless it concerns a followed task. When the socket
  buffer overflows (``ENOBUFS``) events were lost: the follower scans /proc for new
  tasks once the events that did arrive are applied.
* **Without root**: exits come from the pidfd the daemon already holds for every
  followed process (a pidfd turns readable when its process exits: all of them sit in
  one epoll set the daemon waits on); forks from a scan of the children of followed
  processes (``/proc/PID/task/TID/children`` where the kernel has
  CONFIG_PROC_CHILDREN, else the parent field of every /proc/PID/stat). The scan of
  every followed process runs every 20 ms, stretched to keep it under 2 % of a core
  (follower.py SCAN_PERIOD, SCAN_SHARE), so a child that forks and exits between two
  scans is missed; execs are seen at the next memory sample (a new address space).

Exits through pidfds are used in both modes: they are exact for the thread group (a
pidfd is readable once the whole process is gone), where the connector reports every
thread.

Not emulated: PROC_EVENT_UID/GID/SID/PTRACE/COMM/COREDUMP (nothing here needs them).
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
from typing import Callable

import trio

log = logging.getLogger("cgroupfs_emu.proc_events")

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
NLMSG_DONE = 3
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; Python's socket module lacks it

PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")        # len, type, flags, seq, pid
_CN_MSG = struct.Struct("=IIIIHH")         # id.idx, id.val, seq, ack, len, flags
_EVENT_HEAD = struct.Struct("=IIQ")        # what, cpu, timestamp_ns
_FOUR = struct.Struct("=IIII")
_TWO = struct.Struct("=II")
_HEAD = _NLMSGHDR.size + _CN_MSG.size
_BODY = _HEAD + _EVENT_HEAD.size


def parse_raw(data: bytes, out: list) -> None:
    """The events in one datagram from the connector (normally exactly one), for the
    daemon's hot path as plain tuples: appends (what, pid, tgid,
    parent tgid, timestamp) tuples; what is PROC_EVENT_FORK, _EXEC or _EXIT, and the
    timestamp is the kernel's ktime_get_ns() when the event happened (CLOCK_MONOTONIC,
    the clock of time.monotonic_ns())."""
    off = 0
    n = len(data)
    while off + _BODY + 16 <= n:
        length = _NLMSGHDR.unpack_from(data, off)[0]
        if length < _HEAD or off + length > n:
            break
        what, _, ts = _EVENT_HEAD.unpack_from(data, off + _HEAD)
        if what == PROC_EVENT_FORK:
            _, ptgid, pid, tgid = _FOUR.unpack_from(data, off + _BODY)
            out.append((what, pid, tgid, ptgid, ts))
        elif what == PROC_EVENT_EXIT or what == PROC_EVENT_EXEC:
            pid, tgid = _TWO.unpack_from(data, off + _BODY)
            out.append((what, pid, tgid, 0, ts))
        off += (length + 3) & ~3


def _control(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


class ProcConnector:
    """The kernel's process-events connector. open() returns None where it is not
    available (not root, no CONFIG_PROC_EVENTS, a network namespace without it)."""

    #: a burst of forks on a busy host must not overflow the socket
    RCVBUF = 8 << 20

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.closed = False

    @classmethod
    def open(cls) -> ProcConnector | None:
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as e:
            log.info("proc connector unavailable: %s", e.strerror)
            return None
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, cls.RCVBUF)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cls.RCVBUF)
            sock.bind((0, CN_IDX_PROC))
            sock.send(_control(PROC_CN_MCAST_LISTEN))
            sock.setblocking(False)
        except OSError as e:
            log.info("proc connector unavailable: %s", e.strerror)
            sock.close()
            return None
        return cls(sock)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_raw(self, limit: int = 4096) -> tuple[list, bool]:
        """Every event queued now (without blocking) as parse_raw() tuples, and whether
        some were lost (the socket buffer overflowed)."""
        out: list = []
        lost = False
        recv = self.sock.recv
        for _ in range(limit):
            try:
                data = recv(4096)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    lost = True
                    continue
                raise
            parse_raw(data, out)
        return out, lost

    async def serve(self, on_ready: Callable[[], None],
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Call *on_ready* whenever events are queued, until closed."""
        await _serve_readable(self.sock, on_ready, lambda: not self.closed, task_status)

    def close(self, waited_on: bool = False) -> None:
        """Unsubscribe and close; *waited_on*: a serve() task waits on the socket."""
        if waited_on:
            trio.lowlevel.notify_closing(self.sock)
        self.closed = True
        try:
            self.sock.send(_control(PROC_CN_MCAST_IGNORE))
        except OSError:
            pass
        self.sock.close()


class ExitWatch:
    """Every followed process's pidfd in one epoll set: readable when one exited."""

    def __init__(self, ep):
        self.ep = ep
        self.pid_of: dict[int, int] = {}

    @classmethod
    def open(cls) -> ExitWatch:
        return cls(select.epoll())

    async def serve(self, on_ready: Callable[[], None],
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Call *on_ready* whenever a watched process exited, until closed."""
        await _serve_readable(self.ep.fileno(), on_ready, lambda: True, task_status)

    def fileno(self) -> int:
        return self.ep.fileno()

    def add(self, pid: int, pidfd: int) -> None:
        try:
            self.ep.register(pidfd, select.EPOLLIN)
        except (OSError, ValueError):
            return
        self.pid_of[pidfd] = pid

    def remove(self, pidfd: int) -> None:
        """Before the pidfd is closed (closing would drop it from the set anyway)."""
        if self.pid_of.pop(pidfd, None) is not None:
            try:
                self.ep.unregister(pidfd)
            except (OSError, ValueError):
                pass

    def exited(self) -> list[int]:
        """Pids whose process exited, without blocking."""
        return [self.pid_of[fd] for fd, _ in self.ep.poll(0) if fd in self.pid_of]

    def close(self) -> None:
        self.ep.close()


async def _serve_readable(fd, on_ready, still, task_status) -> None:
    task_status.started()
    while still():
        try:
            await trio.lowlevel.wait_readable(fd)
        except (trio.ClosedResourceError, OSError, ValueError):
            return  # closed: nothing followed any more
        try:
            on_ready()
        except Exception:
            log.exception("applying process events failed")
            await trio.sleep(0.01)


def is_exited(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return bool(p.poll(0))


def children(proc: str, pid: int) -> list[int] | None:
    """Children of every thread of *pid* from /proc/PID/task/*/children; None when the
    kernel lacks CONFIG_PROC_CHILDREN (the caller scans /proc instead)."""
    try:
        tids = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tids:
        try:
            with open(f"{proc}/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"{proc}/{pid}/task/{tid}"):
                continue
            return None
        except OSError:
            continue
    return out
