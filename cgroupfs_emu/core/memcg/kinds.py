"""Kinds of memory, as one table.

Every question about a kind is answered here: which counters its pages are charged
to, which memory.stat keys they count in, whether reclaim may take them, whether a
client may serve them from its stock, whether they outlive their owner, and so on.

Pages sit in an owner's ledger in an :class:`Account`. A kind has one account to
charge to, chosen by the group's settings (kmem: independent or not; tcp: accounting
active or not), and lists every account its pages may be found in, in the order an
uncharge draws from them (anon: resident pages before swapped ones).

========  ==================================  =============================================
kind      counters (tried in order; +forced)  memory.stat
========  ==================================  =============================================
anon      memsw, memory                       rss, active_anon; swapped out: swap (memsw only)
file      memsw, memory                       cache, inactive_file (reclaimable page cache)
shmem     memsw, memory                       cache, shmem, mapped_file, active_anon
mapped    memsw, memory                       cache, mapped_file, active_file (followed tasks)
kmem      by the profile's kmem design:       not in memory.stat (v1 has no kmem key)
          memsw, memory, +kmem (6.6+); memsw,
          memory, kmem (4.6-5.15); kmem, memsw,
          memory once activated, else nothing
          (3.8-4.5); only kmem when
          independent (seed 001); only kmem,
          unlimited (seed 000)
tcp       kmem.tcp, once activated            not in memory.stat
========  ==================================  =============================================

Locked pages (VmLck of a followed task) are not a kind: they are anon-list pages that
moved to the unevictable list, counted beside the ledger, charged nowhere twice.
"""

from __future__ import annotations

import enum

import attrs

from ... import protocol
from ..errors import Invalid
from ..profiles import STAT_INDEX, KmemDesign


class Res(enum.Enum):
    """Which counter of a group (the kernel's MEMFILE_TYPE); the value names the
    MemCgroup attribute."""

    MEM = "memory"
    MEMSW = "memsw"
    KMEM = "kmem"
    TCP = "tcpmem"


class Events(enum.Enum):
    """Which page events a charge of an account counts in memory.stat."""

    NONE = 0
    #: pgpgin / pgpgout (page cache: read in, not faulted)
    PAGEIN = 1
    #: pgpgin / pgpgout, and pgfault at the first touch (anon, shmem, mapped pages)
    FAULT = 2


@attrs.frozen
class Account:
    """A place pages sit in a ledger: the counters holding them and their statistics."""

    name: str
    #: charged with try_charge, in this order (memsw first: try_charge_memcg())
    tried: tuple[Res, ...] = ()
    #: then charged unconditionally (page_counter_charge: v1 kmem never refuses)
    forced: tuple[Res, ...] = ()
    stat_keys: tuple[str, ...] = ()
    events: Events = Events.NONE
    #: counted in oom_badness()
    badness: bool = True
    #: the MemCgroup attribute names of the counters (read on every charge)
    tried_names: tuple[str, ...] = attrs.field(init=False)
    forced_names: tuple[str, ...] = attrs.field(init=False)
    counter_names: tuple[str, ...] = attrs.field(init=False)
    #: what a charge of n pages does to memory.stat, as (key, STAT_INDEX, sign)
    #: triples (key += sign * n): the LRU keys, pgpgin, and pgfault at a first touch;
    #: an uncharge takes the LRU keys back and counts pgpgout (stats.account). Worked
    #: out once here: every charge and uncharge of the socket applies them.
    charge_stats: tuple[tuple[str, int, int], ...] = attrs.field(init=False, repr=False)
    uncharge_stats: tuple[tuple[str, int, int], ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self):
        set_ = object.__setattr__
        set_(self, "tried_names", tuple(r.value for r in self.tried))
        set_(self, "forced_names", tuple(r.value for r in self.forced))
        set_(self, "counter_names", self.tried_names + self.forced_names)
        ins, outs = [(k, 1) for k in self.stat_keys], [(k, -1) for k in self.stat_keys]
        if self.events is not Events.NONE:
            ins.append(("pgpgin", 1))
            if self.events is Events.FAULT:
                ins.append(("pgfault", 1))
            outs.append(("pgpgout", 1))
        set_(self, "charge_stats", tuple((k, STAT_INDEX[k], sign) for k, sign in ins))
        set_(self, "uncharge_stats", tuple((k, STAT_INDEX[k], sign) for k, sign in outs))

    @property
    def counters(self) -> tuple[Res, ...]:
        return self.tried + self.forced


_USER = (Res.MEMSW, Res.MEM)

ANON = Account("anon", _USER, stat_keys=("rss", "active_anon"), events=Events.FAULT)
#: swapped-out anon pages: out of memory, still in memsw
SWAP = Account("swap", (Res.MEMSW,), stat_keys=("swap",))
FILE = Account("file", _USER, stat_keys=("cache", "inactive_file"), events=Events.PAGEIN,
               badness=False)
SHMEM = Account("shmem", _USER, stat_keys=("cache", "shmem", "mapped_file", "active_anon"),
                events=Events.FAULT)
MAPPED = Account("mapped", _USER, stat_keys=("cache", "mapped_file", "active_file"),
                 events=Events.FAULT)
