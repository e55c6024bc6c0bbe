"""How many CPUs the kernel could bring online: what per-CPU data is allocated for.

mem_cgroup_alloc() allocates its per-CPU statistics for every *possible* CPU
(``for_each_possible_cpu``), so the mkdir charge counts those, not the online ones.
"""

from __future__ import annotations

import os

POSSIBLE = "/sys/devices/system/cpu/possible"


def parse_cpu_list(text: str) -> int:
    """Count the CPUs of a kernel cpu list ("0-3,8,10-11" -> 7)."""
    count = 0
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return count


def possible_cpus() -> int:
    """The machine's possible CPUs; the online count if sysfs does not say."""
    try:
        with open(POSSIBLE) as f:
            n = parse_cpu_list(f.read())
        if n > 0:
            return n
    except (OSError, ValueError):
        pass
    return os.cpu_count() or 1
