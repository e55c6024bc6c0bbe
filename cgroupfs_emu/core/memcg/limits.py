"""Control-file writes that reclaim: a lower limit, force_empty, shrink_in_bytes."""

from __future__ import annotations

from ...units import PAGE_SIZE
from ..errors import Busy, Invalid
from ..profiles import CounterKind, Feature, Leftovers
from .group import MemCgroup
from .kinds import Res
from .migration import drop_charges, reparent_lru
from .reclaim import reclaim, reclaim_all
from .state import MemState
from .stock import drain_all_stock


def resize_max(state: MemState, group: MemCgroup, nr_pages: int, memsw: bool,
               nbytes: int | None = None) -> None:
    """Port of mem_cgroup_resize_max() (3.19+) and of mem_cgroup_resize_limit() /
    mem_cgroup_resize_memsw_limit() (res_counter kernels).

    Keeps the invariant memory limit <= memsw limit (EINVAL otherwise, nothing
    changed) -- compared as the kernel stores them: pages, or for res_counter the
    bytes *nbytes* as written and rounded -- then sets the counter's max; below usage
    the kernel reclaims and gives up with EBUSY. Raising a limit wakes OOM waiters
    (memcg1_oom_recover).
    """
    profile = state.profile
    if group.is_root and not profile.root_limit:
        raise Invalid("cannot limit the root group")
    counter = group.memsw if memsw else group.memory
    res = Res.MEMSW if memsw else Res.MEM
    if nbytes is None:
        nbytes = nr_pages * PAGE_SIZE
    if profile.file_set is not None and "memory.memsw.limit_in_bytes" not in profile.file_set:
        ok = True  # no swap accounting (before 2.6.29): no invariant to keep
    elif memsw:
        ok = nbytes >= limit_bytes(group, Res.MEM)
    else:
        ok = nbytes <= limit_bytes(group, Res.MEMSW)
    if not ok:
        raise Invalid("memory.limit_in_bytes must not exceed memory.memsw.limit_in_bytes")
    enlarge = nr_pages > counter.max
    if counter.usage > nr_pages:
        # Drain stocks, then reclaim: the memory limit may swap, memsw may not.
        drain_all_stock(state, group)
        reclaim(state, group, counter.usage - nr_pages, may_swap=not memsw)
    counter.set_max(nr_pages)  # still above: EBUSY, limit unchanged
    group.limit_bytes[res] = nbytes
    if enlarge:
        state.oom_recover(group)


def limit_bytes(group: MemCgroup, res) -> int:
    """What a limit file of *group* reads, in bytes: page_counter profiles print the
    pages of the counter's max, res_counter profiles the bytes as written (rounded
    up), RESOURCE_MAX (LLONG_MAX) while unlimited. *res* is a counter or "soft"."""
    profile = group.state.profile
    if profile.counter is CounterKind.RES_COUNTER:
        return group.limit_bytes.get(res, profile.counter.unlimited)
    if profile.counter is CounterKind.RES_COUNTER_2007:
        return group.soft_limit if res == "soft" else group.counter(res).max  # pages
    pages = group.soft_limit if res == "soft" else group.counter(res).max
    return pages * PAGE_SIZE


def force_empty(state: MemState, group: MemCgroup) -> None:
    """Port of mem_cgroup_force_empty_write(): root is EINVAL; otherwise reclaim as
    much as possible and succeed even if pages remain. Up to 3.15
    (mem_cgroup_force_empty()): EBUSY while the group has tasks or children, and
    what reclaim left then moves to the parent or the root (reparent_lru(), the
    profile's force_empty_leftovers); from 3.16 it stays in the group."""
    if state.profile.force_empty_drops:
        # 2.6.26 mem_cgroup_force_empty(): EBUSY while tasks use a group that still
        # has charges; otherwise every charge is dropped (the pages stay, unaccounted)
        if group.memory.usage and (group.cgroup.tasks or group.is_root):
            raise Busy("the group has tasks")
        drop_charges(state, group)
        return
    if group.is_root:
        raise Invalid("force_empty is not allowed on the root")
    if state.profile.has(Feature.FORCE_EMPTY_BUSY) and (group.cgroup.tasks
                                                         or group.cgroup.children):
        raise Busy("force_empty needs a group without tasks and children")
    drain_all_stock(state, group)
    reclaim_all(state, group)
    reparent_lru(state, group)


def pre_destroy(state: MemState, group: MemCgroup) -> None:
    """rmdir up to 3.4: mem_cgroup_pre_destroy() runs mem_cgroup_force_empty(memcg,
    false): the pages on the group's LRU lists move to the parent, which is charged
    for them (reparent_lru(), Leftovers.CHARGE_PARENT); when it cannot take them the
    group is reclaimed once and the move tried again; a second refusal fails the
    rmdir with EBUSY and the group stays. From 3.5 rmdir's reparenting cannot fail
    (migration.offline())."""
    if state.profile.force_empty_leftovers is not Leftovers.CHARGE_PARENT:
        return
    drain_all_stock(state, group)
    try:
        reparent_lru(state, group)
    except Busy:
        reclaim_all(state, group)
        reparent_lru(state, group)


def shrink_usage_to(state: MemState, group: MemCgroup, nr_pages: int) -> None:
    """Seed 004 mem_cgroup_shrink_usage_to(): reclaim until usage <= nr_pages,
    EBUSY if that cannot be reached. The limit is unchanged."""
    if group.memory.usage > nr_pages:
        drain_all_stock(state, group)
        reclaim(state, group, group.memory.usage - nr_pages, may_swap=True)
    if group.memory.usage > nr_pages:
        raise Busy("cannot shrink usage below the requested value")


def room(group: MemCgroup) -> tuple[int, int]:
    """(pages left under the tightest memory or memsw limit at or above *group*, that
    limit): how far a task of *group* may grow before a charge fails."""
    left_min, limit = 1 << 62, 1 << 62
    for counter in (group.memory, group.memsw):
        for c in counter.ancestors():
            left = c.max - c.usage
            if left < left_min:
                left_min, limit = left, c.max
    return left_min, limit
