"""Charging: the one try_charge, and charge / uncharge of every kind.

:func:`try_charge` is the port of ``try_charge_memcg()`` and the only loop of
counters -> reclaim -> OOM verdict in the emulator: socket charges, a followed task's
growth, a task's charges moving at migration, slab pages and a child's data at mkdir
all go through it. Which counters a kind charges, and in which order (memsw first,
then memory; kmem after both, unconditionally), is the kind table's ``Account`` row
(kinds.py); nothing here names a counter.

The engine never blocks and never signals: when a charge needs an OOM kill or an OOM
wait it returns an :class:`~.oom.OomVerdict` and the caller acts and retries.
"""

from __future__ import annotations

import enum

from ..errors import Invalid, NoMemory
from ..page_counter import PageCounter
from ..profiles import CounterKind
from . import stats
from .events import oom_notify
from .group import MemCgroup
from .kinds import KINDS, Account, Kind
from .oom import OomVerdict, select_victim
from .owners import Ledger, Owner, uncharge_account
from .reclaim import reclaim
from .state import MemState
from .stock import drain_all_stock


class OnOom(enum.Enum):
    """What a charge does when reclaim cannot make room (the kernel's gfp flags)."""

    #: select a victim, or wait with oom_kill_disable: the caller executes the verdict
    VERDICT = "verdict"
    #: tell the OOM listeners, then fail (slab pages: never a kill for them)
    NOTIFY = "notify"
    #: fail at once (the precharge of a migration)
    FAIL = "fail"


def demands(group: MemCgroup, names: tuple[str, ...], nr: int) -> list[tuple[PageCounter, int]]:
    """(counter, pages) for each counter attribute of *group* named."""
    return [(getattr(group, name), nr) for name in names]


def try_charge(state: MemState, tried, forced=(), *, reclaim_ok: bool = True,
               on_oom: OnOom = OnOom.VERDICT, may_wait: bool = False) -> OomVerdict | None:
    """Port of try_charge_memcg(): charge *tried* ((counter, pages) pairs, in order),
    then *forced* without a limit.

    On a refusal by a memory or memsw counter: ask stocks below it back, reclaim in
    the refusing group (swapping only for the memory limit) and retry while reclaim
    makes progress; then OOM as *on_oom* says. A refusal by any other counter (an
    independent kmem limit, kmem.tcp) fails at once: reclaim cannot help it
    (memcg1_charge_skmem). *reclaim_ok* False: no reclaim at all (a child's data at
    mkdir). *may_wait*: with oom_kill_disable, a waiting verdict instead of ENOMEM.

    Returns None when charged, an OomVerdict when only an OOM kill or an OOM wait can
    make room. Raises NoMemory when the charge is refused for good.
    """
    while True:
        # page_counter_try_charge() on each counter in order; a refusal rolls back
        # the counters already charged and names the counter that refused
        done = 0
        for counter, nr in tried:
            fail = counter.try_charge(nr)
            if fail is not None:
                break
            done += 1
        else:
            for counter, n in forced:
                counter.charge(n)
            return None
        for counter, n in tried[:done]:
            counter.uncharge(n)
        over = fail.memcg
        if fail is over.memory:
            may_swap = True
        elif fail is over.memsw:
            may_swap = False
        else:
            raise NoMemory(f"{'kmem.tcp' if fail is over.tcpmem else 'kmem'} limit reached")
        if not reclaim_ok:
            raise NoMemory(f"{'memory' if may_swap else 'memsw'} limit reached")
        drain_all_stock(state, over)
        if reclaim(state, over, fail.usage + nr - fail.max, may_swap) > 0:
            continue
        if on_oom is OnOom.FAIL:
            raise NoMemory("memory limit reached")
        oom_notify(state, over)
        if on_oom is OnOom.NOTIFY:
            raise NoMemory("memory limit reached for kernel memory")
        if not state.oom_kill and not (over.oom_kill_disable and may_wait):
            raise NoMemory("memory limit reached and OOM kills are disabled (-o oom_kill=none)")
        if over.oom_kill_disable:
            if not may_wait:
                raise NoMemory("memory limit reached, OOM killer disabled")
            return OomVerdict(over, None)
        victim = select_victim(state, over)
        if victim is None:
            raise NoMemory("Out of memory and no killable processes")
        return OomVerdict(over, victim)


