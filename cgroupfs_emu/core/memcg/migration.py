"""Charges that change groups: move_charge at migration, reparenting at rmdir, and a
followed task's usage brought up to date.

* :func:`prepare_move` / :func:`commit_move` -- mem_cgroup_can_attach() precharges the
  destination (through try_charge, reclaim allowed, no OOM); mem_cgroup_move_task()
  moves the pages. Which kinds move for which move_charge_at_immigrate bit is the
  kind table's ``move_bit``.
* :func:`offline` -- mem_cgroup_css_offline(): kernel memory becomes unaccounted,
  everything else is reparented.
* :func:`reparent_lru` -- 3.x force_empty's last step, mem_cgroup_reparent_charges():
  the user pages reclaim left move to the parent (or the root).
* :func:`follow` -- a followed task's pages per kind, as read from /proc, charged or
  uncharged by the difference.
"""

from __future__ import annotations

import attrs

from ..errors import Busy, NoMemory
from ..profiles import Leftovers
from . import stats
from .charge import OnOom, charge, try_charge, uncharge, uncharge_kind
from .group import MemCgroup
from .kinds import ANON, FILE, FOLLOWED, KIND_KMEM, KINDS, SHMEM, SWAP, Account, Res
from .owners import LOCKED, Ledger, Owner, set_locked, uncharge_counters
from .slab import drop_caches
from .state import MemState

_REPARENTED = tuple(acc for k in KINDS.values() if k.reparented for acc in k.accounts)
#: the pages mem_cgroup_force_empty_list() finds on a group's LRU lists: not the
#: swapped-out ones (their swap records keep the group) and not kernel memory
_ON_LRU = tuple(acc for acc in _REPARENTED if acc is not SWAP)
_UNACCOUNTED = tuple(k for k in KINDS.values() if not k.reparented)


@attrs.frozen
class MovePlan:
    """What prepare_move() precharged in *dst*, for commit_move()."""

    src: MemCgroup
    dst: MemCgroup
    moves: tuple[tuple[Owner, Ledger, Account, int], ...]


def prepare_move(state: MemState, owners, src: MemCgroup, dst: MemCgroup,
                 mask: int) -> MovePlan | None:
    """mem_cgroup_can_attach() + mem_cgroup_precharge_mc(): the charges the leader's
    owners hold in *src* of the kinds *mask* selects are precharged in *dst*. If *dst*
    cannot take them, nothing moves and the migration fails with ENOMEM."""
    accounts = [acc for k in KINDS.values() if k.move_bit & mask for acc in k.accounts]
    if not accounts or src is dst:
        return None
    moves = []
    for owner in owners:
        led = owner.ledgers.get(src)
        if led is not None:
            moves.extend((owner, led, acc, led[acc.name]) for acc in accounts if led[acc.name])
    if not moves:
        return None
    # every counter a moved account charges, in the accounts' order (memsw first),
    # with its pages: swapped pages need memsw only
    need: dict[Res, int] = {}
    for _, _, acc, n in moves:
        for res in acc.tried:
            need[res] = need.get(res, 0) + n
    try_charge(state, [(dst.counter(res), n) for res, n in need.items()], on_oom=OnOom.FAIL)
    return MovePlan(src, dst, tuple(moves))


def commit_move(state: MemState, plan: MovePlan) -> None:
    """mem_cgroup_move_task(): the precharged pages change ledgers; the source gives
    its charges back; statistics follow the pages, page events stay."""
    src, dst = plan.src, plan.dst
    for owner, led, acc, n in plan.moves:
        led[acc.name] -= n
        owner.ledger(dst)[acc.name] += n
        uncharge_counters(src, acc, n)
        stats.move(src.stats, dst.stats, acc, n)
    # locked pages go with the anon-list pages that moved
    for owner, led, _, _ in plan.moves:
        excess = led[LOCKED] - (led[ANON.name] + led[SHMEM.name])
        if excess > 0:
            set_locked(src, led, led[LOCKED] - excess)
            dled = owner.ledger(dst)
            set_locked(dst, dled, dled[LOCKED] + excess)
    state.oom_recover(src)


def move_charge(state: MemState, owners, src: MemCgroup, dst: MemCgroup, mask: int) -> None:
    """mem_cgroup_move_charge(): prepare_move() then commit_move()."""
    plan = prepare_move(state, owners, src, dst, mask)
    if plan is not None:
        commit_move(state, plan)


