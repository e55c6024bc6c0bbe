"""A task's end: everything it held is freed, except what the kind table says
outlives it (page cache stays with its group, owned by nobody, until reclaimed)."""

from __future__ import annotations

from . import shared_pages
from .charge import uncharge_kind
from .kinds import FILE, KINDS
from .oom import memcg_of_task
from .owners import LOCKED, Owner, set_locked
from .slab import slab_change
from .state import MemState
from .stock import return_stock

_FREED = tuple(k for k in KINDS.values() if not k.survives_exit)
_ORPHANED = tuple(acc for k in KINDS.values() if k.survives_exit for acc in k.accounts)
assert _ORPHANED == (FILE,)  # orphaned pages are page cache: MemCgroup.orphan_file


def release(state: MemState, owner: Owner) -> None:
    """The task exited (or its client disconnected): its stock, its slab objects and
    every kind that does not survive exit are freed."""
    if not owner.alive:
        return
    owner.alive = False
    state.owners.discard(owner)
    owner.forked.clear()  # its tasks' stacks are kmem of its ledgers: freed below
    return_stock(state, owner)
    for (group, name), count in list(owner.slab_objects.items()):
        slab_change(state, owner, group, name, -count)
    touched = []
    for group, led in list(owner.ledgers.items()):
        if led[LOCKED]:
            set_locked(group, led, 0)
        for kind in _FREED:
            n = led.held(kind)
            if n:
                uncharge_kind(state, group, led, kind, n)
        for acc in _ORPHANED:
            group.orphan_file += led[acc.name]
            led[acc.name] = 0
        del group.ledgers[owner]
        touched.append(group)
    owner.ledgers.clear()
    for group in touched:
        state.oom_recover(group)
    shared_pages.drop_all(state, owner)  # its mappings of shared objects go too


def oom_killed(state: MemState, victim: Owner) -> None:
    """The victim was sent SIGKILL: count it in its group and free its memory (the
    kernel's oom reaper), so the retried charge can succeed."""
    memcg_of_task(state, victim.pid).oom_kill += 1
    for owner in [o for o in state.owners if o.pid == victim.pid]:
        release(state, owner)
    release(state, victim)
