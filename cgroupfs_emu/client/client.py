"""A blocking client for the protocol of docs/protocol.md.

Charges are in pages, as in the kernel: every charge rounds its size up to whole
pages, and so does every uncharge. User pages (anon, file, shmem) may be served from a
**stock**: the client asks the daemon to precharge up to 64 pages (the kernel's
MEMCG_CHARGE_BATCH) and then charges locally, telling the daemon what the pages became
when it next settles (at a refill, at close, or when the daemon asks with a ``drain``
event). So ``usage_in_bytes`` may run up to 64 pages ahead of real use per connected
client, exactly like the kernel's per-CPU stock, while ``memory.stat`` counts only
settled pages. The daemon grants a stock only while every level of the group keeps
16 batches (1024 pages) of headroom, so near a limit every charge is exact.
"""

from __future__ import annotations

import errno as _errno
import os
import select
import socket

from ..protocol import (SOCKET_XATTR, STOCK_BATCH, STOCK_KINDS, VERSION, default_socket_path,
                        parse_reply)
from ..units import PAGE_SIZE, pages_of

#: one recv(2) takes at most this much
_RECV_SIZE = 65536
#: After a refused stock, this many charges go straight to the daemon before asking
#: again, so a client near a limit does not pay two round trips per charge.
STOCK_BACKOFF = 64


class ChargeRefused(MemoryError):
    """The daemon refused a charge (the kernel's ENOMEM to the allocation)."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.errno = code
        self.strerror = message


class ProtocolFailure(OSError):
    """Any other error reply: an errno and the daemon's message."""


def find_socket(mountpoint: str | None = None) -> str:
    """The socket of a mount: the ``user.cgroupfs_emu.socket`` attribute of its root,
    else the documented default rule; without a mount point, $CGROUPFS_EMU_SOCKET."""
    if mountpoint is None:
        path = os.environ.get("CGROUPFS_EMU_SOCKET")
        if not path:
            raise FileNotFoundError("no mount point given and CGROUPFS_EMU_SOCKET is not set")
        return path
    try:
        return os.getxattr(mountpoint, SOCKET_XATTR).decode()
    except OSError:
        return default_socket_path(mountpoint)


def _errno_of(name: str) -> int:
    return getattr(_errno, name, _errno.EIO)


class Connection:
    """One connection and its line protocol: a request, events skipped or taken on the
    way, its reply. Without ``hello`` the daemon treats it as a question, not as a
    client (``follow``, ``followed``)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._buf = b""

    def _read_line(self) -> str:
        while b"\n" not in self._buf:
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                raise ConnectionError("the cgroupfs_emu daemon closed the connection")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def _take_event(self, fields: dict[str, str]) -> None:
        """An event that arrived before a reply; a bare connection has none to keep."""

    def _request(self, line: str) -> dict[str, str]:
        self.sock.sendall(line.encode() + b"\n")
        while True:
            head, body = parse_reply(self._read_line())
            if head == "event":
                self._take_event(body)
                continue
            if head == "ok":
                return body
            name, message = body
            code = _errno_of(name)
            if code == _errno.ENOMEM:
                raise ChargeRefused(code, message)
            raise ProtocolFailure(code, message)


def ask(socket_path: str, line: str, timeout: float = 10.0) -> dict[str, str]:
    """One request on a connection of its own that never says hello, so the asking
    process does not become a client; the reply's fields, or ProtocolFailure."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(socket_path)
        return Connection(sock)._request(line)
    finally:
        sock.close()


