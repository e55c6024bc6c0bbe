"""The memory controller: the memory subsystem of the cgroup core, and the entry
points of everything above it (control files, the socket, the process follower).

It is the shared state (state.py) plus

* the subsystem interface the cgroup core calls (bind, css_alloc, css_offline,
  css_free, can_attach, attach), and
* one method per operation, each delegating to the mechanism's module. Every
  operation is wrapped by :func:`_operation`, which is where thresholds are checked
  after a change: the one place, so no caller has to remember it.
"""

from __future__ import annotations

import functools

from ..cgroup import Cgroup, Hierarchy, TaskSet
from ..errors import NoSpace
from ..port import Effects
from ..profiles import DEFAULT_PROFILE, Profile
from . import charge as _charge
from . import events, limits, migration, oom, slab, stock, task_exit, vmpressure
from .charge import OnOom, charge_account
from .events import EventListener
from .group import MemCgroup
from .kinds import KMEM
from .owners import Owner, uncharge_counters
from .state import SUBSYS, MemState, TaskFacts


def _operation(fn):
    """An operation of the controller: thresholds are checked once it is over
    (nested operations check at the end of the outermost one)."""

    @functools.wraps(fn)
    def operation(self, *args, **kwargs):
        if self._busy:
            return fn(self, *args, **kwargs)
        self._busy = True
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._busy = False
            if self.thresholds:
                events.check_thresholds(self)

    return operation


