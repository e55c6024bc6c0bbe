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
from typing import Callable

import trio

from .guard_recv import GuardReceiver

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
        # notifications are received in a thread the moment they are queued, so a
        # signal can hardly ever fail a guarded fork (guard_recv.py)
        try:
            await GuardReceiver(fd, self.decide).serve()
        except Exception:  # one listener's failure must not end the others
            log.exception("fork guard listener %d failed", fd)
        finally:
            self.listeners.remove(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in self.listeners:
            os.close(fd)
        self.listeners.clear()
