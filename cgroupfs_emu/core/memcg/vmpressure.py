"""Memory pressure notification: a port of ``mm/vmpressure.c``.

Reclaim reports how many pages it scanned and reclaimed for the group whose limit
drove it; once a window of VMPRESSURE_WIN pages is full, the level is computed and
the listeners up the tree hear it according to their mode.

Difference from the kernel, in the direction of promptness: the window is also closed
early when a reclaim pass ends short of its target, which is when the kernel's reclaim
would have dropped to its critical priorities (vmpressure_prio).
"""

from __future__ import annotations

from .events import PRESSURE
from .group import MemCgroup
from .state import MemState

LEVELS = ("low", "medium", "critical")
MODES = ("default", "hierarchy", "local")
#: vmpressure_win: SWAP_CLUSTER_MAX * 16 pages
VMPRESSURE_WIN = 512
VMPRESSURE_MEDIUM = 60
VMPRESSURE_CRITICAL = 95
#: pressure is a percentage of the pages scanned
_PERCENT = 100


def pressure_level(scanned: int, reclaimed: int) -> str:
    """vmpressure_calc_level()."""
    if reclaimed >= scanned:
        return "low"
    pressure = (scanned - reclaimed) * _PERCENT // scanned
    if pressure >= VMPRESSURE_CRITICAL:
        return "critical"
    if pressure >= VMPRESSURE_MEDIUM:
        return "medium"
    return "low"


def pressure_listeners(group: MemCgroup, level: str) -> list:
    """vmpressure_work_fn() + vmpressure_event(): walk from the reclaimed group up.
    ``local`` listeners only hear their own group; ``default`` ones only if nobody
    below was signalled; ``hierarchy`` ones always."""
    rank = LEVELS.index(level)
    fired, signalled, ancestor = [], False, False
    g = group
    while g is not None:
        hit = False
        for listener in g.events:
            if listener.kind != PRESSURE or LEVELS.index(listener.level) > rank:
                continue
            if ancestor and listener.mode == "local":
                continue
            if signalled and listener.mode == "default":
                continue
            fired.append(listener)
            hit = True
        signalled = signalled or hit
        ancestor = True
        g = g.parent
    return fired


def vmpressure(state: MemState, group: MemCgroup, scanned: int, reclaimed: int) -> None:
    """vmpressure(tree=true) on the group whose limit drove reclaim."""
    if scanned <= 0:
        return
    group.vmpr_scanned += scanned
    group.vmpr_reclaimed += min(reclaimed, scanned)
    if group.vmpr_scanned < VMPRESSURE_WIN and reclaimed >= scanned:
        return
    level = pressure_level(group.vmpr_scanned, group.vmpr_reclaimed)
    group.vmpr_scanned = group.vmpr_reclaimed = 0
    for listener in pressure_listeners(group, level):
        state.effects.fire(listener)
