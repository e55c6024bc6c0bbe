"""The client socket: workloads tell the core what they allocate and free.

Runs in the daemon's one trio run, beside pyfuse3's loop, so a charge and a control
file read never interleave inside the core. Each connection is a process (SO_PEERCRED
says which); its charges belong to an Owner per pid it charges for. The server does
what the core decides and cannot do itself: it sends SIGKILL to OOM victims (through a
pidfd opened when the client connected, so a reused pid is never hit), it parks
charges that wait for an OOM'ing group, and it delivers notices to clients.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct

import trio

from .. import protocol
from ..core.errors import CgroupError
from ..core.memcg import KINDS, MemoryController, Owner
from ..host.fds import open_pidfd
from ..protocol import ProtocolError
from ..units import PAGE_SIZE, pages_of
from .effects import Clients
from .oom import OomExecutor

log = logging.getLogger("cgroupfs_emu.service")

#: how a connection ends when its peer is gone
_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
#: events a slow client may have queued before newer ones are dropped
EVENT_QUEUE = 256


def bind_socket(path: str, mode: int) -> socket.socket:
    """Create the listening socket before the mount is reported ready. A socket file
    left by a dead daemon is replaced; one with a live listener is an error."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale
        else:
            probe.close()
            sock.close()
            raise OSError(errno.EADDRINUSE, f"socket {path} is in use by another daemon")
        finally:
            probe.close()
    old = os.umask(0o777)  # no window in which the socket is more open than asked
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(128)
    return sock


