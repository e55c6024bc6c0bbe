"""The service's side of the core's effects port (core/port.py), and the facts the
core asks about real tasks.

Everything here is built before the core and handed to it; nothing is set on a core
object afterwards.
"""

from __future__ import annotations

import logging
import subprocess
from typing import Callable

import trio

from .. import protocol
from ..core.port import Effects
from ..host.procfs import Host
from ..units import PAGE_SIZE
from .oom import OomWaitQueue
from .signals import Signaller

log = logging.getLogger("cgroupfs_emu.effects")

#: the environment the kernel gives the release agent (call_usermodehelper)
RELEASE_ENV = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin"}


class Clients:
    """Where notices for a socket client go: owner -> a function taking one line."""

    def __init__(self):
        self.sinks: dict[object, Callable[[bytes], None]] = {}

    def add(self, owner, sink: Callable[[bytes], None]) -> None:
        self.sinks[owner] = sink

    def remove(self, owner) -> None:
        self.sinks.pop(owner, None)

    def notice(self, kind: str, owner, detail: dict) -> None:
        sink = self.sinks.get(owner)
        if sink is None:
            return
        if kind == "evicted":
            sink(protocol.event_line(
                "evicted", kind="file", bytes=detail["file"] * PAGE_SIZE,
                group=detail["group"].path(), pid=owner.pid))
        elif kind == "drain":
            sink(protocol.event_line("drain"))


class ReleaseAgents:
    """call_usermodehelper(release_agent, path): asynchronous, never waited for by the
    operation that emptied the group. Agents asked for before the daemon's nursery
    runs wait for it."""

    def __init__(self):
        self._nursery: trio.Nursery | None = None
        self._pending: list[tuple[str, str]] = []

    def run(self, agent: str, path: str) -> None:
        if self._nursery is None:
            self._pending.append((agent, path))
        else:
            self._nursery.start_soon(self._run, agent, path)

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for agent, path in self._pending:
                nursery.start_soon(self._run, agent, path)
            self._pending.clear()
            task_status.started()
            await trio.sleep_forever()

    @staticmethod
    async def _run(agent: str, path: str) -> None:
        if not agent:
            return
        try:
            await trio.run_process([agent, path], env=RELEASE_ENV, check=False, cwd="/",
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        except OSError as e:
            log.warning("release agent %s for %s failed: %s", agent, path, e)


class ServiceEffects(Effects):
    """The port: eventfds, client notices, OOM wake-ups, release agents."""

    def __init__(self, clients: Clients, oom_queue: OomWaitQueue, agents: ReleaseAgents):
        self.clients = clients
        self.oom_queue = oom_queue
        self.agents = agents

    def fire(self, listener) -> None:
        if listener.handle is not None:
            listener.handle.signal()

    def unregister(self, listener) -> None:
        if listener.handle is not None:
            listener.handle.close()

    def notice(self, kind: str, owner, detail: dict) -> None:
        self.clients.notice(kind, owner, detail)

    def oom_recovered(self, memcg) -> None:
        self.oom_queue.wake(memcg)

    def release(self, agent: str, path: str) -> None:
        self.agents.run(agent, path)


class HostFacts:
    """core.memcg.TaskFacts from the signal guard and /proc."""

    def __init__(self, signals: Signaller, host: Host):
        self.signals = signals
        self.host = host

    def may_signal(self, pid: int) -> bool:
        return self.signals.may_signal(pid)

    def oom_score_adj(self, pid: int) -> int:
        return self.host.oom_score_adj(pid)
