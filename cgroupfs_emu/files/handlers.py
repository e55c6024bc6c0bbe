"""The handlers the control-file rows point at (table.py holds the rows).

Like the kernel's cftype handlers: a reader returns a number (read_u64) or text
(seq_show); a writer takes a number (write_u64) or the raw bytes of one write(2). Each
handler is a thin translation to the cgroup core or the memory controller, naming the
kernel function it follows.
"""

from __future__ import annotations

import enum

from ..core.errors import AccessDenied, Invalid, IOFailure, NoSuchProcess, NotPermitted
from ..core.memcg import EVENT_KEYS, Res
from ..core.memcg.limits import limit_bytes
from ..core.profiles import CounterKind, Feature, KmemDesign
from ..host.procfs import PF_KTHREAD, PF_NO_SETAFFINITY
from ..units import PAGE_SIZE
from . import era_parsers, mechanics, parsers
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
    """mem_cgroup_read_u64() (res_counter kernels: mem_cgroup_read()): bytes for
    usage/max_usage/limit, a count for failcnt. A limit prints as the profile's
    counter stores it (limits.limit_bytes)."""
    attr = req.cf.attr
    unit = req.tree.profile.counter.unit  # seed 002's res_counter_read(): pages
    if attr is Attr.FAILCNT:
        return req.counter.failcnt
    if attr is Attr.USAGE and req.cf.res in (Res.MEM, Res.MEMSW):
        return req.memcg.usage(memsw=req.cf.res is Res.MEMSW) * unit
    if attr is Attr.LIMIT:
        return limit_bytes(req.memcg, req.cf.res)
    return getattr(req.counter, attr.value) * unit


def parse_limit(req: Request, buf: bytes) -> tuple[int, int]:
    """A limit write, by the profile's counter kind: (pages for the counter, bytes
    the limit file will print). page_counter_memparse() rounds down to pages;
    res_counter_memparse_write_strategy() rounds up and keeps the bytes."""
    profile = req.tree.profile
    if profile.counter is CounterKind.RES_COUNTER_2007:
        pages = era_parsers.mem_limit_2007(buf)  # [M5] the whole buffer, base 10
        return pages, pages
    s = parsers.strstrip(buf)
    if profile.counter is CounterKind.RES_COUNTER:
        if s[:1] == b"-" and not profile.minus_one_unlimited:
            raise Invalid("-1 is not a limit before 2.6.29")  # [S3] memparse stops at '-'
        nbytes = mechanics.res_counter_memparse(s, profile.memparse_suffixes)
        return nbytes // PAGE_SIZE, nbytes
    pages = parsers.parse_limit(s, profile.memparse_suffixes)
    return pages, pages * PAGE_SIZE


def write_limit(req: Request, buf: bytes) -> None:
    """mem_cgroup_write(), RES_LIMIT: parse, then per counter."""
    g, res = req.memcg, req.cf.res
    profile = req.tree.profile
    if g.is_root and profile.counter is CounterKind.RES_COUNTER and not profile.root_limit:
        raise Invalid("cannot limit the root group")  # 3.x checks before parsing
    nr_pages, nbytes = parse_limit(req, buf)
    if not profile.limit_write_reclaims:
        g.store_max(res, nr_pages)  # [M7] seed 002: the value is simply stored
        return
    if res is Res.MEM:
        req.tree.memory.resize_max(g, nr_pages, memsw=False, nbytes=nbytes)
        return
    if res is Res.MEMSW:
        req.tree.memory.resize_max(g, nr_pages, memsw=True, nbytes=nbytes)
        return
    if res is not Res.KMEM:
        # tcp_update_limit() (3.x) clamps to RESOURCE_MAX
        nbytes = min(nbytes, req.tree.profile.counter.unlimited)
    g.set_limit(res, nr_pages, nbytes)


def read_soft_limit(req: Request) -> int:
    return limit_bytes(req.memcg, "soft")


def write_soft_limit(req: Request, buf: bytes) -> None:
    nr_pages, nbytes = parse_limit(req, buf)
    req.memcg.set_soft_limit(nr_pages, nbytes)


def write_reset(req: Request, buf: bytes) -> None:
    """mem_cgroup_reset(): any content resets max_usage (to usage) or failcnt."""
    if req.cf.attr is Attr.MAX_USAGE:
        req.counter.reset_watermark()
    else:
        req.counter.reset_failcnt()


def write_force_empty(req: Request, buf: bytes) -> None:
    req.tree.memory.force_empty(req.memcg)


def write_shrink(req: Request, buf: bytes) -> None:
    """Seed 004: reclaim below the value, EBUSY if that is impossible. [S5] On its own
    era the value is res_counter_memparse_write_strategy()'s: no -1, rounded up."""
    if req.tree.profile.counter is CounterKind.PAGE_COUNTER:
        nr_pages = parsers.parse_size_no_unlimited(buf)
    else:
        nr_pages = parse_limit(req, buf)[0]
    req.tree.memory.shrink_usage_to(req.memcg, nr_pages)


#: 2.6.26's mem_cgroup_stat_desc[] then the active / inactive zone counts
STAT_2_6_26 = (("cache", ("cache",)), ("rss", ("rss",)), ("pgpgin", ("pgpgin",)),
               ("pgpgout", ("pgpgout",)), ("active", ("active_anon", "active_file")),
               ("inactive", ("inactive_anon", "inactive_file")))


