"""Control-file writes that reclaim: a lower limit, force_empty, shrink_in_bytes."""

from __future__ import annotations

from ..errors import Busy, Invalid
from .group import MemCgroup
from .reclaim import reclaim, reclaim_all
from .state import MemState
from .stock import drain_all_stock


def resize_max(state: MemState, group: MemCgroup, nr_pages: int, memsw: bool) -> None:
    """Port of mem_cgroup_resize_max().

    Keeps the invariant memory.max <= memsw.max (EINVAL otherwise, nothing changed),
    then sets the counter's max; below usage the kernel reclaims and gives up with
    EBUSY. Raising a limit wakes OOM waiters (memcg1_oom_recover).
    """
    if group.is_root:
        raise Invalid("cannot limit the root group")
    counter = group.memsw if memsw else group.memory
    if memsw:
        ok = nr_pages >= group.memory.max
    else:
        ok = nr_pages <= group.memsw.max
    if not ok:
        raise Invalid("memory.limit_in_bytes must not exceed memory.memsw.limit_in_bytes")
    enlarge = nr_pages > counter.max
    if counter.usage > nr_pages:
        # Drain stocks, then reclaim: the memory limit may swap, memsw may not.
        drain_all_stock(state, group)
        reclaim(state, group, counter.usage - nr_pages, may_swap=not memsw)
    counter.set_max(nr_pages)  # still above: EBUSY, limit unchanged
    if enlarge:
        state.oom_recover(group)


def force_empty(state: MemState, group: MemCgroup) -> None:
    """Port of mem_cgroup_force_empty_write(): root is EINVAL; otherwise reclaim as
    much as possible and succeed even if pages remain."""
    if group.is_root:
        raise Invalid("force_empty is not allowed on the root")
    drain_all_stock(state, group)
    reclaim_all(state, group)


def shrink_usage_to(state: MemState, group: MemCgroup, nr_pages: int) -> None:
    """Seed 004 mem_cgroup_shrink_usage_to(): reclaim until usage <= nr_pages,
    EBUSY if that cannot be reached. The limit is unchanged."""
    if group.memory.usage > nr_pages:
        drain_all_stock(state, group)
        reclaim(state, group, group.memory.usage - nr_pages, may_swap=True)
    if group.memory.usage > nr_pages:
        raise Busy("cannot shrink usage below the requested value")
