"""memory.stat: the per-group statistics, and how charges move them.

Port of memcg_charge_statistics() / the v1 stat keys of memcg1_stat_format(). Every
change goes through :func:`account` with the account's row (kinds.py), so which keys
a page counts in is read from the table, never spelled out here.
"""

from __future__ import annotations

from .kinds import LOCKED_FROM, LOCKED_KEY, Account, Events

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


def new_stats() -> dict[str, int]:
    return dict.fromkeys(STAT_KEYS, 0)


def account(stats: dict[str, int], acc: Account, delta: int) -> None:
    """Pages of *acc* were charged (delta > 0) or uncharged: their LRU keys, and the
    page events (a charge is a page in, a first touch of anon/shmem a fault)."""
    for key in acc.stat_keys:
        stats[key] += delta
    if acc.events is Events.NONE:
        return
    if delta > 0:
        stats["pgpgin"] += delta
        if acc.events is Events.FAULT:
            stats["pgfault"] += delta
    else:
        stats["pgpgout"] -= delta


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
    """mem_cgroup_css_offline(): page counts go to the parent; events stay."""
    for key, value in stats.items():
        if key not in EVENT_KEYS:
            parent[key] += value
            stats[key] = 0
