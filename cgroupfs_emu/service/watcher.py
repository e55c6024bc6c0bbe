"""Background duties of the daemon: delivering events, noticing what changed outside
any request, running the release agent.

Every ``poll_ms`` it follows real processes (service/tracker.py), forgets tasks that
exited (which may make a group releasable), drops registrations whose listener closed
its eventfd, and re-checks thresholds.
"""

from __future__ import annotations

import logging
import subprocess

import trio

from ..core.hierarchy import Hierarchy
from ..core.notify import EventListener
from .host import Host

log = logging.getLogger("cgroupfs_emu.watcher")

#: the environment the kernel gives the release agent (call_usermodehelper)
RELEASE_ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}


class Watcher:
    def __init__(self, hierarchy: Hierarchy, host: Host | None = None, poll_ms: int = 500,
                 tracker=None):
        self.hierarchy = hierarchy
        self.host = host or Host()
        #: the ProcessTracker, when real processes are followed
        self.tracker = tracker
        self.interval = poll_ms / 1000
        self._nursery: trio.Nursery | None = None
        self._pending_agents: list[str] = []
        hierarchy.on_event = self._signal
        hierarchy.on_unregister = self._close
        hierarchy.on_release = self._release

    @staticmethod
    def _signal(listener: EventListener) -> None:
        if listener.handle is not None:
            listener.handle.signal()

    @staticmethod
    def _close(listener: EventListener) -> None:
        if listener.handle is not None:
            listener.handle.close()

    def _release(self, path: str) -> None:
        """call_usermodehelper(release_agent, path): asynchronous, never waited for by
        the operation that emptied the group."""
        if self._nursery is None:
            self._pending_agents.append(path)
        else:
            self._nursery.start_soon(self._run_agent, path)

    async def _run_agent(self, path: str) -> None:
        agent = self.hierarchy.release_agent
        if not agent:
            return
        try:
            await trio.run_process([agent, path], env=RELEASE_ENV, check=False, cwd="/",
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        except OSError as e:
            log.warning("release agent %s for %s failed: %s", agent, path, e)

    def poll(self) -> None:
        """One round of the duties above (synchronous: atomic for the core)."""
        alive = set()
        if self.tracker is not None:
            self.tracker.poll()
            alive = self.tracker.alive  # checked by their start time a moment ago
        self.hierarchy.prune(lambda tid: tid in alive or self.host.is_alive(tid))
        for listener in list(self.hierarchy.listeners()):
            if listener.handle is not None and listener.handle.listener_closed():
                self.hierarchy.unregister_event(listener)
        self.hierarchy.check_thresholds()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for path in self._pending_agents:
                nursery.start_soon(self._run_agent, path)
            self._pending_agents.clear()
            while True:
                try:
                    self.poll()
                except Exception:  # a bug here must not stop the daemon
                    log.exception("watcher poll failed")
                await trio.sleep(self.interval)

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
        for listener in list(self.hierarchy.listeners()):
            self._close(listener)

