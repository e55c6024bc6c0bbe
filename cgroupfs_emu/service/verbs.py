"""The protocol's verbs: one synchronous handler each, in one table.

A handler takes the server's :class:`Context`, the connection's :class:`Session` and
the parsed request, and returns the reply line, or a :class:`Pending` when the
memory controller asked for an OOM kill or an OOM wait (the connection then awaits
the OOM executor and replies). A charge that fits is simply a handler that returned:
there is no second, "fast" copy of it.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from typing import Callable

import attrs

from .. import protocol
from ..core.errors import CgroupError
from ..core.memcg import KINDS, MemCgroup, MemoryController, OomVerdict, Owner
from ..core.memcg.stacks import STACK_PAGES
from ..host.fds import open_pidfd, take_fd
from ..protocol import ProtocolError, Request
from ..units import PAGE_SIZE, pages_of
from . import fork_guard
from .effects import Clients
from .fdbudget import FdBudget
from .follower import Follower
from .oom import OomExecutor
from .tracker import ProcessTracker

log = logging.getLogger("cgroupfs_emu.service")

#: distinct request lines a connection keeps parsed (workloads repeat a few)
PARSED_CACHE = 64


@attrs.frozen
class Context:
    """What every handler may use: built once by the daemon."""

    memory: MemoryController
    executor: OomExecutor
    clients: Clients
    #: the process tracker (stop_following), or None
    tracker: ProcessTracker | None = None
    #: the scheduler of following (follow, followed), or None
    follower: Follower | None = None
    #: the descriptor budget (service/fdbudget.py): pidfds for clients count too
    budget: FdBudget = attrs.field(factory=FdBudget)


@attrs.frozen
class Pending:
    """A charge the memory controller could not make without an OOM kill or wait."""

    owner: Owner
    kind: str
    nr: int
    verdict: OomVerdict
    #: a first touch of a shared object: (key, the client, its group), registered
    #: once the charge is made
    shared: tuple | None = None


class Session:
    """One client connection's state: who it is and what it charged for whom."""

    def __init__(self, ctx: Context, pid: int, uid: int, gid: int,
                 notify: Callable[[bytes], None]):
        self.ctx = ctx
        self.pid, self.uid, self.gid = pid, uid, gid
        #: where events for this client go (the connection's event queue)
        self.notify = notify
        self.hello = False
        #: request line -> parsed Request
        self.parsed: dict[bytes, Request] = {}
        #: pid -> Owner: the peer itself, and pids a root client charges for
        self.owners: dict[int, Owner] = {}

    def owner(self, pid: int | None) -> Owner:
        pid = self.pid if pid is None else pid
        owner = self.owners.get(pid)
        if owner is not None and owner.alive:
            return owner
        if pid != self.pid and self.uid != 0:
            raise ProtocolError(errno.EPERM, "only root may charge for another pid")
        ctx = self.ctx
        if owner is not None:
            # OOM-killed with a request in flight: the dead owner's pidfd goes before
            # a fresh one is opened
            ctx.clients.remove(owner)
            ctx.executor.signals.forget(owner)
        if not ctx.budget.may_open():
            ctx.budget.refused(f"a pidfd for pid {pid}")
            raise ProtocolError(errno.EMFILE, "the daemon is short of file descriptors")
        try:
            pidfd = open_pidfd(pid)
        except ProcessLookupError:
            raise ProtocolError(errno.ESRCH, f"no process {pid}") from None
        except OSError as e:
            raise ProtocolError(e.errno or errno.EIO, f"pidfd_open({pid}): {e.strerror}") from None
        owner = ctx.memory.new_owner(pid)
        ctx.executor.signals.adopt(owner, pidfd)
        ctx.clients.add(owner, self.notify)
        self.owners[pid] = owner
        return owner

    def close(self) -> None:
        """A client that goes away is a process that exited, as exit_mm() uncharges (docs/workloads.md)."""
        ctx = self.ctx
        for owner in self.owners.values():
            ctx.memory.release(owner)
            ctx.clients.remove(owner)
            ctx.executor.signals.forget(owner)
        self.owners.clear()


