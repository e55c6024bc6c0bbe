"""Who hears about what: cgroup.event_control listeners and release notification.

Pure decisions, after ``mm/memcontrol-v1.c`` (thresholds, OOM notification) and
``mm/vmpressure.c``. A listener carries an opaque ``handle`` (the service's duplicate of
the registered eventfd); firing it is the hierarchy's ``on_event`` hook, so the core
never does I/O.

Differences from the kernel, all in the direction of promptness:
* thresholds are compared after every operation that changed usage (a charge, an
  uncharge, a control-file write, a poll of real processes), not every 128 page events
  per CPU, so a crossing is never missed and never late;
* the vmpressure window (512 scanned pages) is also closed early when a reclaim pass
  ends short of its target, which is when the kernel's reclaim would have dropped to
  its critical priorities (vmpressure_prio).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .page_counter import PAGE_COUNTER_MAX

if TYPE_CHECKING:
    from .memcg import MemCgroup

THRESHOLD, OOM, PRESSURE = "threshold", "oom", "pressure"
LEVELS = ("low", "medium", "critical")
#: vmpressure_win: SWAP_CLUSTER_MAX * 16 pages
VMPRESSURE_WIN = 512
VMPRESSURE_MEDIUM = 60
VMPRESSURE_CRITICAL = 95


@attrs.define(eq=False)
class EventListener:
    """One cgroup.event_control registration."""

    kind: str
    #: the registering process and its descriptor number (to notice it closing)
    pid: int
    fd: int
    handle: object = None
    #: THRESHOLD: pages and which counter; ``above`` is "threshold <= usage" as of the
    #: last check (the kernel's current_threshold position)
    threshold: int = PAGE_COUNTER_MAX
    memsw: bool = False
    above: bool = False
    #: PRESSURE: the lowest level that fires it, and its propagation mode
    level: str = "low"
    mode: str = "default"


def arm_threshold(group: MemCgroup, listener: EventListener) -> None:
    """At registration the kernel places the threshold against current usage; no
    event fires for where usage already is."""
    listener.above = listener.threshold <= group.usage(listener.memsw)


def crossed_thresholds(groups) -> list[EventListener]:
    """__mem_cgroup_threshold(): every threshold whose side of usage changed."""
    fired = []
    for group in groups:
        usage = {}
        for listener in group.events:
            if listener.kind != THRESHOLD:
                continue
            if listener.memsw not in usage:
                usage[listener.memsw] = group.usage(listener.memsw)
            above = listener.threshold <= usage[listener.memsw]
            if above != listener.above:
                listener.above = above
                fired.append(listener)
    return fired


def oom_listeners(group: MemCgroup) -> list[EventListener]:
    """mem_cgroup_oom_notify(): the OOM'ing group notifies its own listeners and those
    of every descendant in its hierarchy."""
    return [listener for g in group.hierarchical_subtree()
            for listener in g.events if listener.kind == OOM]


def pressure_level(scanned: int, reclaimed: int) -> str:
    """vmpressure_calc_level()."""
    if reclaimed >= scanned:
        return "low"
    pressure = (scanned - reclaimed) * 100 // scanned
    if pressure >= VMPRESSURE_CRITICAL:
        return "critical"
    if pressure >= VMPRESSURE_MEDIUM:
        return "medium"
    return "low"


def pressure_listeners(group: MemCgroup, level: str) -> list[EventListener]:
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


def is_releasable(group: MemCgroup) -> bool:
    """check_for_release(): notify_on_release set, no tasks and no child groups."""
    return (not group.is_root and group.online and group.notify_on_release
            and not group.tasks and not group.children)
