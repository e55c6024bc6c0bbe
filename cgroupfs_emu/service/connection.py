"""One client connection: framing of request lines over a :class:`~.stream.Stream`,
replies in order, events in between.

The reader takes lines (at most MAX_LINE bytes, ``\\r\\n`` accepted, a last line
without newline answered too), hands each to the verb table (verbs.dispatch) and
writes the reply itself; a :class:`~.verbs.Pending` charge is awaited first. Events,
which arise outside any request, go through a bounded queue to a writer task.
"""

from __future__ import annotations

import errno
import logging
import sys

import trio

if sys.version_info < (3, 11):  # trio brings the backport on 3.10
    from exceptiongroup import ExceptionGroup

from .. import protocol
from .stream import Stream
from .verbs import Context, Pending, Session, dispatch, finish

log = logging.getLogger("cgroupfs_emu.service")

#: events a slow client may have queued before newer ones are dropped
EVENT_QUEUE = 256
#: how a connection ends when its peer is gone
GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
_TOO_LONG = protocol.err_line(errno.E2BIG, f"request longer than {protocol.MAX_LINE} bytes")


class Connection:
    def __init__(self, ctx: Context, stream: Stream, pid: int, uid: int, gid: int):
        self.ctx = ctx
        self.stream = stream
        self.pid = pid
        self.send_q, self.recv_q = trio.open_memory_channel(EVENT_QUEUE)
        self.session = Session(ctx, pid, uid, gid, self.notify)

    def notify(self, line: bytes) -> None:
        """Queue an event line for the writer task (never blocks the core)."""
        try:
            self.send_q.send_nowait(line)
        except trio.WouldBlock:
            log.warning("client pid %d does not read its events; one dropped", self.pid)
        except trio.ClosedResourceError:
            pass

    async def run(self) -> None:
        """Serve until the client goes away; what it held is then released. A bug in
        one connection is logged and never takes the daemon down."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                try:
                    await self._reader()
                finally:
                    self.send_q.close()
        except GONE:
            pass
        except ExceptionGroup as group:
            # the nursery wraps what its tasks raised: a peer that went away (a
            # write to a dead client is EPIPE) is the normal end of a connection
            if group.split(GONE)[1] is not None:
                log.exception("connection of pid %d failed", self.pid)
        except Exception:
            log.exception("connection of pid %d failed", self.pid)
        finally:
            self.session.close()

    async def _writer(self) -> None:
        async for line in self.recv_q:
            try:
                await self.stream.send(line)
            except GONE:
                return

    async def _reply(self, line: bytes) -> None:
        reply = dispatch(self.ctx, self.session, line)
        if type(reply) is Pending:  # a charge that needs an OOM kill or wait
            # a hang-up while it sleeps under OOM is an exit (docs/protocol.md)
            reply = await finish(self.ctx, reply, getattr(self.stream, "hangup", None))
        await self.stream.send(reply)

    async def _reader(self) -> None:
        buf = b""
        discarding = False
        stream, ctx, session = self.stream, self.ctx, self.session
        while True:
            data = await stream.receive()
            if not data:
                if buf.strip() and not discarding:  # a last request without newline
                    await self._reply(buf.rstrip(b"\r"))
                return
            buf += data
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > protocol.MAX_LINE:
                        if not discarding:
                            await stream.send(_TOO_LONG)
                        discarding = True
                        buf = b""
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if discarding:  # the tail of an over-long line
                    discarding = False
                    continue
                if len(line) > protocol.MAX_LINE:
                    await stream.send(_TOO_LONG)
                    continue
                if line[-1:] == b"\r":
                    line = line[:-1]
                # _reply(), inline: this is the loop of every request
                reply = dispatch(ctx, session, line)
                if type(reply) is Pending:  # a hang-up meanwhile is an exit
                    reply = await finish(ctx, reply, getattr(stream, "hangup", None))
                await stream.send(reply)
