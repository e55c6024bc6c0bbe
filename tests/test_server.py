"""The socket server's tier: connections driven over in-memory streams.

No FUSE, no socket file: the server is built as the daemon builds it (cli/daemon.py)
and each client is one end of ``trio.testing.memory_stream_pair``, the other end
served by ``ChargeServer.serve_stream`` as this test process (whose pid the signal
guard protects: it is the "daemon" here, so it is never an OOM victim).
"""

from __future__ import annotations

import os

import trio
import trio.testing

from cgroupfs_emu.core import LINUX_6, Hierarchy, MemoryController
from cgroupfs_emu.host import Host
from cgroupfs_emu.protocol import parse_reply
from cgroupfs_emu.service.effects import Clients, HostFacts, ReleaseAgents, ServiceEffects
from cgroupfs_emu.service.oom import OomExecutor, OomWaitQueue
from cgroupfs_emu.service.server import ChargeServer
from cgroupfs_emu.service.signals import Signaller
from cgroupfs_emu.service.stream import TrioStream
from cgroupfs_emu.service.verbs import Context

PAGE = 4096


class Rig:
    """The service half of the daemon, wired in the same order."""

    def __init__(self, profile=LINUX_6):
        host, signals, clients, queue = Host(), Signaller(), Clients(), OomWaitQueue()
        effects = ServiceEffects(clients, queue, ReleaseAgents())
        self.memory = MemoryController(profile, effects, HostFacts(signals, host))
        self.hierarchy = Hierarchy((self.memory,), effects)
        executor = OomExecutor(self.memory, signals, queue)
        self.server = ChargeServer(Context(self.memory, executor, clients))

    def group(self, name: str, limit_pages: int | None = None):
        """A group holding this process; its memcg."""
        g = self.hierarchy.mkdir(self.hierarchy.root, name)
        memcg = self.memory.of(g)
        if limit_pages is not None:
            self.memory.resize_max(memcg, limit_pages, memsw=False)
        self.hierarchy.attach(os.getpid(), g)
        return memcg

    async def connect(self, nursery: trio.Nursery) -> LineClient:
        ours, theirs = trio.testing.memory_stream_pair()
        nursery.start_soon(self.server.serve_stream, TrioStream(theirs), os.getpid(),
                           os.getuid(), os.getgid())
        return LineClient(ours)


class LineClient:
    def __init__(self, stream):
        self.stream = stream
        self.buf = b""
        self.events: list[dict] = []

    async def line(self) -> str:
        while b"\n" not in self.buf:
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    async def send(self, raw: bytes) -> None:
        await self.stream.send_all(raw)

    async def reply(self) -> tuple[str, object]:
        while True:
            head, body = parse_reply(await self.line())
            if head != "event":
                return head, body
            self.events.append(body)

    async def request(self, line: str) -> tuple[str, object]:
        await self.send(line.encode() + b"\n")
        return await self.reply()

    async def close(self) -> None:
        await self.stream.aclose()


def run(test):
    """Run *test(rig, nursery)* in a fresh trio run; cancel the servers after."""
    rig = Rig()

    async def main():
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await test(rig, nursery)
                nursery.cancel_scope.cancel()

    trio.run(main)
    return rig


def test_hello_first_then_charges_reply_with_the_group():
    async def test(rig, nursery):
        g = rig.group("g")
        c = await rig.connect(nursery)
        head, (name, _) = await c.request("charge anon 4096")
        assert (head, name) == ("err", "EPROTO")
        head, fields = await c.request("hello 1")
        assert head == "ok" and fields["pid"] == str(os.getpid()) and fields["group"] == "/g"
        assert fields["stock_batch"] == "64" and fields["page_size"] == str(PAGE)
        assert await c.request("charge anon 10000") == (
            "ok", {"pages": "3", "group": "/g", "usage": str(3 * PAGE)})
        assert g.memory.usage == 3 and g.stats["rss"] == 3
        assert (await c.request("uncharge anon 4096\r"))[1]["usage"] == str(2 * PAGE)
        head, fields = await c.request("status")
        assert fields["anon"] == str(2 * PAGE) and fields["group"] == "/g"

    run(test)


def test_bad_requests_get_their_errno_and_the_connection_goes_on():
    async def test(rig, nursery):
        rig.group("g", limit_pages=4)
        c = await rig.connect(nursery)
        await c.request("hello 1")
        assert (await c.request("frobnicate"))[1][0] == "EINVAL"
        assert (await c.request("charge anon"))[1][0] == "EINVAL"
        assert (await c.request("uncharge anon 4096"))[1][0] == "EINVAL"  # nothing held
        await c.send(b"x" * 5000 + b"\n")
        assert (await c.reply())[1][0] == "E2BIG"
        # nobody killable in g (this process is protected): the charge is refused
        assert (await c.request("charge anon 8M"))[1][0] == "ENOMEM"
        assert (await c.request("charge anon 4096"))[0] == "ok"

    run(test)


def test_a_charge_waiting_on_oom_kill_disable_resumes_when_the_limit_rises():
    async def test(rig, nursery):
        g = rig.group("g", limit_pages=2)
        g.set_oom_kill_disable(1)
        c = await rig.connect(nursery)
        await c.request("hello 1")
        assert (await c.request("charge anon 8192"))[0] == "ok"
        await c.send(b"charge anon 4096\n")
        await trio.testing.wait_all_tasks_blocked()
        assert g.under_oom == 1  # the charge sleeps on the group's OOM wait queue
        rig.memory.resize_max(g, 3, memsw=False)  # memcg1_oom_recover wakes it
        head, fields = await c.reply()
        assert head == "ok" and fields["usage"] == str(3 * PAGE)
        assert g.under_oom == 0

    run(test)


def test_reclaim_tells_the_owner_and_a_disconnect_releases_all_but_page_cache():
    async def test(rig, nursery):
        g = rig.group("g")
        c = await rig.connect(nursery)
        await c.request("hello 1")
        await c.request("charge file 16K")
        await c.request("charge anon 8K")
        rig.memory.resize_max(g, 4, memsw=False)  # two of four page cache pages go
        assert (await c.request("status"))[1]["file"] == str(2 * PAGE)
        assert c.events == [{"event": "evicted", "kind": "file", "bytes": str(2 * PAGE),
                             "group": "/g", "pid": str(os.getpid())}]
        await c.close()
        await trio.testing.wait_all_tasks_blocked()
        assert g.memory.usage == 2 and g.orphan_file == 2 and g.stats["rss"] == 0

    run(test)
