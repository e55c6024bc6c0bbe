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
import stat

import trio

from .connection import Connection
from .stream import SocketStream, Stream, peer_credentials
from .verbs import Context

#: listen(2) backlog
BACKLOG = 128
#: accept(2) errors that mean "no resources now", not "the listener is broken"
_ACCEPT_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def prepare_socket_dir(directory: str, mode: int) -> None:
    """The default socket directory (/run/cgroupfs_emu, $XDG_RUNTIME_DIR/cgroupfs_emu,
    /tmp/cgroupfs_emu-UID): created if missing, and refused unless it is a real
    directory owned by us that nobody else may write, as XDG_RUNTIME_DIR users
    expect: in /tmp another user could have made it first and own the socket. Group
    and others get search permission on it when the socket *mode* lets them connect,
    so -o socket_mode=0666 takes effect on the default path too; they never get to
    list or write it."""
    search = (0o010 if mode & 0o060 else 0) | (0o001 if mode & 0o006 else 0)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, f"{directory} is not a directory")
    if st.st_uid != os.geteuid():
        raise OSError(errno.EPERM, f"{directory} belongs to uid {st.st_uid}, not to us")
    if st.st_mode & 0o022:
        raise OSError(errno.EPERM, f"{directory} is writable by others "
                                   f"(mode {stat.S_IMODE(st.st_mode):04o})")
    # Only ever add search bits: other daemons of the same user share the directory,
    # and each socket's own mode is what guards it.
    if stat.S_IMODE(st.st_mode) & (0o700 | search) != 0o700 | search:
        os.chmod(directory, stat.S_IMODE(st.st_mode) | 0o700 | search)


def bind_socket(path: str, mode: int, default_dir: bool = False) -> socket.socket:
    """Create the listening socket before the mount is reported ready. A socket file
    left by a dead daemon is replaced; one with a live listener is an error.
    *default_dir*: the directory is the default one, ours alone (prepare_socket_dir)."""
    directory = os.path.dirname(path) or "."
    if default_dir:
        prepare_socket_dir(directory, mode)
    else:
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
        self.budget = ctx.budget

    async def serve(self, listener: socket.socket, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Accept on *listener* (bound by bind_socket) until cancelled."""
        listener = trio.socket.from_stdlib_socket(listener)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                try:
                    sock, _ = await listener.accept()
                except OSError as e:
                    if e.errno not in _ACCEPT_RESOURCE_ERRORS:
                        raise
                    # Out of descriptors despite the budget (another part of the
                    # daemon used them): the connection waits in the backlog.
                    self.budget.refused(f"accept ({e.strerror})")
                    await trio.sleep(0.1)
                    continue
                # Room for this socket and the pidfd its hello opens, with the
                # reserve for the mount left over; otherwise closed at once.
                if not self.budget.may_keep(sock.fileno(), need=1):
                    sock.close()
                    self.budget.refused("a new client connection")
                    continue
                self.budget.connections += 1
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
            self.budget.connections -= 1

    async def serve_stream(self, stream: Stream, pid: int, uid: int, gid: int) -> None:
        """Serve one client over any stream (the server tests use memory streams)."""
        await Connection(self.ctx, stream, pid, uid, gid).run()
