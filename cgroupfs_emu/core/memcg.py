"""The memory cgroup: four page counters and the per-group settings of cgroup v1.

Mirrors ``struct mem_cgroup`` of ``mm/memcontrol.c`` / ``mm/memcontrol-v1.c``. Methods
that implement a control-file write carry the kernel function's name in their
docstring. All amounts are in pages.

Charging, reclaim and OOM decisions live in ``charge.py``; the writes here that need
reclaim (lowering a limit, force_empty, shrink_in_bytes) call into it.
"""

from __future__ import annotations

import enum
import itertools
from typing import TYPE_CHECKING, Iterator

from .errors import Busy, Invalid, NoMemory
from .page_counter import PAGE_COUNTER_MAX, PageCounter

if TYPE_CHECKING:
    from .hierarchy import Hierarchy


class Res(enum.Enum):
    """Which counter of a group (the kernel's MEMFILE_TYPE)."""

    MEM = "memory"
    MEMSW = "memsw"
    KMEM = "kmem"
    TCP = "tcpmem"


#: memory.stat keys in 6.18 order; the first twenty are also printed as total_<key>.
STAT_KEYS = (
    "cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
    "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
    "pgpgin", "pgpgout", "pgfault", "pgmajfault",
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
)
#: Keys counted in events rather than pages (printed as they are, not × PAGE_SIZE).
EVENT_KEYS = frozenset(
    ("pgpgin", "pgpgout", "pgfault", "pgmajfault",
     "workingset_refault_anon", "workingset_refault_file")
)

_ids = itertools.count(1)


