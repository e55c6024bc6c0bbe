"""The client protocol, version 1, as pure functions (docs/protocol.md is the contract).

One request per line, one reply per request, events in between::

    request  VERB [ARG ...] [key=value ...]\\n
    reply    ok [key=value ...]\\n   |   err ERRNONAME message\\n
    event    event NAME [key=value ...]\\n

Lines are ASCII, at most MAX_LINE bytes, ``\\r\\n`` accepted. Nothing here does I/O.

A bottom module: the client imports this (and ``units``) and nothing else of the
package, and the daemon's side takes its kind names and the stock size from here.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re

import attrs

from .units import memparse_strict

VERSION = 1
MAX_LINE = 4096
#: what a client may charge (the memory controller's kind table has a row for each)
KINDS = ("anon", "file", "shmem", "kmem", "tcp")
#: kinds a client may serve from its stock: user pages, charged to memory + memsw
STOCK_KINDS = ("anon", "file", "shmem")
#: The kernel's MEMCG_CHARGE_BATCH: the most a stock holds (told to clients at hello)
STOCK_BATCH = 64
#: the longest decimal a count or pid argument may have
_MAX_DIGITS = 12
#: a plain decimal size shorter than this is read with int() (no suffix, no wrap)
_FAST_DIGITS = 16
#: Larger sizes are refused: 1 PiB is more than any emulated group will hold.
MAX_SIZE = 1 << 50


#: extended attribute of the mount root that names the socket
SOCKET_XATTR = "user.cgroupfs_emu.socket"


def default_socket_path(mountpoint: str, uid: int | None = None) -> str:
    """Per-mount default: /run/cgroupfs_emu/ for root, $XDG_RUNTIME_DIR/cgroupfs_emu/
    or /tmp/cgroupfs_emu-UID/ otherwise; the name hashes the mount point's real path
    so it stays short and unique."""
    uid = os.getuid() if uid is None else uid
    if uid == 0:
        base = "/run/cgroupfs_emu"
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "cgroupfs_emu")
    else:
        base = f"/tmp/cgroupfs_emu-{uid}"
    digest = hashlib.sha256(os.path.realpath(mountpoint).encode()).hexdigest()[:16]
    return os.path.join(base, f"mount-{digest}.sock")


class ProtocolError(Exception):
    """A request that gets an ``err`` reply."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code

    def reply(self) -> bytes:
        return err_line(self.code, str(self))


@attrs.frozen
class Request:
    verb: str
    args: tuple[str, ...]
    options: dict[str, str]
    #: what a handler derived from the request, kept with it (requests are cached)
    memo: dict = attrs.field(factory=dict, eq=False)

    def memoized(self, key: str, derive):
        """What *derive()* returns, computed once per request (see memo)."""
        value = self.memo.get(key)
        if value is None:
            value = self.memo[key] = derive()
        return value


#: verb -> (minimum, maximum) positional arguments, allowed options
VERBS = {
    "hello": (1, 1, ()),
    "charge": (2, 2, ("pid", "share")),
    "uncharge": (2, 2, ("pid", "share")),
    "slab_alloc": (2, 3, ("pid",)),
    "slab_free": (2, 3, ("pid",)),
    "stock": (1, 1, STOCK_KINDS),
    "status": (0, 0, ("pid",)),
    # the process follower's verbs (docs/protocol.md), allowed before hello (they do not make the peer a client)
    "follow": (1, 1, ("guard", "poll_ms")),
    "followed": (0, 0, ()),
    # seed 003: tasks the client creates and ends (their thread stacks are kmem)
    "fork": (0, 1, ("pid",)),
    "exit": (0, 1, ("pid",)),
}


