"""The handlers the control-file rows point at (table.py holds the rows).

Like the kernel's cftype handlers: a reader returns a number (read_u64) or text
(seq_show); a writer takes a number (write_u64) or the raw bytes of one write(2). Each
handler is a thin translation to the cgroup core or the memory controller, naming the
kernel function it follows.
"""

from __future__ import annotations

import enum

from ..core.errors import AccessDenied, Invalid, NoSuchProcess, NotPermitted
from ..core.memcg import EVENT_KEYS, STAT_KEYS, Res
from ..host.procfs import PF_KTHREAD, PF_NO_SETAFFINITY
from ..units import PAGE_SIZE
from . import parsers
from .events import register_event
from .request import Request

#: PATH_MAX - 1: what strscpy() keeps of a release_agent path.
RELEASE_AGENT_MAX = 4095


class Attr(enum.Enum):
    """Which attribute of a counter (the kernel's MEMFILE_ATTR)."""

    USAGE = "usage"
    MAX_USAGE = "watermark"
    LIMIT = "max"
    FAILCNT = "failcnt"


# ---------------------------------------------------------------------- memory


def read_counter(req: Request) -> int:
    """mem_cgroup_read_u64(): bytes for usage/max_usage/limit, a count for failcnt."""
    attr = req.cf.attr
    if attr is Attr.FAILCNT:
        return req.counter.failcnt
    if attr is Attr.USAGE and req.cf.res in (Res.MEM, Res.MEMSW):
        return req.memcg.usage(memsw=req.cf.res is Res.MEMSW) * PAGE_SIZE
    return getattr(req.counter, attr.value) * PAGE_SIZE


def write_limit(req: Request, buf: bytes) -> None:
    """mem_cgroup_write(), RES_LIMIT: parse, then per counter."""
    nr_pages = parsers.parse_limit(buf)
    g, res = req.memcg, req.cf.res
    if res is Res.MEM:
        req.tree.memory.resize_max(g, nr_pages, memsw=False)
    elif res is Res.MEMSW:
        req.tree.memory.resize_max(g, nr_pages, memsw=True)
    elif res is Res.KMEM:
        g.set_kmem_max(nr_pages)
    else:
        g.set_tcp_max(nr_pages)


def read_soft_limit(req: Request) -> int:
    return req.memcg.soft_limit * PAGE_SIZE


def write_soft_limit(req: Request, buf: bytes) -> None:
    req.memcg.set_soft_limit(parsers.parse_limit(buf))


def write_reset(req: Request, buf: bytes) -> None:
    """mem_cgroup_reset(): any content resets max_usage (to usage) or failcnt."""
    if req.cf.attr is Attr.MAX_USAGE:
        req.counter.reset_watermark()
    else:
        req.counter.failcnt = 0


def write_force_empty(req: Request, buf: bytes) -> None:
    req.tree.memory.force_empty(req.memcg)


def write_shrink(req: Request, buf: bytes) -> None:
    """Seed 004: reclaim below the value, EBUSY if that is impossible."""
    req.tree.memory.shrink_usage_to(req.memcg, parsers.parse_size_no_unlimited(buf))


def show_stat(req: Request) -> str:
    """memcg1_stat_format(): own values, hierarchical limits, then total_* sums."""
    g = req.memcg

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
    g = req.memcg
    out = []
    for prefix, total in (("", False), ("hierarchical_", True)):
        for name, keys in _NUMA_ROWS:
            n = sum(g.stat_total(k) if total else g.stats[k] for k in keys)
            out.append(f"{prefix}{name}={n} N0={n}\n")
    return "".join(out)


def show_oom_control(req: Request) -> str:
    g = req.memcg
    return (f"oom_kill_disable {int(g.oom_kill_disable)}\n"
            f"under_oom {int(bool(g.under_oom))}\n"
            f"oom_kill {g.oom_kill}\n")


def show_nothing(req: Request) -> str:
    return ""


def show_refused(req: Request) -> str:
    """memory.pressure_level: exists only as an event_control target; reads EINVAL."""
    raise Invalid("pressure_level cannot be read")


def show_slabinfo(req: Request) -> str:
    """Seed 001 patch 12, mem_cgroup_slabinfo()."""
    out = ["# name          <active_objs> <num_objs> <objsize>\n"]
    for name, (active, num, size) in req.memcg.slab_caches.items():
        out.append(f"{name:<17} {active:6d} {num:6d} {size:6d}\n")
    return "".join(out)


def write_event_control(req: Request, buf: bytes) -> None:
    register_event(req, buf)


# ---------------------------------------------------------------------- cgroup core


def _live_tids(req: Request) -> list[int]:
    """TIDs of the group; the root holds every task not attached to a child."""
    h, host = req.tree.hierarchy, req.tree.host
    h.prune(host.is_alive)
    if req.group.is_root:
        return sorted(t for t in host.all_tids() if t not in h.task_group)
    return sorted(req.group.tasks)


def show_tasks(req: Request) -> str:
    return "".join(f"{t}\n" for t in _live_tids(req))


def show_procs(req: Request) -> str:
    tgids = set()
    for tid in _live_tids(req):
        tgid = req.tree.host.tgid_of(tid)
        if tgid is not None:
            tgids.add(tgid)
    return "".join(f"{t}\n" for t in sorted(tgids))


def _attach(req: Request, buf: bytes, threadgroup: bool) -> None:
    """__cgroup1_procs_write() + cgroup_procs_write_permission(): pid 0 is the writer;
    ESRCH for no such task; kernel threads are refused; a non-root writer needs its
    euid to match the target's uid or suid (EACCES). Then the cgroup core migrates
    the threads (core/cgroup.py: Hierarchy.migrate)."""
    pid = parsers.parse_pid(buf) or req.caller.pid
    host = req.tree.host
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
    leader = info.tgid if info.tgid in tids else None
    req.tree.hierarchy.migrate(host.learn(tids), req.group, leader)


def write_tasks(req: Request, buf: bytes) -> None:
    _attach(req, buf, threadgroup=False)


def write_procs(req: Request, buf: bytes) -> None:
    _attach(req, buf, threadgroup=True)


def show_release_agent(req: Request) -> str:
    return req.tree.hierarchy.release_agent + "\n"


def write_release_agent(req: Request, buf: bytes) -> None:
    """cgroup_release_agent_write(): needs the hierarchy owner's privilege (the kernel
    asks for CAP_SYS_ADMIN; here root or the user who mounted count), stores the
    whitespace-stripped path, truncated like strscpy() to PATH_MAX - 1."""
    h = req.tree.hierarchy
    if req.caller.uid not in (0, h.owner_uid):
        raise NotPermitted("release_agent needs privilege")
    path = parsers.strstrip(buf)[:RELEASE_AGENT_MAX]
    h.release_agent = path.decode("utf-8", "surrogateescape")
