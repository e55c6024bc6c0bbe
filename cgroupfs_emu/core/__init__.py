"""Pure, synchronous core: the cgroup core, the memory controller, profiles.

No I/O, no FUSE, no trio. Every call is atomic with respect to the event loop.
Effects leave through one port (port.Effects); facts come in as constructor
arguments.

    cgroup.py      the tree of groups and tasks; calls its subsystems
    memcg/         the memory subsystem, one module per mechanism
    page_counter   mm/page_counter.c
    profiles       what a profile is (kernel generations and seed systems as data)
    generations    the four mainline kernels; seed_systems: the five seed patch
                   series; catalog: every profile by name
    port           the effects port
    errors         the errno vocabulary
"""

from __future__ import annotations

from .cgroup import Cgroup, Hierarchy, NameRules, Subsystem, TaskSet
from .errors import CgroupError
from .memcg import MemCgroup, MemoryController, Res, TaskFacts
from .page_counter import PAGE_COUNTER_MAX, PAGE_SIZE, PageCounter
from .port import Effects, RecordingEffects
from .catalog import LINUX_6, PROFILES, get_profile
from .profiles import DEFAULT_PROFILE, SEEDS, Feature, Profile


def memory_hierarchy(profile: Profile = DEFAULT_PROFILE, effects: Effects | None = None, *,
                     facts: TaskFacts | None = None, swap_pages: int = 0,
                     oom_kill: bool = True, release_agent: str = "", owner_uid: int = 0,
                     before: tuple = (), ncpus: int = 1) -> tuple[Hierarchy, MemoryController]:
    """A hierarchy with the memory subsystem bound (after the subsystems *before*,
    whose can_attach runs first): what a mount serves, and what core tests use.
    *ncpus*: the possible CPUs a new group's per-CPU data is charged for."""
    effects = effects or Effects()
    memory = MemoryController(profile, effects, facts, swap_pages=swap_pages,
                              oom_kill=oom_kill, ncpus=ncpus)
    hierarchy = Hierarchy((*before, memory), effects, release_agent=release_agent,
                          owner_uid=owner_uid, names=profile.name_rules())
    return hierarchy, memory


__all__ = [
    "Cgroup", "Hierarchy", "NameRules", "Subsystem", "TaskSet", "CgroupError", "MemCgroup",
    "MemoryController", "Res", "TaskFacts", "PAGE_COUNTER_MAX", "PAGE_SIZE", "PageCounter",
    "Effects", "RecordingEffects", "DEFAULT_PROFILE", "LINUX_6", "PROFILES", "SEEDS",
    "Feature", "Profile", "get_profile", "memory_hierarchy",
]