class MemoryController(MemState):
    """The memory subsystem (``memory_cgrp_subsys``) of one hierarchy."""

    name = SUBSYS

    def __init__(self, profile: Profile = DEFAULT_PROFILE, effects: Effects | None = None,
                 facts: TaskFacts | None = None, swap_pages: int = 0, oom_kill: bool = True):
        super().__init__(profile, effects, facts, swap_pages, oom_kill)
        self._busy = False

    # ------------------------------------------------------------------ subsystem

    def bind(self, hierarchy: Hierarchy) -> MemCgroup:
        self.hierarchy = hierarchy
        self.root = MemCgroup(self, hierarchy.root, None)
        self.nr_groups = 1
        return self.root

    @_operation
    def css_alloc(self, cgroup: Cgroup, parent: MemCgroup) -> MemCgroup:
        """mem_cgroup_css_alloc(): an ID, and the child's kernel data charged to the
        parent (a parent whose limit cannot absorb it refuses with ENOMEM; no reclaim
        for it, as for any allocation at mkdir)."""
        if self.nr_groups >= self.profile.max_groups:
            raise NoSpace("memcg ID space exhausted")
        pages = self.profile.mkdir_charge_pages
        if pages:
            charge_account(self, parent, KMEM, pages, reclaim_ok=False, on_oom=OnOom.FAIL)
        child = MemCgroup(self, cgroup, parent)
        child.mkdir_charge = pages
        self.nr_groups += 1
        return child

    @_operation
    def css_offline(self, group: MemCgroup) -> None:
        """mem_cgroup_css_offline(): charges reparented, listeners told and dropped."""
        migration.offline(self, group)
        events.remove_all(self, group)

    @_operation
    def css_free(self, group: MemCgroup) -> None:
        """mem_cgroup_css_free(): the ID and the parent's charge for the child's data
        are given back."""
        self.nr_groups -= 1
        if group.mkdir_charge:
            uncharge_counters(group.parent, KMEM, group.mkdir_charge)
            group.mkdir_charge = 0

    @_operation
    def can_attach(self, tset: TaskSet) -> None:
        """mem_cgroup_can_attach(): when the leader moves, precharge what the
        destination's move_charge_at_immigrate moves (ENOMEM: nothing moves)."""
        if tset.leader is None:
            return
        src, dst = self.of(tset.src), self.of(tset.dst)
        owners = [o for o in self.owners if o.pid == tset.leader]
        plan = migration.prepare_move(self, owners, src, dst, dst.move_charge_at_immigrate)
        if plan is not None:
            tset.prepared[SUBSYS] = plan

    @_operation
    def attach(self, tset: TaskSet) -> None:
        """mem_cgroup_move_task(): commit the precharged move."""
        plan = tset.prepared.pop(SUBSYS, None)
        if plan is not None:
            migration.commit_move(self, plan)

    # ------------------------------------------------------------------ lookups

    @staticmethod
    def of(cgroup: Cgroup) -> MemCgroup:
        """mem_cgroup_from_css(): the memcg of a group."""
        return cgroup.subsys[SUBSYS]

    def memcg_of_task(self, pid: int) -> MemCgroup:
        return self.hierarchy.group_of(pid).subsys[SUBSYS]

    def walk(self):
        return self.root.subtree_all()

    # ------------------------------------------------------------------ owners

    def new_owner(self, pid: int, followed: bool = False) -> Owner:
        owner = Owner(pid, followed)
        self.owners.add(owner)
        return owner

    @_operation
    def release(self, owner: Owner) -> None:
        task_exit.release(self, owner)

    # ------------------------------------------------------------------ charging

    @_operation
    def charge(self, owner: Owner, group: MemCgroup, kind: str, nr: int,
               may_wait: bool = True) -> oom.OomVerdict | None:
        return _charge.charge(self, owner, group, kind, nr, may_wait)

    @_operation
    def uncharge(self, owner: Owner, group: MemCgroup, kind: str, nr: int) -> None:
        _charge.uncharge(self, owner, group, kind, nr)

    @_operation
    def follow(self, owner: Owner, group: MemCgroup, usage: dict[str, int],
               locked: int) -> oom.OomVerdict | None:
        return migration.follow(self, owner, group, usage, locked)

    @_operation
    def move_charge(self, owners, src: MemCgroup, dst: MemCgroup, mask: int) -> None:
        migration.move_charge(self, owners, src, dst, mask)

    @_operation
    def slab_alloc(self, owner: Owner, group: MemCgroup, name: str, objsize: int,
                   count: int) -> None:
        slab.slab_alloc(self, owner, group, name, objsize, count)

    @_operation
    def slab_free(self, owner: Owner, name: str, objsize: int, count: int,
                  group: MemCgroup | None = None) -> None:
        slab.slab_free(self, owner, name, objsize, count, group)

    @_operation
    def set_stock(self, owner: Owner, group: MemCgroup, consumed: dict[str, int],
                  want: int) -> int:
        return stock.set_stock(self, owner, group, consumed, want)

    # ------------------------------------------------------------------ OOM

    def select_victim(self, group: MemCgroup) -> Owner | None:
        return oom.select_victim(self, group)

    @_operation
    def oom_killed(self, victim: Owner) -> None:
        task_exit.oom_killed(self, victim)

    def mark_under_oom(self, group: MemCgroup, delta: int) -> None:
        oom.mark_under_oom(group, delta)

    def oom_notify(self, group: MemCgroup) -> None:
        events.oom_notify(self, group)

    # ------------------------------------------------------------------ file writes

    @_operation
    def resize_max(self, group: MemCgroup, nr_pages: int, memsw: bool) -> None:
        limits.resize_max(self, group, nr_pages, memsw)

    @_operation
    def force_empty(self, group: MemCgroup) -> None:
        limits.force_empty(self, group)

    @_operation
    def shrink_usage_to(self, group: MemCgroup, nr_pages: int) -> None:
        limits.shrink_usage_to(self, group, nr_pages)

    # ------------------------------------------------------------------ events

    def register_event(self, group: MemCgroup, listener: EventListener) -> None:
        events.register(self, group, listener)

    def unregister_event(self, listener: EventListener) -> None:
        events.unregister(self, listener)

    def listeners(self):
        return events.listeners(self)

    def check_thresholds(self) -> None:
        events.check_thresholds(self)

    def vmpressure(self, group: MemCgroup, scanned: int, reclaimed: int) -> None:
        vmpressure.vmpressure(self, group, scanned, reclaimed)