def parse_request(line: bytes) -> Request:
    """Split one request line (without its newline). Raises ProtocolError(EINVAL)."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError(errno.EINVAL, "requests are ASCII") from None
    words = text.split()
    if not words:
        raise ProtocolError(errno.EINVAL, "empty request")
    verb, rest = words[0], words[1:]
    if verb not in VERBS:
        raise ProtocolError(errno.EINVAL, f"unknown request {verb!r}")
    lo, hi, allowed = VERBS[verb]
    args, options = [], {}
    for word in rest:
        key, eq, value = word.partition("=")
        if eq:
            if key not in allowed:
                raise ProtocolError(errno.EINVAL, f"{verb}: unknown option {key!r}")
            if key in options:
                raise ProtocolError(errno.EINVAL, f"{verb}: {key} given twice")
            options[key] = value
        elif options:
            raise ProtocolError(errno.EINVAL, f"{verb}: arguments come before options")
        else:
            args.append(word)
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else f"{lo}-{hi}"
        raise ProtocolError(errno.EINVAL, f"{verb}: expected {want} arguments")
    return Request(verb, tuple(args), options)


def size_arg(text: str, what: str = "size") -> int:
    """A byte count: digits with an optional K/M/G/T/P/E suffix (memparse)."""
    if text.isdigit() and text[0] != "0" and len(text) < _FAST_DIGITS:  # plain decimal: fast
        return int(text)
    try:
        value = memparse_strict(text)
    except ValueError:
        raise ProtocolError(errno.EINVAL, f"{what} {text!r} is not a size") from None
    if value > MAX_SIZE:
        raise ProtocolError(errno.EINVAL, f"{what} {text!r} is too large")
    return value


def count_arg(text: str, what: str) -> int:
    if not text.isdigit() or len(text) > _MAX_DIGITS:
        raise ProtocolError(errno.EINVAL, f"{what} {text!r} is not a count")
    return int(text)


def signed_arg(text: str, what: str) -> int:
    body = text[1:] if text[:1] == "-" else text
    if not body.isdigit() or len(body) > _MAX_DIGITS:
        raise ProtocolError(errno.EINVAL, f"{what} {text!r} is not a number")
    return int(text)


def kind_arg(text: str) -> str:
    if text not in KINDS:
        raise ProtocolError(errno.EINVAL, f"kind {text!r} is not one of {', '.join(KINDS)}")
    return text


def pid_option(req: Request) -> int | None:
    if "pid" not in req.options:
        return None
    pid = count_arg(req.options["pid"], "pid")
    if pid <= 0:
        raise ProtocolError(errno.EINVAL, "pid must be positive")
    return pid


#: bytes a value keeps as they are: printable ASCII but the backslash
_PLAIN = frozenset(range(0x21, 0x7f)) - {ord("\\")}


@functools.lru_cache(maxsize=4096)
def quote(value: str) -> str:
    """One value as one ASCII word: the bytes of *value* (a group path may hold any
    byte but "/" and NUL, and arrives here surrogate-escaped, os.fsdecode) with
    every byte outside printable ASCII, and the backslash, written as \\ooo, the
    escaping of /proc/self/mountinfo. Names that need none come back unchanged."""
    raw = os.fsencode(value)
    if all(b in _PLAIN for b in raw):
        return value
    return "".join(chr(b) if b in _PLAIN else f"\\{b:03o}" for b in raw)


_ESCAPE = re.compile(r"\\([0-7]{3})")


def unquote(word: str) -> str:
    """quote() undone: the original str (surrogate-escaped where not UTF-8)."""
    if "\\" not in word:
        return word
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), word).encode("latin-1")
    return os.fsdecode(raw)


def _fields(fields: dict) -> str:
    return "".join(f" {k}={quote(v) if type(v) is str else v}" for k, v in fields.items())


def ok_line(**fields) -> bytes:
    return f"ok{_fields(fields)}\n".encode()


def err_line(code: int, message: str) -> bytes:
    name = errno.errorcode.get(code, "EIO")
    message = " ".join(message.split())  # one line, whatever the message held
    # ASCII whatever the message quotes (a group name need not be UTF-8)
    return f"err {name} ".encode() + message.encode("ascii", "backslashreplace") + b"\n"


def event_line(name: str, **fields) -> bytes:
    return f"event {name}{_fields(fields)}\n".encode()


def parse_reply(line: str) -> tuple[str, dict[str, str] | tuple[str, str]]:
    """Client side: ("ok", fields) | ("err", (errno name, message)) |
    ("event", fields with "event" = name)."""
    head, _, rest = line.partition(" ")
    if head == "ok":
        return "ok", {k: unquote(v) for k, _, v in (w.partition("=") for w in rest.split())}
    if head == "err":
        name, _, message = rest.partition(" ")
        return "err", (name, message)
    if head == "event":
        name, _, rest = rest.partition(" ")
        fields = {k: unquote(v) for k, _, v in (w.partition("=") for w in rest.split())}
        fields["event"] = name
        return "event", fields
    raise ValueError(f"not a reply: {line!r}")