#: 6.6+ (memcg1_account_kmem()): memory, then kmem without a limit
KMEM = Account("kmem", _USER, forced=(Res.KMEM,))
#: seed 001 patch 02: charged while independent_kmem_limit is set, to kmem alone
KMEM_ONLY = Account("kmem_only", (Res.KMEM,))
#: 4.6-5.15 (memcg_kmem_charge_memcg(), __memcg_kmem_charge()): memory first, then
#: the kmem counter, whose limit refuses at once (no reclaim for it)
KMEM_ENFORCED = Account("kmem_enforced", (*_USER, Res.KMEM))
#: 3.8-4.5 (memcg_charge_kmem()), a group whose kmem accounting was activated: the
#: kmem counter first, then memory
KMEM_FIRST = Account("kmem_first", (Res.KMEM, *_USER))
#: 3.8-4.5, a group whose kmem accounting was never activated: not charged at all
KMEM_FREE = Account("kmem_free")
#: seed 000: the kmem counter alone, never refused; memory.usage_in_bytes adds it
#: unless the group is independent (group.MemCgroup.usage)
KMEM_REPORTED = Account("kmem_reported", forced=(Res.KMEM,))
TCP = Account("tcp", (Res.TCP,), badness=False)
#: socket memory of a group whose kmem.tcp accounting is not active: held, not charged
TCP_FREE = Account("tcp_free", badness=False)

ACCOUNTS = {a.name: a for a in (ANON, SWAP, FILE, SHMEM, MAPPED, KMEM, KMEM_ONLY,
                                 KMEM_ENFORCED, KMEM_FIRST, KMEM_FREE, KMEM_REPORTED, TCP,
                                 TCP_FREE)}
#: memory.stat keys of pages that left their LRU list for the unevictable one
LOCKED_KEY, LOCKED_FROM = "unevictable", "active_anon"


@attrs.frozen
class Kind:
    name: str
    #: every account its pages may sit in, in the order an uncharge drains them
    accounts: tuple[Account, ...]
    #: reclaim drops them (the owner is told its page cache was evicted)
    reclaimable: bool = False
    #: reclaim may move them to swap
    swappable: bool = False
    #: a client may charge them from its stock
    stockable: bool = False
    #: they stay charged, owned by nobody, when their owner exits (page cache)
    survives_exit: bool = False
    #: a socket client may charge them
    client: bool = False
    #: read from /proc for a followed task
    followed: bool = False
    #: user pages: a charge may wait on an OOM'ing group with oom_kill_disable;
    #: kernel-internal charges fail instead of sleeping (mem_cgroup_oom_synchronize() is for user faults)
    user: bool = True
    #: reparented to the parent at rmdir; kernel memory becomes unaccounted (seed 001
    #: patch 03)
    reparented: bool = True
    #: the move_charge_at_immigrate bit that moves them with their task (0: never)
    move_bit: int = 0
    #: the names of ``accounts`` (ledger keys), in the same order
    account_names: tuple[str, ...] = attrs.field(init=False)

    def __attrs_post_init__(self):
        object.__setattr__(self, "account_names", tuple(a.name for a in self.accounts))

    def account(self, memcg) -> Account:
        """The account a charge of this kind goes to in *memcg* now."""
        if self is KIND_KMEM:
            return kmem_account(memcg)
        if self is KIND_TCP:
            return TCP if memcg.tcpmem_active else TCP_FREE
        return self.accounts[0]


#: move_charge_at_immigrate bits (mm/memcontrol-v1.c MOVE_ANON, MOVE_FILE)
MOVE_ANON, MOVE_FILE = 1, 2

KIND_ANON = Kind("anon", (ANON, SWAP), swappable=True, stockable=True, client=True,
                 followed=True, move_bit=MOVE_ANON)
KIND_FILE = Kind("file", (FILE,), reclaimable=True, stockable=True, survives_exit=True,
                 client=True)
KIND_SHMEM = Kind("shmem", (SHMEM,), stockable=True, client=True, followed=True,
                  move_bit=MOVE_FILE)
KIND_MAPPED = Kind("mapped", (MAPPED,), followed=True, move_bit=MOVE_FILE)
KIND_KMEM = Kind("kmem", (KMEM_ONLY, KMEM, KMEM_ENFORCED, KMEM_FIRST, KMEM_FREE,
                          KMEM_REPORTED), client=True, user=False, reparented=False)
KIND_TCP = Kind("tcp", (TCP_FREE, TCP), client=True, user=False, reparented=False)

KINDS = {k.name: k for k in (KIND_ANON, KIND_FILE, KIND_SHMEM, KIND_MAPPED, KIND_KMEM, KIND_TCP)}
#: what the daemon reads from /proc for a followed task, in charging order
FOLLOWED = tuple(k for k in KINDS.values() if k.followed)

# The protocol names the kinds a client may send; the table must agree with it.
assert tuple(k.name for k in KINDS.values() if k.client) == protocol.KINDS
assert tuple(k.name for k in KINDS.values() if k.stockable) == protocol.STOCK_KINDS


def kmem_account(memcg) -> Account:
    """Where kernel memory of *memcg* is charged now, by the profile's kmem design
    (profiles.KmemDesign): the one place that decides it, for client kmem, slab pages
    and a child's data at mkdir alike."""
    design = memcg.state.profile.kmem
    if design is KmemDesign.INDEPENDENT:
        return KMEM_ONLY if memcg.independent_kmem_limit else KMEM
    if design is KmemDesign.ENFORCED:
        return KMEM_ENFORCED
    if design is KmemDesign.ACTIVATED_BY_LIMIT:
        return KMEM_FIRST if memcg.kmem_active else KMEM_FREE
    if design is KmemDesign.REPORTED:
        return KMEM_REPORTED
    return KMEM


def kind(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise Invalid(f"unknown kind {name!r}") from None
