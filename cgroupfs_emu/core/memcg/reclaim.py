"""Reclaim: try_to_free_mem_cgroup_pages() on a group's subtree.

What may be taken is read from the kind table: page cache nobody owns first, then
clients' reclaimable pages (they are told: an ``evicted`` notice), then, if the limit
allows swapping, swappable pages of clients to the swap device. A followed task's
memory is real and cannot be reclaimed from outside.

Not emulated: LRU ageing, dirty page writeback, the refault detection; reclaim is
exact (it takes what it is asked for, in a fixed order).
"""

from __future__ import annotations

from . import stats
from .group import MemCgroup
from .kinds import ANON, FILE, KINDS, SWAP
from .owners import uncharge_account
from .state import MemState
from .vmpressure import vmpressure

#: the most reclaim_all() asks for: "everything" (larger than any usage)
_EVERYTHING = 1 << 62
_RECLAIMABLE = tuple(acc for k in KINDS.values() if k.reclaimable for acc in k.accounts)
_SWAPPABLE = tuple(k for k in KINDS.values() if k.swappable)
assert _RECLAIMABLE == (FILE,) and [k.accounts[0] for k in _SWAPPABLE] == [ANON]


def _by_owner(group: MemCgroup):
    return sorted(group.ledgers.items(), key=lambda item: item[0].id)


def reclaim(state: MemState, group: MemCgroup, nr: int, may_swap: bool,
            report: bool = True) -> int:
    """At least *nr* pages from *group*'s subtree if possible; returns the pages taken
    from memory. *report*: tell vmpressure what was scanned and reclaimed."""
    got = 0
    subtree = list(group.hierarchical_subtree())
    for g in subtree:
        take = min(nr - got, g.orphan_file)
        if take > 0:
            g.orphan_file -= take
            g.memsw.uncharge(take)
            g.memory.uncharge(take)
            stats.account(g.stats, FILE, -take)
            got += take
    for g in subtree:
        for owner, led in _by_owner(g):
            if got >= nr:
                break
            take = min(nr - got, led[FILE.name])
            if take > 0:
                uncharge_account(state, g, led, FILE, take)
                state.effects.notice("evicted", owner, {"file": take, "group": g})
                got += take
    if may_swap and got < nr:
        for g in subtree:
            if g.read_swappiness() == 0:
                continue  # swappiness 0: a memcg never swaps (mem_cgroup_swappiness)
            for owner, led in _by_owner(g):
                if owner.followed:
                    continue  # a real task's memory cannot be reclaimed from outside
                take = min(nr - got, led[ANON.name], state.swap_total - state.swap_used)
                if take > 0:
                    # swap-out: the page leaves memory, its swap entry stays in memsw
                    led[ANON.name] -= take
                    led[SWAP.name] += take
                    state.swap_used += take
                    g.memory.uncharge(take)
                    stats.account(g.stats, ANON, -take)
                    stats.account(g.stats, SWAP, take)
                    got += take
    if report:
        vmpressure(state, group, nr, got)
    return got


def reclaim_all(state: MemState, group: MemCgroup) -> int:
    """force_empty: everything reclaimable in the subtree (each pass of the kernel's
    loop reclaims what it scans, so the pressure it reports is low)."""
    got = reclaim(state, group, _EVERYTHING, may_swap=True, report=False)
    vmpressure(state, group, got, got)
    return got
