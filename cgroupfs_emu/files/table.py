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

from ..core.errors import Invalid, NoDevice
from ..core.memcg import Res
from ..core.profiles import Feature, Profile
from . import mechanics, parsers
from .handlers import (Attr, read_counter, read_soft_limit, show_nothing, show_numa_stat,
                       show_oom_control, show_procs, show_refused, show_release_agent,
                       show_slabinfo, show_slabinfo_2_1, show_stat, show_tasks,
                       write_event_control, write_force_empty, write_limit, write_procs,
                       write_release_agent, write_reset, write_shrink, write_soft_limit,
                       write_tasks, write_flag_2007, write_tasks_2007)
from .mechanics import HandlerKind
from .request import Request


class CFlags(enum.Flag):
    """cftype flags (include/linux/cgroup-defs.h)."""

    NONE = 0
    ONLY_ON_ROOT = enum.auto()
    NOT_ON_ROOT = enum.auto()
    #: keeps its own name, no "memory." prefix (CFTYPE_NO_PREFIX)
    NO_PREFIX = enum.auto()
    #: writable by everyone (CFTYPE_WORLD_WRITABLE, 3.x ``.mode = S_IWUGO``)
    WORLD_WRITABLE = enum.auto()
    #: only a cgroup.event_control target; may have no read or write handler at all
    EVENT_ONLY = enum.auto()
    #: the write handler acts on the writing process (descriptor numbers in its
    #: table): the caller is the task blocked in write(2), not the opener
    #: (ControlTree.writer); not a kernel flag, the kernel just uses current
    BY_WRITER = enum.auto()


ONLY_ON_ROOT, NOT_ON_ROOT, NO_PREFIX = CFlags.ONLY_ON_ROOT, CFlags.NOT_ON_ROOT, CFlags.NO_PREFIX
BY_WRITER = CFlags.BY_WRITER
U64, TRIGGER, RAW = HandlerKind.U64, HandlerKind.TRIGGER, HandlerKind.RAW
#: the containers framework of 2007 (seed 002) instead of cgroup v1's core files
_2007 = Feature.CONTAINERS_2007
#: which subsystem a file belongs to: its prefix
MEMORY_PREFIX = "memory."
#: a file's mode bits, from its handlers (cgroup_file_mode())
_READ_MODE, _WRITE_MODE, _WORLD_WRITE = 0o444, 0o200, 0o022
#: before 2.6.33 every cgroup file was created with this mode
_OLD_MODE = 0o644
#: PATH_MAX: release_agent's max_write_len
PATH_MAX = 4096


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
    #: what kind of write handler the kernel has (sizes and parsing of the 3.x
    #: cgroupfs differ by kind: files/mechanics.py)
    write_kind: HandlerKind = HandlerKind.STRING
    #: the cftype's max_write_len (0: the default)
    max_write_len: int = 0
    #: the mode a profile forces (pre-2.6.33: 0644 for every file); None: derived
    mode_bits: int | None = None

    @property
    def readable(self) -> bool:
        return self.read_u64 is not None or self.seq_show is not None

    @property
    def writable(self) -> bool:
        return self.write_u64 is not None or self.write is not None

    @property
    def mode(self) -> int:
        """cgroup_file_mode(): derived from the handlers, never written by hand."""
        if self.mode_bits is not None:
            return self.mode_bits
        mode = (_READ_MODE if self.readable else 0) | (_WRITE_MODE if self.writable else 0)
        if CFlags.WORLD_WRITABLE in self.flags:
            mode |= _WORLD_WRITE
        return mode

    def placed_in(self, group_is_root: bool, profile: Profile) -> bool:
        if self.needs & profile.features != self.needs or self.unless & profile.features:
            return False  # (unless: the row is out if the profile has any of them)
        if CFlags.ONLY_ON_ROOT in self.flags and not group_is_root:
            return False
        if CFlags.NOT_ON_ROOT in self.flags and group_is_root:
            return False
        return True


def _counter_files(prefix: str, res: Res, limit: bool = True,
                   limit_unless: Feature = Feature.NONE) -> list[ControlFile]:
    """The usage / max_usage / limit / failcnt quartet of one counter."""
    rows = [
        ControlFile(f"{prefix}usage_in_bytes", res, Attr.USAGE, read_u64=read_counter),
        ControlFile(f"{prefix}max_usage_in_bytes", res, Attr.MAX_USAGE,
                    read_u64=read_counter, write=write_reset, write_kind=TRIGGER),
        ControlFile(f"{prefix}failcnt", res, Attr.FAILCNT,
                    read_u64=read_counter, write=write_reset, write_kind=TRIGGER),
    ]
    if limit:
        rows.append(ControlFile(f"{prefix}limit_in_bytes", res, Attr.LIMIT,
                                read_u64=read_counter, write=write_limit,
                                unless=limit_unless))
    return rows


