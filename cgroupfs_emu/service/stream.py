"""The transport under a client connection: a byte stream of whole lines.

A :class:`Stream` is all a :class:`~.connection.Connection` needs: ``receive`` some
bytes (``b""`` at the end), ``send`` bytes whole. :class:`SocketStream` is the Unix
socket of a real client, with the fast I/O the daemon needs; :class:`TrioStream`
wraps any trio stream (``trio.testing.memory_stream_pair`` in the server tests).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Protocol

import trio

#: one read(2) takes at most this much
_READ_SIZE = 65536
#: a reader that always finds data yields to the scheduler every this many reads, so
#: a client that floods cannot starve the filesystem
_YIELD_EVERY = 16
#: bytes a client may send while its charge sleeps under OOM before the daemon stops
#: watching its socket for the hang-up (the pidfd is still watched)
_PENDING_MAX = 1 << 20


class Stream(Protocol):
    async def receive(self) -> bytes: ...

    async def send(self, data: bytes) -> None: ...


def peer_credentials(sock) -> tuple[int, int, int]:
    """SO_PEERCRED: (pid, uid, gid) of the process at the other end."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


class SocketStream:
    """A connected client socket, read and written without trio's extra scheduler
    rounds on the fast path."""

    def __init__(self, sock: trio.socket.SocketType):
        self.sock = sock
        #: the descriptor, looked up once (trio's fileno() is a Python call): the
        #: socket is closed only after the connection that owns this stream ended
        #: (server._run_socket), so the number cannot be reused under it
        self.fd = sock.fileno()
        self._stream = trio.SocketStream(sock)
        #: the lock keeps lines whole when the reader's replies and the writer task's
        #: events both need the slow path
        self._send_lock = trio.StrictFIFOLock()
        self._sending = False
        self._reads = 0
        #: bytes read while a charge slept under OOM (see hangup)
        self._pending = b""
        #: the peer closed its end (seen while a charge slept)
        self._hung_up = False

    async def hangup(self) -> bool:
        """Wait for the peer to close its end while a charge of this connection sleeps
        under OOM (a disconnect is an exit, docs/protocol.md). What
        it sends meanwhile (pipelined requests) is kept for receive(). False: stopped
        watching (too much pending)."""
        fd = self.fd
        while len(self._pending) < _PENDING_MAX:
            await trio.lowlevel.wait_readable(self.sock)
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._hung_up = True
                return True
            self._pending += data
        await trio.sleep_forever()
        return False

    async def receive(self) -> bytes:
        """Like receive_some(), without the scheduler round trio adds after a read
        that found data: wait for readability only when nothing is there.

        When nothing is there, one pass through the scheduler comes first, then a
        second read, and only then the wait. A client doing round trips from another
        CPU sends its next request a few microseconds after our reply; the pass
        (other tasks run meanwhile) usually finds it there, where a wait costs an
        epoll_ctl, a blocking epoll_wait and a wakeup from idle. Where bench_socket's
        client and the daemon run on two CPUs this cut both the daemon's CPU time per
        request and the round trip (README, Benchmarks); on one CPU the first read
        finds the request and nothing changes. A silent client costs one pass."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._hung_up:
            return b""
        self._reads += 1
        if self._reads == _YIELD_EVERY:
            self._reads = 0
            await trio.lowlevel.checkpoint()
        try:
            return os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            # the pass lets the other tasks run: the count of reads that found data
            # without one starts again
            self._reads = 0
            await trio.lowlevel.checkpoint()
        except ConnectionResetError:
            return b""
        while True:
            try:
                return os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except ConnectionResetError:
                return b""

    async def send(self, data: bytes) -> None:
        """Write whole lines. The fast path is one non-blocking write(2) without a
        trip through trio's scheduler; when the socket buffer is full, or another
        task is mid-send, the rest goes through send_all under the lock."""
        if not self._sending:
            try:
                sent = os.write(self.fd, data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        async with self._send_lock:
            self._sending = True
            try:
                await self._stream.send_all(data)
            finally:
                self._sending = False


class TrioStream:
    """Any trio.abc.Stream as a Stream."""

    def __init__(self, stream: trio.abc.Stream):
        self.stream = stream
        self._send_lock = trio.StrictFIFOLock()

    async def receive(self) -> bytes:
        try:
            return await self.stream.receive_some(_READ_SIZE)
        except trio.BrokenResourceError:
            return b""

    async def send(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)
