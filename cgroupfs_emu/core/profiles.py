"""Kernel generations the emulator can impersonate (``-o kernel=NAME``).

A profile is data: the control-file table picks its rows by profile name, and the few
core rules that changed across kernel versions read a flag here. Handlers are shared.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Profile:
    name: str
    summary: str
    #: 5.11+: use_hierarchy always reads 1 and only accepts 1. Otherwise it is a real
    #: per-group flag with the pre-5.11 rules (spec 3.4).
    hierarchy_forced: bool
    #: Bits move_charge_at_immigrate accepts: 0 on 6.13+, 3 (anon | file) before.
    move_charge_mask: int
    #: "ignored": 6.6+, kmem.limit_in_bytes is parsed then ignored and reads MAX.
    #: "independent": seed 001, enforced only while kmem.independent_kmem_limit is 1.
    kmem_limit: str
    #: "empty": 5.9+, memory.kmem.slabinfo reads nothing. "seed001": patch 12's format.
    slabinfo: str
    #: Pages of a new child's kernel data charged to its parent at mkdir (spec 3.1,
    #: ≈5.9+). The real amount depends on the CPU count; a fixed one keeps runs repeatable.
    mkdir_charge_pages: int = 8
    #: Highest swappiness accepted (200 since 5.8).
    max_swappiness: int = 200
    #: memcg ID space: 65535 groups including offline ones, root included.
    max_groups: int = 65535
    #: Thread stacks are kernel memory (seed 003; mainline 3.8+ with kmem accounting):
    #: every task and thread charges THREAD_SIZE of kmem while it lives, and a fork
    #: whose stack cannot be charged fails with ENOMEM (service/follower.py).
    charges_thread_stacks: bool = False


LINUX_6 = Profile(
    name="linux-6",
    summary="Linux 6.18 as recorded in shared/golden: hierarchy forced on, "
    "move_charge only 0, kmem limit ignored, slabinfo empty.",
    hierarchy_forced=True,
    move_charge_mask=0,
    kmem_limit="ignored",
    slabinfo="empty",
)

SEEDS = Profile(
    name="seeds",
    summary="The product the seed patches describe, on linux-6 mechanics: per-group "
    "use_hierarchy, move_charge 0..3, independent kmem limit, per-group slabinfo, "
    "memory.shrink_in_bytes.",
    hierarchy_forced=False,
    move_charge_mask=3,
    kmem_limit="independent",
    slabinfo="seed001",
)

PROFILES = {p.name: p for p in (SEEDS, LINUX_6)}
DEFAULT_PROFILE = SEEDS


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(
            f"unknown kernel profile {name!r} (known: {', '.join(sorted(PROFILES))})"
        ) from None