# ---------------------------------------------------------------------- replies


#: group path -> the word a reply names it by (protocol.quote, encoded): a client
#: charges in one group, so every charge reply would quote the same path again
_PATH_WORDS: dict[str, bytes] = {}
#: paths remembered before the table starts over (a rename leaves old ones behind)
_PATH_WORDS_MAX = 1024


def path_word(group: MemCgroup) -> bytes:
    path = group.path()
    word = _PATH_WORDS.get(path)
    if word is None:
        if len(_PATH_WORDS) >= _PATH_WORDS_MAX:
            _PATH_WORDS.clear()
        word = _PATH_WORDS[path] = protocol.quote(path).encode()
    return word


def amount_reply(nr: int, group: MemCgroup) -> bytes:
    return b"ok pages=%d group=%s usage=%d\n" % (
        nr, path_word(group), group.memory.usage * PAGE_SIZE)


def _usage(group: MemCgroup) -> int:
    return group.memory.usage * PAGE_SIZE


def _amount(req: Request) -> tuple[str, int, int | None]:
    """(kind, pages, pid) of a charge or uncharge, parsed once per distinct line
    (requests are cached per session, so the result is kept on the request)."""
    return req.memoized("amount", lambda: (protocol.kind_arg(req.args[0]),
                                           pages_of(protocol.size_arg(req.args[1])),
                                           protocol.pid_option(req)))


# ---------------------------------------------------------------------- handlers


def do_hello(ctx: Context, s: Session, req: Request) -> bytes:
    version = protocol.count_arg(req.args[0], "version")
    if version != protocol.VERSION:
        raise ProtocolError(errno.EPROTONOSUPPORT,
                            f"protocol version {version} unsupported; this server speaks 1")
    s.hello = True
    s.owner(None)  # from now on this process is a client, not followed from /proc
    if ctx.follower is not None:
        ctx.follower.stop_following(s.pid)
    elif ctx.tracker is not None:
        ctx.tracker.stop_following(s.pid)
    return protocol.ok_line(version=protocol.VERSION, pid=s.pid, uid=s.uid,
                            group=ctx.memory.memcg_of_task(s.pid).path(),
                            page_size=PAGE_SIZE, stock_batch=protocol.STOCK_BATCH)


def do_charge(ctx: Context, s: Session, req: Request) -> bytes | Pending:
    kind, nr, pid = _amount(req)
    owner = s.owner(pid)
    group = ctx.memory.memcg_of_task(owner.pid)
    if "share" in req.options:
        return _charge_shared(ctx, owner, group, kind, nr, req.options["share"])
    verdict = ctx.memory.charge(owner, group, kind, nr)
    if verdict is not None:
        return Pending(owner, kind, nr, verdict)
    return amount_reply(nr, group)


def _charge_shared(ctx: Context, owner: Owner, group: MemCgroup, kind: str, nr: int,
                   key: str) -> bytes | Pending:
    """A shared page: the first toucher's group is charged, through a holder of the
    object's own so the charge outlives it; later mappers only take a reference
    (docs/protocol.md *Shared pages*, seed 002 patch 4)."""
    if kind != "shmem":
        raise ProtocolError(errno.EINVAL, "only shmem pages are shared")
    memory = ctx.memory
    obj = memory.shared_object(key, nr)
    if obj is not None:
        memory.share(obj, owner)
        return amount_reply(0, group)
    held_by = memory.shared_holder(owner.pid)
    verdict = memory.charge(held_by, group, kind, nr)
    if verdict is not None:
        return Pending(held_by, kind, nr, verdict, shared=(key, owner, group))
    memory.shared_created(key, owner, held_by, group, nr)
    return amount_reply(nr, group)


def do_uncharge(ctx: Context, s: Session, req: Request) -> bytes:
    kind, nr, pid = _amount(req)
    owner = s.owner(pid)
    group = ctx.memory.memcg_of_task(owner.pid)
    if "share" in req.options:
        if kind != "shmem":
            raise ProtocolError(errno.EINVAL, "only shmem pages are shared")
        return amount_reply(ctx.memory.unshare(req.options["share"], owner, nr), group)
    ctx.memory.uncharge(owner, group, kind, nr)
    return amount_reply(nr, group)


