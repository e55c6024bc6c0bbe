"""Background duties of the daemon that concern no real process: every ``poll_ms`` it
drops the cgroup.event_control registrations whose listener closed its eventfd.

Following real processes, and forgetting tasks that exited, is the follower's
(follower.py, the one place that decides when a process is looked at). Thresholds
are checked by the memory controller itself after each of its operations; release
agents run from the effects port (service/effects.py).
"""

from __future__ import annotations

import logging

import trio

from ..core.memcg import MemoryController

log = logging.getLogger("cgroupfs_emu.watcher")

#: milliseconds per second
_MS = 1000


class Watcher:
    def __init__(self, memory: MemoryController, poll_ms: int = 500):
        self.memory = memory
        self.interval = poll_ms / _MS

    def poll(self) -> None:
        """One round (synchronous: atomic for the core)."""
        for listener in list(self.memory.listeners()):
            if listener.handle is not None and listener.handle.listener_closed():
                self.memory.unregister_event(listener)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                self.poll()
            except Exception:  # a bug here must not stop the daemon
                log.exception("watcher poll failed")
            await trio.sleep(self.interval)

    def close(self) -> None:
        """At unmount: close every eventfd duplicate."""
        for listener in list(self.memory.listeners()):
            if listener.handle is not None:
                listener.handle.close()