def show_stat(req: Request) -> str:
    """memcg_stat_show() / memcg1_stat_format(): own values in the profile's keys,
    the hierarchical limits, then total_* sums."""
    g = req.memcg
    keys = req.tree.profile.stat_keys

    def value(key: str, n: int) -> int:
        return n if key in EVENT_KEYS else n * PAGE_SIZE

    if req.tree.profile.has(Feature.STAT_2_6_26):
        # [S8] mem_control_stat_show() of 2.6.26: the group alone, six lines
        return "".join(f"{name} {sum(value(k, g.stats[k]) for k in ks)}\n"
                       for name, ks in STAT_2_6_26)

    def hierarchical(res) -> int:
        # the smallest limit up the chain of hierarchical parents
        out, m = None, g
        while m is not None:
            b = limit_bytes(m, res)
            out = b if out is None else min(out, b)
            m = m.parent if m.counter(res).parent is not None else None
        return out

    lines = [f"{k} {value(k, g.stats[k])}" for k in keys]
    lines.append(f"hierarchical_memory_limit {hierarchical(Res.MEM)}")
    lines.append(f"hierarchical_memsw_limit {hierarchical(Res.MEMSW)}")
    lines += [f"total_{k} {value(k, g.stat_total(k))}" for k in keys]
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
    levels = (("", False), ("hierarchical_", True))
    if req.tree.profile.has(Feature.NUMA_STAT_LOCAL_ONLY):
        levels = levels[:1]  # 3.2 / 3.3: four lines
    for prefix, total in levels:
        for name, keys in _NUMA_ROWS:
            n = sum(g.stat_total(k) if total else g.stats[k] for k in keys)
            out.append(f"{prefix}{name}={n} N0={n}\n")
    return "".join(out)


def show_oom_control(req: Request) -> str:
    """mem_cgroup_oom_control_read(): the oom_kill line exists since 4.13."""
    g = req.memcg
    text = (f"oom_kill_disable {int(g.oom_kill_disable)}\n"
            f"under_oom {int(bool(g.under_oom))}\n")
    if req.tree.profile.has(Feature.OOM_KILL_LINE):
        text += f"oom_kill {g.oom_kill}\n"
    return text


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


def show_slabinfo_2_1(req: Request) -> str:
    """The group's slab caches in /proc/slabinfo's 2.1 format, as SLUB prints it
    (no tunables). 3.x mem_cgroup_slabinfo_read(): EIO unless the group's kmem
    accounting is active, then the header always; 4.x memcg_slab_show(): the header
    only before the first cache."""
    g = req.memcg
    activated = req.tree.profile.kmem is KmemDesign.ACTIVATED_BY_LIMIT
    if activated and not g.kmem_active:
        raise IOFailure("kmem accounting is not active in this group")
    out = [SLABINFO_2_1_HEADER] if activated or g.slab else []
    for cache in g.slab.values():
        slabs = cache.slabs_for(cache.active)
        out.append(f"{cache.display_name:<17} {cache.active:6d} {cache.num_objs:6d} "
                   f"{cache.objsize:6d} {cache.objs_per_slab:4d} {cache.pages_per_slab:4d}"
                   f" : tunables {0:4d} {0:4d} {0:4d}"
                   f" : slabdata {slabs:6d} {slabs:6d} {0:6d}\n")
    return "".join(out)


#: print_slabinfo_header() (mm/slab_common.c), without CONFIG_DEBUG_SLAB
SLABINFO_2_1_HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor>"
    " : slabdata <active_slabs> <num_slabs> <sharedavail>\n")


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


def _attach(req: Request, buf: bytes, threadgroup: bool, parse=None) -> None:
    """__cgroup1_procs_write() + cgroup_procs_write_permission(): pid 0 is the writer;
    ESRCH for no such task; kernel threads are refused; a non-root writer needs its
    euid to match the target's uid or suid (EACCES). Then the cgroup core migrates
    the threads (core/cgroup.py: Hierarchy.migrate)."""
    pid = (parse or mechanics.of(req.tree.profile).parse_pid)(buf) or req.caller.pid
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


def write_tasks_2007(req: Request, buf: bytes) -> None:
    """[M12] The containers framework's attach_task(): sscanf("%d") (no number: EIO),
    0 = the writer, a pid that names no task (a negative one too): ESRCH."""
    pid = era_parsers.tasks_pid_2007(buf)
    if pid < 0:
        raise NoSuchProcess(str(pid))
    _attach(req, b"%d" % pid, threadgroup=False, parse=parsers.parse_pid)


def write_flag_2007(req: Request, buf: bytes) -> None:
    """[M12] The framework's update_flag(): simple_strtoul(buf, NULL, 10) != 0."""
    req.group.set_notify_on_release(era_parsers.flag_2007(buf))


def write_procs(req: Request, buf: bytes) -> None:
    _attach(req, buf, threadgroup=True)


def show_release_agent(req: Request) -> str:
    return req.tree.hierarchy.release_agent + "\n"


def write_release_agent(req: Request, buf: bytes) -> None:
    """cgroup_release_agent_write(): since 5.17 it needs the hierarchy owner's
    privilege (the kernel asks for CAP_SYS_ADMIN; here root or the user who mounted
    count), before that only write permission on the file; stores the
    whitespace-stripped path, truncated like strscpy() to PATH_MAX - 1."""
    h = req.tree.hierarchy
    if (req.tree.profile.has(Feature.RELEASE_AGENT_CAP)
            and req.caller.uid not in (0, h.owner_uid)):
        raise NotPermitted("release_agent needs privilege")
    path = parsers.strstrip(buf)[:RELEASE_AGENT_MAX]
    h.set_release_agent(path.decode("utf-8", "surrogateescape"))
