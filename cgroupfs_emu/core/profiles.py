"""Kernel generations and seed systems the emulator can impersonate (``-o kernel=NAME``).

A profile is data, and only data:

* :class:`Feature` flags: the control-file table places a row only in profiles that
  have the features the row needs (or lack those it must not have), and the few rule
  variants that are a yes/no read a flag;
* the values of the rules that changed: the counter kind (res_counter bytes or
  page_counter pages) and so the limit parser, rounding and maximum; the write
  mechanics (kernfs or the older cgroupfs); the kmem design; the directory order;
  memory.stat keys; swappiness range; move_charge bits; the mkdir charge; the name of
  the subsystem's file prefix.

Handlers are shared. Adding a generation is one more :class:`Profile` value (see
generations.py for the four mainline kernels) plus, at most, a new rule variant: a
flag or an enum member the handlers already branch on.
"""

from __future__ import annotations

import enum

import attrs

from ..dirorder import KernfsOrder, NameHash
from ..units import PAGE_SIZE, S64_MAX as LLONG_MAX


class Feature(enum.Flag):
    """What a kernel generation or seed system has beyond the common base."""

    NONE = 0
    #: seed 001 patch 02: memory.kmem.independent_kmem_limit; the kmem limit is
    #: enforced (kmem only) while it is set.
    INDEPENDENT_KMEM = enum.auto()
    #: seed 001 patch 12: memory.kmem.slabinfo lists the group's caches in the
    #: patch's format.
    SLABINFO = enum.auto()
    #: 3.x-5.8: memory.kmem.slabinfo lists the group's caches in /proc/slabinfo's 2.1
    #: format. With neither SLABINFO flag (5.9+) the file reads nothing.
    SLABINFO_2_1 = enum.auto()
    #: seed 004: memory.shrink_in_bytes
    SHRINK_USAGE = enum.auto()
    #: 5.11+: use_hierarchy always reads 1 and only accepts 1. Without it it is a real
    #: per-group flag with the pre-5.11 rules (mem_cgroup_hierarchy_write() before 5.11).
    HIERARCHY_FORCED = enum.auto()
    #: 4.13+: memory.oom_control has an "oom_kill N" line
    OOM_KILL_LINE = enum.auto()
    #: <= 3.15 (mem_cgroup_swappiness_write(), mem_cgroup_oom_control_write()): both
    #: are EINVAL when the parent is hierarchical or the group is hierarchical with
    #: children; swappiness is EINVAL on the root
    LEGACY_HIERARCHY_WRITES = enum.auto()
    #: <= 3.15 (mem_cgroup_force_empty()): EBUSY while the group has tasks or children
    FORCE_EMPTY_BUSY = enum.auto()
    #: 6.x: memory.pressure_level has a read handler that fails (mode 0444); before,
    #: it had no handler at all (mode 0000)
    PRESSURE_LEVEL_READ = enum.auto()
    #: the 2025 fix: cgroup.event_control is 0200, not world-writable 0222
    EVENT_CONTROL_OWNER_ONLY = enum.auto()
    #: 5.17+ (CVE-2022-0492): writing release_agent needs CAP_SYS_ADMIN
    RELEASE_AGENT_CAP = enum.auto()
    #: kernfs-era cgroup_mkdir(): a name containing "\n" is EINVAL
    NEWLINE_NAMES_EINVAL = enum.auto()
    #: before 2.6.33 every cgroup file was created 0644 whatever its handlers
    ALL_FILES_0644 = enum.auto()
    #: seed 002: the 2007 containers framework: its own tasks / notify_on_release
    #: handlers and the memory controller's mem_usage, mem_limit, mem_failcnt
    CONTAINERS_2007 = enum.auto()
    #: seed 000: memory.independent_kmem_limit (with its parent rule) and a read-only
    #: memory.kmem.limit_in_bytes
    KMEM_2011 = enum.auto()
    #: before 3.3 a cftype had no placement flags: every memory file is on the root too
    NO_CFTYPE_FLAGS = enum.auto()
    #: 2.6.26's memory.stat: cache rss pgpgin pgpgout active inactive, own group only
    STAT_2_6_26 = enum.auto()
    #: memory.numa_stat has no hierarchical_* lines (3.2, 3.3)
    NUMA_STAT_LOCAL_ONLY = enum.auto()