BASE_FILES = (
    ControlFile("cgroup.procs", seq_show=show_procs, write=write_procs, write_kind=U64),
    ControlFile("cgroup.clone_children",
                read_u64=lambda r: int(r.group.clone_children),
                write_u64=lambda r, v: r.group.set_clone_children(v)),
    ControlFile("cgroup.sane_behavior", seq_show=lambda r: "0\n", flags=ONLY_ON_ROOT),
    ControlFile("tasks", seq_show=show_tasks, write=write_tasks, write_kind=U64,
                unless=_2007),
    ControlFile("notify_on_release",
                read_u64=lambda r: int(r.group.notify_on_release),
                write_u64=lambda r, v: r.group.set_notify_on_release(v), unless=_2007),
    ControlFile("release_agent", seq_show=show_release_agent, write=write_release_agent,
                flags=ONLY_ON_ROOT, max_write_len=PATH_MAX),
    # Seed 002's framework (2.6.22-rc-mm containers): cpuset-style raw handlers.
    ControlFile("tasks", seq_show=show_tasks, write=write_tasks_2007, write_kind=RAW,
                needs=_2007),
    ControlFile("notify_on_release", read_u64=lambda r: int(r.group.notify_on_release),
                write=write_flag_2007, write_kind=RAW, needs=_2007),
)

MEMORY_FILES = (
    *_counter_files("", Res.MEM),
    ControlFile("soft_limit_in_bytes", read_u64=read_soft_limit, write=write_soft_limit),
    ControlFile("stat", seq_show=show_stat),
    ControlFile("force_empty", write=write_force_empty, write_kind=TRIGGER),
    ControlFile("use_hierarchy",
                read_u64=lambda r: int(r.memcg.use_hierarchy),
                write_u64=lambda r, v: r.memcg.set_use_hierarchy(v)),
    # 0222 until the 2025 fix made it 0200
    ControlFile("cgroup.event_control", write=write_event_control,
                flags=NO_PREFIX | CFlags.WORLD_WRITABLE | BY_WRITER,
                unless=Feature.EVENT_CONTROL_OWNER_ONLY),
    ControlFile("cgroup.event_control", write=write_event_control, flags=NO_PREFIX | BY_WRITER,
                needs=Feature.EVENT_CONTROL_OWNER_ONLY),
    ControlFile("swappiness",
                read_u64=lambda r: r.memcg.read_swappiness(),
                write_u64=lambda r, v: r.memcg.set_swappiness(v)),
    ControlFile("move_charge_at_immigrate",
                read_u64=lambda r: r.memcg.move_charge_at_immigrate,
                write_u64=lambda r, v: r.memcg.set_move_charge(v)),
    ControlFile("oom_control", seq_show=show_oom_control,
                write_u64=lambda r, v: r.memcg.set_oom_kill_disable(v)),
    # an event_control target only: no handler at all before 6.x (mode 0000), a
    # read handler that refuses since
    ControlFile("pressure_level", seq_show=show_refused, needs=Feature.PRESSURE_LEVEL_READ),
    ControlFile("pressure_level", flags=CFlags.EVENT_ONLY, unless=Feature.PRESSURE_LEVEL_READ),
    ControlFile("numa_stat", seq_show=show_numa_stat),
    *_counter_files("kmem.", Res.KMEM, limit_unless=Feature.KMEM_2011),
    ControlFile("kmem.slabinfo", seq_show=show_nothing,
                unless=Feature.SLABINFO | Feature.SLABINFO_2_1),
    ControlFile("kmem.slabinfo", seq_show=show_slabinfo, needs=Feature.SLABINFO),
    ControlFile("kmem.slabinfo", seq_show=show_slabinfo_2_1, needs=Feature.SLABINFO_2_1),
    *_counter_files("kmem.tcp.", Res.TCP),
    *_counter_files("memsw.", Res.MEMSW),
    # Seed 001 patch 02 and seed 004: not upstream.
    ControlFile("kmem.independent_kmem_limit",
                read_u64=lambda r: int(r.memcg.independent_kmem_limit),
                write_u64=lambda r, v: r.memcg.set_independent_kmem_limit(v),
                needs=Feature.INDEPENDENT_KMEM),
    ControlFile("shrink_in_bytes", write=write_shrink, flags=NOT_ON_ROOT,
                needs=Feature.SHRINK_USAGE, unless=Feature.NO_CFTYPE_FLAGS),
    # [S1] 2008: cftypes had no placement flags, so it is on the root too
    ControlFile("shrink_in_bytes", write=write_shrink,
                needs=Feature.SHRINK_USAGE | Feature.NO_CFTYPE_FLAGS),
    # Seed 000 (3.2): the switch has its own name and a parent rule; the kmem limit
    # has a read handler only.
    ControlFile("independent_kmem_limit",
                read_u64=lambda r: int(r.memcg.independent_kmem_limit),
                write_u64=lambda r, v: r.memcg.set_independent_kmem_limit_2011(v),
                needs=Feature.KMEM_2011),
    ControlFile("kmem.limit_in_bytes", Res.KMEM, Attr.LIMIT, read_u64=read_counter,
                needs=Feature.KMEM_2011),
    # Seed 002's memory controller: three res_counter files in pages, named by the
    # cftype alone (the framework's two-argument container_add_file() added no
    # prefix: docs/seed-profiles.md [M4]).
    ControlFile("mem_usage", Res.MEM, Attr.USAGE, read_u64=read_counter, flags=NO_PREFIX,
                needs=_2007),
    ControlFile("mem_limit", Res.MEM, Attr.LIMIT, read_u64=read_counter, write=write_limit,
                write_kind=RAW, flags=NO_PREFIX, needs=_2007),
    ControlFile("mem_failcnt", Res.MEM, Attr.FAILCNT, read_u64=read_counter,
                flags=NO_PREFIX, needs=_2007),
)


