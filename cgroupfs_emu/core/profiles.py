"""Kernel generations the emulator can impersonate (``-o kernel=NAME``).

A profile is data: a set of :class:`Feature` flags (the control-file table places a
row only when the profile has the features the row needs) and the values of the few
core rules that changed across kernel versions. Handlers are shared; adding a profile
touches no handler.
"""

from __future__ import annotations

import enum

import attrs


class Feature(enum.Flag):
    """What a kernel generation or seed system has beyond the common base."""

    NONE = 0
    #: seed 001 patch 02: memory.kmem.independent_kmem_limit; the kmem limit is
    #: enforced (kmem only) while it is set. Without it (6.6+) the kmem limit is
    #: parsed, then ignored, and reads MAX.
    INDEPENDENT_KMEM = enum.auto()
    #: seed 001 patch 12: memory.kmem.slabinfo lists the group's caches. Without it
    #: (5.9+) the file reads nothing.
    SLABINFO = enum.auto()
    #: seed 004: memory.shrink_in_bytes
    SHRINK_USAGE = enum.auto()
    #: 5.11+: use_hierarchy always reads 1 and only accepts 1. Without it it is a real
    #: per-group flag with the pre-5.11 rules (spec 3.4).
    HIERARCHY_FORCED = enum.auto()
    #: seed 002: the 2007 containers framework: its own tasks / notify_on_release /
    #: release_agent and the memory controller's mem_usage, mem_limit, mem_failcnt
    CONTAINERS_2007 = enum.auto()
    #: seed 000: memory.independent_kmem_limit (with its parent rule) and a read-only
    #: memory.kmem.limit_in_bytes
    KMEM_2011 = enum.auto()
    #: before 3.3 a cftype had no placement flags: every memory file is on the root too
    NO_CFTYPE_FLAGS = enum.auto()


@attrs.frozen
class Profile:
    name: str
    features: Feature
    #: Bits move_charge_at_immigrate accepts: 0 on 6.13+, 3 (anon | file) before.
    move_charge_mask: int
    #: Pages of a new child's kernel data charged to its parent at mkdir (spec 3.1,
    #: ≈5.9+). The real amount depends on the CPU count; a fixed one keeps runs repeatable.
    mkdir_charge_pages: int = 8
    #: Highest swappiness accepted (200 since 5.8).
    max_swappiness: int = 200
    #: memcg ID space: 65535 groups including offline ones, root included.
    max_groups: int = 65535

    # ---- era mechanics (docs/seed-profiles.md, "Era mechanics"; spec 5 and 4)
    #: The file names a group has (root-only files included); None: every row the
    #: features allow. Old kernels had fewer files: this is their list.
    file_set: frozenset | None = None
    #: cftype->mode for every file (before ≈2.6.33 cgroup_add_file() created all
    #: files 0644); None: derived from the handlers.
    file_mode: int | None = None
    #: mode of cgroup.event_control (0222 until the 2025 fix)
    event_control_mode: int = 0o200
    #: "kernfs": a write is at most a page, u64 files use kstrtoull (3.15+).
    #: "cgroupfs": cgroup_write_X64() (stripped, ≥ 64 bytes E2BIG), write_string
    #: (stripped, ≥ 63 bytes E2BIG), triggers of any size (≤ 3.14).
    write_mechanics: str = "kernfs"
    #: the limit parser: "page_counter" (3.19+, rounds down), "res_counter" (≤ 3.18,
    #: rounds up, -1), "res_counter_2008" (no -1), "mem_limit_2007" (seed 002)
    limit_parser: str = "page_counter"
    #: what an unlimited limit reads; None: MAX pages in bytes (3.19+)
    unlimited_reads: int | None = None
    #: the counters' "unlimited", in pages (seed 002: LONG_MAX pages)
    unlimited_pages: int = ((1 << 63) - 1) // 4096
    #: bytes per counter unit in the files (seed 002 shows pages: 1)
    shown_unit: int = 4096
    #: a limit may be set on the root (before ≈2.6.30)
    root_limit: bool = False
    #: use_hierarchy of the root at boot (pre-5.11 kernels: 0; the seeds profile: 1)
    root_use_hierarchy: bool = True
    #: the root reports its own counter (before hierarchies: 2.6.2x), not the sum of
    #: every group's page cache and anon pages
    root_usage_is_counter: bool = False
    #: swappiness and oom_control writes are EINVAL on the root, under a hierarchical
    #: parent, or in a hierarchical group with children (≤ 3.15)
    restricted_hierarchy_writes: bool = False
    #: lowering a limit below usage reclaims (EBUSY if it cannot); seed 002 stores it
    limit_write_reclaims: bool = True
    #: seed 002's res_counter_charge_locked(): usage <= limit - val in unsigned long,
    #: charged one page at a time
    res_counter_2007: bool = False
    #: seed 002 patch 7: after the OOM kill the charge still fails
    oom_kill_fails_charge: bool = False
    #: rmdir is EBUSY while the group still holds charges of this counter ("memory":
    #: seed 002, every charged page pins the container; "kmem": seed 000's caution)
    rmdir_busy_while_charged: str = ""
    #: force_empty: "reclaim" (3.16+), "busy_then_reclaim" (≤ 3.15: EBUSY with tasks or
    #: children), "drop" (2.6.26: EBUSY with tasks and usage, else charges dropped)
    force_empty_rule: str = "reclaim"
    #: memory.stat layout: "6.18", "3.x", "2.6.26"
    stat_format: str = "6.18"
    #: memory.oom_control has the oom_kill line (4.13+)
    oom_kill_line: bool = True
    #: memory.numa_stat has the hierarchical_ lines
    numa_stat_hierarchical: bool = True
    #: how kernel memory is charged: "ignored" (v1 today: kmem and the user counters,
    #: the kmem limit parsed and ignored), "independent" (seed 001), "reported" (seed
    #: 000: kmem counter only, added to usage unless independent), "capped" (seed 003
    #: / 3.8: kmem counter first, then the user counters, once activated)
    kmem_design: str = "ignored"
    #: kmem charges stay with a removed group until freed (seed 003 patch 8)
    kmem_outlives_group: bool = False
    #: Thread stacks are kernel memory (seed 003; mainline 3.8+ with kmem accounting):
    #: every task charges THREAD_SIZE of kmem while it lives (issue 13's name).
    charges_thread_stacks: bool = False
    #: the client stock a socket client may hold (0: no batching before 2.6.33)
    stock_batch: int = 64

    @property
    def hierarchy_forced(self) -> bool:
        return Feature.HIERARCHY_FORCED in self.features

    @property
    def independent_kmem(self) -> bool:
        return Feature.INDEPENDENT_KMEM in self.features