def offline(state: MemState, group: MemCgroup) -> None:
    """mem_cgroup_css_offline(): kernel memory becomes unaccounted (seed 001 patch
    03); user pages, page cache and stocks are reparented.

    They go where the group's counters are chained: to the parent when it is
    hierarchical, which already counts them, so no limit can break; otherwise to the
    root, as mem_cgroup_move_parent() does (parent_mem_cgroup() is NULL for a child
    of a use_hierarchy=0 group, so root_mem_cgroup takes them). Charging them to an
    unchained parent would break its limit: pages that never
    counted against it cannot be pushed under it.
    """
    chained = group.counter(Res.MEM).parent is not None
    parent = group.parent if chained else state.root
    profile = state.profile
    if profile.force_empty_drops:
        drop_charges(state, group)
    kept = dict.fromkeys((Res.MEM, Res.MEMSW), 0)
    for owner, led in list(group.ledgers.items()):
        for kind in _UNACCOUNTED:
            n = led.held(kind)
            if not n:
                continue
            if kind is KIND_KMEM and profile.kmem_outlives_group:
                # seed 003 patch 8: kmem charges stay with the dead group (and its
                # ancestors, through the hierarchy) until they are freed
                for acc in kind.accounts:
                    for res in kept:
                        if res in acc.counters:
                            kept[res] += led[acc.name]
                continue
            uncharge_kind(state, group, led, kind, n)
    drop_caches(state, group)
    for owner, led in list(group.ledgers.items()):
        pled = owner.ledger(parent)
        for name in [acc.name for acc in _REPARENTED] + [LOCKED]:
            pled[name] += led[name]
            led[name] = 0
        if led.total():
            continue  # what outlives the group stays in its ledger
        del group.ledgers[owner]
        del owner.ledgers[group]
    stats.reparent(group.stats, parent.stats)
    parent.orphan_file += group.orphan_file
    group.orphan_file = 0
    for owner in state.owners:
        if owner.stock_group is group:
            owner.stock_group = parent
    # Move the counters out of the child's chain into the parent's (rmdir left no
    # children, so what is left is exactly the reparented pages and stocks).
    for res in (Res.MEM, Res.MEMSW):
        n = group.counter(res).usage - kept[res]
        group.counter(res).uncharge(n)
        parent.counter(res).charge(n)


def reparent_lru(state: MemState, group: MemCgroup) -> None:
    """Port of mem_cgroup_reparent_charges() as 3.x mem_cgroup_force_empty() ends:
    every user page still on the group's LRU lists after reclaim (resident anon,
    shmem, mapped and page cache, locked pages included) moves, with its statistics,
    to the group the profile's :class:`~..profiles.Leftovers` variant names. Swapped
    pages and kernel memory stay (the kernel loops on usage minus kmem usage).

    * TO_PARENT (3.5-3.15): a hierarchical parent already counts the pages, so only
      the group's own counters give them back (__mem_cgroup_cancel_local_charge());
      past a non-hierarchical parent they go to the root, which has no limit
      (mem_cgroup_move_parent(): parent_mem_cgroup() is NULL, so root_mem_cgroup);
    * CHARGE_PARENT (<= 3.4): mem_cgroup_move_parent() first charges the parent
      (__mem_cgroup_try_charge(): it may reclaim, never OOM-kill), hierarchical or
      not, then uncharges the group's whole chain (mem_cgroup_move_account(...,
      uncharge=true)); a hierarchical parent so needs room for the pages twice for a
      moment. If it cannot take them the write is EBUSY (the kernel's second pass to
      try_to_free). Differs from the kernel: all or nothing, where the kernel may
      have moved some pages before the ENOMEM.
    """
    variant = state.profile.force_empty_leftovers
    if variant is Leftovers.STAY or group.is_root:
        return
    chained = group.memory.parent is not None
    precharged = variant is Leftovers.CHARGE_PARENT
    target = group.parent if chained or precharged else state.root
    moves = [(owner, led, acc, led[acc.name]) for owner, led in group.ledgers.items()
             for acc in _ON_LRU if led[acc.name]]
    orphans = group.orphan_file
    if not moves and not orphans:
        return
    # what each counter gives up (memsw first, as every account lists it)
    need: dict[Res, int] = {}
    for acc, n in [(acc, n) for _, _, acc, n in moves] + [(FILE, orphans)]:
        for res in acc.tried:
            need[res] = need.get(res, 0) + n
    if precharged:
        try:
            try_charge(state, [(target.counter(res), n) for res, n in need.items() if n],
                       on_oom=OnOom.FAIL)
        except NoMemory:
            raise Busy("the parent cannot take the pages force_empty left") from None
    for owner, led, acc, n in moves:
        if led[LOCKED]:
            locked = led[LOCKED]
            set_locked(group, led, 0)
            pled = owner.ledger(target)
            set_locked(target, pled, pled[LOCKED] + locked)
        led[acc.name] -= n
        owner.ledger(target)[acc.name] += n
        stats.move(group.stats, target.stats, acc, n)
    if orphans:
        stats.move(group.stats, target.stats, FILE, orphans)
        target.orphan_file += orphans
        group.orphan_file = 0
    for owner, led in list(group.ledgers.items()):
        if not led.total() and not led[LOCKED]:
            del group.ledgers[owner]
            del owner.ledgers[group]
    # the group's chain gives the pages back; the target takes them (unless it was
    # precharged), so a hierarchical parent ends where it was
    for res, n in need.items():
        group.counter(res).uncharge(n)
        if not precharged:
            target.counter(res).charge(n)
    state.oom_recover(group)


