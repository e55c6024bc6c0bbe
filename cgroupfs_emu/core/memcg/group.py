"""The memory cgroup: four page counters and the per-group settings of cgroup v1.

Mirrors ``struct mem_cgroup`` of ``mm/memcontrol.c`` / ``mm/memcontrol-v1.c``: the
memory subsystem's state (css) of one group of the cgroup core. Settings whose write
needs no other mechanism are methods here and carry the kernel function's name in
their docstring; writes that reclaim or wake OOM waiters (a lower limit, force_empty,
oom_control) are the controller's (controller.py). All amounts are in pages.
"""

from __future__ import annotations

from typing import Iterator

from ..cgroup import Cgroup
from ..errors import Busy, Invalid
from ..page_counter import PAGE_COUNTER_MAX, PageCounter, ResCounter2007
from ..profiles import CounterKind, Feature, KmemDesign
from . import stats
from .kinds import Res
from .state import SUBSYS, MemState


_CACHE, _RSS, _SWAP = (stats.INDEX[k] for k in ("cache", "rss", "swap"))


class MemCgroup:
    """One group's memory state (root included)."""

    __slots__ = (
        "state", "cgroup", "parent", "id", "use_hierarchy", "swappiness", "oom_kill_disable",
        "memory", "memsw", "kmem", "tcpmem", "soft_limit", "move_charge_at_immigrate",
        "independent_kmem_limit", "tcpmem_active", "under_oom", "oom_kill", "stats",
        "slab", "slab_caches", "mkdir_charge", "mkdir_account", "events", "vmpr_scanned",
        "vmpr_reclaimed", "ledgers", "orphan_file", "kmem_active", "limit_bytes",
    )

    def __init__(self, state: MemState, cgroup: Cgroup, parent: MemCgroup | None, id: int):
        self.state = state
        self.cgroup = cgroup
        self.parent = parent
        #: the memcg ID (mem_cgroup_id(); seed 001 shows it in slab cache names)
        self.id = id
        self.use_hierarchy: bool
        self.swappiness: int
        self.oom_kill_disable: bool
        if parent is None:
            self.use_hierarchy = state.profile.root_use_hierarchy
            self.swappiness = state.vm_swappiness
            self.oom_kill_disable = False
        else:
            # Copied once at mkdir, never propagated later (mem_cgroup_css_alloc()).
            self.use_hierarchy = state.profile.hierarchy_forced or parent.use_hierarchy
            self.swappiness = parent.read_swappiness()
            self.oom_kill_disable = parent.oom_kill_disable

        # Pre-5.11 kernels chain a child's counters to the parent only when the parent
        # is hierarchical; with 5.11+ hierarchy_forced that is always the case.
        up = parent if parent is not None and parent.use_hierarchy else None
        profile = state.profile
        # seed 002: res_counter of unsigned long pages, LONG_MAX pages unlimited
        counter = (ResCounter2007 if profile.counter is CounterKind.RES_COUNTER_2007
                   else PageCounter)
        unlimited = profile.counter.unlimited_pages
        self.memory = counter(up.memory if up else None, unlimited, memcg=self)
        self.memsw = counter(up.memsw if up else None, unlimited, memcg=self)
        # seed 001 memcg_kmem_init(): kmem is chained only below a non-root parent
        kup = None if (up is not None and up.parent is None
                       and profile.kmem_chain_skips_root) else up
        self.kmem = counter(kup.kmem if kup else None, unlimited, memcg=self)
        self.tcpmem = counter(up.tcpmem if up else None, unlimited, memcg=self)

        self.soft_limit: int = unlimited
        self.move_charge_at_immigrate: int = 0
        self.independent_kmem_limit: bool = False
        self.tcpmem_active: bool = False
        #: OOM waiters in this group and above (memory.oom_control under_oom)
        self.under_oom: int = 0
        #: tasks killed by the OOM killer for this group (oom_control oom_kill)
        self.oom_kill: int = 0
        #: per-group statistics in pages (or events, see stats.EVENT_KEYS)
        self.stats = stats.Stats(self, parent.stats if parent is not None else None)
        #: this group's slab caches by cache name (slab.SlabCache)
        self.slab: dict = {}
        #: memory.kmem.slabinfo rows: shown name -> (active_objs, num_objs, objsize)
        self.slab_caches: dict[str, tuple[int, int, int]] = {}
        #: kernel data charged to the parent for this group at mkdir, and where
        self.mkdir_charge: int = 0
        self.mkdir_account = None
        #: 3.8-4.5: kmem accounting activated by a limit write, or inherited at mkdir
        #: (memcg_propagate_kmem())
        self.kmem_active: bool = parent is not None and parent.kmem_active
        #: res_counter profiles: a limit as written and rounded, in bytes (Res or
        #: "soft" -> bytes), what the limit files print; absent: unlimited
        self.limit_bytes: dict = {}
        #: cgroup.event_control registrations (events.EventListener)
        self.events: list = []
        #: the open vmpressure window: pages scanned and reclaimed so far
        self.vmpr_scanned: int = 0
        self.vmpr_reclaimed: int = 0
        #: what each owner holds here (owners.Owner -> owners.Ledger)
        self.ledgers: dict = {}
        #: page cache whose owner exited: stays charged until reclaimed
        self.orphan_file: int = 0

    def __repr__(self):
        return f"MemCgroup({self.path()!r})"

    # ------------------------------------------------------------------ structure

    @property
    def is_root(self) -> bool:
        return self.parent is None

    @property
    def online(self) -> bool:
        return self.cgroup.online

    @property
    def name(self) -> str:
        return self.cgroup.name

    def path(self) -> str:
        return self.cgroup.path()

    def children(self) -> Iterator[MemCgroup]:
        for child in self.cgroup.children.values():
            yield child.subsys[SUBSYS]

    def counter(self, res: Res) -> PageCounter:
        return getattr(self, res.value)

    def subtree_all(self) -> Iterator[MemCgroup]:
        yield self
        for child in list(self.children()):
            yield from child.subtree_all()

    def hierarchical_subtree(self) -> Iterator[MemCgroup]:
        """This group and every descendant whose charges reach it (the kernel's
        for_each_mem_cgroup_tree: a non-hierarchical group stops the walk)."""
        yield self
        if self.use_hierarchy:
            for child in list(self.children()):
                yield from child.hierarchical_subtree()

    # ------------------------------------------------------------------ file writes

    def set_soft_limit(self, nr_pages: int, nbytes: int | None = None) -> None:
        """RES_SOFT_LIMIT of mem_cgroup_write(): stored, never checked against anything
        (*nbytes*: as written, what a res_counter profile reads back)."""
        self.soft_limit = nr_pages
        if nbytes is not None:
            self.limit_bytes["soft"] = nbytes

    def store_max(self, res, nr_pages: int) -> None:
        """Seed 002's limit write: the value is simply stored, nothing is checked or
        reclaimed."""
        self.counter(res).max = nr_pages

    def set_limit(self, res, nr_pages: int, nbytes: int) -> None:
        """A kmem or tcp limit write of mem_cgroup_write(), with the bytes written (what
        a res_counter profile reads back)."""
        if res is Res.KMEM:
            self.set_kmem_max(nr_pages, nbytes)
        else:
            self.set_tcp_max(nr_pages)
        self.limit_bytes[res] = nbytes

    def set_tcp_max(self, nr_pages: int) -> None:
        """Port of memcg_update_tcp_max(): the first successful write activates tcp
        accounting for the group."""
        if self.is_root:
            raise Invalid("cannot limit the root group")
        self.tcpmem.set_max(nr_pages)
        self.tcpmem_active = True

    def set_kmem_max(self, nr_pages: int, nbytes: int | None = None) -> None:
        """kmem.limit_in_bytes write, by the profile's kmem design.

        6.6+: parsed by the caller, then ignored. 4.6-5.15 (memcg_update_kmem_max()):
        the limit is set, EBUSY below kmem usage. 3.8-4.5 (memcg_update_kmem_limit()):
        the first write of a limit other than unlimited activates kmem accounting,
        EBUSY if the group already has tasks or hierarchical children. Seed 001:
        EINVAL unless independent_kmem_limit is set, EBUSY below kmem usage.
        """
        if self.is_root:
            raise Invalid("cannot limit the root group")
        design = self.state.profile.kmem
        if design is KmemDesign.IGNORED:
            return
        if design is KmemDesign.INDEPENDENT and not self.independent_kmem_limit:
            raise Invalid("kmem limit needs memory.kmem.independent_kmem_limit = 1")
        # memcg_update_kmem_limit(): "val != RESOURCE_MAX", in bytes as written
        unlimited = (nbytes == self.state.profile.counter.unlimited if nbytes is not None
                     else nr_pages == PAGE_COUNTER_MAX)
        if design is KmemDesign.ACTIVATED_BY_LIMIT and not self.kmem_active and not unlimited:
            if self.cgroup.tasks or self.has_hierarchical_children():
                raise Busy("kmem accounting must be set before tasks or children exist")
            self.kmem.set_max(nr_pages)
            self.kmem_active = True
            return
        self.kmem.set_max(nr_pages)

    def has_hierarchical_children(self) -> bool:
        """memcg_has_children() of 3.x: children count only under use_hierarchy."""
        return self.use_hierarchy and bool(self.cgroup.children)

    def set_independent_kmem_limit(self, value: int) -> None:
        """Seed 001 patch 02: non-zero sets the flag; 0 clears it and resets the kmem
        limit to unlimited. No parent check, no inheritance."""
        if value:
            self.independent_kmem_limit = True
        else:
            self.independent_kmem_limit = False
            self.kmem.max = self.state.profile.counter.unlimited_pages
            self.limit_bytes.pop(Res.KMEM, None)

    def set_independent_kmem_limit_2011(self, value: int) -> None:
        """Seed 000 kmem_limit_independent_write(): ``val = !!val``; under a parent with
        use_hierarchy, EINVAL unless it equals the parent's flag. Never copied at mkdir
        nor propagated later (the patch's TODO)."""
        value = bool(value)
        parent = self.parent
        if parent is not None and parent.use_hierarchy and value != parent.independent_kmem_limit:
            raise Invalid("independent_kmem_limit must match the hierarchical parent's")
        self.independent_kmem_limit = value

    def read_swappiness(self) -> int:
        """mem_cgroup_swappiness(): the root reports the global vm.swappiness."""
        return self.state.vm_swappiness if self.is_root else self.swappiness

    def set_swappiness(self, value: int) -> None:
        """Port of mem_cgroup_swappiness_write(): above the profile's maximum (100
        before 5.8, 200 after) is EINVAL. 3.16+: allowed anywhere, the root's value is
        the global vm.swappiness. Up to 3.15: EINVAL on the root, under a hierarchical
        parent, and on a hierarchical group with children."""
        if value > self.state.profile.max_swappiness:
            raise Invalid("swappiness out of range")
        if self.state.profile.has(Feature.LEGACY_HIERARCHY_WRITES):
            if self.is_root:
                raise Invalid("swappiness of the root cannot be set")
            self._legacy_hierarchy_check()
        if self.is_root:
            self.state.vm_swappiness = value
        else:
            self.swappiness = value

    def _legacy_hierarchy_check(self) -> None:
        """3.x: "If under hierarchy, only empty-root can set this value"."""
        if self.parent.use_hierarchy or self.has_hierarchical_children():
            raise Invalid("not allowed under a hierarchical parent or with children")

    def set_oom_kill_disable(self, value: int) -> None:
        """Port of mem_cgroup_oom_control_write(): root and values other than 0/1 are
        EINVAL (up to 3.15 also under a hierarchical parent or on a hierarchical group
        with children); writing 0 wakes OOM waiters."""
        if self.is_root or value not in (0, 1):
            raise Invalid("oom_control takes 0 or 1, not on the root")
        if self.state.profile.has(Feature.LEGACY_HIERARCHY_WRITES):
            self._legacy_hierarchy_check()
        self.oom_kill_disable = bool(value)
        if not value:
            self.state.oom_recover(self)

    def set_use_hierarchy(self, value: int) -> None:
        """Port of mem_cgroup_hierarchy_write(), 5.11+ or pre-5.11 by profile."""
        if self.state.profile.hierarchy_forced:
            if value != 1:
                raise Invalid("use_hierarchy is always 1")
            return
        if self.use_hierarchy == bool(value) and value in (0, 1):
            return
        parent_hier = self.parent is not None and self.parent.use_hierarchy
        if parent_hier or value not in (0, 1):
            raise Invalid("use_hierarchy cannot change under a hierarchical parent")
        if self.cgroup.children:
            raise Busy("use_hierarchy cannot change while the group has children")
        self.use_hierarchy = bool(value)

    def set_move_charge(self, value: int) -> None:
        """Port of mem_cgroup_move_charge_write(): bits outside the profile's mask
        (everything on 6.13+) are EINVAL."""
        if value & ~self.state.profile.move_charge_mask:
            raise Invalid("move_charge_at_immigrate value not supported")
        self.move_charge_at_immigrate = value

    # ------------------------------------------------------------------ statistics

    def usage(self, memsw: bool = False) -> int:
        """mem_cgroup_usage(), in pages: the page counter, except on the root, which
        (6.2+) reports global file + anon pages (+ swap for memsw) rather than its
        counter, so kernel data charged at mkdir does not show there."""
        profile = self.state.profile
        if self.parent is None and not profile.root_usage_is_counter:
            every = self.stats.everywhere
            pages = every[_CACHE] + every[_RSS]
            return pages + every[_SWAP] if memsw else pages
        usage = (self.memsw if memsw else self.memory).usage
        if (profile.kmem is KmemDesign.REPORTED and self.parent is not None
                and not self.independent_kmem_limit):
            usage += self.kmem.usage  # seed 000 mem_cgroup_usage(): kmem counts too
        return usage

    def stat_total(self, key: str) -> int:
        """*key* summed over the hierarchical subtree (kept by stats.Stats)."""
        return self.stats.total(key)
