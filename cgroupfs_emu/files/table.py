"""The control files, as data: the kernel's cftype arrays.

``BASE_FILES`` mirrors ``cgroup1_base_files[]`` (kernel/cgroup/cgroup-v1.c) and
``MEMORY_FILES`` mirrors ``mem_cgroup_legacy_files[]`` + ``memsw_files[]``
(mm/memcontrol-v1.c). A row names the file and its handlers; like the kernel's cftype a
row has either a ``read_u64`` or a ``seq_show`` reader and either a ``write_u64`` or a
raw ``write`` handler. The mode follows from which handlers exist (read -> 0444,
write -> 0200, both -> 0644), the ``memory.`` prefix is added here, never by hand, and
flags place files on the root only or everywhere but the root. ``profiles`` limits a row
to some kernel profiles.
"""

from __future__ import annotations

import enum
from typing import Callable

import attrs

from ..core.errors import AccessDenied, Invalid, NoDevice, NoSuchProcess, NotPermitted, TooBig
from ..core.memcg import EVENT_KEYS, STAT_KEYS, MemCgroup, Res
from ..core.page_counter import PAGE_SIZE
from ..core.profiles import Profile
from ..service.host import PF_KTHREAD, PF_NO_SETAFFINITY
from . import parsers
from .events import register_event

ONLY_ON_ROOT = 1
NOT_ON_ROOT = 2
#: The write handler acts on the writing process (descriptor numbers in its table):
#: the caller is the task blocked in write(2), not the opener (files/tree.py).
BY_WRITER = 4
#: PATH_MAX - 1: what strscpy() keeps of a release_agent path.
RELEASE_AGENT_MAX = 4095


class Attr(enum.Enum):
    """Which attribute of a counter (the kernel's MEMFILE_ATTR)."""

    USAGE = "usage"
    MAX_USAGE = "watermark"
    LIMIT = "max"
    FAILCNT = "failcnt"


@attrs.frozen
class Caller:
    """Who opened the file: FUSE reports no pid on write, so it is kept from open."""

    pid: int
    uid: int
    gid: int


@attrs.define
class Request:
    """One read or write of a control file of one group."""

    group: MemCgroup
    cf: ControlFile
    caller: Caller
    host: object = None
    #: (path as /proc/PID/fd shows it, caller) -> (group, file name, caller may read)
    #: when the path names a control file of this mount, else None
    resolve: Callable | None = None

    @property
    def counter(self):
        return self.group.counter(self.cf.res)


@attrs.frozen
class ControlFile:
    name: str
    res: Res | None = None
    attr: Attr | None = None
    read_u64: Callable | None = None
    seq_show: Callable | None = None
    write_u64: Callable | None = None
    write: Callable | None = None
    flags: int = 0
    profiles: frozenset | None = None

    @property
    def readable(self) -> bool:
        return self.read_u64 is not None or self.seq_show is not None

    @property
    def writable(self) -> bool:
        return self.write_u64 is not None or self.write is not None

    @property
    def mode(self) -> int:
        """cgroup_file_mode(): derived from the handlers, never written by hand."""
        return (0o444 if self.readable else 0) | (0o200 if self.writable else 0)

    def placed_in(self, group_is_root: bool, profile: Profile) -> bool:
        if self.profiles is not None and profile.name not in self.profiles:
            return False
        if self.flags & ONLY_ON_ROOT and not group_is_root:
            return False
        if self.flags & NOT_ON_ROOT and group_is_root:
            return False
        return True


# ---------------------------------------------------------------------- handlers


def read_counter(req: Request) -> int:
    """mem_cgroup_read_u64(): bytes for usage/max_usage/limit, a count for failcnt."""
    g, attr = req.group, req.cf.attr
    if attr is Attr.FAILCNT:
        return req.counter.failcnt
    if attr is Attr.USAGE and req.cf.res in (Res.MEM, Res.MEMSW):
        return g.usage(memsw=req.cf.res is Res.MEMSW) * PAGE_SIZE
    return getattr(req.counter, attr.value) * PAGE_SIZE