#: Linux 6.18, as the recorded transcripts show it: hierarchy forced on, move_charge
#: only 0, kmem limit ignored, slabinfo empty.
LINUX_6 = Profile(
    name="linux-6",
    features=Feature.HIERARCHY_FORCED,
    move_charge_mask=0,
)

#: The product the seed patches describe, on linux-6 mechanics: per-group
#: use_hierarchy, move_charge 0..3, independent kmem limit, per-group slabinfo,
#: memory.shrink_in_bytes.
SEEDS = Profile(
    name="seeds",
    features=Feature.INDEPENDENT_KMEM | Feature.SLABINFO | Feature.SHRINK_USAGE,
    move_charge_mask=3,
    kmem_design="independent",
)

# ---------------------------------------------------------------- the seed systems
# docs/seed-profiles.md is their contract; each rule there has a tag the tests name.

#: cgroup v1 core files of 3.x (no cgroup.sane_behavior before 3.10)
_CGROUP_3X = ("tasks", "cgroup.procs", "notify_on_release", "cgroup.clone_children",
              "cgroup.event_control", "release_agent")
#: the 3.2 memory controller's files
_MEMCG_32 = tuple("memory." + n for n in (
    "usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes", "soft_limit_in_bytes",
    "failcnt", "stat", "force_empty", "use_hierarchy", "swappiness",
    "move_charge_at_immigrate", "oom_control", "numa_stat",
    "memsw.usage_in_bytes", "memsw.max_usage_in_bytes", "memsw.limit_in_bytes",
    "memsw.failcnt"))
#: 3.3's kmem.tcp files (tcp_memcontrol.c)
_TCP_33 = tuple("memory.kmem.tcp." + n for n in (
    "limit_in_bytes", "usage_in_bytes", "failcnt", "max_usage_in_bytes"))