def _slab(ctx: Context, s: Session, req: Request, alloc: bool) -> bytes:
    name = req.args[0]
    objsize = protocol.size_arg(req.args[1], "object size")
    count = protocol.count_arg(req.args[2], "count") if len(req.args) > 2 else 1
    owner = s.owner(protocol.pid_option(req))
    group = ctx.memory.memcg_of_task(owner.pid)
    if alloc:
        ctx.memory.slab_alloc(owner, group, name, objsize, count)
    else:
        ctx.memory.slab_free(owner, name, objsize, count, group)
    objects = sum(c for (g, n), c in owner.slab_objects.items() if n == name)
    cache = group.slab.get(name)
    return protocol.ok_line(objects=objects, slab_pages=cache.pages if cache else 0,
                            group=group.path(), usage=_usage(group))


def do_slab_alloc(ctx: Context, s: Session, req: Request) -> bytes:
    return _slab(ctx, s, req, alloc=True)


def do_slab_free(ctx: Context, s: Session, req: Request) -> bytes:
    return _slab(ctx, s, req, alloc=False)


def _tasks(ctx: Context, s: Session, req: Request, fork: bool) -> bytes:
    """Seed 003: COUNT new tasks of the client (each charges a thread stack where the
    profile charges stacks), or COUNT of them ending (core/memcg/stacks.py)."""
    count = protocol.count_arg(req.args[0], "count") if req.args else 1
    owner = s.owner(protocol.pid_option(req))
    group = ctx.memory.memcg_of_task(owner.pid)
    if fork:
        ctx.memory.fork(owner, group, count)
    else:
        ctx.memory.end_tasks(owner, count)
    return protocol.ok_line(tasks=len(owner.forked), group=group.path(), usage=_usage(group))


def do_fork(ctx: Context, s: Session, req: Request) -> bytes:
    return _tasks(ctx, s, req, fork=True)


def do_exit(ctx: Context, s: Session, req: Request) -> bytes:
    return _tasks(ctx, s, req, fork=False)


def do_stock(ctx: Context, s: Session, req: Request) -> bytes:
    want = protocol.count_arg(req.args[0], "stock")
    consumed = {k: protocol.signed_arg(v, k) for k, v in req.options.items()}
    owner = s.owner(None)
    group = ctx.memory.memcg_of_task(owner.pid)
    granted = ctx.memory.set_stock(owner, group, consumed, want)
    return protocol.ok_line(granted=granted, group=group.path(), usage=_usage(group))


def do_status(ctx: Context, s: Session, req: Request) -> bytes:
    owner = s.owner(protocol.pid_option(req))
    group = ctx.memory.memcg_of_task(owner.pid)
    fields = {"pid": owner.pid, "group": group.path()}
    # user pages per account (anon: resident; swap apart), kernel memory per kind
    for name in ("anon", "swap", "file", "shmem"):
        fields[name] = sum(led[name] for led in owner.ledgers.values()) * PAGE_SIZE
    for name in ("kmem", "tcp"):
        fields[name] = owner.held(KINDS[name]) * PAGE_SIZE
    fields["slab_objects"] = sum(owner.slab_objects.values())
    fields["stock"] = owner.stock * PAGE_SIZE
    return protocol.ok_line(**fields)


