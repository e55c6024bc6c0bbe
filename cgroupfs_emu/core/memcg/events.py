"""cgroup.event_control listeners: usage thresholds and OOM notification.

Pure decisions, after ``mm/memcontrol-v1.c`` (__mem_cgroup_threshold,
mem_cgroup_oom_notify, memcg_event_remove). A listener carries an opaque ``handle``
(the service's duplicate of the registered eventfd); firing it goes out through the
effects port, so the core never does I/O. Memory pressure listeners are registered
here too; when they fire is vmpressure.py's business.

Difference from the kernel, in the direction of promptness: thresholds are compared
after every operation of the memory controller that may have changed usage (a
charge, an uncharge, a control-file write, a poll of real processes), not every 128
page events per CPU, so a crossing is never missed and never late. The controller
calls :func:`check_thresholds` at the end of each of its operations, and nowhere
else does.
"""

from __future__ import annotations

import attrs

from ..page_counter import PAGE_COUNTER_MAX
from .group import MemCgroup
from .state import MemState

THRESHOLD, OOM, PRESSURE = "threshold", "oom", "pressure"


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

    def take_handle(self, handle) -> None:
        """The service's duplicate of the registering process's eventfd."""
        self.handle = handle


def _depth(group: MemCgroup) -> int:
    depth = 0
    while group.parent is not None:
        group, depth = group.parent, depth + 1
    return depth


def register(state: MemState, group: MemCgroup, listener: EventListener) -> None:
    """memcg_write_event_control() after parsing: arm a threshold against current
    usage (no event fires for where usage already is); an OOM listener registered
    while the group is already under OOM hears it at once."""
    group.events.append(listener)
    if group not in state.listening:
        # Deepest first: mem_cgroup_threshold() walks from the charged group up to
        # the root, so a child's thresholds fire before its parent's. A group never
        # changes depth (cgroup1_rename() stays in the parent), so the order is made
        # here, at a registration, and never per check.
        state.listening = dict.fromkeys(
            sorted([*state.listening, group], key=_depth, reverse=True))
    if listener.kind == THRESHOLD:
        state.thresholds += 1
        listener.above = listener.threshold <= group.usage(listener.memsw)
    elif listener.kind == OOM and group.under_oom:
        state.effects.fire(listener)


def unregister(state: MemState, listener: EventListener) -> None:
    """The registering process closed its eventfd: forget the listener."""
    for group in state.listening:
        if listener in group.events:
            group.events.remove(listener)
            if not group.events:
                del state.listening[group]
            state.thresholds -= listener.kind == THRESHOLD
            state.effects.unregister(listener)
            return


def remove_all(state: MemState, group: MemCgroup) -> None:
    """memcg_event_remove at offline: every listener hears once, then is dropped."""
    for listener in group.events:
        state.effects.fire(listener)
        state.thresholds -= listener.kind == THRESHOLD
        state.effects.unregister(listener)
    group.events.clear()
    state.listening.pop(group, None)


def listeners(state: MemState):
    """Every registered listener (of the groups that have one)."""
    for group in list(state.listening):
        yield from group.events


def check_thresholds(state: MemState) -> None:
    """mem_cgroup_threshold() -> __mem_cgroup_threshold(): fire every threshold whose
    side of usage changed. Visits only the groups that have listeners, deepest first
    (see register); in a group the memory thresholds before the memsw ones, each in
    the kernel's array order: ascending when usage rose past them, descending when
    it fell below them. Where one operation changed groups in two branches (a move,
    a reclaim of a subtree) the kernel's order is that of its memcg_check_events()
    calls, which is not modelled."""
    if not state.thresholds:
        return  # the common case: called after every operation, nothing to check
    for group in state.listening:
        for memsw in (False, True):
            crossed = [listener for listener in group.events
                       if listener.kind == THRESHOLD and listener.memsw == memsw]
            if not crossed:
                continue
            usage = group.usage(memsw)
            crossed = [listener for listener in crossed
                       if (listener.threshold <= usage) != listener.above]
            if not crossed:
                continue
            rose = not crossed[0].above
            crossed.sort(key=lambda listener: listener.threshold, reverse=not rose)
            for listener in crossed:
                listener.above = rose
                state.effects.fire(listener)


def oom_notify(state: MemState, group: MemCgroup) -> None:
    """mem_cgroup_oom_notify(): the OOM'ing group notifies its own listeners and those
    of every descendant in its hierarchy (in the kernel's pre-order, so the walk
    stays; skipped when no group listens at all)."""
    if not state.listening:
        return
    for g in group.hierarchical_subtree():
        for listener in g.events:
            if listener.kind == OOM:
                state.effects.fire(listener)
