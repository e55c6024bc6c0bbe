"""Control-file writes that reclaim: a lower limit, force_empty, shrink_in_bytes."""

from __future__ import annotations

from ..errors import Busy, Invalid
from .group import MemCgroup
from .migration import drop_charges
from .reclaim import reclaim, reclaim_all
from .state import MemState
from .stock import drain_all_stock


def resize_max(state: MemState, group: MemCgroup, nr_pages: int, memsw: bool) -> None:
    """Port of mem_cgroup_resize_max().

    Keeps the invariant memory.max <= memsw.max (EINVAL otherwise, nothing changed),
    then sets the counter's max; below usage the kernel reclaims and gives up with
    EBUSY. Raising a limit wakes OOM waiters (memcg1_oom_recover).
    """
    if group.is_root and not state.profile.root_limit:
        raise Invalid("cannot limit the root group")
    counter = group.memsw if memsw else group.memory
    if state.profile.file_set is not None and \
            "memory.memsw.limit_in_bytes" not in state.profile.file_set:
        ok = True  # no swap accounting (before 2.6.29): no invariant to keep
    elif memsw:
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
    rule = state.profile.force_empty_rule
    if rule == "drop":
        # 2.6.26: EBUSY while tasks use a group that still has charges; else drop them
        if group.memory.usage and (group.cgroup.tasks or group.is_root):
            raise Busy("the group has tasks")
        drop_charges(state, group)
        return
    if group.is_root:
        raise Invalid("force_empty is not allowed on the root")
    if rule == "busy_then_reclaim" and (group.cgroup.tasks or group.cgroup.children):
        # ≤ 3.15: only an empty group may be emptied
        raise Busy("the group has tasks or children")
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