class Connection:
    def __init__(self, server: ChargeServer, sock: trio.socket.SocketType):
        self.server = server
        self.sock = sock
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        self.pid, self.uid, self.gid = struct.unpack("3i", creds)
        self.hello = False
        #: request line -> parsed Request (see ChargeServer._handle)
        self.parsed: dict[bytes, protocol.Request] = {}
        #: pid -> Owner: the peer itself, and pids a root client charges for
        self.owners: dict[int, Owner] = {}
        self.stream = trio.SocketStream(sock)
        #: replies are written by the reader itself; events, which arise outside any
        #: request, go through this queue to a writer task; the lock keeps lines whole
        self.send_lock = trio.StrictFIFOLock()
        self.sending = False
        self.reads = 0
        self.send_q, self.recv_q = trio.open_memory_channel(EVENT_QUEUE)

    async def receive(self) -> bytes:
        """Like receive_some(), without the scheduler round trio adds after a read
        that found data: wait for readability only when nothing is there, and yield
        every few reads so a client that floods cannot starve the filesystem."""
        fd = self.sock.fileno()
        self.reads += 1
        if self.reads % 16 == 0:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                return os.read(fd, 65536)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except ConnectionResetError:
                return b""

    async def send(self, data: bytes) -> None:
        """Write whole lines. The fast path is one non-blocking write(2) without a
        trip through trio's scheduler; when the socket buffer is full, or another
        task is mid-send, the rest goes through send_all under the lock."""
        if not self.sending:
            try:
                sent = os.write(self.sock.fileno(), data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        async with self.send_lock:
            self.sending = True
            try:
                await self.stream.send_all(data)
            finally:
                self.sending = False

    def owner(self, pid: int | None) -> Owner:
        pid = self.pid if pid is None else pid
        if pid != self.pid and self.uid != 0:
            raise ProtocolError(errno.EPERM, "only root may charge for another pid")
        owner = self.owners.get(pid)
        if owner is None or not owner.alive:
            pidfd = self.server.open_pidfd(pid)
            owner = self.server.memory.new_owner(pid)
            self.server.signals.adopt(owner, pidfd)
            self.server.clients.add(owner, self.notify)
            self.owners[pid] = owner
        return owner

    def notify(self, line: bytes) -> None:
        try:
            self.send_q.send_nowait(line)
        except trio.WouldBlock:
            log.warning("client pid %d does not read its events; one dropped", self.pid)
        except trio.ClosedResourceError:
            pass


class ChargeServer:
    def __init__(self, memory: MemoryController, listener: socket.socket,
                 executor: OomExecutor, clients: Clients, followers=None, follower=None):
        self.memory = memory
        self.listener = trio.socket.from_stdlib_socket(listener)
        self.executor = executor
        self.signals = executor.signals
        #: where notices for each client go (the effects port writes there)
        self.clients = clients
        #: the process tracker: a pid that becomes a client stops being followed at
        #: once, so nothing is counted twice
        self.followers = followers
        #: the event-driven follower (issue 13): ``follow`` and ``followed`` requests
        self.follower = follower

    # ------------------------------------------------------------------ plumbing

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                sock, _ = await self.listener.accept()
                nursery.start_soon(self._run_connection, sock)

    async def _run_connection(self, sock) -> None:
        try:
            conn = Connection(self, sock)
        except OSError:
            sock.close()
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, conn)
                try:
                    await self._reader(conn)
                finally:
                    conn.send_q.close()
        except _GONE:
            pass
        except ExceptionGroup as group:
            # the nursery wraps what its tasks raised: a peer that went away (a
            # write to a dead client is EPIPE) is the normal end of a connection
            if group.split(_GONE)[1] is not None:
                log.exception("connection of pid %d failed", conn.pid)
        except Exception:  # a bug in one connection must not take the daemon down
            log.exception("connection of pid %d failed", conn.pid)
        finally:
            self._disconnect(conn)
            sock.close()

    async def _writer(self, conn: Connection) -> None:
        async for line in conn.recv_q:
            try:
                await conn.send(line)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _reader(self, conn: Connection) -> None:
        buf = b""
        discarding = False
        while True:
            data = await conn.receive()
            if not data:
                if buf.strip() and not discarding:  # a last request without newline
                    await conn.send(await self._handle(conn, buf.rstrip(b"\r")))
                return
            buf += data
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > protocol.MAX_LINE:
                        if not discarding:
                            await conn.send(protocol.err_line(
                                errno.E2BIG, f"request longer than {protocol.MAX_LINE} bytes"))
                        discarding = True
                        buf = b""
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if discarding:  # the tail of an over-long line
                    discarding = False
                    continue
                if len(line) > protocol.MAX_LINE:
                    await conn.send(protocol.err_line(
                        errno.E2BIG, f"request longer than {protocol.MAX_LINE} bytes"))
                    continue
                reply = self._fast(conn, line)
                if reply is None:
                    reply = await self._handle(conn, line.rstrip(b"\r"))
                elif type(reply) is tuple:  # a charge that needs an OOM kill or wait
                    reply = await self._finish_charge(*reply)
                await conn.send(reply)

    def _fast(self, conn: Connection, line: bytes):
        """The hot path of a tight loop: a cached charge or uncharge for the client
        itself, handled without coroutines. None: take the general path."""
        req = conn.parsed.get(line)
        if req is None or not conn.hello or req.options:
            return None
        verb = req.verb
        if verb != "charge" and verb != "uncharge":
            return None
        owner = conn.owners.get(conn.pid)
        if owner is None or not owner.alive:
            return None
        kind, nr, _ = req.memo.get("amount") or self._amount(req)
        group = self.memory.memcg_of_task(owner.pid)
        try:
            if verb == "charge":
                verdict = self.memory.charge(owner, group, kind, nr)
                if verdict is not None:
                    return (conn, owner, kind, nr, verdict)
            else:
                self.memory.uncharge(owner, group, kind, nr)
        except CgroupError as e:
            return protocol.err_line(e.errno, str(e))
        return self._amount_reply(nr, group)

    @staticmethod
    def _amount_reply(nr: int, group) -> bytes:
        return b"ok pages=%d group=%s usage=%d\n" % (
            nr, group.path().encode(), group.memory.usage * PAGE_SIZE)

    async def _finish_charge(self, conn, owner, kind, nr, verdict) -> bytes:
        try:
            await self.executor.charge(owner, kind, nr, verdict)
        except ProtocolError as e:
            return e.reply()
        except CgroupError as e:
            return protocol.err_line(e.errno, str(e))
        return self._amount_reply(nr, self.memory.memcg_of_task(owner.pid))

    def _disconnect(self, conn: Connection) -> None:
        """A client that goes away is a process that exited (issue 3, item 8)."""
        for owner in conn.owners.values():
            self.memory.release(owner)
            self.clients.remove(owner)
            self.signals.forget(owner)
        conn.owners.clear()

    def open_pidfd(self, pid: int) -> int:
        try:
            return open_pidfd(pid)
        except ProcessLookupError:
            raise ProtocolError(errno.ESRCH, f"no process {pid}") from None
        except OSError as e:
            raise ProtocolError(e.errno or errno.EIO, f"pidfd_open({pid}): {e.strerror}") from None

    # ------------------------------------------------------------------ requests

    async def _handle(self, conn: Connection, line: bytes) -> bytes:
        try:
            # Workloads repeat the same few lines; parse each once per connection.
            req = conn.parsed.get(line)
            if req is None:
                req = protocol.parse_request(line)
                if len(conn.parsed) < 64:
                    conn.parsed[line] = req
            if req.verb == "hello":
                return self._hello(conn, req)
            if req.verb in ("follow", "followed"):
                return self._follower_request(conn, req)
            if not conn.hello:
                raise ProtocolError(errno.EPROTO, "say 'hello 1' first")
            return await getattr(self, f"_do_{req.verb}")(conn, req)
        except ProtocolError as e:
            return e.reply()
        except CgroupError as e:
            return protocol.err_line(e.errno, str(e))
        except Exception:  # a bug must not take the daemon down: log it, reply EIO
            log.exception("request %r failed", line[:200])
            return protocol.err_line(errno.EIO, "internal error, see the daemon log")

    def _hello(self, conn: Connection, req) -> bytes:
        version = protocol.count_arg(req.args[0], "version")
        if version != protocol.VERSION:
            raise ProtocolError(errno.EPROTONOSUPPORT,
                                f"protocol version {version} unsupported; this server speaks 1")
        conn.hello = True
        conn.owner(None)  # from now on this process is a client, not followed from /proc
        if self.followers is not None:
            self.followers.stop_following(conn.pid)
        return protocol.ok_line(version=protocol.VERSION, pid=conn.pid, uid=conn.uid,
                                group=self.memory.memcg_of_task(conn.pid).path(),
                                page_size=PAGE_SIZE, stock_batch=protocol.STOCK_BATCH)

    def _follower_request(self, conn: Connection, req) -> bytes:
        """``follow PID [guard=FD] [poll_ms=MS]`` and ``followed`` (issue 13): they
        concern followed processes, so they neither need nor make a client."""
        if self.follower is None:
            raise ProtocolError(errno.EOPNOTSUPP, "this daemon follows no processes")
        if req.verb == "followed":
            rows = self.follower.table()
            return protocol.ok_line(count=len(rows), tasks=",".join(
                f"{r['pid']}:{r['bytes']}:{r['age_ms']}:{r['hot']}" for r in rows) or "-")
        pid = protocol.count_arg(req.args[0], "pid")
        guard = (protocol.count_arg(req.options["guard"], "guard")
                 if "guard" in req.options else None)
        poll_ms = None
        if "poll_ms" in req.options:
            poll_ms = protocol.count_arg(req.options["poll_ms"], "poll_ms")
            if not 1 <= poll_ms <= 60000:
                raise ProtocolError(errno.EINVAL, "poll_ms must be 1..60000")
        try:
            fields = self.follower.follow_request(conn.pid, conn.uid, pid, guard, poll_ms)
        except OSError as e:
            raise ProtocolError(e.errno or errno.EIO, str(e)) from None
        return protocol.ok_line(**fields)

    def _usage(self, group) -> int:
        return group.memory.usage * PAGE_SIZE

    def _amount(self, req) -> tuple[str, int, int | None]:
        """(kind, pages, pid) of a charge or uncharge, parsed once per distinct line
        (requests are cached per connection, so the result is kept on the request)."""
        cached = req.memo.get("amount")
        if cached is None:
            cached = (protocol.kind_arg(req.args[0]),
                      pages_of(protocol.size_arg(req.args[1])), protocol.pid_option(req))
            req.memo["amount"] = cached
        return cached

    async def _do_charge(self, conn: Connection, req) -> bytes:
        kind, nr, pid = self._amount(req)
        owner = conn.owner(pid)
        await self.executor.charge(owner, kind, nr)
        return self._amount_reply(nr, self.memory.memcg_of_task(owner.pid))

    async def _do_uncharge(self, conn: Connection, req) -> bytes:
        kind, nr, pid = self._amount(req)
        owner = conn.owner(pid)
        group = self.memory.memcg_of_task(owner.pid)
        self.memory.uncharge(owner, group, kind, nr)
        return self._amount_reply(nr, group)

    def _slab_args(self, req) -> tuple[str, int, int]:
        name = req.args[0]
        objsize = protocol.size_arg(req.args[1], "object size")
        count = protocol.count_arg(req.args[2], "count") if len(req.args) > 2 else 1
        return name, objsize, count

    async def _do_slab_alloc(self, conn: Connection, req) -> bytes:
        return self._slab(conn, req, alloc=True)

    async def _do_slab_free(self, conn: Connection, req) -> bytes:
        return self._slab(conn, req, alloc=False)

    def _slab(self, conn: Connection, req, alloc: bool) -> bytes:
        name, objsize, count = self._slab_args(req)
        owner = conn.owner(protocol.pid_option(req))
        group = self.memory.memcg_of_task(owner.pid)
        if alloc:
            self.memory.slab_alloc(owner, group, name, objsize, count)
        else:
            self.memory.slab_free(owner, name, objsize, count, group)
        objects = sum(c for (g, n), c in owner.slab_objects.items() if n == name)
        cache = group.slab.get(name)
        pages = cache.pages if cache else 0
        return protocol.ok_line(objects=objects, slab_pages=pages, group=group.path(),
                                usage=self._usage(group))

    async def _do_stock(self, conn: Connection, req) -> bytes:
        want = protocol.count_arg(req.args[0], "stock")
        consumed = {k: protocol.signed_arg(v, k) for k, v in req.options.items()}
        owner = conn.owner(None)
        group = self.memory.memcg_of_task(owner.pid)
        granted = self.memory.set_stock(owner, group, consumed, want)
        return protocol.ok_line(granted=granted, group=group.path(), usage=self._usage(group))

    async def _do_status(self, conn: Connection, req) -> bytes:
        owner = conn.owner(protocol.pid_option(req))
        group = self.memory.memcg_of_task(owner.pid)
        fields = {"pid": owner.pid, "group": group.path()}
        # user pages per account (anon: resident; swap apart), kernel memory per kind
        for name in ("anon", "swap", "file", "shmem"):
            fields[name] = sum(led[name] for led in owner.ledgers.values()) * PAGE_SIZE
        for name in ("kmem", "tcp"):
            fields[name] = owner.held(KINDS[name]) * PAGE_SIZE
        fields["slab_objects"] = sum(owner.slab_objects.values())
        fields["stock"] = owner.stock * PAGE_SIZE
        return protocol.ok_line(**fields)

