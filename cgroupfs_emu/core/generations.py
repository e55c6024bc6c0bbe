"""The four mainline kernel generations as data (``-o kernel=linux-3.10`` ... ``linux-6.18``).

Everything that differs between the kernels people ran cgroup v1 on is a value here;
the handlers read these values and never test a version number. The facts and their
sources (file, function, tag) are in docs/kernel-generations.md; a value this module
could not settle from source says so there and here.

This module is pure data: no I/O, no imports from the file table.
"""

from __future__ import annotations

import enum

import attrs

from ..dirorder import DcacheOrder, KernfsOrder, NameHash

PAGE_SIZE = 4096
LLONG_MAX = (1 << 63) - 1
#: PAGE_COUNTER_MAX in bytes: (LONG_MAX / PAGE_SIZE) * PAGE_SIZE
PAGE_COUNTER_MAX_BYTES = (LLONG_MAX // PAGE_SIZE) * PAGE_SIZE


class CounterKind(enum.Enum):
    """How a kernel counts and how its limit files parse and print.

    * ``RES_COUNTER`` (<= 3.18, kernel/res_counter.c): bytes. A limit write goes through
      res_counter_memparse_write_strategy(): ``-`` followed by the decimal number 1 is
      "unlimited" (RESOURCE_MAX = LLONG_MAX), anything else memparse()d and rounded
      **up** to a page (``PAGE_ALIGN``); a value whose page alignment overflows becomes
      unlimited. The value is stored and printed as those bytes.
    * ``PAGE_COUNTER`` (3.19+, mm/page_counter.c): pages. page_counter_memparse():
      exact ``-1`` is PAGE_COUNTER_MAX, bytes are rounded **down** to pages and clamped
      to PAGE_COUNTER_MAX; printed as pages * PAGE_SIZE.
    """

    RES_COUNTER = "res_counter"
    PAGE_COUNTER = "page_counter"

    @property
    def unlimited(self) -> int:
        """What an unlimited limit reads."""
        return LLONG_MAX if self is CounterKind.RES_COUNTER else PAGE_COUNTER_MAX_BYTES


class KmemDesign(enum.Enum):
    """Where kernel memory is charged and what memory.kmem.limit_in_bytes does."""

    #: 3.8-4.5: kmem is accounted only in groups whose accounting was activated by a
    #: first limit write (memcg_update_kmem_limit(), EBUSY if the group already has
    #: tasks or hierarchical children); children of an active group are active
    #: (memcg_propagate_kmem()). A kmem charge hits the kmem counter first
    #: (memcg_charge_kmem(): ENOMEM at its limit, no reclaim), then memory (+memsw).
    ACTIVATED_BY_LIMIT = "activated"
    #: 4.6-5.15: always accounted. memcg_kmem_charge_memcg() / __memcg_kmem_charge():
    #: memory (+memsw) first through try_charge() (reclaim, OOM), then the kmem counter
    #: with page_counter_try_charge(): ENOMEM at the kmem limit, no reclaim.
    ENFORCED = "enforced"
    #: 6.6+ (and 6.1.56+, 6.5.6+): the kmem counter is charged unconditionally
    #: (memcg1_account_kmem()); the limit file parses, then ignores, and reads MAX.
    IGNORED = "ignored"
    #: seed 001: enforced only while memory.kmem.independent_kmem_limit is 1.
    INDEPENDENT = "independent"


class SlabinfoFormat(enum.Enum):
    #: 3.x-5.8: the group's own slab caches in /proc/slabinfo's 2.1 format (header
    #: only printed when the group has a cache).
    SLABINFO_2_1 = "slabinfo-2.1"
    #: 5.9+: memcg_slab_show() is a stub; the file reads nothing.
    EMPTY = "empty"
    #: seed 001 patch 12
    SEED001 = "seed001"


class WriteMechanics(enum.Enum):
    """How one write(2) reaches a handler (spec 1.3 and 5)."""

    #: 3.14+ kernfs: a write above PAGE_SIZE is E2BIG; u64 files use kstrtoull() on the
    #: raw buffer (one trailing newline, ERANGE on overflow); every handler gets a
    #: NUL-terminated copy.
    KERNFS = "kernfs"
    #: 3.10 cgroupfs (kernel/cgroup.c cgroup_file_write()): u64 files copy into a
    #: 64-byte buffer (0 bytes EINVAL, >= 64 bytes E2BIG), strstrip() it and parse
    #: with simple_strtoull(base 0) (no sign, wraps silently, empty = 0);
    #: write_string files take at most 62 bytes (>= 63 E2BIG, release_agent: PATH_MAX)
    #: and are strstrip()ped; trigger files take any size.
    CGROUPFS_3 = "cgroupfs-3"


@attrs.frozen
class Generation:
    """One mainline kernel, as the emulator impersonates it."""

    name: str
    #: the upstream tag the values were read from
    tag: str
    #: which distributions shipped a kernel of this line (README)
    distributions: str
    counter: CounterKind
    write_mechanics: WriteMechanics
    dir_order: object
    kmem: KmemDesign
    slabinfo: SlabinfoFormat
    #: memory.stat keys before hierarchical_*_limit, in order; the first
    #: ``total_keys`` of them are repeated as total_<key> after the limits
    stat_keys: tuple[str, ...]
    #: keys counted in events, printed as they are (not * PAGE_SIZE)
    event_keys: frozenset[str]
    #: oom_control has an "oom_kill N" line (4.13+)
    oom_kill_line: bool
    #: highest memory.swappiness (100 before 5.8, 200 after)
    max_swappiness: int
    #: <= 3.15 (mem_cgroup_swappiness_write(), mem_cgroup_oom_control_write()): EINVAL
    #: on the root and when the parent is hierarchical or the group is hierarchical
    #: with children
    legacy_hierarchy_writes: bool
    #: 5.11+: use_hierarchy is always 1
    hierarchy_forced: bool
    #: use_hierarchy of the root at mount (kernels: 0, systemd sets 1 at boot)
    root_use_hierarchy: bool
    #: <= 3.15: force_empty is EBUSY while the group has tasks or children
    force_empty_busy: bool
    #: bits move_charge_at_immigrate accepts
    move_charge_mask: int
    #: mode of cgroup.event_control: 0222 until the 2025 fix, 0200 after
    event_control_mode: int
    #: memory.pressure_level has a (failing) read handler, so 0444; before, no handler
    #: at all, so mode 0000
    pressure_level_readable: bool
    #: release_agent needs CAP_SYS_ADMIN (5.17+, CVE-2022-0492)
    release_agent_needs_privilege: bool
    #: mkdir refuses names containing "\n" with EINVAL (cgroup_mkdir(), kernfs era)
    newline_in_name_is_einval: bool
    #: longest group name; None = no check (kernfs). 3.10's cgroup_lookup() refuses
    #: longer than NAME_MAX with ENAMETOOLONG.
    name_max: int | None
    #: pages charged to the parent at mkdir: fixed + per_cpu * possible CPUs
    mkdir_charge_fixed: int
    mkdir_charge_per_cpu: int


#: 3.10: the five stats of mem_cgroup_stat_names[] (swap only with swap accounting),
#: the four events, the five LRU lists.
_STAT_3_10 = ("cache", "rss", "rss_huge", "mapped_file", "swap",
              "pgpgin", "pgpgout", "pgfault", "pgmajfault",
              "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
#: 4.19 and 5.10: memcg1_stat_names[]
_STAT_4_19 = ("cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap",
              "pgpgin", "pgpgout", "pgfault", "pgmajfault",
              "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
#: 6.18, as recorded in the golden transcripts
_STAT_6_18 = ("cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
              "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
              "pgpgin", "pgpgout", "pgfault", "pgmajfault",
              "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
_EVENTS = frozenset(("pgpgin", "pgpgout", "pgfault", "pgmajfault"))

LINUX_3_10 = Generation(
    name="linux-3.10", tag="v3.10",
    distributions="RHEL 7 / CentOS 7 (3.10.0-*.el7, with many backports), Debian 7 backports",
    counter=CounterKind.RES_COUNTER,
    write_mechanics=WriteMechanics.CGROUPFS_3,
    dir_order=DcacheOrder(),
    kmem=KmemDesign.ACTIVATED_BY_LIMIT,
    slabinfo=SlabinfoFormat.SLABINFO_2_1,
    stat_keys=_STAT_3_10, event_keys=_EVENTS,
    oom_kill_line=False,
    max_swappiness=100,
    legacy_hierarchy_writes=True,
    hierarchy_forced=False, root_use_hierarchy=False,
    force_empty_busy=True,
    move_charge_mask=3,
    event_control_mode=0o222,
    pressure_level_readable=False,
    release_agent_needs_privilege=False,
    newline_in_name_is_einval=False,
    name_max=255,
    mkdir_charge_fixed=0, mkdir_charge_per_cpu=0,
)

LINUX_4_19 = Generation(
    name="linux-4.19", tag="v4.19",
    distributions="Debian 10 (4.19); the 4.x line also: RHEL 8 (4.18), Ubuntu 18.04 (4.15)",
    counter=CounterKind.PAGE_COUNTER,
    write_mechanics=WriteMechanics.KERNFS,
    dir_order=KernfsOrder(NameHash.HASH_LONG),
    kmem=KmemDesign.ENFORCED,
    slabinfo=SlabinfoFormat.SLABINFO_2_1,
    stat_keys=_STAT_4_19, event_keys=_EVENTS,
    oom_kill_line=True,
    max_swappiness=100,
    legacy_hierarchy_writes=False,
    hierarchy_forced=False, root_use_hierarchy=False,
    force_empty_busy=False,
    move_charge_mask=3,
    event_control_mode=0o222,
    pressure_level_readable=False,
    release_agent_needs_privilege=False,
    newline_in_name_is_einval=True,
    name_max=None,
    mkdir_charge_fixed=0, mkdir_charge_per_cpu=0,
)

LINUX_5_10 = Generation(
    name="linux-5.10", tag="v5.10",
    distributions="Debian 11 (5.10); the 5.x line also: Ubuntu 20.04 (5.4, HWE 5.15)",
    counter=CounterKind.PAGE_COUNTER,
    write_mechanics=WriteMechanics.KERNFS,
    dir_order=KernfsOrder(NameHash.HASH_LONG),
    kmem=KmemDesign.ENFORCED,
    slabinfo=SlabinfoFormat.EMPTY,
    stat_keys=_STAT_4_19, event_keys=_EVENTS,
    oom_kill_line=True,
    max_swappiness=200,
    legacy_hierarchy_writes=False,
    hierarchy_forced=False, root_use_hierarchy=False,
    force_empty_busy=False,
    move_charge_mask=3,
    event_control_mode=0o222,
    pressure_level_readable=False,
    release_agent_needs_privilege=False,
    newline_in_name_is_einval=True,
    name_max=None,
    mkdir_charge_fixed=1, mkdir_charge_per_cpu=1,
)

LINUX_6_18 = Generation(
    name="linux-6.18", tag="v6.18",
    distributions="current kernels (the golden transcripts were recorded on 6.18); "
                  "cgroup v1 needs CONFIG_MEMCG_V1 since 6.11",
    counter=CounterKind.PAGE_COUNTER,
    write_mechanics=WriteMechanics.KERNFS,
    dir_order=KernfsOrder(NameHash.HASH_LONG),
    kmem=KmemDesign.IGNORED,
    slabinfo=SlabinfoFormat.EMPTY,
    stat_keys=_STAT_6_18,
    event_keys=_EVENTS | {"workingset_refault_anon", "workingset_refault_file"},
    oom_kill_line=True,
    max_swappiness=200,
    legacy_hierarchy_writes=False,
    hierarchy_forced=True, root_use_hierarchy=True,
    force_empty_busy=False,
    move_charge_mask=0,
    event_control_mode=0o200,
    pressure_level_readable=True,
    release_agent_needs_privilege=True,
    newline_in_name_is_einval=True,
    name_max=None,
    mkdir_charge_fixed=2, mkdir_charge_per_cpu=1,
)

GENERATIONS = {g.name: g for g in (LINUX_3_10, LINUX_4_19, LINUX_5_10, LINUX_6_18)}
#: other names a user may give
ALIASES = {"linux-6": "linux-6.18"}