def write_limit(req: Request, buf: bytes) -> None:
    """mem_cgroup_write(), RES_LIMIT: parse, then per counter."""
    nr_pages = parsers.parse_limit(buf)
    g, res = req.group, req.cf.res
    if res is Res.MEM:
        g.resize_max(nr_pages, memsw=False)
    elif res is Res.MEMSW:
        g.resize_max(nr_pages, memsw=True)
    elif res is Res.KMEM:
        g.set_kmem_max(nr_pages)
    else:
        g.set_tcp_max(nr_pages)


def read_soft_limit(req: Request) -> int:
    return req.group.soft_limit * PAGE_SIZE


def write_soft_limit(req: Request, buf: bytes) -> None:
    req.group.set_soft_limit(parsers.parse_limit(buf))


def write_reset(req: Request, buf: bytes) -> None:
    """mem_cgroup_reset(): any content resets max_usage (to usage) or failcnt."""
    if req.cf.attr is Attr.MAX_USAGE:
        req.counter.reset_watermark()
    else:
        req.counter.failcnt = 0


def write_force_empty(req: Request, buf: bytes) -> None:
    req.group.force_empty()


def write_shrink(req: Request, buf: bytes) -> None:
    """Seed 004: reclaim below the value, EBUSY if that is impossible."""
    req.group.shrink_usage_to(parsers.parse_size_no_unlimited(buf))


def show_stat(req: Request) -> str:
    """memcg1_stat_format(): own values, hierarchical limits, then total_* sums."""
    g = req.group

    def value(key: str, n: int) -> int:
        return n if key in EVENT_KEYS else n * PAGE_SIZE

    lines = [f"{k} {value(k, g.stats[k])}" for k in STAT_KEYS]
    lines.append(f"hierarchical_memory_limit {g.memory.hierarchical_max() * PAGE_SIZE}")
    lines.append(f"hierarchical_memsw_limit {g.memsw.hierarchical_max() * PAGE_SIZE}")
    lines += [f"total_{k} {value(k, g.stat_total(k))}" for k in STAT_KEYS]
    return "\n".join(lines) + "\n"