class CounterKind(enum.Enum):
    """How a kernel counts and how its limit files parse and print.

    * ``RES_COUNTER`` (<= 3.18, kernel/res_counter.c): bytes.
      res_counter_memparse_write_strategy(): "-" then the number 1 is unlimited
      (RESOURCE_MAX = LLONG_MAX); anything else is memparse()d and rounded **up** to a
      page; a value whose rounding overflows becomes unlimited. Stored and printed as
      those bytes.
    * ``PAGE_COUNTER`` (3.19+, mm/page_counter.c): pages. page_counter_memparse():
      exactly "-1" is PAGE_COUNTER_MAX; bytes rounded **down** to pages, clamped.

    Because floor(LLONG_MAX / PAGE_SIZE) == PAGE_COUNTER_MAX, both refuse exactly the
    same charges; the emulator counts pages for both and keeps, for res_counter, the
    bytes as written (after rounding) for display and for byte comparisons.
    """

    RES_COUNTER = "res_counter"
    PAGE_COUNTER = "page_counter"
    #: seed 002 (2007): res_counter of unsigned longs counted in **pages**; the limit
    #: file takes a bare base-10 number of pages and prints pages; LONG_MAX pages is
    #: unlimited; a charge passes if usage <= limit - val in unsigned arithmetic
    RES_COUNTER_2007 = "res_counter_2007"

    @property
    def unlimited(self) -> int:
        """What an unlimited limit reads, in bytes (pages for RES_COUNTER_2007)."""
        if self is not CounterKind.PAGE_COUNTER:
            return LLONG_MAX
        return (LLONG_MAX // PAGE_SIZE) * PAGE_SIZE

    @property
    def unlimited_pages(self) -> int:
        """The counters' max while unlimited, in pages."""
        if self is CounterKind.RES_COUNTER_2007:
            return LLONG_MAX
        return LLONG_MAX // PAGE_SIZE

    @property
    def unit(self) -> int:
        """Bytes per counter unit in the files: 1 page is shown as 1 in 2007."""
        return 1 if self is CounterKind.RES_COUNTER_2007 else PAGE_SIZE


class WriteMechanics(enum.Enum):
    """How one write(2) reaches a handler; files/mechanics.py holds the numbers."""

    #: 3.14+ kernfs
    KERNFS = "kernfs"
    #: 3.10 and older cgroupfs (kernel/cgroup.c cgroup_file_write())
    CGROUPFS = "cgroupfs"


class KmemDesign(enum.Enum):
    """Where kernel memory is charged and what memory.kmem.limit_in_bytes does."""

    #: 3.8-4.5: accounted only in groups activated by a first limit write (EBUSY with
    #: tasks or hierarchical children; children of an active group are active); the
    #: kmem counter is charged first, ENOMEM at its limit, then memory (+memsw)
    ACTIVATED_BY_LIMIT = "activated"
    #: 4.6-5.15: always accounted; memory (+memsw) first, then the kmem counter,
    #: ENOMEM at its limit (no reclaim for it)
    ENFORCED = "enforced"
    #: 6.6+: the kmem counter is charged unconditionally; the limit file parses,
    #: ignores and reads MAX
    IGNORED = "ignored"
    #: seed 001: enforced, kmem alone, while memory.kmem.independent_kmem_limit is 1
    INDEPENDENT = "independent"
    #: seed 000: the kmem counter alone, never limited; usage_in_bytes adds it unless
    #: memory.independent_kmem_limit is 1
    REPORTED = "reported"


class Leftovers(enum.Enum):
    """What memory.force_empty does with the user pages reclaim could not free (the
    kernels' mem_cgroup_force_empty(), read at the tags; docs/kernel-generations.md
    section 5)."""

    #: 3.16+: only reclaim; what is left stays charged to the group
    STAY = "stay"
    #: 3.5-3.15: mem_cgroup_reparent_charges() moves every page left on the group's
    #: LRU lists to parent_mem_cgroup(), which a hierarchical parent already counts,
    #: or else to root_mem_cgroup (mem_cgroup_move_parent(): "If no parent, move
    #: charges to root cgroup"); it cannot fail
    TO_PARENT = "parent"
    #: up to 3.4: the pages go to the cgroup parent, which mem_cgroup_move_parent()
    #: charges first with __mem_cgroup_try_charge() (hierarchical or not: a
    #: hierarchical parent needs room for them twice for a moment); ENOMEM sends
    #: mem_cgroup_force_empty() back to reclaim a second time, which is EBUSY
    CHARGE_PARENT = "charge-parent"


#: memory.stat of 6.18, as the golden transcripts show it
STAT_KEYS_6_18 = (
    "cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
    "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
    "pgpgin", "pgpgout", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
)
#: the position of each key in STAT_KEYS_6_18 (the index of its hierarchical total)
STAT_INDEX = {key: i for i, key in enumerate(STAT_KEYS_6_18)}
#: keys counted in events, printed as they are (not * PAGE_SIZE)
EVENT_KEYS = frozenset(("pgpgin", "pgpgout", "pgfault", "pgmajfault",
                        "workingset_refault_anon", "workingset_refault_file"))


@attrs.frozen
class Profile:
    name: str
    features: Feature
    #: Bits move_charge_at_immigrate accepts: 0 on 6.13+, 3 (anon | file) before.
    move_charge_mask: int
    #: Highest swappiness accepted (100 before 5.8, 200 since).
    max_swappiness: int = 200
    #: memcg ID space: 65535 groups including offline ones, root included.
    max_groups: int = 65535
    counter: CounterKind = CounterKind.PAGE_COUNTER
    mechanics: WriteMechanics = WriteMechanics.KERNFS
    kmem: KmemDesign = KmemDesign.IGNORED
    #: memory.stat keys in order (those before the hierarchical limits; each is
    #: repeated as total_<key> after them)
    stat_keys: tuple[str, ...] = STAT_KEYS_6_18
    #: memparse() suffixes the limit parser knows (None: k m g t p e)
    memparse_suffixes: bytes | None = None
    #: use_hierarchy of the root at mount (the kernels say 0; systemd writes 1)
    root_use_hierarchy: bool = True
    #: pages of a new child's kernel data charged to its parent at mkdir:
    #: fixed + per_cpu * ncpus (mem_cgroup_css_alloc() under set_active_memcg(parent))
    mkdir_charge_fixed: int = 2
    mkdir_charge_per_cpu: int = 1
    #: longest group name, None for no limit (3.10 cgroup_lookup(): NAME_MAX)
    name_max: int | None = None
    #: the order readdir lists a directory in (cgroupfs_emu.dirorder)
    dir_order: object = KernfsOrder(NameHash.HASH_LONG)
    #: control-file names in the order the kernel creates them (used by the dcache
    #: order, where it shows; empty: the table's order)
    file_creation_order: tuple[str, ...] = ()
    #: the subsystem's file-name prefix
    prefix: str = "memory."

    # ---- rule variants of the seed systems (docs/seed-profiles.md)
    #: the file names a group has (root-only files included); None: every row the
    #: features place. The oldest kernels had far fewer files than rows exist.
    file_set: frozenset | None = None
    #: "-1" means unlimited in limit files (2.6.29+; seed 004's base had no such rule)
    minus_one_unlimited: bool = True
    #: a limit may be set on the root (before ≈2.6.30)
    root_limit: bool = False
    #: the root reports its own counter (no hierarchy: 2.6.2x), not the sum of every
    #: group's page cache and anon pages
    root_usage_is_counter: bool = False
    #: lowering a limit below usage reclaims (EBUSY if it cannot); seed 002 stores it
    limit_write_reclaims: bool = True
    #: seed 002 patch 7: after the OOM kill the charge still fails
    oom_kill_fails_charge: bool = False
    #: rmdir is EBUSY while the group holds charges of this counter: "memory" (seed
    #: 002, every charged page pins the container), "kmem" (seed 000's caution), ""
    rmdir_busy_while_charged: str = ""
    #: 2.6.26 force_empty: EBUSY with tasks and usage, else every charge is dropped
    #: (also at rmdir)
    force_empty_drops: bool = False
    #: what force_empty does with the pages reclaim left (:class:`Leftovers`)
    force_empty_leftovers: Leftovers = Leftovers.STAY
    #: seed 001 memcg_kmem_init(): the kmem counter is chained only below a
    #: hierarchical parent that is not the root (nothing is charged to the root)
    kmem_chain_skips_root: bool = False
    #: seed 003 patch 8: kmem charges stay with a removed group until freed
    kmem_outlives_group: bool = False
    #: Thread stacks are kernel memory (seed 003; 3.8+ with kmem accounting): every
    #: task charges THREAD_SIZE of kmem while it lives (real processes' and socket clients' alike)
    charges_thread_stacks: bool = False
    #: the stock a socket client may hold (0: no batching before 2.6.33)
    stock_batch: int = 64

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    @property
    def hierarchy_forced(self) -> bool:
        return Feature.HIERARCHY_FORCED in self.features

    def name_rules(self):
        """What this kernel's cgroup_mkdir() accepts as a name (core/cgroup.py)."""
        from .cgroup import NameRules
        return NameRules(newline_einval=self.has(Feature.NEWLINE_NAMES_EINVAL),
                         name_max=self.name_max)

    def mkdir_charge_pages(self, ncpus: int) -> int:
        """Pages charged to the parent when a child is made (docs/kernel-generations.md
        section 7): a few for the group plus one per possible CPU."""
        return self.mkdir_charge_fixed + self.mkdir_charge_per_cpu * ncpus


#: The features every kernfs-era upstream kernel since 5.17 shares with 6.18.
_MODERN = (Feature.OOM_KILL_LINE | Feature.NEWLINE_NAMES_EINVAL | Feature.RELEASE_AGENT_CAP
           | Feature.PRESSURE_LEVEL_READ | Feature.EVENT_CONTROL_OWNER_ONLY)

#: The product the seed patches describe, on linux-6 mechanics: per-group
#: use_hierarchy (root 1), move_charge 0..3, independent kmem limit, per-group
#: slabinfo, memory.shrink_in_bytes.
SEEDS = Profile(
    name="seeds",
    features=_MODERN | Feature.SLABINFO | Feature.SHRINK_USAGE | Feature.INDEPENDENT_KMEM,
    move_charge_mask=3,
    kmem=KmemDesign.INDEPENDENT,
)

#: the profile a mount gets without -o kernel= (the registry: catalog.py)
DEFAULT_PROFILE = SEEDS
