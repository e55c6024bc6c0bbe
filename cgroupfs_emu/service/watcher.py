"""Background duties of the daemon: noticing what changed outside any request.

Every ``poll_ms`` it follows real processes (service/tracker.py), forgets tasks that
exited (which may make a group releasable) and drops registrations whose listener
closed its eventfd. Thresholds are checked by the memory controller itself after each
of its operations; release agents run from the effects port (service/effects.py).
"""

from __future__ import annotations

import logging

import trio

from ..core.cgroup import Hierarchy
from ..core.memcg import MemoryController
from ..host.procfs import Host
from .tracker import ProcessTracker

log = logging.getLogger("cgroupfs_emu.watcher")

#: milliseconds per second
_MS = 1000


class Watcher:
    def __init__(self, hierarchy: Hierarchy, memory: MemoryController, host: Host,
                 tracker: ProcessTracker | None = None, poll_ms: int = 500):
        self.hierarchy = hierarchy
        self.memory = memory
        self.host = host
        #: the ProcessTracker, when real processes are followed
        self.tracker = tracker
        self.interval = poll_ms / _MS

    def poll(self) -> None:
        """One round of the duties above (synchronous: atomic for the core)."""
        alive = set()
        if self.tracker is not None:
            self.tracker.poll()
            alive = self.tracker.alive  # checked by their start time a moment ago
        self.hierarchy.prune(lambda tid: tid in alive or self.host.is_alive(tid))
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
        """At unmount: never leave a task stopped, close every eventfd duplicate."""
        if self.tracker is not None:
            self.tracker.close()
        for listener in list(self.memory.listeners()):
            if listener.handle is not None:
                listener.handle.close()
