"""Owners and their ledgers: who holds what, where.

A workload is an :class:`Owner` (one client process, or a pid a privileged client
charges for, or a real process the daemon follows). What it holds is kept per group
in a :class:`Ledger`, one entry per account of the kind table, so the invariant the
tests check is simple: the page counters of a group hold exactly what the ledgers,
the orphaned page cache, the slab pages, the charge stocks and the children's mkdir
charges of that group (and, when hierarchical, its descendants) say.
"""

from __future__ import annotations

import itertools

from . import stats
from .group import MemCgroup
from .kinds import ACCOUNTS, FOLLOWED, KINDS, SWAP, Account, Kind

#: the ledger entry of locked pages: counted beside the accounts, charged nowhere
LOCKED = "locked"


class Ledger(dict):
    """What one owner holds in one group, in pages: account name -> pages."""

    __slots__ = ()

    def __init__(self):
        super().__init__(dict.fromkeys(ACCOUNTS, 0))
        self[LOCKED] = 0

    def total(self) -> int:
        return sum(n for name, n in self.items() if name != LOCKED)

    def held(self, kind: Kind | str) -> int:
        if isinstance(kind, str):
            kind = KINDS[kind]
        n = 0
        for name in kind.account_names:
            n += self[name]
        return n


_owner_ids = itertools.count(1)


class Owner:
    """A task that charges memory: its pid, its ledgers, its slab objects, its stock.

    ``followed`` owners are real processes whose memory the daemon reads from /proc;
    the others are socket clients."""

    __slots__ = ("id", "pid", "followed", "charged", "locked", "alive", "ledgers",
                 "slab_objects", "stock", "stock_group", "drain_asked", "forked")

    def __init__(self, pid: int, followed: bool = False):
        self.id = next(_owner_ids)
        self.pid = pid
        self.followed = followed
        #: followed tasks: pages charged so far per followed kind, and locked pages
        self.charged: dict[str, int] = {k.name: 0 for k in FOLLOWED}
        self.locked = 0
        self.alive = True
        self.ledgers: dict[MemCgroup, Ledger] = {}
        #: (group, cache name) -> objects allocated by this owner
        self.slab_objects: dict[tuple[MemCgroup, str], int] = {}
        self.stock = 0
        self.stock_group: MemCgroup | None = None
        #: a "drain" notice was sent and the client has not settled since
        self.drain_asked = False
        #: tasks a client said it forked (protocol ``fork``): (group, account name,
        #: stack pages charged) each, oldest first (stacks.py)
        self.forked: list = []

    def __repr__(self):
        return f"Owner(pid={self.pid}, id={self.id})"

    def ledger(self, group: MemCgroup) -> Ledger:
        led = self.ledgers.get(group)
        if led is None:
            led = self.ledgers[group] = Ledger()
            group.ledgers[self] = led
        return led

    def badness(self) -> int:
        """oom_badness(): resident anon + shmem + mapped file + swap + kernel memory,
        in pages (the accounts the kind table counts in badness)."""
        return sum(led[acc.name] for led in self.ledgers.values()
                   for acc in ACCOUNTS.values() if acc.badness)

    def held(self, kind: Kind | str) -> int:
        """Pages of *kind* (a row or its name) held in every group."""
        if isinstance(kind, str):
            kind = KINDS[kind]
        return sum(led.held(kind) for led in self.ledgers.values())


def uncharge_counters(group: MemCgroup, acc: Account, nr: int) -> None:
    """Every counter *acc* charges gives back *nr* pages."""
    for name in acc.counter_names:
        getattr(group, name).uncharge(nr)


def uncharge_account(state, group: MemCgroup, led: Ledger, acc: Account, nr: int) -> None:
    """Take *nr* pages of *acc* off *led* in *group*: the ledger, every counter the
    account charges, the statistics, and the swap device for swapped pages."""
    led[acc.name] -= nr
    for name in acc.counter_names:
        getattr(group, name).uncharge(nr)
    stats.account(group.stats, acc, -nr)
    if acc is SWAP:
        state.swap_used -= nr


def set_locked(group: MemCgroup, led: Ledger, locked: int) -> None:
    """Count *locked* of the ledger's anon-list pages as unevictable (only the
    change is written to the statistics)."""
    if locked != led[LOCKED]:
        stats.lock(group.stats, locked - led[LOCKED])
        led[LOCKED] = locked
