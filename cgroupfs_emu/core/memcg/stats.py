"""memory.stat: the per-group statistics, and how charges move them.

Port of memcg_charge_statistics() / the v1 stat keys of memcg1_stat_format(). Every
change goes through :func:`account` with the account's row (kinds.py), so which keys
a page counts in is read from the table, never spelled out here.

Hierarchical totals (``total_*``, numa_stat's ``hierarchical_*``, the root's usage) are
kept as the counters change (:class:`Stats`), as the kernel's rstat keeps them, so a
read costs the same at the root of 10,000 groups as in a leaf.
"""

from __future__ import annotations

from ..profiles import EVENT_KEYS, STAT_INDEX, STAT_KEYS_6_18
from .kinds import LOCKED_FROM, LOCKED_KEY, Account

#: every key any profile prints (the 6.18 set is a superset of the older ones; each
#: profile lists its own, in its order: Profile.stat_keys), and the keys counted in
#: events rather than pages (printed as they are, not × PAGE_SIZE)
STAT_KEYS = STAT_KEYS_6_18


#: STAT_KEYS position of each key (the index into Stats.totals and .everywhere)
INDEX = STAT_INDEX
_ZERO = dict.fromkeys(STAT_KEYS, 0)


class Stats(dict):
    """One group's memory.stat counters, with its hierarchical totals kept up to date.

    The kernel keeps per-cpu deltas and flushes them up the tree lazily (rstat:
    mem_cgroup_flush_stats() -> css_rstat_flush()); here every change goes up at
    once, to the totals of the ancestors whose hierarchical walk reaches this group:
    a non-hierarchical parent stops it, as it stops for_each_mem_cgroup_tree. Changes
    are made as on a plain dict (``stats[key] += n``), so every mechanism that moves
    a counter moves the totals with it; a change costs the group's depth, never the
    size of the tree.

    ``totals[i]`` is this group and its hierarchical descendants; ``everywhere`` (one
    list shared by the whole tree) sums every live group, hierarchical or not, for the
    root's usage_in_bytes. ``sinks`` lists the totals a change here goes to; it is
    fixed at mkdir, as a page counter's parent is (a group's use_hierarchy cannot
    change while it has children). A removed group is detached (:meth:`detach`):
    what it still counts leaves the totals, as it left the walks.
    """

    __slots__ = ("group", "totals", "everywhere", "sinks")

    def __init__(self, group, parent_stats: Stats | None = None):
        dict.__init__(self, _ZERO)
        self.group = group
        self.totals = [0] * len(STAT_KEYS)
        self.everywhere = (parent_stats.everywhere if parent_stats is not None
                           else [0] * len(STAT_KEYS))
        up = (parent_stats.sinks[1:] if parent_stats is not None and group.parent.use_hierarchy
              else [])
        self.sinks = [self.everywhere, self.totals, *up]

    def __setitem__(self, key: str, value: int) -> None:
        delta = value - dict.__getitem__(self, key)
        dict.__setitem__(self, key, value)
        if delta:
            i = INDEX[key]
            for sink in self.sinks:
                sink[i] += delta

    def add(self, changes: tuple[tuple[str, int, int], ...], n: int) -> None:
        """Several keys move at once, key += sign * n for each (key, index, sign) of
        *changes* (an Account's charge_stats or uncharge_stats): what a charge or an
        uncharge does to the statistics, without a call per key."""
        put, sinks = dict.__setitem__, self.sinks
        for key, i, sign in changes:
            d = sign * n
            put(self, key, self[key] + d)
            for sink in sinks:
                sink[i] += d

    def total(self, key: str) -> int:
        """The hierarchical sum of *key* (memcg_page_state() after a flush)."""
        return self.totals[INDEX[key]]

    def detach(self) -> None:
        """The group went offline: what it still counts (its page events) leaves its
        ancestors' totals, and later changes stay its own."""
        if self.group is None:
            return
        for key, value in dict.items(self):
            if value:
                i = INDEX[key]
                for sink in self.sinks:
                    sink[i] -= value
        self.group = None
        self.sinks = []


def account(stats: dict[str, int], acc: Account, delta: int) -> None:
    """Pages of *acc* were charged (delta > 0) or uncharged: their LRU keys, and the
    page events (a charge is a page in, a first touch of anon/shmem a fault): the
    account's charge_stats or uncharge_stats (kinds.Account)."""
    if delta > 0:
        changes = acc.charge_stats
    elif delta < 0:
        changes, delta = acc.uncharge_stats, -delta
    else:
        return
    if type(stats) is Stats:
        stats.add(changes, delta)
    else:
        for key, _, sign in changes:
            stats[key] += sign * delta


def move(src: dict[str, int], dst: dict[str, int], acc: Account, n: int) -> None:
    """Pages of *acc* moved between groups: the keys follow the pages, page events
    stay where they happened."""
    for key in acc.stat_keys:
        src[key] -= n
        dst[key] += n


def lock(stats: dict[str, int], delta: int) -> None:
    """Pages left the active anon list for the unevictable one (delta < 0: back)."""
    stats[LOCKED_KEY] += delta
    stats[LOCKED_FROM] -= delta


def reparent(stats: dict[str, int], parent: dict[str, int]) -> None:
    """mem_cgroup_css_offline(): page counts go to the parent; events stay, and no
    longer count in the parent's totals."""
    for key, value in list(stats.items()):
        if key not in EVENT_KEYS:
            parent[key] += value
            stats[key] = 0
    if isinstance(stats, Stats):
        stats.detach()