def drop_charges(state: MemState, group: MemCgroup) -> None:
    """2.6.26 mem_cgroup_force_empty(): every charge of the group is dropped; the pages
    stay in memory, accounted nowhere."""
    for owner, led in list(group.ledgers.items()):
        for kind in KINDS.values():
            n = led.held(kind)
            if n:
                uncharge_kind(state, group, led, kind, n)
        if led[LOCKED]:
            set_locked(group, led, 0)
    if group.orphan_file:
        uncharge_counters(group, FILE, group.orphan_file)
        stats.account(group.stats, FILE, -group.orphan_file)
        group.orphan_file = 0


def follow(state: MemState, owner: Owner, group: MemCgroup, usage: dict[str, int],
           locked: int):
    """Bring a followed task's charges to *usage* (pages per followed kind touched
    since it joined): growth is charged in *group*, its group now; shrinking is
    uncharged from *group* first, then from the groups it was in before.

    Returns an OomVerdict when growth does not fit; that growth stays uncharged
    (real memory cannot be reclaimed from outside) until a later call fits it.
    """
    for kind in FOLLOWED:
        have, want = owner.charged[kind.name], max(0, usage.get(kind.name, 0))
        if want < have:
            uncharge(state, owner, group, kind.name, have - want)
            owner.charged[kind.name] = want
    for kind in FOLLOWED:
        have, want = owner.charged[kind.name], max(0, usage.get(kind.name, 0))
        if want > have:
            try:
                verdict = charge(state, owner, group, kind.name, want - have)
            except NoMemory:
                _charge_to_limit(state, owner, group, kind, want - have)
                raise
            if verdict is not None:
                _charge_to_limit(state, owner, group, kind, want - have)
                return verdict
            owner.charged[kind.name] = want
    # counted off the anon list: at most the anon and shmem pages charged
    _follow_locked(owner, group, min(locked, owner.charged[ANON.name] + owner.charged[SHMEM.name]))
    return None


def _charge_to_limit(state: MemState, owner: Owner, group: MemCgroup, kind, nr: int) -> None:
    """A real task faults its pages one at a time: when growth of *nr* pages does not
    fit, the pages up to the limit were charged before the one that failed
    (try_charge_memcg() per fault), so usage and max_usage reach the limit and
    failcnt counts the failed charge (already counted by the refusal)."""
    acc = kind.account(group)
    room = min(c.max - c.usage for res in acc.tried for c in group.counter(res).ancestors())
    room = min(room, nr - 1)
    if room > 0 and charge(state, owner, group, kind.name, room) is None:
        owner.charged[kind.name] += room


def _follow_locked(owner: Owner, group: MemCgroup, locked: int) -> None:
    """Place *locked* pages on the ledgers that hold anon-list pages (anon, shmem),
    the current group first; only changes are written to the statistics."""
    left = locked
    for g, led in sorted(owner.ledgers.items(), key=lambda i: i[0] is not group):
        want = min(left, led[ANON.name] + led[SHMEM.name])
        left -= want
        set_locked(g, led, want)
    owner.locked = locked - left

