"""The four mainline kernel generations as profiles (``-o kernel=linux-3.10`` ...
``linux-6.18``).

Every value here is a fact read in the kernel source at the tag named, or a choice
recorded as such; docs/kernel-generations.md gives the file and function for each,
and lists the choices. Nothing here is code: the handlers read these values.
"""

from __future__ import annotations

from ..dirorder import DcacheOrder, KernfsOrder, NameHash
from .profiles import (STAT_KEYS_6_18, CounterKind, Feature, KmemDesign, Leftovers, Profile,
                       WriteMechanics)

#: 3.10: mem_cgroup_stat_names[] (swap with swap accounting), the events, the LRUs
STAT_KEYS_3_10 = (
    "cache", "rss", "rss_huge", "mapped_file", "swap",
    "pgpgin", "pgpgout", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
)
#: 4.19 and 5.10: memcg1_stat_names[]
STAT_KEYS_4_19 = (
    "cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback", "swap",
    "pgpgin", "pgpgout", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
)

#: 3.10 creates a group's files in this order (cgroup_populate_dir(): the core
#: files[] of kernel/cgroup.c, then the memory controller's cftype sets in
#: registration order: mem_cgroup_files[], memsw_cgroup_files[] from mem_cgroup_init(),
#: then tcp_files[] of net/ipv4/tcp_memcontrol.c); dcache_readdir() lists it newest
#: first.
CREATION_ORDER_3_10 = (
    "tasks", "cgroup.procs", "notify_on_release", "cgroup.event_control",
    "cgroup.clone_children", "cgroup.sane_behavior", "release_agent",
    "memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes",
    "memory.soft_limit_in_bytes", "memory.failcnt", "memory.stat", "memory.force_empty",
    "memory.use_hierarchy", "memory.swappiness", "memory.move_charge_at_immigrate",
    "memory.oom_control", "memory.pressure_level", "memory.numa_stat",
    "memory.kmem.limit_in_bytes", "memory.kmem.usage_in_bytes", "memory.kmem.failcnt",
    "memory.kmem.max_usage_in_bytes", "memory.kmem.slabinfo",
    "memory.memsw.usage_in_bytes", "memory.memsw.max_usage_in_bytes",
    "memory.memsw.limit_in_bytes", "memory.memsw.failcnt",
    "memory.kmem.tcp.limit_in_bytes", "memory.kmem.tcp.usage_in_bytes",
    "memory.kmem.tcp.failcnt", "memory.kmem.tcp.max_usage_in_bytes",
)

#: RHEL 7 / CentOS 7 / Oracle Linux 7 (3.10.0-*.el7, with many backports)
LINUX_3_10 = Profile(
    name="linux-3.10",
    features=Feature.SLABINFO_2_1 | Feature.LEGACY_HIERARCHY_WRITES | Feature.FORCE_EMPTY_BUSY,
    move_charge_mask=3,
    max_swappiness=100,
    counter=CounterKind.RES_COUNTER,
    mechanics=WriteMechanics.CGROUPFS,
    kmem=KmemDesign.ACTIVATED_BY_LIMIT,
    # seed 003 as merged in 3.8: alloc_thread_info_node() with __GFP_KMEMCG, then
    # account_kernel_stack()/memcg_kmem_charge() for vmapped stacks (4.9+)
    charges_thread_stacks=True,
    stat_keys=STAT_KEYS_3_10,
    memparse_suffixes=b"kKmMgG",
    root_use_hierarchy=False,
    mkdir_charge_fixed=0, mkdir_charge_per_cpu=0,
    name_max=255,
    dir_order=DcacheOrder(),
    file_creation_order=CREATION_ORDER_3_10,
    force_empty_leftovers=Leftovers.TO_PARENT,
)

#: Debian 10; the 4.x generation of RHEL 8 (4.18) and Ubuntu 18.04 (4.15)
LINUX_4_19 = Profile(
    name="linux-4.19",
    features=Feature.SLABINFO_2_1 | Feature.OOM_KILL_LINE | Feature.NEWLINE_NAMES_EINVAL,
    move_charge_mask=3,
    max_swappiness=100,
    kmem=KmemDesign.ENFORCED,
    # seed 003 as merged in 3.8: alloc_thread_info_node() with __GFP_KMEMCG, then
    # account_kernel_stack()/memcg_kmem_charge() for vmapped stacks (4.9+)
    charges_thread_stacks=True,
    stat_keys=STAT_KEYS_4_19,
    root_use_hierarchy=False,
    mkdir_charge_fixed=0, mkdir_charge_per_cpu=0,
    dir_order=KernfsOrder(NameHash.HASH_LONG),
)

#: Debian 11; the 5.x generation of Ubuntu 20.04 (5.4)
LINUX_5_10 = Profile(
    name="linux-5.10",
    features=Feature.OOM_KILL_LINE | Feature.NEWLINE_NAMES_EINVAL,
    move_charge_mask=3,
    max_swappiness=200,
    kmem=KmemDesign.ENFORCED,
    # seed 003 as merged in 3.8: alloc_thread_info_node() with __GFP_KMEMCG, then
    # account_kernel_stack()/memcg_kmem_charge() for vmapped stacks (4.9+)
    charges_thread_stacks=True,
    stat_keys=STAT_KEYS_4_19,
    root_use_hierarchy=False,
    mkdir_charge_fixed=1, mkdir_charge_per_cpu=1,
    dir_order=KernfsOrder(NameHash.HASH_LONG),
)

#: current kernels, as the golden transcripts recorded 6.18
LINUX_6_18 = Profile(
    name="linux-6.18",
    features=(Feature.HIERARCHY_FORCED | Feature.OOM_KILL_LINE | Feature.NEWLINE_NAMES_EINVAL
              | Feature.RELEASE_AGENT_CAP | Feature.PRESSURE_LEVEL_READ
              | Feature.EVENT_CONTROL_OWNER_ONLY),
    move_charge_mask=0,
    kmem=KmemDesign.IGNORED,
    stat_keys=STAT_KEYS_6_18,
    root_use_hierarchy=True,
    mkdir_charge_fixed=2, mkdir_charge_per_cpu=1,
    dir_order=KernfsOrder(NameHash.HASH_LONG),
)