class MemCgroup:
    """One group of the hierarchy (root included)."""

    def __init__(self, hierarchy: Hierarchy, name: str, parent: MemCgroup | None):
        self.hierarchy = hierarchy
        self.name = name
        self.parent = parent
        self.children: dict[str, MemCgroup] = {}
        self._path: str | None = None
        self.id = next(_ids)
        self.online = True
        #: tids attached to this group (see Hierarchy.attach)
        self.tasks: set[int] = set()

        profile = hierarchy.profile
        if parent is None:
            self.use_hierarchy = True
            self.swappiness = hierarchy.vm_swappiness
            self.oom_kill_disable = False
            self.notify_on_release = False
            self.clone_children = False
        else:
            # Copied once at mkdir, never propagated later (spec 1.2).
            self.use_hierarchy = True if profile.hierarchy_forced else parent.use_hierarchy
            self.swappiness = parent.read_swappiness()
            self.oom_kill_disable = parent.oom_kill_disable
            self.notify_on_release = parent.notify_on_release
            self.clone_children = parent.clone_children

        # Pre-5.11 kernels chain a child's counters to the parent only when the parent
        # is hierarchical; with 5.11+ hierarchy_forced that is always the case.
        up = parent if parent is not None and parent.use_hierarchy else None
        self.memory = PageCounter(up.memory if up else None, memcg=self)
        self.memsw = PageCounter(up.memsw if up else None, memcg=self)
        self.kmem = PageCounter(up.kmem if up else None, memcg=self)
        self.tcpmem = PageCounter(up.tcpmem if up else None, memcg=self)

        self.soft_limit = PAGE_COUNTER_MAX
        self.move_charge_at_immigrate = 0
        self.independent_kmem_limit = False
        self.tcpmem_active = False
        self.under_oom = 0
        self.oom_kill = 0
        #: per-group statistics in pages (or events, see EVENT_KEYS)
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        #: slab caches charged to this group: name -> (active_objs, num_objs, objsize)
        self.slab_caches: dict[str, tuple[int, int, int]] = {}
        #: kernel data charged to the parent for this group at mkdir
        self.mkdir_charge = 0
        #: cgroup.event_control registrations (notify.EventListener)
        self.events: list = []
        #: the open vmpressure window: pages scanned and reclaimed so far
        self.vmpr_scanned = 0
        self.vmpr_reclaimed = 0
        #: what each owner holds here (see charge.Ledger)
        self.ledgers: dict = {}
        #: page cache whose owner exited: stays charged until reclaimed
        self.orphan_file = 0
        #: this group's slab caches by cache name (charge.SlabCache)
        self.slab: dict = {}

    # ------------------------------------------------------------------ structure

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def counter(self, res: Res) -> PageCounter:
        return getattr(self, res.value)

    def path(self) -> str:
        """Path relative to the hierarchy root, as /proc/<pid>/cgroup prints it
        (cached: every socket reply names the group; rename forgets it)."""
        if self._path is None:
            parts = []
            g = self
            while g.parent is not None:
                parts.append(g.name)
                g = g.parent
            self._path = "/" + "/".join(reversed(parts))
        return self._path

    def forget_paths(self) -> None:
        for g in self.hierarchical_subtree_all():
            g._path = None

    def hierarchical_subtree_all(self) -> Iterator[MemCgroup]:
        yield self
        for child in self.children.values():
            yield from child.hierarchical_subtree_all()

    def hierarchical_subtree(self) -> Iterator[MemCgroup]:
        """This group and every descendant whose charges reach it (the kernel's
        for_each_mem_cgroup_tree: a non-hierarchical group stops the walk)."""
        yield self
        if self.use_hierarchy:
            for child in self.children.values():
                yield from child.hierarchical_subtree()

    # ------------------------------------------------------------------ charging

    def try_charge_kmem(self, nr_pages: int) -> None:
        """Charge kernel memory of the emulator's own making (a child's per-CPU data).

        Follows try_charge_memcg(): memsw first, then memory; the refusing level's
        failcnt grows. Reclaim and OOM arrive with the socket; until then a refusal is
        ENOMEM, which is what the kernel returns when no task can be killed.
        The kmem counter is tried too, not charged blindly: an enforced kmem limit
        (seed 001's independent limit) refuses like the others (memcg_charge_kmem()
        tries kmem first and fails the allocation).
        """
        if self.kmem.try_charge(nr_pages) is not None:
            raise NoMemory("kmem limit reached")
        if self.memsw.try_charge(nr_pages) is not None:
            self.kmem.uncharge(nr_pages)
            raise NoMemory("memsw limit reached")
        if self.memory.try_charge(nr_pages) is not None:
            self.memsw.uncharge(nr_pages)
            self.kmem.uncharge(nr_pages)
            raise NoMemory("memory limit reached")

    def uncharge_kmem(self, nr_pages: int) -> None:
        self.memsw.uncharge(nr_pages)
        self.memory.uncharge(nr_pages)
        self.kmem.uncharge(nr_pages)

    # ------------------------------------------------------------------ file writes

    def resize_max(self, nr_pages: int, memsw: bool) -> None:
        """Port of mem_cgroup_resize_max().

        Keeps the invariant memory.max <= memsw.max (EINVAL otherwise, nothing changed),
        then sets the counter's max; below usage the kernel reclaims and gives up with
        EBUSY. Raising a limit wakes OOM waiters (memcg1_oom_recover).
        """
        if self.is_root:
            raise Invalid("cannot limit the root group")
        counter = self.memsw if memsw else self.memory
        if memsw:
            ok = nr_pages >= self.memory.max
        else:
            ok = nr_pages <= self.memsw.max
        if not ok:
            raise Invalid("memory.limit_in_bytes must not exceed memory.memsw.limit_in_bytes")
        enlarge = nr_pages > counter.max
        if counter.usage > nr_pages:
            # Drain stocks, then reclaim: the memory limit may swap, memsw may not.
            charges = self.hierarchy.charges
            charges._ask_stock_back(self)
            charges.reclaim(self, counter.usage - nr_pages, may_swap=not memsw)
        counter.set_max(nr_pages)  # still above: EBUSY, limit unchanged
        if enlarge:
            self.hierarchy.oom_recover(self)

    def set_soft_limit(self, nr_pages: int) -> None:
        """RES_SOFT_LIMIT of mem_cgroup_write(): stored, never checked against anything."""
        self.soft_limit = nr_pages

    def set_tcp_max(self, nr_pages: int) -> None:
        """Port of memcg_update_tcp_max(): the first successful write activates tcp
        accounting for the group."""
        if self.is_root:
            raise Invalid("cannot limit the root group")
        self.tcpmem.set_max(nr_pages)
        self.tcpmem_active = True

    def set_kmem_max(self, nr_pages: int) -> None:
        """kmem.limit_in_bytes write, per profile.

        linux-6 (6.6+): parsed by the caller, then ignored. seeds (seed 001 patch 02):
        EINVAL unless independent_kmem_limit is set, EBUSY below kmem usage.
        """
        if self.is_root:
            raise Invalid("cannot limit the root group")
        if self.hierarchy.profile.kmem_limit == "ignored":
            return
        if not self.independent_kmem_limit:
            raise Invalid("kmem limit needs memory.kmem.independent_kmem_limit = 1")
        self.kmem.set_max(nr_pages)

    def set_independent_kmem_limit(self, value: int) -> None:
        """Seed 001 patch 02: non-zero sets the flag; 0 clears it and resets the kmem
        limit to unlimited. No parent check, no inheritance."""
        if value:
            self.independent_kmem_limit = True
        else:
            self.independent_kmem_limit = False
            self.kmem.max = PAGE_COUNTER_MAX

    def read_swappiness(self) -> int:
        """mem_cgroup_swappiness(): the root reports the global vm.swappiness."""
        return self.hierarchy.vm_swappiness if self.is_root else self.swappiness

    def set_swappiness(self, value: int) -> None:
        """Port of mem_cgroup_swappiness_write() (3.16+: allowed anywhere)."""
        if value > self.hierarchy.profile.max_swappiness:
            raise Invalid("swappiness out of range")
        if self.is_root:
            self.hierarchy.vm_swappiness = value
        else:
            self.swappiness = value

    def set_oom_kill_disable(self, value: int) -> None:
        """Port of mem_cgroup_oom_control_write(): root and values other than 0/1 are
        EINVAL; writing 0 wakes OOM waiters."""
        if self.is_root or value not in (0, 1):
            raise Invalid("oom_control takes 0 or 1, not on the root")
        self.oom_kill_disable = bool(value)
        if not value:
            self.hierarchy.oom_recover(self)

    def set_use_hierarchy(self, value: int) -> None:
        """Port of mem_cgroup_hierarchy_write(), 5.11+ or pre-5.11 by profile."""
        if self.hierarchy.profile.hierarchy_forced:
            if value != 1:
                raise Invalid("use_hierarchy is always 1")
            return
        if self.use_hierarchy == bool(value) and value in (0, 1):
            return
        parent_hier = self.parent is not None and self.parent.use_hierarchy
        if parent_hier or value not in (0, 1):
            raise Invalid("use_hierarchy cannot change under a hierarchical parent")
        if self.children:
            raise Busy("use_hierarchy cannot change while the group has children")
        self.use_hierarchy = bool(value)

    def set_move_charge(self, value: int) -> None:
        """Port of mem_cgroup_move_charge_write(): bits outside the profile's mask
        (everything on 6.13+) are EINVAL."""
        if value & ~self.hierarchy.profile.move_charge_mask:
            raise Invalid("move_charge_at_immigrate value not supported")
        self.move_charge_at_immigrate = value

    def force_empty(self) -> None:
        """Port of mem_cgroup_force_empty_write(): root is EINVAL; otherwise reclaim as
        much as possible and succeed even if pages remain."""
        if self.is_root:
            raise Invalid("force_empty is not allowed on the root")
        self.hierarchy.charges._ask_stock_back(self)
        self.hierarchy.charges.reclaim_all(self)

    def shrink_usage_to(self, nr_pages: int) -> None:
        """Seed 004 mem_cgroup_shrink_usage_to(): reclaim until usage <= nr_pages,
        EBUSY if that cannot be reached. The limit is unchanged."""
        if self.memory.usage > nr_pages:
            self.hierarchy.charges._ask_stock_back(self)
            self.hierarchy.charges.reclaim(self, self.memory.usage - nr_pages, may_swap=True)
        if self.memory.usage > nr_pages:
            raise Busy("cannot shrink usage below the requested value")

    def set_notify_on_release(self, value: int) -> None:
        self.notify_on_release = bool(value)

    def set_clone_children(self, value: int) -> None:
        self.clone_children = bool(value)

    # ------------------------------------------------------------------ statistics

    def usage(self, memsw: bool = False) -> int:
        """mem_cgroup_usage(), in pages: the page counter, except on the root, which
        (6.2+) reports global file + anon pages (+ swap for memsw) rather than its
        counter, so kernel data charged at mkdir does not show there."""
        if self.is_root:
            keys = ("cache", "rss", "swap") if memsw else ("cache", "rss")
            return sum(g.stats[k] for g in self.hierarchy.walk() for k in keys)
        return (self.memsw if memsw else self.memory).usage

    def stat_total(self, key: str) -> int:
        return sum(g.stats[key] for g in self.hierarchical_subtree())