class Client(Connection):
    def __init__(self, sock: socket.socket, use_stock: bool = True):
        super().__init__(sock)
        self.use_stock = use_stock
        self._stock = 0
        self._consumed = dict.fromkeys(STOCK_KINDS, 0)
        self._backoff = 0
        self._drain_asked = False
        #: events received so far (dicts with "event" = name), oldest first
        self.events: list[dict[str, str]] = []
        #: page cache bytes the daemon evicted from this client
        self.evicted_bytes = 0
        hello = self._request(f"hello {VERSION}")
        self.pid = int(hello["pid"])
        self.server_version = int(hello["version"])

    @classmethod
    def connect(cls, mountpoint: str | None = None, *, socket_path: str | None = None,
                use_stock: bool = True) -> Client:
        path = socket_path or find_socket(mountpoint)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return cls(sock, use_stock=use_stock)
        except BaseException:
            sock.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect. The daemon then frees everything but page cache, as it does for
        an exited process."""
        if self.sock is None:
            return
        try:
            self._settle(0)
        except OSError:
            pass
        self.sock.close()
        self.sock = None

    # ------------------------------------------------------------------ wire

    def _take_event(self, fields: dict[str, str]) -> None:
        self.events.append(fields)
        if fields["event"] == "evicted":
            self.evicted_bytes += int(fields.get("bytes", 0))
        elif fields["event"] == "drain":
            self._drain_asked = True

    def fileno(self) -> int:
        """For select(): readable when events are waiting."""
        return self.sock.fileno()

    def poll_events(self, timeout: float = 0.0) -> list[dict[str, str]]:
        """Take events that arrived while idle (waiting up to *timeout* seconds for the
        first); a ``drain`` request is answered at once. Returns the new events."""
        before = len(self.events)
        if b"\n" not in self._buf and select.select([self.sock], [], [], timeout)[0]:
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                raise ConnectionError("the cgroupfs_emu daemon closed the connection")
            self._buf += data
        while b"\n" in self._buf:
            head, body = parse_reply(self._read_line())
            if head == "event":
                self._take_event(body)
        if self._drain_asked:
            self._settle(0)
        return self.events[before:]

    # ------------------------------------------------------------------ stock

    def _settle(self, want: int) -> int:
        """Tell the daemon what the stock became, hand back the rest, ask for *want*."""
        self._drain_asked = False
        if not self._stock and not want and not any(self._consumed.values()):
            return 0
        used = " ".join(f"{k}={n}" for k, n in self._consumed.items() if n)
        reply = self._request(f"stock {want} {used}".rstrip())
        self._consumed = dict.fromkeys(STOCK_KINDS, 0)
        self._stock = int(reply["granted"])
        return self._stock

    def flush(self) -> None:
        """Settle the stock now, so memory.stat and usage_in_bytes are exact."""
        self._settle(0)

    # ------------------------------------------------------------------ API

    def charge(self, nbytes: int, kind: str = "anon", pid: int | None = None) -> int:
        """Charge *nbytes* (rounded up to pages) of *kind*; returns the pages charged.
        Raises ChargeRefused (a MemoryError) when the group cannot take them."""
        nr = pages_of(nbytes)
        if nr <= 0:
            return 0
        if self._drain_asked:
            self._settle(0)
        if self.use_stock and pid is None and kind in STOCK_KINDS and nr <= STOCK_BATCH:
            if self._stock < nr and self._backoff == 0:
                if not self._settle(STOCK_BATCH):
                    self._backoff = STOCK_BACKOFF
            if self._stock >= nr:
                self._stock -= nr
                self._consumed[kind] += nr
                return nr
            self._backoff = max(0, self._backoff - 1)
        suffix = f" pid={pid}" if pid is not None else ""
        self._request(f"charge {kind} {nr * PAGE_SIZE}{suffix}")
        return nr

    def uncharge(self, nbytes: int, kind: str = "anon", pid: int | None = None) -> int:
        nr = pages_of(nbytes)
        if nr <= 0:
            return 0
        if pid is None and kind in STOCK_KINDS and self._consumed.get(kind, 0) >= nr:
            # pages charged from the current stock go back into it
            self._consumed[kind] -= nr
            self._stock += nr
            return nr
        if any(self._consumed.values()):
            self._settle(0)  # the daemon must know what we hold before it frees it
        suffix = f" pid={pid}" if pid is not None else ""
        self._request(f"uncharge {kind} {nr * PAGE_SIZE}{suffix}")
        return nr

    def slab_alloc(self, cache: str, obj_size: int, count: int = 1) -> dict[str, str]:
        """Allocate *count* objects of *obj_size* bytes from slab cache *cache*; the
        cache's new slab pages are charged as kernel memory."""
        return self._request(f"slab_alloc {cache} {obj_size} {count}")

    def slab_free(self, cache: str, obj_size: int, count: int = 1) -> dict[str, str]:
        return self._request(f"slab_free {cache} {obj_size} {count}")

    def fork(self, count: int = 1) -> int:
        """*count* new tasks of this process start (seed 003: each charges a 16 KiB
        thread stack of kmem where the profile charges stacks). ChargeRefused when a
        stack does not fit, as fork(2) fails with ENOMEM. Returns the tasks held."""
        return int(self._request(f"fork {count}")["tasks"])

    def exit(self, count: int = 1) -> int:
        """*count* of the tasks started by fork() end; returns the tasks left."""
        return int(self._request(f"exit {count}")["tasks"])

    def status(self, pid: int | None = None) -> dict[str, str]:
        """What the daemon holds for this process (bytes per kind, its group)."""
        if any(self._consumed.values()):
            self._settle(0)
        return self._request("status" + (f" pid={pid}" if pid is not None else ""))
