"""Pure, synchronous core: page counters, memory cgroups, the hierarchy, profiles.

No I/O, no FUSE, no trio. Every call is atomic with respect to the event loop.
"""

from .errors import CgroupError
from .hierarchy import Hierarchy
from .memcg import MemCgroup, Res
from .page_counter import PAGE_COUNTER_MAX, PAGE_SIZE, PageCounter
from .profiles import DEFAULT_PROFILE, LINUX_6, PROFILES, SEEDS, Profile, get_profile

__all__ = [
    "CgroupError", "Hierarchy", "MemCgroup", "Res", "PAGE_COUNTER_MAX", "PAGE_SIZE",
    "PageCounter", "DEFAULT_PROFILE", "LINUX_6", "PROFILES", "SEEDS", "Profile",
    "get_profile",
]