def _full_name(cf: ControlFile, prefix: str = MEMORY_PREFIX) -> str:
    return cf.name if NO_PREFIX in cf.flags else prefix + cf.name


ALL_FILES = tuple((cf.name, cf) for cf in BASE_FILES) + tuple(
    (_full_name(cf), cf) for cf in MEMORY_FILES
)

_placement_cache: dict[tuple[Profile, bool], dict[str, ControlFile]] = {}


def files_for(profile: Profile, is_root: bool) -> dict[str, ControlFile]:
    """name -> row for every control file of a group, sorted by name: the rows the
    profile's features place, named with the profile's subsystem prefix, with the
    modes its era gave them."""
    key = (profile, is_root)
    files = _placement_cache.get(key)
    if files is None:
        rows = [(cf.name, cf) for cf in BASE_FILES] + [
            (_full_name(cf, profile.prefix), cf) for cf in MEMORY_FILES]
        placed = []
        for name, cf in rows:
            if not cf.placed_in(is_root, profile):
                continue
            if profile.file_set is not None and name not in profile.file_set:
                continue  # an old kernel: fewer files than rows
            if profile.has(Feature.ALL_FILES_0644):
                cf = attrs.evolve(cf, mode_bits=_OLD_MODE)
            placed.append((name, cf))
        files = _placement_cache[key] = dict(sorted(placed))
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
    """kernfs_fop_write_iter() + cgroup_file_write() (3.x: cgroup_file_write() and
    its cgroup_write_X64() / cgroup_write_string()): one write(2) is one command; the
    size is checked before anything else, by the profile's write mechanics and the
    kind of handler the file has."""
    cf = req.cf
    mech = mechanics.of(req.tree.profile)
    kind = HandlerKind.U64 if cf.write_u64 is not None else cf.write_kind
    mech.check_size(kind, len(buf), cf.max_write_len)
    if not req.group.online:
        raise NoDevice("the group was removed")
    buf = parsers.c_string(buf)
    if cf.write_u64 is not None:
        cf.write_u64(req, mech.parse_u64(buf))
    elif cf.write is not None:
        strip = mech.strips_strings and kind is HandlerKind.STRING
        cf.write(req, parsers.strstrip(buf) if strip else buf)
    else:
        raise Invalid("file has no write handler")


__all__ = [
    "Attr", "CFlags", "ControlFile", "Request", "BASE_FILES", "MEMORY_FILES",
    "ALL_FILES", "files_for", "read_file", "write_file", "ONLY_ON_ROOT", "NOT_ON_ROOT",
    "NO_PREFIX", "BY_WRITER",
]