def do_follow(ctx: Context, s: Session, req: Request) -> bytes:
    """``follow PID [guard=FD] [poll_ms=MS]`` (from ``cgemu exec``): PID's
    own slow sampling rate, and its seccomp listener for the fork guard."""
    if ctx.follower is None:
        raise ProtocolError(errno.EOPNOTSUPP, "this daemon follows no processes")
    pid = protocol.count_arg(req.args[0], "pid")
    guard = (protocol.count_arg(req.options["guard"], "guard")
             if "guard" in req.options else None)
    poll_ms = None
    if "poll_ms" in req.options:
        poll_ms = protocol.count_arg(req.options["poll_ms"], "poll_ms")
        if not 1 <= poll_ms <= 60000:
            raise ProtocolError(errno.EINVAL, "poll_ms must be 1..60000")
    info = ctx.follower.host.task(pid)
    if info is None:
        raise ProtocolError(errno.ESRCH, f"no process {pid}")
    if s.uid != 0 and s.uid != info.uid:
        raise ProtocolError(errno.EPERM, f"pid {pid} belongs to another user")
    entry = ctx.follower.follow(pid, poll_ms)
    if guard is not None:
        try:
            fd = take_fd(pid, guard)  # from the guarded child itself
        except OSError as e:
            raise ProtocolError(e.errno or errno.EIO, str(e)) from None
        if not fork_guard.is_listener(fd):
            os.close(fd)
            raise ProtocolError(errno.EBADF, f"descriptor {guard} is not a seccomp listener")
        ctx.follower.guards.add(fd)
    return protocol.ok_line(pid=pid, followed=int(entry is not None),
                            guard=int(guard is not None))


def do_followed(ctx: Context, s: Session, req: Request) -> bytes:
    """``followed``: every followed process, its charge and its last sample's age."""
    if ctx.follower is None:
        raise ProtocolError(errno.EOPNOTSUPP, "this daemon follows no processes")
    now = time.monotonic()
    rows = []
    for e in sorted(ctx.tracker.followed.values(), key=lambda e: e.tgid):
        charged = (sum(e.owner.charged.values()) + e.stacks * STACK_PAGES) * PAGE_SIZE
        hot = int(ctx.follower.schedule.is_hot(e.tgid, now))
        rows.append(f"{e.tgid}:{charged}:{int((now - e.sampled_at) * 1000)}:{hot}")
    return protocol.ok_line(count=len(rows), tasks=",".join(rows) or "-")


#: verbs that concern followed processes: they neither need nor make a client
NO_HELLO = frozenset({"hello", "follow", "followed"})

VERBS: dict[str, Callable[[Context, Session, Request], bytes | Pending]] = {
    "hello": do_hello,
    "charge": do_charge,
    "uncharge": do_uncharge,
    "slab_alloc": do_slab_alloc,
    "slab_free": do_slab_free,
    "stock": do_stock,
    "status": do_status,
    "follow": do_follow,
    "followed": do_followed,
    "fork": do_fork,
    "exit": do_exit,
}
assert set(VERBS) == set(protocol.VERBS)


def error_reply(e: BaseException) -> bytes:
    """The one mapping of an error to its reply line."""
    if isinstance(e, ProtocolError):
        return e.reply()
    if isinstance(e, CgroupError):
        return protocol.err_line(e.errno, str(e))
    return protocol.err_line(errno.EIO, "internal error, see the daemon log")


def dispatch(ctx: Context, s: Session, line: bytes) -> bytes | Pending:
    """Parse (once per distinct line) and run one request; never raises."""
    try:
        req = s.parsed.get(line)
        if req is None:
            req = protocol.parse_request(line)
            if len(s.parsed) < PARSED_CACHE:
                s.parsed[line] = req
        if not s.hello and req.verb not in NO_HELLO:
            raise ProtocolError(errno.EPROTO, "say 'hello 1' first")
        return VERBS[req.verb](ctx, s, req)
    except (ProtocolError, CgroupError) as e:
        return error_reply(e)
    except Exception as e:  # a bug must not take the daemon down: log it, reply EIO
        log.exception("request %r failed", line[:200])
        return error_reply(e)


async def finish(ctx: Context, pending: Pending, gone=None) -> bytes:
    """Execute the verdict of a pending charge (kill and retry, or wait), then reply.
    *gone*: the connection's hang-up watch (OomWaitQueue.wait)."""
    try:
        await ctx.executor.charge(pending.owner, pending.kind, pending.nr, pending.verdict,
                                  gone=gone)
    except (ProtocolError, CgroupError) as e:
        return error_reply(e)
    if pending.shared is not None:
        key, owner, group = pending.shared
        ctx.memory.shared_created(key, owner, pending.owner, group, pending.nr)
    return amount_reply(pending.nr, ctx.memory.memcg_of_task(pending.owner.pid))
