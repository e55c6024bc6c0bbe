"""The control files, as data: the kernel's cftype arrays.

``BASE_FILES`` mirrors ``cgroup1_base_files[]`` (kernel/cgroup/cgroup-v1.c) and
``MEMORY_FILES`` mirrors ``mem_cgroup_legacy_files[]`` + ``memsw_files[]``
(mm/memcontrol-v1.c). A row names the file and its handlers (handlers.py); like the
kernel's cftype a row has either a ``read_u64`` or a ``seq_show`` reader and either a
``write_u64`` or a raw ``write`` handler. The mode follows from which handlers exist
(read -> 0444, write -> 0200, both -> 0644), the ``memory.`` prefix is added here,
never by hand, and :class:`CFlags` place files on the root only or everywhere but the
root. A row that needs a profile :class:`~..core.profiles.Feature` is placed only in
profiles that have it (``unless``: only in those that lack it).
"""

from __future__ import annotations

import enum
from typing import Callable

import attrs

from ..core.errors import Invalid, NoDevice, TooBig
from ..core.memcg import Res
from ..core.profiles import Feature, Profile
from ..units import PAGE_SIZE
from . import parsers
from .handlers import (Attr, read_counter, read_soft_limit, show_nothing, show_numa_stat,
                       show_oom_control, show_procs, show_refused, show_release_agent,
                       show_slabinfo, show_stat, show_tasks, write_event_control,
                       write_force_empty, write_limit, write_procs, write_release_agent,
                       write_reset, write_shrink, write_soft_limit, write_tasks)
from .request import Request


class CFlags(enum.Flag):
    """cftype flags (include/linux/cgroup-defs.h)."""

    NONE = 0
    ONLY_ON_ROOT = enum.auto()
    NOT_ON_ROOT = enum.auto()
    #: keeps its own name, no "memory." prefix (CFTYPE_NO_PREFIX)
    NO_PREFIX = enum.auto()


ONLY_ON_ROOT, NOT_ON_ROOT, NO_PREFIX = CFlags.ONLY_ON_ROOT, CFlags.NOT_ON_ROOT, CFlags.NO_PREFIX
#: which subsystem a file belongs to: its prefix
MEMORY_PREFIX = "memory."
#: a file's mode bits, from its handlers (cgroup_file_mode())
_READ_MODE, _WRITE_MODE = 0o444, 0o200


@attrs.frozen
class ControlFile:
    name: str
    res: Res | None = None
    attr: Attr | None = None
    read_u64: Callable | None = None
    seq_show: Callable | None = None
    write_u64: Callable | None = None
    write: Callable | None = None
    flags: CFlags = CFlags.NONE
    #: profile features the row needs / must not have
    needs: Feature = Feature.NONE
    unless: Feature = Feature.NONE

    @property
    def readable(self) -> bool:
        return self.read_u64 is not None or self.seq_show is not None

    @property
    def writable(self) -> bool:
        return self.write_u64 is not None or self.write is not None

    @property
    def mode(self) -> int:
        """cgroup_file_mode(): derived from the handlers, never written by hand."""
        return (_READ_MODE if self.readable else 0) | (_WRITE_MODE if self.writable else 0)

    def placed_in(self, group_is_root: bool, profile: Profile) -> bool:
        if self.needs & profile.features != self.needs or self.unless & profile.features:
            return False
        if CFlags.ONLY_ON_ROOT in self.flags and not group_is_root:
            return False
        if CFlags.NOT_ON_ROOT in self.flags and group_is_root:
            return False
        return True


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
                read_u64=lambda r: int(r.memcg.use_hierarchy),
                write_u64=lambda r, v: r.memcg.set_use_hierarchy(v)),
    ControlFile("cgroup.event_control", write=write_event_control, flags=NO_PREFIX),
    ControlFile("swappiness",
                read_u64=lambda r: r.memcg.read_swappiness(),
                write_u64=lambda r, v: r.memcg.set_swappiness(v)),
    ControlFile("move_charge_at_immigrate",
                read_u64=lambda r: r.memcg.move_charge_at_immigrate,
                write_u64=lambda r, v: r.memcg.set_move_charge(v)),
    ControlFile("oom_control", seq_show=show_oom_control,
                write_u64=lambda r, v: r.memcg.set_oom_kill_disable(v)),
    ControlFile("pressure_level", seq_show=show_refused),
    ControlFile("numa_stat", seq_show=show_numa_stat),
    *_counter_files("kmem.", Res.KMEM),
    ControlFile("kmem.slabinfo", seq_show=show_nothing, unless=Feature.SLABINFO),
    ControlFile("kmem.slabinfo", seq_show=show_slabinfo, needs=Feature.SLABINFO),
    *_counter_files("kmem.tcp.", Res.TCP),
    *_counter_files("memsw.", Res.MEMSW),
    # Seed 001 patch 02 and seed 004: not upstream.
    ControlFile("kmem.independent_kmem_limit",
                read_u64=lambda r: int(r.memcg.independent_kmem_limit),
                write_u64=lambda r, v: r.memcg.set_independent_kmem_limit(v),
                needs=Feature.INDEPENDENT_KMEM),
    ControlFile("shrink_in_bytes", write=write_shrink, flags=NOT_ON_ROOT,
                needs=Feature.SHRINK_USAGE),
)


def _full_name(cf: ControlFile) -> str:
    return cf.name if NO_PREFIX in cf.flags else MEMORY_PREFIX + cf.name


ALL_FILES = tuple((cf.name, cf) for cf in BASE_FILES) + tuple(
    (_full_name(cf), cf) for cf in MEMORY_FILES
)

_placement_cache: dict[tuple[Profile, bool], dict[str, ControlFile]] = {}


def files_for(profile: Profile, is_root: bool) -> dict[str, ControlFile]:
    """name -> row for every control file of a group, sorted by name."""
    key = (profile, is_root)
    files = _placement_cache.get(key)
    if files is None:
        files = dict(sorted(
            (name, cf) for name, cf in ALL_FILES if cf.placed_in(is_root, profile)
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
    "Attr", "CFlags", "ControlFile", "Request", "BASE_FILES", "MEMORY_FILES",
    "ALL_FILES", "files_for", "read_file", "write_file", "ONLY_ON_ROOT", "NOT_ON_ROOT",
    "NO_PREFIX",
]