def charge_account(state: MemState, group: MemCgroup, acc: Account, nr: int, *,
                   on_oom: OnOom = OnOom.VERDICT, may_wait: bool = False,
                   reclaim_ok: bool = True) -> OomVerdict | None:
    """try_charge() of *nr* pages to the counters of *acc* in *group*."""
    forced = demands(group, acc.forced_names, nr) if acc.forced_names else ()
    return try_charge(state, demands(group, acc.tried_names, nr), forced,
                      reclaim_ok=reclaim_ok, on_oom=on_oom, may_wait=may_wait)


def lookup(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise Invalid(f"unknown kind {name!r}")
    return kind


def charge(state: MemState, owner: Owner, group: MemCgroup, name: str, nr: int,
           may_wait: bool = True) -> OomVerdict | None:
    """Charge *nr* pages of kind *name* for *owner* in *group* (the group of the task
    at the time of the charge). None: done. OomVerdict: act, then call again."""
    if nr <= 0:
        return None
    if nr > 1 and state.profile.counter is CounterKind.RES_COUNTER_2007:
        return _charge_by_page(state, owner, group, name, nr, may_wait)
    kind = KINDS.get(name) or lookup(name)
    acc = kind.account(group)
    verdict = try_charge(state, [(getattr(group, n), nr) for n in acc.tried_names],
                         demands(group, acc.forced_names, nr) if acc.forced_names else (),
                         may_wait=may_wait and kind.user)
    if verdict is not None:
        return verdict
    led = owner.ledgers.get(group) or owner.ledger(group)
    led[acc.name] += nr
    stats.account(group.stats, acc, nr)
    return None


def _charge_by_page(state: MemState, owner: Owner, group: MemCgroup, name: str, nr: int,
                    may_wait: bool) -> OomVerdict | None:
    """Seed 002 charges one page per fault or page-cache insertion
    (mem_container_charge()), reclaiming between pages, so its own page cache may be
    reclaimed to make room for its next page. A socket request is all or nothing: on a
    refusal the pages of this request still held are given back."""
    done, verdict = 0, None
    try:
        for _ in range(nr):
            verdict = charge(state, owner, group, name, 1, may_wait)
            if verdict is not None:
                break
            done += 1
    finally:
        if done < nr:
            led = owner.ledgers.get(group)
            if led is not None:
                kind = lookup(name)
                uncharge_kind(state, group, led, kind, min(done, led.held(kind)))
    return verdict


def uncharge_kind(state: MemState, group: MemCgroup, led: Ledger, kind: Kind, nr: int) -> None:
    """Take *nr* pages of *kind* off one ledger, draining its accounts in the table's
    order (anon: resident pages before swapped ones)."""
    for acc in kind.accounts:
        take = led[acc.name]
        if take > nr:
            take = nr
        if take:
            uncharge_account(state, group, led, acc, take)
            nr -= take
            if not nr:
                return


def uncharge(state: MemState, owner: Owner, group: MemCgroup, name: str, nr: int) -> None:
    """Free *nr* pages of kind *name*: first from *group* (where the task is now), then
    from the groups it charged before, oldest first. More than held is EINVAL."""
    kind = KINDS.get(name) or lookup(name)
    led = owner.ledgers.get(group)
    if led is not None and led.held(kind) >= nr:  # the common case: all here
        uncharge_kind(state, group, led, kind, nr)
        state.oom_recover(group)
        return
    held = owner.held(kind)
    if nr > held:
        raise Invalid(f"uncharge of {nr} {name} pages, only {held} charged")
    left = nr
    for g, led in sorted(owner.ledgers.items(), key=lambda item: item[0] is not group):
        take = min(left, led.held(kind))
        if take:
            uncharge_kind(state, g, led, kind, take)
            state.oom_recover(g)
            left -= take
        if not left:
            break
