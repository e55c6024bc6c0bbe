"""Kernel generations the emulator can impersonate (``-o kernel=NAME``).

A profile is data: a set of :class:`Feature` flags (the control-file table places a
row only when the profile has the features the row needs) and the values of the few
core rules that changed across kernel versions. Handlers are shared; adding a profile
touches no handler.
"""

from __future__ import annotations

import enum

import attrs


class Feature(enum.Flag):
    """What a kernel generation or seed system has beyond the common base."""

    NONE = 0
    #: seed 001 patch 02: memory.kmem.independent_kmem_limit; the kmem limit is
    #: enforced (kmem only) while it is set. Without it (6.6+) the kmem limit is
    #: parsed, then ignored, and reads MAX.
    INDEPENDENT_KMEM = enum.auto()
    #: seed 001 patch 12: memory.kmem.slabinfo lists the group's caches. Without it
    #: (5.9+) the file reads nothing.
    SLABINFO = enum.auto()
    #: seed 004: memory.shrink_in_bytes
    SHRINK_USAGE = enum.auto()
    #: 5.11+: use_hierarchy always reads 1 and only accepts 1. Without it it is a real
    #: per-group flag with the pre-5.11 rules (spec 3.4).
    HIERARCHY_FORCED = enum.auto()
    #: seed 003 (mainline 3.8+ with kmem accounting): thread stacks are kernel memory.
    #: Every followed task and thread charges THREAD_SIZE of kmem while it lives, and
    #: a fork whose stack cannot be charged fails with ENOMEM (service/follower.py).
    THREAD_STACKS = enum.auto()


@attrs.frozen
class Profile:
    name: str
    features: Feature
    #: Bits move_charge_at_immigrate accepts: 0 on 6.13+, 3 (anon | file) before.
    move_charge_mask: int
    #: Pages of a new child's kernel data charged to its parent at mkdir (spec 3.1,
    #: ≈5.9+). The real amount depends on the CPU count; a fixed one keeps runs repeatable.
    mkdir_charge_pages: int = 8
    #: Highest swappiness accepted (200 since 5.8).
    max_swappiness: int = 200
    #: memcg ID space: 65535 groups including offline ones, root included.
    max_groups: int = 65535
    @property
    def hierarchy_forced(self) -> bool:
        return Feature.HIERARCHY_FORCED in self.features

    @property
    def charges_thread_stacks(self) -> bool:
        return Feature.THREAD_STACKS in self.features

    @property
    def independent_kmem(self) -> bool:
        return Feature.INDEPENDENT_KMEM in self.features


#: Linux 6.18, as the recorded transcripts show it: hierarchy forced on, move_charge
#: only 0, kmem limit ignored, slabinfo empty.
LINUX_6 = Profile(
    name="linux-6",
    features=Feature.HIERARCHY_FORCED,
    move_charge_mask=0,
)

#: The product the seed patches describe, on linux-6 mechanics: per-group
#: use_hierarchy, move_charge 0..3, independent kmem limit, per-group slabinfo,
#: memory.shrink_in_bytes.
SEEDS = Profile(
    name="seeds",
    features=Feature.INDEPENDENT_KMEM | Feature.SLABINFO | Feature.SHRINK_USAGE,
    move_charge_mask=3,
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