#: memory.numa_stat rows: name -> stat keys whose pages it adds (LRU pages only).
_NUMA_ROWS = (
    ("total", ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")),
    ("file", ("inactive_file", "active_file")),
    ("anon", ("inactive_anon", "active_anon")),
    ("unevictable", ("unevictable",)),
)


def show_numa_stat(req: Request) -> str:
    """memcg_numa_stat_show(): pages, one N<node> column per node (the emulator has
    one node, N0)."""
    g = req.group
    out = []
    for prefix, total in (("", False), ("hierarchical_", True)):
        for name, keys in _NUMA_ROWS:
            n = sum(g.stat_total(k) if total else g.stats[k] for k in keys)
            out.append(f"{prefix}{name}={n} N0={n}\n")
    return "".join(out)


def show_oom_control(req: Request) -> str:
    g = req.group
    return (f"oom_kill_disable {int(g.oom_kill_disable)}\n"
            f"under_oom {int(bool(g.under_oom))}\n"
            f"oom_kill {g.oom_kill}\n")


def show_nothing(req: Request) -> str:
    return ""


def show_refused(req: Request) -> str:
    """memory.pressure_level: exists only as an event_control target; reads EINVAL."""
    raise Invalid("pressure_level cannot be read")


def show_slabinfo_seed001(req: Request) -> str:
    """Seed 001 patch 12, mem_cgroup_slabinfo()."""
    out = ["# name          <active_objs> <num_objs> <objsize>\n"]
    for name, (active, num, size) in req.group.slab_caches.items():
        out.append(f"{name:<17} {active:6d} {num:6d} {size:6d}\n")
    return "".join(out)


def write_event_control(req: Request, buf: bytes) -> None:
    register_event(req, buf)


# --- cgroup core files (tasks, cgroup.procs, flags, release_agent)


def _live_tids(req: Request) -> list[int]:
    """TIDs of the group; the root holds every task not attached to a child."""
    h, host = req.group.hierarchy, req.host
    h.prune(host.is_alive)
    if req.group.is_root:
        return sorted(t for t in host.all_tids() if t not in h.task_group)
    return sorted(req.group.tasks)


def show_tasks(req: Request) -> str:
    return "".join(f"{t}\n" for t in _live_tids(req))


def show_procs(req: Request) -> str:
    tgids = set()
    for tid in _live_tids(req):
        tgid = req.host.tgid_of(tid)
        if tgid is not None:
            tgids.add(tgid)
    return "".join(f"{t}\n" for t in sorted(tgids))


def _attach(req: Request, buf: bytes, threadgroup: bool) -> None:
    """__cgroup1_procs_write(): pid 0 is the writer; ESRCH for no such task; kernel
    threads are refused; a non-root writer needs its euid to match the target's uid or
    suid (EACCES)."""
    pid = parsers.parse_pid(buf) or req.caller.pid
    host = req.host
    info = host.task(pid)
    if info is None:
        raise NoSuchProcess(str(pid))
    if threadgroup and info.tgid != info.tid:
        info = host.task(info.tgid) or info
    if info.flags & (PF_NO_SETAFFINITY | PF_KTHREAD):
        raise Invalid("kernel threads cannot be moved")
    if req.caller.uid not in (0, info.uid, info.suid):
        raise AccessDenied("not allowed to move this task")
    tids = host.threads(info.tgid) if threadgroup else [info.tid]
    h, dst = req.group.hierarchy, req.group
    if info.tgid in tids:
        # The mm owner moves: settle what it used where it was, then move its
        # charges if the destination asks (ENOMEM leaves the task where it was).
        h.before_move(info.tgid)
        src = h.group_of(info.tgid)
        owners = [o for o in h.charges.owners if o.pid == info.tgid]
        h.charges.move_charge(owners, src, dst, dst.move_charge_at_immigrate)
    for tid in tids:
        t = host.task(tid)
        if t is None:
            continue
        host.remember(t)
        h.attach(tid, dst)


def write_tasks(req: Request, buf: bytes) -> None:
    _attach(req, buf, threadgroup=False)


def write_procs(req: Request, buf: bytes) -> None:
    _attach(req, buf, threadgroup=True)


def show_release_agent(req: Request) -> str:
    return req.group.hierarchy.release_agent + "\n"


def write_release_agent(req: Request, buf: bytes) -> None:
    """cgroup_release_agent_write(): needs the hierarchy owner's privilege (the kernel
    asks for CAP_SYS_ADMIN; here root or the user who mounted count), stores the
    whitespace-stripped path, truncated like strscpy() to PATH_MAX - 1."""
    if req.caller.uid not in (0, req.group.hierarchy.owner_uid):
        raise NotPermitted("release_agent needs privilege")
    path = parsers.strstrip(buf)[:RELEASE_AGENT_MAX]
    req.group.hierarchy.release_agent = path.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------- the table

SEEDS_ONLY = frozenset({"seeds"})
LINUX_6_ONLY = frozenset({"linux-6"})


def _counter_files(prefix: str, res: Res, limit: bool = True) -> list[ControlFile]:
    """The usage / max_usage / limit / failcnt quartet of one counter."""
    rows = [
        ControlFile(f"{prefix}usage_in_bytes", res, Attr.USAGE, read_u64=read_counter),
        ControlFile(f"{prefix}max_usage_in_bytes", res, Attr.MAX_USAGE,
                    read_u64=read_counter, write=write_reset),
        ControlFile(f"{prefix}failcnt", res, Attr.FAILCNT,
                    read_u64=read_counter, write=write_reset),
    ]
    if limit:
        rows.append(ControlFile(f"{prefix}limit_in_bytes", res, Attr.LIMIT,
                                read_u64=read_counter, write=write_limit))
    return rows


BASE_FILES = (
    ControlFile("cgroup.procs", seq_show=show_procs, write=write_procs),
    ControlFile("cgroup.clone_children",
                read_u64=lambda r: int(r.group.clone_children),
                write_u64=lambda r, v: r.group.set_clone_children(v)),
    ControlFile("cgroup.sane_behavior", seq_show=lambda r: "0\n", flags=ONLY_ON_ROOT),
    ControlFile("tasks", seq_show=show_tasks, write=write_tasks),
    ControlFile("notify_on_release",
                read_u64=lambda r: int(r.group.notify_on_release),
                write_u64=lambda r, v: r.group.set_notify_on_release(v)),
    ControlFile("release_agent", seq_show=show_release_agent, write=write_release_agent,
                flags=ONLY_ON_ROOT),
)

MEMORY_FILES = (
    *_counter_files("", Res.MEM),
    ControlFile("soft_limit_in_bytes", read_u64=read_soft_limit, write=write_soft_limit),
    ControlFile("stat", seq_show=show_stat),
    ControlFile("force_empty", write=write_force_empty),
    ControlFile("use_hierarchy",
                read_u64=lambda r: int(r.group.use_hierarchy),
                write_u64=lambda r, v: r.group.set_use_hierarchy(v)),
    ControlFile("cgroup.event_control", write=write_event_control, flags=BY_WRITER),
    ControlFile("swappiness",
                read_u64=lambda r: r.group.read_swappiness(),
                write_u64=lambda r, v: r.group.set_swappiness(v)),
    ControlFile("move_charge_at_immigrate",
                read_u64=lambda r: r.group.move_charge_at_immigrate,
                write_u64=lambda r, v: r.group.set_move_charge(v)),
    ControlFile("oom_control", seq_show=show_oom_control,
                write_u64=lambda r, v: r.group.set_oom_kill_disable(v)),
    ControlFile("pressure_level", seq_show=show_refused),
    ControlFile("numa_stat", seq_show=show_numa_stat),
    *_counter_files("kmem.", Res.KMEM),
    ControlFile("kmem.slabinfo", seq_show=show_nothing, profiles=LINUX_6_ONLY),
    ControlFile("kmem.slabinfo", seq_show=show_slabinfo_seed001, profiles=SEEDS_ONLY),
    *_counter_files("kmem.tcp.", Res.TCP),
    *_counter_files("memsw.", Res.MEMSW),
    # Seed 001 patch 02 and seed 004: not upstream.
    ControlFile("kmem.independent_kmem_limit",
                read_u64=lambda r: int(r.group.independent_kmem_limit),
                write_u64=lambda r, v: r.group.set_independent_kmem_limit(v),
                profiles=SEEDS_ONLY),
    ControlFile("shrink_in_bytes", write=write_shrink, flags=NOT_ON_ROOT, profiles=SEEDS_ONLY),
)

#: Files that keep their own name (the kernel's CFTYPE_NO_PREFIX).
_NO_PREFIX = frozenset({"cgroup.event_control"})


def _full_name(cf: ControlFile) -> str:
    return cf.name if cf.name in _NO_PREFIX else f"memory.{cf.name}"


ALL_FILES = tuple((cf.name, cf) for cf in BASE_FILES) + tuple(
    (_full_name(cf), cf) for cf in MEMORY_FILES
)

_placement_cache: dict[tuple[str, bool], dict[str, ControlFile]] = {}


def files_for(group: MemCgroup) -> dict[str, ControlFile]:
    """name -> row for every control file of *group*, sorted by name."""
    key = (group.hierarchy.profile.name, group.is_root)
    files = _placement_cache.get(key)
    if files is None:
        files = dict(sorted(
            (name, cf) for name, cf in ALL_FILES
            if cf.placed_in(group.is_root, group.hierarchy.profile)
        ))
        _placement_cache[key] = files
    return files


# ---------------------------------------------------------------------- dispatch


def read_file(req: Request) -> bytes:
    """cgroup_seqfile_show(): the whole text of the file, rendered now."""
    if not req.group.online:
        raise NoDevice("the group was removed")
    cf = req.cf
    if cf.read_u64 is not None:
        return b"%d\n" % cf.read_u64(req)
    if cf.seq_show is not None:
        return cf.seq_show(req).encode("utf-8", "surrogateescape")
    raise Invalid("file has no read handler")


def write_file(req: Request, buf: bytes) -> None:
    """kernfs_fop_write_iter() + cgroup_file_write(): one write(2) is one command."""
    if len(buf) > PAGE_SIZE:
        raise TooBig("a write is at most one page")
    if not req.group.online:
        raise NoDevice("the group was removed")
    buf = parsers.c_string(buf)
    cf = req.cf
    if cf.write_u64 is not None:
        cf.write_u64(req, parsers.kstrtoull(buf))
    elif cf.write is not None:
        cf.write(req, buf)
    else:
        raise Invalid("file has no write handler")


__all__ = [
    "Attr", "Caller", "ControlFile", "Request", "BASE_FILES", "MEMORY_FILES",
    "ALL_FILES", "files_for", "read_file", "write_file", "ONLY_ON_ROOT", "NOT_ON_ROOT",
    "BY_WRITER",
]