#: what 3.x kernels had in common: res_counter in bytes rounded up, LLONG_MAX for
#: unlimited, cgroupfs write mechanics, per-group use_hierarchy (root 0), the ≤ 3.15
#: swappiness / oom_control restrictions, force_empty EBUSY with tasks or children
_ERA_3X = dict(
    move_charge_mask=3, mkdir_charge_pages=0, max_swappiness=100,
    event_control_mode=0o222, write_mechanics="cgroupfs", limit_parser="res_counter",
    unlimited_reads=(1 << 63) - 1, root_use_hierarchy=False,
    restricted_hierarchy_writes=True, force_empty_rule="busy_then_reclaim",
    stat_format="3.x", oom_kill_line=False, numa_stat_hierarchical=False,
)

#: Seed 002, Balbir Singh 2007: the memory controller on the containers framework.
MEMCTL_2007 = Profile(
    name="memctl-2007",
    features=Feature.CONTAINERS_2007,
    move_charge_mask=0, mkdir_charge_pages=0,
    file_set=frozenset(("mem_usage", "mem_limit", "mem_failcnt", "tasks",
                        "notify_on_release", "release_agent")),
    file_mode=0o644, write_mechanics="cgroupfs", limit_parser="mem_limit_2007",
    unlimited_pages=(1 << 63) - 1, shown_unit=1, root_limit=True,
    root_use_hierarchy=False, root_usage_is_counter=True, limit_write_reclaims=False,
    res_counter_2007=True, oom_kill_fails_charge=True, rmdir_busy_while_charged="memory",
    stock_batch=0,
)

#: Seed 004, KAMEZAWA Hiroyuki 2008: memory.shrink_in_bytes on the memcg of mmotm
#: 2008-07 (2.6.26 files + 2.6.27's reclaim on limit change).
SHRINK_2008 = Profile(
    name="shrink-2008",
    features=Feature.SHRINK_USAGE | Feature.NO_CFTYPE_FLAGS,
    move_charge_mask=0, mkdir_charge_pages=0,
    file_set=frozenset(("tasks", "notify_on_release", "release_agent") + tuple(
        "memory." + n for n in ("usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes",
                                "failcnt", "force_empty", "stat", "shrink_in_bytes"))),
    file_mode=0o644, write_mechanics="cgroupfs", limit_parser="res_counter_2008",
    unlimited_reads=(1 << 63) - 1, root_limit=True, root_use_hierarchy=False,
    root_usage_is_counter=True, force_empty_rule="drop", stat_format="2.6.26",
    stock_batch=0,
)

#: Seed 000, Glauber Costa 2011: memory.independent_kmem_limit, on 3.2.
KMEM_2011 = Profile(
    name="kmem-2011",
    features=Feature.KMEM_2011,
    file_set=frozenset(_CGROUP_3X + _MEMCG_32 + (
        "memory.independent_kmem_limit", "memory.kmem.usage_in_bytes",
        "memory.kmem.limit_in_bytes")),
    kmem_design="reported", rmdir_busy_while_charged="kmem",
    **_ERA_3X,
)

#: Seed 001, Suleiman Souhlal 2012: per-group slab accounting, on 3.3.
KMEM_SLAB_2012 = Profile(
    name="kmem-slab-2012",
    features=Feature.INDEPENDENT_KMEM | Feature.SLABINFO,
    file_set=frozenset(_CGROUP_3X + _MEMCG_32 + _TCP_33 + (
        "memory.kmem.independent_kmem_limit", "memory.kmem.limit_in_bytes",
        "memory.kmem.usage_in_bytes", "memory.kmem.slabinfo")),
    kmem_design="independent",
    **_ERA_3X,
)

#: Seed 003, Glauber Costa 2012: the kmem controller as merged in 3.8.
KMEM_2012 = Profile(
    name="kmem-2012",
    features=Feature.NONE,
    file_set=frozenset(_CGROUP_3X + _MEMCG_32 + _TCP_33 + (
        "memory.kmem.limit_in_bytes", "memory.kmem.usage_in_bytes",
        "memory.kmem.max_usage_in_bytes", "memory.kmem.failcnt")),
    kmem_design="capped", kmem_outlives_group=True, charges_thread_stacks=True,
    **_ERA_3X,
)

PROFILES = {p.name: p for p in (SEEDS, LINUX_6, MEMCTL_2007, SHRINK_2008, KMEM_2011,
                                KMEM_SLAB_2012, KMEM_2012)}
DEFAULT_PROFILE = SEEDS


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown kernel profile {name!r} (known: {', '.join(sorted(PROFILES))})"
        ) from None
