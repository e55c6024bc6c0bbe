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
from ..errors import Busy, NoSpace
from ..port import Effects
from ..profiles import DEFAULT_PROFILE, Profile
from . import charge as _charge
from . import (events, limits, migration, oom, shared_pages, slab, stacks, stock, task_exit,
               vmpressure)
from .charge import OnOom, charge_account
from .events import EventListener
from .group import MemCgroup
from .kinds import Res, kmem_account
from .owners import Owner, uncharge_counters
from .state import SUBSYS, MemState, TaskFacts


def _operation(fn):
    """An operation of the controller: thresholds are checked once it is over, even
    when it failed half-way (a refused charge may have reclaimed). Mechanisms call
    each other's functions, never these entry points, so operations do not nest."""

    @functools.wraps(fn)
    def operation(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        finally:
            if self.thresholds:
                events.check_thresholds(self)

    return operation


class MemoryController(MemState):
    """The memory subsystem (``memory_cgrp_subsys``) of one hierarchy."""

    name = SUBSYS

    def __init__(self, profile: Profile = DEFAULT_PROFILE, effects: Effects | None = None,
                 facts: TaskFacts | None = None, swap_pages: int = 0, oom_kill: bool = True,
                 ncpus: int = 1):
        super().__init__(profile, effects, facts, swap_pages, oom_kill)
        #: pages a new child's kernel data costs its parent (profile formula, ncpus)
        self.mkdir_charge_pages = profile.mkdir_charge_pages(ncpus)

    # ------------------------------------------------------------------ subsystem

    def bind(self, hierarchy: Hierarchy) -> MemCgroup:
        """The cgroup core binds this subsystem to its hierarchy (the kernel's
        rebind_subsystems()): the root's memcg is made here."""
        self.hierarchy = hierarchy
        self.root = MemCgroup(self, hierarchy.root, None, self._new_id())
        self.nr_groups = 1
        return self.root

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    @_operation
    def css_alloc(self, cgroup: Cgroup, parent: MemCgroup) -> MemCgroup:
        """mem_cgroup_css_alloc(): an ID, and the child's kernel data charged to the
        parent (mem_cgroup_alloc() runs under set_active_memcg(parent) since 5.9): a
        few pages plus one per possible CPU, as the profile says, through the kmem
        account of the parent's design (5.10: its kmem limit refuses too). A parent
        that cannot absorb it refuses with ENOMEM; no reclaim for it, as for any
        allocation at mkdir."""
        if self.nr_groups >= self.profile.max_groups:
            raise NoSpace("memcg ID space exhausted")
        pages, acc = self.mkdir_charge_pages, kmem_account(parent)
        if pages:
            charge_account(self, parent, acc, pages, reclaim_ok=False, on_oom=OnOom.FAIL)
        child = MemCgroup(self, cgroup, parent, self._new_id())
        child.mkdir_charge = pages
        child.mkdir_account = acc
        self.nr_groups += 1
        return child

    @_operation
    def css_offline(self, group: MemCgroup) -> None:
        """mem_cgroup_css_offline(): charges reparented, listeners told and dropped.

        Seed 002: every charged page holds a reference on the container, so rmdir is
        EBUSY while any is charged; seed 000: likewise while kmem is charged. Up to
        3.4 the parent must also take the group's pages (limits.pre_destroy())."""
        busy = self.profile.rmdir_busy_while_charged
        if busy and group.counter(Res.MEM if busy == "memory" else Res.KMEM).usage:
            raise Busy(f"the group still holds {busy} charges")
        limits.pre_destroy(self, group)
        migration.offline(self, group)
        events.remove_all(self, group)

    @_operation
    def css_free(self, group: MemCgroup) -> None:
        """mem_cgroup_css_free(): the ID and the parent's charge for the child's data
        are given back."""
        self.nr_groups -= 1
        if group.mkdir_charge:
            uncharge_counters(group.parent, group.mkdir_account, group.mkdir_charge)
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

    #: the task exited or its client went away (task_exit.release)
    release = _operation(task_exit.release)

    # ------------------------------------------------------------------ charging

    # Each entry point is the mechanism's own function (its first argument, the
    # state, is this controller), wrapped as an operation.

    #: charge(owner, group, kind, nr, may_wait=True) -> OomVerdict | None
    charge = _operation(_charge.charge)
    #: uncharge(owner, group, kind, nr)
    uncharge = _operation(_charge.uncharge)
    #: follow(owner, group, usage, locked) -> OomVerdict | None
    follow = _operation(migration.follow)
    #: move_charge(owners, src, dst, mask)
    move_charge = _operation(migration.move_charge)
    #: slab_alloc(owner, group, name, objsize, count)
    slab_alloc = _operation(slab.slab_alloc)
    #: slab_free(owner, name, objsize, count, group=None)
    slab_free = _operation(slab.slab_free)
    #: set_stock(owner, group, consumed, want) -> pages granted
    set_stock = _operation(stock.set_stock)
    #: fork(owner, group, count): a client's new tasks, their thread stacks (stacks.py)
    fork = _operation(stacks.fork)
    #: end_tasks(owner, count): some of them exit (stacks.task_exit)
    end_tasks = _operation(stacks.task_exit)
    #: charge_stacks(owner, group, count) -> bool: a followed task's thread stacks
    charge_stacks = _operation(stacks.charge_stacks)
    #: uncharge_stacks(owner, group, count)
    uncharge_stacks = _operation(stacks.uncharge_stacks)

    # ------------------------------------------------------------------ shared pages

    #: shared_object(key, nr) -> SharedObject | None (shared_pages.py)
    shared_object = shared_pages.lookup
    #: shared_holder(pid) -> the Owner a new shared object's pages are charged to
    shared_holder = shared_pages.holder
    #: shared_created(key, owner, held_by, group, nr)
    shared_created = _operation(shared_pages.created)
    #: share(obj, owner): a later mapper's reference
    share = _operation(shared_pages.take)
    #: unshare(key, owner, nr) -> pages uncharged (the last reference)
    unshare = _operation(shared_pages.drop)

    # ------------------------------------------------------------------ OOM

    def select_victim(self, group: MemCgroup) -> Owner | None:
        return oom.select_victim(self, group)

    #: the victim was sent SIGKILL: count it, free its memory
    oom_killed = _operation(task_exit.oom_killed)

    def mark_under_oom(self, group: MemCgroup, delta: int) -> None:
        oom.mark_under_oom(group, delta)

    def oom_notify(self, group: MemCgroup) -> None:
        events.oom_notify(self, group)

    # ------------------------------------------------------------------ file writes

    #: resize_max(group, nr_pages, memsw)
    resize_max = _operation(limits.resize_max)
    #: force_empty(group)
    force_empty = _operation(limits.force_empty)
    #: shrink_usage_to(group, nr_pages)
    shrink_usage_to = _operation(limits.shrink_usage_to)

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
