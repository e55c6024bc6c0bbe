"""Charge stocks: the kernel's per-CPU stock, kept by each client.

A client asks for up to STOCK_BATCH pages to be precharged in its group, charges
from them locally, and tells the daemon what they became when it settles (at a
refill, at close, or when asked with a ``drain`` notice). Port of consume_stock() /
refill_stock() / drain_stock() / drain_all_stock(), with the stock on the client's
side of the socket.
"""

from __future__ import annotations

from ...protocol import STOCK_BATCH
from ..errors import Invalid
from . import stats
from .group import MemCgroup
from .kinds import KINDS
from .owners import Owner
from .state import MemState

#: A stock is granted only while every level keeps this many pages of headroom after
#: the grant, so near a limit every charge is an exact one.
STOCK_HEADROOM = 16 * STOCK_BATCH


def set_stock(state: MemState, owner: Owner, group: MemCgroup, consumed: dict[str, int],
              want: int) -> int:
    """Settle a client's stock and grant a new one.

    *consumed* says how many pages of the current stock the client used for each
    stockable kind (negative: pages it freed back into the stock); the rest of the
    stock is returned. Then up to *want* pages (at most STOCK_BATCH) are precharged
    in *group*, only while every level keeps STOCK_HEADROOM pages free. Returns the
    pages granted.
    """
    for name in consumed:
        if name not in KINDS or not KINDS[name].stockable:
            raise Invalid(f"{name} pages cannot come from a stock")
    if sum(consumed.values()) > owner.stock:
        raise Invalid(f"consumed more than the stock of {owner.stock} pages")
    sgroup = owner.stock_group
    for name, n in consumed.items():
        if n < 0 and (sgroup is None or -n > owner.ledger(sgroup)[name]):
            raise Invalid(f"returned more {name} pages than charged from the stock")
    if sgroup is not None:
        led = owner.ledger(sgroup)
        for name, n in consumed.items():
            if n:
                # the pages were precharged in the counters; only the ledger and
                # the statistics learn what they became
                acc = KINDS[name].account(sgroup)
                led[acc.name] += n
                stats.account(sgroup.stats, acc, n)
                owner.stock -= n
    return_stock(state, owner)
    # no batching before 2.6.33 (seed 002, seed 004): profile.stock_batch 0
    want = min(max(want, 0), STOCK_BATCH, state.profile.stock_batch)
    if not want or not _roomy(group, want):
        return 0
    group.memsw.charge(want)
    group.memory.charge(want)
    owner.stock = want
    owner.stock_group = group
    return want


def _roomy(group: MemCgroup, want: int) -> bool:
    for counter in (group.memsw, group.memory):
        for c in counter.ancestors():
            if c.max - c.usage < want + STOCK_HEADROOM:
                return False
    return True


def return_stock(state: MemState, owner: Owner) -> None:
    """drain_stock(): uncharge what is left of the owner's stock."""
    if owner.stock and owner.stock_group is not None:
        owner.stock_group.memsw.uncharge(owner.stock)
        owner.stock_group.memory.uncharge(owner.stock)
        state.oom_recover(owner.stock_group)
    owner.stock = 0
    owner.stock_group = None
    owner.drain_asked = False


def drain_all_stock(state: MemState, group: MemCgroup) -> None:
    """drain_all_stock(): a limit in *group* is near, so every client holding a
    stock below it is asked to settle (it does so on its next request)."""
    subtree = set(group.hierarchical_subtree())
    for owner in state.owners:
        if owner.stock and owner.stock_group in subtree and not owner.drain_asked:
            owner.drain_asked = True
            state.effects.notice("drain", owner, {})
