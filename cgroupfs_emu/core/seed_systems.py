"""The five seed systems as profiles (``-o kernel=memctl-2007`` ... ``kmem-2012``).

Each patch series the product grew from, on the mechanics of the kernel it was
written against. docs/seed-profiles.md is the contract: every rule there carries a
tag ([M5], [S3], ...) that traces to spec section 5 and the seed patch, and that the
tests (tests/test_seed_profiles.py) name. Nothing here is code: the handlers read
these values, as they read the mainline generations' (generations.py).
"""

from __future__ import annotations

from ..dirorder import DcacheOrder
from .profiles import CounterKind, Feature, KmemDesign, Leftovers, Profile, WriteMechanics

#: cgroup v1 core files of 3.x (no cgroup.sane_behavior before 3.10)
_CGROUP_3X = ("tasks", "cgroup.procs", "notify_on_release", "cgroup.clone_children",
              "cgroup.event_control", "release_agent")
#: the 3.2 memory controller's files (mem_cgroup_files[], memsw_cgroup_files[])
_MEMCG_3_2 = tuple("memory." + n for n in (
    "usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes", "soft_limit_in_bytes",
    "failcnt", "stat", "force_empty", "use_hierarchy", "swappiness",
    "move_charge_at_immigrate", "oom_control", "numa_stat",
    "memsw.usage_in_bytes", "memsw.max_usage_in_bytes", "memsw.limit_in_bytes",
    "memsw.failcnt"))
#: 3.3's tcp_files[] (net/ipv4/tcp_memcontrol.c)
_TCP_3_3 = tuple("memory.kmem.tcp." + n for n in (
    "limit_in_bytes", "usage_in_bytes", "failcnt", "max_usage_in_bytes"))
#: 3.2/3.3's memcg_stat_strings[] (mem_control_stat_show(), swap accounting on)
STAT_KEYS_3_2 = ("cache", "rss", "mapped_file", "pgpgin", "pgpgout", "swap", "pgfault",
                 "pgmajfault", "inactive_anon", "active_anon", "inactive_file",
                 "active_file", "unevictable")
#: 3.8's mem_cgroup_stat_names[] then the events and the LRUs (3.10's order without
#: rss_huge, which came with 3.10; a choice, see docs/seed-profiles.md)
STAT_KEYS_3_8 = ("cache", "rss", "mapped_file", "swap", "pgpgin", "pgpgout", "pgfault",
                 "pgmajfault", "inactive_anon", "active_anon", "inactive_file",
                 "active_file", "unevictable")

#: what the cgroupfs-era kernels of the seeds share
_OLD = dict(
    mechanics=WriteMechanics.CGROUPFS, memparse_suffixes=b"kKmMgG",
    root_use_hierarchy=False, mkdir_charge_fixed=0, mkdir_charge_per_cpu=0,
    name_max=255, dir_order=DcacheOrder(),
)
#: 3.x: res_counter in bytes, per-group use_hierarchy, the ≤ 3.15 swappiness /
#: oom_control restrictions, force_empty EBUSY with tasks or children, 0222
#: cgroup.event_control (no EVENT_CONTROL_OWNER_ONLY), two oom_control lines
_3X = Feature.LEGACY_HIERARCHY_WRITES | Feature.FORCE_EMPTY_BUSY

#: Seed 002, Balbir Singh 2007: the memory controller on the containers framework.
MEMCTL_2007 = Profile(
    name="memctl-2007",
    features=Feature.CONTAINERS_2007 | Feature.ALL_FILES_0644,
    move_charge_mask=0,
    counter=CounterKind.RES_COUNTER_2007,
    file_set=frozenset(("mem_usage", "mem_limit", "mem_failcnt", "tasks",
                        "notify_on_release", "release_agent")),
    minus_one_unlimited=False, root_limit=True, root_usage_is_counter=True,
    limit_write_reclaims=False, oom_kill_fails_charge=True,
    rmdir_busy_while_charged="memory", stock_batch=0,
    **_OLD,
)

#: Seed 004, KAMEZAWA Hiroyuki 2008: memory.shrink_in_bytes on the memcg of mmotm
#: 2008-07 (2.6.26's files plus 2.6.27's reclaim when a limit is lowered).
SHRINK_2008 = Profile(
    name="shrink-2008",
    features=(Feature.SHRINK_USAGE | Feature.NO_CFTYPE_FLAGS | Feature.ALL_FILES_0644
              | Feature.STAT_2_6_26),
    move_charge_mask=0,
    counter=CounterKind.RES_COUNTER,
    file_set=frozenset(("tasks", "notify_on_release", "release_agent") + tuple(
        "memory." + n for n in ("usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes",
                                "failcnt", "force_empty", "stat", "shrink_in_bytes"))),
    minus_one_unlimited=False, root_limit=True, root_usage_is_counter=True,
    force_empty_drops=True, stock_batch=0,
    **_OLD,
)

#: Seed 000, Glauber Costa 2011: memory.independent_kmem_limit, on 3.2.
KMEM_2011 = Profile(
    name="kmem-2011",
    features=_3X | Feature.KMEM_2011 | Feature.NUMA_STAT_LOCAL_ONLY,
    move_charge_mask=3, max_swappiness=100,
    counter=CounterKind.RES_COUNTER, kmem=KmemDesign.REPORTED, stat_keys=STAT_KEYS_3_2,
    file_set=frozenset(_CGROUP_3X + _MEMCG_3_2 + (
        "memory.independent_kmem_limit", "memory.kmem.usage_in_bytes",
        "memory.kmem.limit_in_bytes")),
    rmdir_busy_while_charged="kmem", force_empty_leftovers=Leftovers.CHARGE_PARENT,
    **_OLD,
)

#: Seed 001, Suleiman Souhlal 2012: per-group slab accounting, on 3.3.
KMEM_SLAB_2012 = Profile(
    name="kmem-slab-2012",
    features=_3X | Feature.INDEPENDENT_KMEM | Feature.SLABINFO | Feature.NUMA_STAT_LOCAL_ONLY,
    move_charge_mask=3, max_swappiness=100,
    counter=CounterKind.RES_COUNTER, kmem=KmemDesign.INDEPENDENT, stat_keys=STAT_KEYS_3_2,
    file_set=frozenset(_CGROUP_3X + _MEMCG_3_2 + _TCP_3_3 + (
        "memory.kmem.independent_kmem_limit", "memory.kmem.limit_in_bytes",
        "memory.kmem.usage_in_bytes", "memory.kmem.slabinfo")),
    kmem_chain_skips_root=True, force_empty_leftovers=Leftovers.CHARGE_PARENT,
    **_OLD,
)

#: Seed 003, Glauber Costa 2012: the kmem controller as merged in 3.8.
KMEM_2012 = Profile(
    name="kmem-2012",
    features=_3X,
    move_charge_mask=3, max_swappiness=100,
    counter=CounterKind.RES_COUNTER, kmem=KmemDesign.ACTIVATED_BY_LIMIT,
    stat_keys=STAT_KEYS_3_8,
    file_set=frozenset(_CGROUP_3X + _MEMCG_3_2 + _TCP_3_3 + (
        "memory.kmem.limit_in_bytes", "memory.kmem.usage_in_bytes",
        "memory.kmem.max_usage_in_bytes", "memory.kmem.failcnt")),
    kmem_outlives_group=True, charges_thread_stacks=True,
    force_empty_leftovers=Leftovers.TO_PARENT,
    **_OLD,
)
