"""Every profile a mount can name with ``-o kernel=NAME``, and the aliases.

profiles.py says what a profile is; generations.py holds the four mainline kernels,
seed_systems.py the five seed systems; this module only lists them (a new set of
profiles is registered here).
"""

from __future__ import annotations

from .generations import LINUX_3_10, LINUX_4_19, LINUX_5_10, LINUX_6_18
from .profiles import DEFAULT_PROFILE, SEEDS, Profile
from .seed_systems import KMEM_2011, KMEM_2012, KMEM_SLAB_2012, MEMCTL_2007, SHRINK_2008

#: kept for callers of the first version: the 6.18 profile
LINUX_6 = LINUX_6_18

PROFILES: dict[str, Profile] = {
    p.name: p for p in (SEEDS, LINUX_3_10, LINUX_4_19, LINUX_5_10, LINUX_6_18,
                        MEMCTL_2007, SHRINK_2008, KMEM_2011, KMEM_SLAB_2012, KMEM_2012)}
#: other names a user may give
ALIASES = {"linux-6": "linux-6.18"}


def profile_names() -> list[str]:
    return sorted(PROFILES) + sorted(ALIASES)


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(
            f"unknown kernel profile {name!r} (known: {', '.join(profile_names())})"
        ) from None


__all__ = ["DEFAULT_PROFILE", "LINUX_6", "PROFILES", "ALIASES", "profile_names", "get_profile"]
