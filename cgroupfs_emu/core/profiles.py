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

PAGE_SIZE = 4096
LLONG_MAX = (1 << 63) - 1


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
    #: per-group flag with the pre-5.11 rules (spec 3.4).
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

    @property
    def unlimited(self) -> int:
        """What an unlimited limit reads, in bytes."""
        if self is CounterKind.RES_COUNTER:
            return LLONG_MAX
        return (LLONG_MAX // PAGE_SIZE) * PAGE_SIZE


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


#: memory.stat of 6.18, as the golden transcripts show it
STAT_KEYS_6_18 = (
    "cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
    "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
    "pgpgin", "pgpgout", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
)
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

    def has(self, feature: Feature) -> bool:
        return feature in self.features

    @property
    def hierarchy_forced(self) -> bool:
        return Feature.HIERARCHY_FORCED in self.features

    @property
    def independent_kmem(self) -> bool:
        return self.kmem is KmemDesign.INDEPENDENT

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
