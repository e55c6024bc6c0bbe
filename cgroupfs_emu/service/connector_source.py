"""The proc connector as the follower's event source (proc_events.ProcConnector).

The connector is open only while some task is followed: every fork, exec and exit of
the host costs the daemon a wake-up, so an idle mount pays nothing. It is chosen at
start (``-o events=auto|connector`` and root: CAP_NET_ADMIN); when it fails later the
daemon falls back to /proc looks for good. A socket that overflowed lost events: the
caller looks at /proc once the events that did arrive are applied.
"""

from __future__ import annotations

import collections
import logging
from typing import Callable

import trio

from .proc_events import PROC_EVENT_EXIT, PROC_EVENT_FORK, ProcConnector

log = logging.getLogger("cgroupfs_emu.follower")

#: children adopted from one batch of events before the socket is read again
ADOPT_BATCH = 4


class ConnectorSource:
    def __init__(self, events: str):
        #: the -o events= choice
        self.events = events
        #: the connector is the daemon's source of forks (else: /proc looks)
        self.wanted = False
        self.conn: ProcConnector | None = None
        #: events were lost since the last take_lost()
        self.lost = False
        self._nursery: trio.Nursery | None = None
        self._on_ready: Callable[[], None] | None = None

    def probe(self) -> bool:
        """May the connector be used here? (Opened and closed once, at start.)"""
        if self.events in ("auto", "connector"):
            probe = ProcConnector.open()
            if probe is not None:
                probe.close()
                self.wanted = True
        return self.wanted

    async def serve(self, on_ready: Callable[[], None],
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """For the daemon's life: while the connector is open, *on_ready* is called
        whenever events are queued."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery, self._on_ready = nursery, on_ready
                if self.conn is not None:
                    nursery.start_soon(self.conn.serve, on_ready)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    def open(self) -> None:
        """Some task is followed: open the connector if it is wanted and closed."""
        if self.conn is None and self.wanted:
            self.conn = ProcConnector.open()
            if self.conn is None:
                self.wanted = False
            elif self._nursery is not None:
                self._nursery.start_soon(self.conn.serve, self._on_ready)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close(waited_on=self._nursery is not None)
            self.conn = None

    def read(self) -> list:
        """Every event queued now (proc_events.parse_raw tuples)."""
        if self.conn is None:
            return []
        try:
            events, lost = self.conn.read_raw()
        except OSError:
            log.exception("proc connector failed; falling back to /proc scans")
            self.close()
            self.wanted = False
            return []
        self.lost |= lost
        return events

    def take_lost(self) -> bool:
        lost, self.lost = self.lost, False
        return lost

    def dispatch(self, task_group, followed, refuse_first, forked, exited, execed) -> None:
        """Every fork, exec and exit of the host arrives: the ones that concern no
        followed task are dropped before anything else is done with them. Each batch
        goes to *refuse_first* (the children that must not exist) before any child is
        adopted (*forked*); while adopting (slow: /proc reads) the socket is read
        again every ADOPT_BATCH adoptions, so that a fork bomb's refused children are
        killed as they come rather than after the backlog."""
        events = collections.deque(self.read())
        refused = refuse_first(events)
        adopted = 0
        while events:
            what, pid, tgid, ptgid, born_ns = events.popleft()
            if what == PROC_EVENT_FORK:
                # a new thread's event names its process's parent (real_parent is
                # shared by the thread group): the thread belongs to its own process
                if pid != tgid:
                    ptgid = tgid
                if ptgid in task_group and pid not in refused:
                    forked(pid, tgid, ptgid, born_ns)
                    adopted += 1
                    if adopted % ADOPT_BATCH == 0:
                        fresh = self.read()
                        refused.update(refuse_first(fresh))
                        events.extend(fresh)
            elif tgid in followed:
                if what == PROC_EVENT_EXIT:
                    exited(pid, tgid)
                else:
                    execed(tgid)
