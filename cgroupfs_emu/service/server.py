"""The client socket: workloads tell the core what they allocate and free.

Runs in the daemon's one trio run, beside pyfuse3's loop, so a charge and a control
file read never interleave inside the core. Each connection is a process (SO_PEERCRED
says which); its charges belong to an Owner per pid it charges for.

    server.py      bind the socket, accept, one Connection per client
    stream.py      the transport: a socket, or any trio stream in tests
    connection.py  framing: request lines in, replies and events out
    verbs.py       the verb table: synchronous handlers, Pending for an OOM
    oom.py         the OOM executor shared with the process tracker
"""

from __future__ import annotations

import errno
import os
import socket

import trio

from .connection import Connection
from .stream import SocketStream, Stream, peer_credentials
from .verbs import Context

#: listen(2) backlog
BACKLOG = 128


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
    sock.listen(BACKLOG)
    return sock


class ChargeServer:
    """Accepts clients on the listening socket; each runs as a Connection."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    async def serve(self, listener: socket.socket, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept on *listener* (bound by bind_socket) until cancelled."""
        listener = trio.socket.from_stdlib_socket(listener)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                sock, _ = await listener.accept()
                nursery.start_soon(self._run_socket, sock)

    async def _run_socket(self, sock) -> None:
        try:
            try:
                pid, uid, gid = peer_credentials(sock)
            except OSError:
                return
            await self.serve_stream(SocketStream(sock), pid, uid, gid)
        finally:
            sock.close()

    async def serve_stream(self, stream: Stream, pid: int, uid: int, gid: int) -> None:
        """Serve one client over any stream (the server tests use memory streams)."""
        await Connection(self.ctx, stream, pid, uid, gid).run()
