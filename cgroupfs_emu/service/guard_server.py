"""The daemon's end of the seccomp fork guard (fork_guard.py): an event source.

``cgemu exec`` hands over the listener of the filter it installed (the ``follow``
verb); from then on every clone of the guarded tree waits for an answer from here.
Each listener is served by a task of this server's nursery until every guarded task
is gone (the listener hangs up). A decision that fails lets the fork through: a
fork that fails where the kernel's would not is worse than a stack not charged.
"""

from __future__ import annotations

import logging
import os
import select
from typing import Callable

import trio

from . import fork_guard

log = logging.getLogger("cgroupfs_emu.follower")


class GuardServer:
    def __init__(self, decide: Callable[[int], int]):
        #: tid of the task about to clone -> 0 to let it, or the errno its clone fails with
        self.decide = decide
        self.listeners: list[int] = []
        self._nursery: trio.Nursery | None = None

    def add(self, fd: int) -> None:
        """Serve listener *fd* (the server owns it from now on)."""
        self.listeners.append(fd)
        if self._nursery is not None:
            self._nursery.start_soon(self._serve_one, fd)

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for fd in list(self.listeners):
                    nursery.start_soon(self._serve_one, fd)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def _serve_one(self, fd: int) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            while True:
                await trio.lowlevel.wait_readable(fd)
                ready = poller.poll(0)
                if not ready:
                    continue
                events = ready[0][1]
                if events & select.POLLIN:
                    got = fork_guard.receive(fd)
                    if got is not None:
                        nid, tid, _ = got
                        try:
                            err = self.decide(tid)
                        except Exception:
                            log.exception("fork guard decision failed")
                            err = 0
                        fork_guard.respond(fd, nid, err)
                elif events & (select.POLLHUP | select.POLLERR):
                    return  # every guarded task is gone
        except Exception:  # one listener's failure must not end the others
            log.exception("fork guard listener %d failed", fd)
        finally:
            self.listeners.remove(fd)
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in self.listeners:
            os.close(fd)
        self.listeners.clear()
