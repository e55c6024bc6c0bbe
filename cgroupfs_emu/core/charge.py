"""Charging, reclaim and OOM decisions: the part of ``mm/memcontrol.c`` that moves
the counters.

A workload is an :class:`Owner` (one client process, or a pid a privileged client
charges for). Everything it holds is kept per group in a :class:`Ledger`, so the
invariant the tests check is simple: the page counters of a group hold exactly what
the ledgers, the orphaned page cache, the slab pages, the charge stocks and the
children's mkdir charges of that group (and, when hierarchical, its descendants) say.

Kinds of memory and where they go (spec 3.1, seed 001):

========  ==============================  =================================================
kind      counters                        memory.stat
========  ==============================  =================================================
anon      memory + memsw                  rss, active_anon; swapped out: swap (memsw only)
file      memory + memsw                  cache, inactive_file (reclaimable page cache)
shmem     memory + memsw                  cache, shmem, mapped_file, active_anon
mapped    memory + memsw                  cache, mapped_file, active_file (followed tasks)
kmem      memory + memsw + kmem, or only  not in memory.stat (v1 has no kmem key)
          kmem when independent (seeds)
tcp       kmem.tcp, once activated        not in memory.stat
========  ==============================  =================================================

The engine never blocks and never signals: when a charge needs an OOM kill or an OOM
wait it returns an :class:`OomVerdict` and the caller (the service) acts and retries.
Messages for clients (an eviction of their page cache, a request to return their
stock) are queued in :attr:`Charges.notices`.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Callable, Iterable

import attrs

from .errors import Invalid, NoMemory
from .page_counter import PAGE_SIZE, PageCounter

if TYPE_CHECKING:
    from .hierarchy import Hierarchy
    from .memcg import MemCgroup

#: what a client may charge through the socket
KINDS = ("anon", "file", "shmem", "kmem", "tcp")
#: what the daemon reads from /proc for a followed task: anon (RssAnon), shmem
#: (RssShmem), mapped (RssFile: file pages mapped by the task)
FOLLOWED_KINDS = ("anon", "shmem", "mapped")
#: kinds a task never frees by exiting: page cache stays with its group
USER_KINDS = ("anon", "file", "shmem", "mapped")
#: Kinds a client may serve from its stock: user pages, charged to memory + memsw.
STOCK_KINDS = ("anon", "file", "shmem")
#: oom_score_adj of a task the OOM killer must never choose
OOM_SCORE_ADJ_MIN = -1000
#: The kernel's MEMCG_CHARGE_BATCH: the most a stock holds.
STOCK_BATCH = 64
#: A stock is granted only while every level keeps this many pages of headroom after
#: the grant, so near a limit every charge is an exact one.
STOCK_HEADROOM = 16 * STOCK_BATCH


#: memory.stat keys a page of each kind counts in (LRU split: anon and shmem are
#: swap-backed and start on the active anon list, page cache on the inactive file
#: list, mapped file pages on the active file list; mlocked pages leave their list for
#: unevictable, and a followed task's locked pages are counted off the anon list)
_STAT_KEYS_OF_KIND = {
    "anon": ("rss", "active_anon"),
    "shmem": ("cache", "shmem", "mapped_file", "active_anon"),
    "file": ("cache", "inactive_file"),
    "mapped": ("cache", "mapped_file", "active_file"),
    "locked": ("unevictable",),
}


def pages_of(nbytes: int) -> int:
    """Whole pages for an allocation of *nbytes* (rounded up, like a fault)."""
    return -(-nbytes // PAGE_SIZE)


class Ledger:
    """What one owner holds in one group, in pages."""

    __slots__ = ("anon", "swap", "file", "shmem", "mapped", "kmem", "kmem_only", "tcp",
                 "tcp_free", "locked")

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    def total(self) -> int:
        return sum(getattr(self, n) for n in self.__slots__ if n != "locked")


_owner_ids = itertools.count(1)


class Owner:
    """A task that charges memory: its pid, its ledgers, its slab objects, its stock.

    ``followed`` owners are real processes whose memory the daemon reads from /proc;
    the others are socket clients."""

    def __init__(self, pid: int, followed: bool = False):
        self.id = next(_owner_ids)
        self.pid = pid
        self.followed = followed
        #: followed tasks: pages charged so far per kind, and locked pages counted
        self.charged = dict.fromkeys(FOLLOWED_KINDS, 0)
        self.locked = 0
        self.alive = True
        self.ledgers: dict[MemCgroup, Ledger] = {}
        #: (group, cache name) -> objects allocated by this owner
        self.slab_objects: dict[tuple[MemCgroup, str], int] = {}
        self.stock = 0
        self.stock_group: MemCgroup | None = None
        #: a "drain" notice was sent and the client has not settled since
        self.drain_asked = False

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
        in pages."""
        return sum(led.anon + led.swap + led.shmem + led.mapped + led.kmem + led.kmem_only
                   for led in self.ledgers.values())

    def held(self, kind: str) -> int:
        return sum(_held(led, kind) for led in self.ledgers.values())


def _held(led: Ledger, kind: str) -> int:
    if kind == "anon":
        return led.anon + led.swap
    if kind == "kmem":
        return led.kmem + led.kmem_only
    if kind == "tcp":
        return led.tcp + led.tcp_free
    return getattr(led, kind)


@attrs.frozen
class OomVerdict:
    """Reclaim could not make room in *group*: kill *victim* (then retry the charge),
    or, with *victim* None, wait until the group recovers (oom_kill_disable)."""

    group: MemCgroup
    victim: Owner | None


@attrs.define
class SlabCache:
    """A per-group slab cache (seed 001 patches 07-12): objects pack into slabs."""

    display_name: str
    objsize: int
    active: int = 0
    #: of the pages below, how many are charged to kmem only (independent limit)
    pages_only: int = 0
    pages_mem: int = 0

    @property
    def objs_per_slab(self) -> int:
        return max(1, PAGE_SIZE // self.objsize)

    @property
    def pages_per_slab(self) -> int:
        return pages_of(self.objsize) if self.objsize > PAGE_SIZE else 1

    def slabs_for(self, active: int) -> int:
        return -(-active // self.objs_per_slab)

    def pages_for(self, active: int) -> int:
        return self.slabs_for(active) * self.pages_per_slab

    @property
    def num_objs(self) -> int:
        return self.slabs_for(self.active) * self.objs_per_slab


class Charges:
    """The charging engine of one hierarchy."""

    def __init__(self, hierarchy: Hierarchy, swap_pages: int = 0, oom_kill: bool = True):
        self.hierarchy = hierarchy
        #: the emulated swap device (``-o swap=SIZE``)
        self.swap_total = swap_pages
        self.swap_used = 0
        #: False: ``-o oom_kill=none``, an OOM refuses the charge instead of killing
        self.oom_kill = oom_kill
        #: pid -> may this pid be signalled? The service refuses pid 1, itself and its
        #: ancestors; tests of the pure core accept everything.
        self.may_kill: Callable[[int], bool] = lambda pid: True
        #: pid -> its /proc/PID/oom_score_adj (the service reads it; 0 in pure tests)
        self.oom_score_adj: Callable[[int], int] = lambda pid: 0
        #: (kind, owner, detail) messages for clients, kept until the service drains
        #: them, or handed to ``on_notice`` at once when the service sets it
        self.notices: list[tuple[str, Owner, dict]] = []
        self.on_notice: Callable[[str, Owner, dict], None] | None = None
        self.owners: set[Owner] = set()

    def _notice(self, kind: str, owner: Owner, detail: dict) -> None:
        if self.on_notice is not None:
            self.on_notice(kind, owner, detail)
        else:
            self.notices.append((kind, owner, detail))

    # ------------------------------------------------------------------ owners

    def new_owner(self, pid: int, followed: bool = False) -> Owner:
        owner = Owner(pid, followed)
        self.owners.add(owner)
        return owner

    def release(self, owner: Owner) -> None:
        """The task exited (or its client disconnected): anon, swap, shmem, kmem, tcp,
        slab objects and the stock are freed; page cache stays with its group, owned
        by nobody, until reclaimed (spec 3.1: page cache outlives its process)."""
        if not owner.alive:
            return
        owner.alive = False
        self.owners.discard(owner)
        self._return_stock(owner)
        for (group, name), count in list(owner.slab_objects.items()):
            self._slab_change(owner, group, name, -count)
        touched = []
        for group, led in list(owner.ledgers.items()):
            if led.locked:
                self._stat(group, "locked", -led.locked)
                led.locked = 0
            for kind in ("anon", "shmem", "mapped", "kmem", "tcp"):
                n = _held(led, kind)
                if n:
                    self._uncharge_ledger(group, led, kind, n)
            if led.file:
                group.orphan_file += led.file
                led.file = 0
            del group.ledgers[owner]
            touched.append(group)
        owner.ledgers.clear()
        for group in touched:
            self.hierarchy.oom_recover(group)

    # ------------------------------------------------------------------ counters

    def _user_counters(self, group: MemCgroup) -> tuple[PageCounter, ...]:
        return (group.memsw, group.memory)

    def _try_counters(self, counters: Iterable[PageCounter], nr: int) -> PageCounter | None:
        """try_charge_memcg(): memsw first, then memory; roll back on a refusal."""
        done = []
        for c in counters:
            fail = c.try_charge(nr)
            if fail is not None:
                for d in done:
                    d.uncharge(nr)
                return fail
            done.append(c)
        return None

    @staticmethod
    def _try_user(group: MemCgroup, nr: int) -> PageCounter | None:
        """_try_counters() for the two user counters, memsw first (the hot path)."""
        fail = group.memsw.try_charge(nr)
        if fail is not None:
            return fail
        fail = group.memory.try_charge(nr)
        if fail is not None:
            group.memsw.uncharge(nr)
        return fail

    def _kmem_independent(self, group: MemCgroup) -> bool:
        return (self.hierarchy.profile.kmem_limit == "independent"
                and group.independent_kmem_limit)

    def _charge_counters(self, owner: Owner, group: MemCgroup, kind: str, nr: int,
                         may_wait: bool) -> OomVerdict | None:
        """Charge *nr* pages to the counters *kind* uses, reclaiming on the way.

        Returns None when charged, an OomVerdict when only an OOM kill or an OOM wait
        can make room. Raises NoMemory when the charge is refused for good.
        """
        if kind == "tcp":
            if not group.tcpmem_active:
                return None  # v1: socket memory is not accounted until activated
            if group.tcpmem.try_charge(nr) is not None:
                raise NoMemory("kmem.tcp limit reached")  # memcg1_charge_skmem: no reclaim
            return None
        if kind == "kmem" and self._kmem_independent(group):
            if group.kmem.try_charge(nr) is not None:
                raise NoMemory("independent kmem limit reached")
            return None
        # try_charge_memcg(): retry while reclaim makes progress, then OOM.
        while True:
            fail = self._try_user(group, nr)
            if fail is None:
                if kind == "kmem":
                    group.kmem.charge(nr)
                return None
            over = fail.memcg
            need = fail.usage + nr - fail.max
            may_swap = fail is over.memory
            self._ask_stock_back(over)
            if self.reclaim(over, need, may_swap) > 0:
                continue
            self.hierarchy.oom_notify(over)
            if not self.oom_kill and not (over.oom_kill_disable and may_wait):
                raise NoMemory("memory limit reached and OOM kills are disabled (-o oom_kill=none)")
            if over.oom_kill_disable:
                if not may_wait or kind not in USER_KINDS:
                    # kernel-internal charges fail instead of sleeping (spec 3.5)
                    raise NoMemory("memory limit reached, OOM killer disabled")
                return OomVerdict(over, None)
            victim = self.select_victim(over)
            if victim is None:
                raise NoMemory("Out of memory and no killable processes")
            return OomVerdict(over, victim)

    # ------------------------------------------------------------------ charge

    def charge(self, owner: Owner, group: MemCgroup, kind: str, nr: int,
               may_wait: bool = True) -> OomVerdict | None:
        """Charge *nr* pages of *kind* for *owner* in *group* (the group of the task
        at the time of the charge). None: done. OomVerdict: act, then call again."""
        if nr <= 0:
            return None
        if kind in _STAT_KEYS_OF_KIND and kind != "locked":
            # user pages: the common case, without the kernel-memory branches
            verdict = self._charge_counters(owner, group, kind, nr, may_wait)
            if verdict is not None:
                return verdict
            led = owner.ledgers.get(group) or owner.ledger(group)
            setattr(led, kind, getattr(led, kind) + nr)
            self._stat(group, kind, nr)
            return None
        if kind not in KINDS:
            raise Invalid(f"unknown kind {kind!r}")
        verdict = self._charge_counters(owner, group, kind, nr, may_wait)
        if verdict is not None:
            return verdict
        led = owner.ledger(group)
        if kind == "kmem" and self._kmem_independent(group):
            led.kmem_only += nr
        elif kind == "tcp":
            if group.tcpmem_active:
                led.tcp += nr
            else:
                led.tcp_free += nr
        else:
            setattr(led, kind, getattr(led, kind) + nr)
            self._stat(group, kind, nr)
        return None

    def uncharge(self, owner: Owner, group: MemCgroup, kind: str, nr: int) -> None:
        """Free *nr* pages of *kind*: first from *group* (where the task is now), then
        from the groups it charged before, oldest first. More than held is EINVAL."""
        if kind not in KINDS and kind != "mapped":
            raise Invalid(f"unknown kind {kind!r}")
        led = owner.ledgers.get(group)
        if led is not None and _held(led, kind) >= nr:  # the common case: all here
            self._uncharge_ledger(group, led, kind, nr)
            self.hierarchy.oom_recover(group)
            return
        if nr > owner.held(kind):
            raise Invalid(f"uncharge of {nr} {kind} pages, only {owner.held(kind)} charged")
        order = sorted(owner.ledgers.items(), key=lambda item: item[0] is not group)
        left = nr
        for g, led in order:
            take = min(left, _held(led, kind))
            if take:
                self._uncharge_ledger(g, led, kind, take)
                self.hierarchy.oom_recover(g)
                left -= take
            if not left:
                break

    def _uncharge_ledger(self, group: MemCgroup, led: Ledger, kind: str, nr: int) -> None:
        if kind == "anon":
            resident = min(nr, led.anon)
            if resident:
                led.anon -= resident
                group.memsw.uncharge(resident)
                group.memory.uncharge(resident)
                self._stat(group, "anon", -resident)
            swapped = nr - resident
            if swapped:
                led.swap -= swapped
                self.swap_used -= swapped
                group.memsw.uncharge(swapped)
                group.stats["swap"] -= swapped
        elif kind in ("file", "shmem", "mapped"):
            setattr(led, kind, getattr(led, kind) - nr)
            group.memsw.uncharge(nr)
            group.memory.uncharge(nr)
            self._stat(group, kind, -nr)
        elif kind == "kmem":
            only = min(nr, led.kmem_only)
            led.kmem_only -= only
            led.kmem -= nr - only
            self._uncharge_kmem_pages(group, only, nr - only)
        elif kind == "tcp":
            free = min(nr, led.tcp_free)
            led.tcp_free -= free
            led.tcp -= nr - free
            group.tcpmem.uncharge(nr - free)

    def _uncharge_kmem_pages(self, group: MemCgroup, only: int, mem: int) -> None:
        """Kernel pages leave the kmem counter; those charged while not independent
        leave memory and memsw too (seed 001 patch 02)."""
        group.kmem.uncharge(only + mem)
        if mem:
            group.memsw.uncharge(mem)
            group.memory.uncharge(mem)

    def _stat(self, group: MemCgroup, kind: str, delta: int) -> None:
        """memcg_charge_statistics(): page counts per LRU (_STAT_KEYS_OF_KIND) and the
        page events."""
        keys = _STAT_KEYS_OF_KIND.get(kind)
        if keys is None:
            return  # kernel memory: in no memory.stat line, no page events
        s = group.stats
        for key in keys:
            s[key] += delta
        if kind == "locked":
            s["active_anon"] -= delta  # moved, not added: no page event
            return
        if delta > 0:
            s["pgpgin"] += delta
            if kind != "file":
                s["pgfault"] += delta  # first touch of an anon/shmem page is a fault
        else:
            s["pgpgout"] -= delta

    # ------------------------------------------------------------------ kmem slabs

    def slab_alloc(self, owner: Owner, group: MemCgroup, name: str, objsize: int,
                   count: int) -> None:
        """kmem_cache_alloc() from the group's copy of cache *name*: new slab pages are
        charged as kmem; all or nothing."""
        cache = self._cache(group, name, objsize)
        if count <= 0:
            raise Invalid("object count must be positive")
        grow = cache.pages_for(cache.active + count) - cache.pages_for(cache.active)
        if grow:
            self._charge_slab_pages(group, cache, grow)
        cache.active += count
        key = (group, name)
        owner.slab_objects[key] = owner.slab_objects.get(key, 0) + count
        self._publish_cache(group, name, cache)

    def slab_free(self, owner: Owner, name: str, objsize: int, count: int,
                  group: MemCgroup | None = None) -> None:
        held = [(g, n) for (g, n), c in owner.slab_objects.items() if n == name and c]
        held.sort(key=lambda k: k[0] is not group)
        if count <= 0 or count > sum(owner.slab_objects[k] for k in held):
            raise Invalid(f"free of {count} {name} objects, fewer allocated")
        for g, n in held:
            if g.slab[n].objsize != objsize:
                raise Invalid(f"cache {name} has object size {g.slab[n].objsize}")
        left = count
        for g, n in held:
            take = min(left, owner.slab_objects[(g, n)])
            self._slab_change(owner, g, n, -take)
            left -= take
            if not left:
                break

    def _cache(self, group: MemCgroup, name: str, objsize: int) -> SlabCache:
        if not name or any(c.isspace() for c in name) or len(name) > 64:
            raise Invalid("cache names are 1-64 characters without whitespace")
        if objsize <= 0 or objsize > 8 * 1024 * 1024:
            raise Invalid("object size must be 1..8M bytes")
        cache = group.slab.get(name)
        if cache is None:
            # Seed 001 patch 07: a group's copy is named <cache>(<css_id>:<dir name>).
            shown = name if group.is_root else f"{name}({group.id}:{group.name})"
            cache = group.slab[name] = SlabCache(shown, objsize)
        elif cache.objsize != objsize:
            raise Invalid(f"cache {name} has object size {cache.objsize}")
        return cache

    def _charge_slab_pages(self, group: MemCgroup, cache: SlabCache, nr: int) -> None:
        """Slab pages are kernel memory: charged like kmem, never waiting for OOM."""
        if self._kmem_independent(group):
            if group.kmem.try_charge(nr) is not None:
                raise NoMemory("independent kmem limit reached")
            cache.pages_only += nr
            return
        while True:
            fail = self._try_counters(self._user_counters(group), nr)
            if fail is None:
                group.kmem.charge(nr)
                cache.pages_mem += nr
                return
            over = fail.memcg
            if self.reclaim(over, fail.usage + nr - fail.max, fail is over.memory) <= 0:
                self.hierarchy.oom_notify(over)
                raise NoMemory("memory limit reached for slab pages")

    def _slab_change(self, owner: Owner, group: MemCgroup, name: str, delta: int) -> None:
        cache = group.slab[name]
        shrink = cache.pages_for(cache.active) - cache.pages_for(cache.active + delta)
        cache.active += delta
        key = (group, name)
        owner.slab_objects[key] += delta
        if not owner.slab_objects[key]:
            del owner.slab_objects[key]
        only = min(shrink, cache.pages_only)
        cache.pages_only -= only
        cache.pages_mem -= shrink - only
        self._uncharge_kmem_pages(group, only, shrink - only)
        if shrink:
            self.hierarchy.oom_recover(group)
        self._publish_cache(group, name, cache)

    def _publish_cache(self, group: MemCgroup, name: str, cache: SlabCache) -> None:
        """memory.kmem.slabinfo rows; an empty cache is destroyed."""
        if cache.active == 0 and not cache.pages_only and not cache.pages_mem:
            del group.slab[name]
            group.slab_caches.pop(cache.display_name, None)
        else:
            group.slab_caches[cache.display_name] = (cache.active, cache.num_objs,
                                                      cache.objsize)

    # ------------------------------------------------------------------ stock

    def set_stock(self, owner: Owner, group: MemCgroup, consumed: dict[str, int],
                  want: int) -> int:
        """Settle a client's stock and grant a new one (the kernel's consume_stock /
        refill_stock, kept by the client).

        *consumed* says how many pages of the current stock the client used for each
        stock kind (negative: pages it freed back into the stock); the rest of the
        stock is returned. Then up to *want* pages (at most STOCK_BATCH) are
        precharged in *group*, only while every level keeps STOCK_HEADROOM pages free.
        Returns the pages granted.
        """
        for kind, n in consumed.items():
            if kind not in STOCK_KINDS:
                raise Invalid(f"{kind} pages cannot come from a stock")
        if sum(consumed.values()) > owner.stock:
            raise Invalid(f"consumed more than the stock of {owner.stock} pages")
        sgroup = owner.stock_group
        for kind, n in consumed.items():
            if n < 0 and (sgroup is None or -n > getattr(owner.ledger(sgroup), kind)):
                raise Invalid(f"returned more {kind} pages than charged from the stock")
        if sgroup is not None:
            led = owner.ledger(sgroup)
            for kind, n in consumed.items():
                if n:
                    # the pages were precharged in the counters; only the ledger and
                    # the statistics learn what they became
                    setattr(led, kind, getattr(led, kind) + n)
                    self._stat(sgroup, kind, n)
                    owner.stock -= n
        self._return_stock(owner)
        want = min(max(want, 0), STOCK_BATCH)
        if not want or not self._roomy(group, want):
            return 0
        group.memsw.charge(want)
        group.memory.charge(want)
        owner.stock = want
        owner.stock_group = group
        return want

    def _roomy(self, group: MemCgroup, want: int) -> bool:
        for counter in self._user_counters(group):
            for c in counter.ancestors():
                if c.max - c.usage < want + STOCK_HEADROOM:
                    return False
        return True

    def _return_stock(self, owner: Owner) -> None:
        """drain_stock(): uncharge what is left of the owner's stock."""
        if owner.stock and owner.stock_group is not None:
            owner.stock_group.memsw.uncharge(owner.stock)
            owner.stock_group.memory.uncharge(owner.stock)
            self.hierarchy.oom_recover(owner.stock_group)
        owner.stock = 0
        owner.stock_group = None
        owner.drain_asked = False

    def _ask_stock_back(self, group: MemCgroup) -> None:
        """drain_all_stock(): a limit in *group* is near, so every client holding a
        stock below it is asked to settle (it does so on its next request)."""
        subtree = set(group.hierarchical_subtree())
        for owner in self.owners:
            if owner.stock and owner.stock_group in subtree and not owner.drain_asked:
                owner.drain_asked = True
                self._notice("drain", owner, {})

    # ------------------------------------------------------------------ reclaim

    def reclaim(self, group: MemCgroup, nr: int, may_swap: bool, report: bool = True) -> int:
        """try_to_free_mem_cgroup_pages() on *group*'s subtree, at least *nr* pages if
        possible: page cache nobody owns, then clients' page cache (they are told),
        then, if allowed, anon pages to swap. Returns the pages taken from memory."""
        got = 0
        subtree = list(group.hierarchical_subtree())
        for g in subtree:
            take = min(nr - got, g.orphan_file)
            if take > 0:
                g.orphan_file -= take
                g.memsw.uncharge(take)
                g.memory.uncharge(take)
                self._stat(g, "file", -take)
                got += take
        for g in subtree:
            for owner, led in sorted(g.ledgers.items(), key=lambda item: item[0].id):
                if got >= nr:
                    break
                take = min(nr - got, led.file)
                if take > 0:
                    self._uncharge_ledger(g, led, "file", take)
                    self._notice("evicted", owner, {"file": take, "group": g})
                    got += take
        if may_swap and got < nr:
            for g in subtree:
                if g.read_swappiness() == 0:
                    continue  # swappiness 0: a memcg never swaps (mem_cgroup_swappiness)
                for owner, led in sorted(g.ledgers.items(), key=lambda item: item[0].id):
                    if owner.followed:
                        continue  # a real task's memory cannot be reclaimed from outside
                    take = min(nr - got, led.anon, self.swap_total - self.swap_used)
                    if take > 0:
                        # swap-out: the page leaves memory, its swap entry stays in memsw
                        led.anon -= take
                        led.swap += take
                        self.swap_used += take
                        g.memory.uncharge(take)
                        self._stat(g, "anon", -take)
                        g.stats["swap"] += take
                        got += take
        if report:
            self.hierarchy.vmpressure(group, nr, got)
        return got

    def reclaim_all(self, group: MemCgroup) -> int:
        """force_empty: everything reclaimable in the subtree (each pass of the
        kernel's loop reclaims what it scans, so the pressure it reports is low)."""
        got = self.reclaim(group, 1 << 62, may_swap=True, report=False)
        self.hierarchy.vmpressure(group, got, got)
        return got

    # ------------------------------------------------------------------ followed tasks

    def follow(self, owner: Owner, group: MemCgroup, usage: dict[str, int],
               locked: int) -> OomVerdict | None:
        """Bring a followed task's charges to *usage* (pages per FOLLOWED_KINDS touched
        since it joined): growth is charged in *group*, its group now; shrinking is
        uncharged from *group* first, then from the groups it was in before.

        Returns an OomVerdict when growth does not fit; that growth stays uncharged
        (real memory cannot be reclaimed from outside) until a later call fits it.
        """
        for kind in FOLLOWED_KINDS:
            have, want = owner.charged[kind], max(0, usage.get(kind, 0))
            if want < have:
                self.uncharge(owner, group, kind, have - want)
                owner.charged[kind] = want
        for kind in FOLLOWED_KINDS:
            have, want = owner.charged[kind], max(0, usage.get(kind, 0))
            if want > have:
                try:
                    verdict = self.charge(owner, group, kind, want - have)
                except NoMemory:
                    self._charge_to_limit(owner, group, kind, want - have)
                    raise
                if verdict is not None:
                    self._charge_to_limit(owner, group, kind, want - have)
                    return verdict
                owner.charged[kind] = want
        # counted off the anon list: at most the anon and shmem pages charged
        self._follow_locked(owner, group, min(locked, owner.charged["anon"] + owner.charged["shmem"]))
        return None

    def _charge_to_limit(self, owner: Owner, group: MemCgroup, kind: str, nr: int) -> None:
        """A real task faults its pages one at a time: when growth of *nr* pages does
        not fit, the pages up to the limit were charged before the one that failed
        (try_charge_memcg() per fault), so usage and max_usage reach the limit and
        failcnt counts the failed charge (already counted by the refusal)."""
        room = min(c.max - c.usage for counter in self._user_counters(group)
                   for c in counter.ancestors())
        room = min(room, nr - 1)
        if room > 0 and self._try_user(group, room) is None:
            led = owner.ledger(group)
            setattr(led, kind, getattr(led, kind) + room)
            self._stat(group, kind, room)
            owner.charged[kind] += room

    def _follow_locked(self, owner: Owner, group: MemCgroup, locked: int) -> None:
        """Place *locked* pages on the ledgers that hold anon-list pages (anon, shmem),
        the current group first; only changes are written to the statistics."""
        left = locked
        for g, led in sorted(owner.ledgers.items(), key=lambda i: i[0] is not group):
            want = min(left, led.anon + led.shmem)
            left -= want
            if want != led.locked:
                self._stat(g, "locked", want - led.locked)
                led.locked = want
        owner.locked = locked - left

    def move_charge(self, owners: list[Owner], src: MemCgroup, dst: MemCgroup,
                    mask: int) -> None:
        """mem_cgroup_move_charge(): when a thread-group leader moves into *dst*, move
        the charges its task holds in *src* if *dst*'s move_charge_at_immigrate asks:
        bit 0 anon (and its swap), bit 1 shmem and mapped file pages. The destination
        is precharged first (reclaim allowed); if it cannot take them, nothing moves
        and the move fails with ENOMEM."""
        kinds = (("anon", "swap") if mask & 1 else ()) + (("shmem", "mapped") if mask & 2 else ())
        if not kinds or src is dst:
            return
        moves = []
        for owner in owners:
            led = owner.ledgers.get(src)
            if led is not None:
                moves.extend((owner, led, k, getattr(led, k)) for k in kinds if getattr(led, k))
        resident = sum(n for _, _, k, n in moves if k != "swap")
        swapped = sum(n for _, _, k, n in moves if k == "swap")
        if not resident and not swapped:
            return
        # precharge: memsw for everything, memory for resident pages
        for counter, n in ((dst.memsw, resident + swapped), (dst.memory, resident)):
            if not n:
                continue
            while True:
                fail = counter.try_charge(n)
                if fail is None:
                    break
                over = fail.memcg
                if self.reclaim(over, fail.usage + n - fail.max,
                                fail is over.memory and counter is dst.memory) <= 0:
                    if counter is dst.memory and resident + swapped:
                        dst.memsw.uncharge(resident + swapped)
                    raise NoMemory("destination cannot take the moved charges")
        for owner, led, kind, n in moves:
            setattr(led, kind, 0)
            dled = owner.ledger(dst)
            setattr(dled, kind, getattr(dled, kind) + n)
            src.memsw.uncharge(n)
            if kind == "swap":
                src.stats["swap"] -= n
                dst.stats["swap"] += n
            else:
                src.memory.uncharge(n)
                self._move_stat(src, dst, kind, n)
        # locked pages go with the anon-list pages that moved
        for owner, led, _, _ in moves:
            excess = led.locked - (led.anon + led.shmem)
            if excess > 0:
                led.locked -= excess
                owner.ledger(dst).locked += excess
                self._stat(src, "locked", -excess)
                self._stat(dst, "locked", excess)
        self.hierarchy.oom_recover(src)

    def _move_stat(self, src: MemCgroup, dst: MemCgroup, kind: str, n: int) -> None:
        """Statistics follow the pages; page events stay where they happened."""
        self._stat(src, kind, -n)
        src.stats["pgpgout"] -= n
        self._stat(dst, kind, n)
        dst.stats["pgpgin"] -= n
        if kind != "file":
            dst.stats["pgfault"] -= n

    # ------------------------------------------------------------------ OOM

    def select_victim(self, group: MemCgroup) -> Owner | None:
        """mem_cgroup_out_of_memory() -> select_bad_process(): among live owners whose
        task is in *group*'s subtree now, the one with the highest oom_badness():
        charged pages plus oom_score_adj thousandths of the group's limit. A task
        with oom_score_adj -1000 is never chosen."""
        subtree = set(group.hierarchical_subtree())
        limit = min(group.memory.max, group.memsw.max)
        best, best_points = None, None
        for owner in self.owners:
            if self.hierarchy.group_of(owner.pid) not in subtree or not self.may_kill(owner.pid):
                continue
            adj = self.oom_score_adj(owner.pid)
            if adj <= OOM_SCORE_ADJ_MIN:
                continue
            points = (max(1, owner.badness() + adj * limit // 1000), owner.id)
            if best is None or points > best_points:
                best, best_points = owner, points
        return best

    def oom_killed(self, victim: Owner) -> None:
        """The victim was sent SIGKILL: count it in its group and free its memory (the
        kernel's oom reaper), so the retried charge can succeed."""
        self.hierarchy.group_of(victim.pid).oom_kill += 1
        for owner in [o for o in self.owners if o.pid == victim.pid]:
            self.release(owner)
        self.release(victim)

    def mark_under_oom(self, group: MemCgroup, delta: int) -> None:
        """mem_cgroup_mark_under_oom(): under_oom reads 1 in the group and below."""
        for g in group.hierarchical_subtree():
            g.under_oom += delta

    # ------------------------------------------------------------------ rmdir

    def offline(self, group: MemCgroup) -> None:
        """mem_cgroup_css_offline(): kernel memory becomes unaccounted (seed 001 patch
        03); user pages, page cache and stocks are reparented to the parent."""
        parent = group.parent
        for owner, led in list(group.ledgers.items()):
            if led.kmem or led.kmem_only:
                self._uncharge_ledger(group, led, "kmem", led.kmem + led.kmem_only)
            if led.tcp or led.tcp_free:
                self._uncharge_ledger(group, led, "tcp", led.tcp + led.tcp_free)
        for name, cache in list(group.slab.items()):
            for owner in self.owners:
                owner.slab_objects.pop((group, name), None)
            self._slab_uncharge_all(group, cache)
        group.slab.clear()
        group.slab_caches.clear()
        for owner, led in list(group.ledgers.items()):
            pled = owner.ledger(parent)
            for kind in ("anon", "swap", "file", "shmem", "mapped", "locked"):
                n = getattr(led, kind)
                setattr(pled, kind, getattr(pled, kind) + n)
                setattr(led, kind, 0)
            del group.ledgers[owner]
            del owner.ledgers[group]
        self._reparent_stats(group, parent)
        parent.orphan_file += group.orphan_file
        group.orphan_file = 0
        for owner in self.owners:
            if owner.stock_group is group:
                owner.stock_group = parent
        # Move the counters out of the child's chain into the parent's (rmdir left no
        # children, so what is left is exactly the reparented pages and stocks).
        for res in ("memory", "memsw"):
            n = getattr(group, res).usage
            getattr(group, res).uncharge(n)
            getattr(parent, res).charge(n)

    def _slab_uncharge_all(self, group: MemCgroup, cache: SlabCache) -> None:
        self._uncharge_kmem_pages(group, cache.pages_only, cache.pages_mem)
        cache.pages_only = cache.pages_mem = cache.active = 0

    def _reparent_stats(self, group: MemCgroup, parent: MemCgroup) -> None:
        from .memcg import EVENT_KEYS
        for key, value in group.stats.items():
            if key not in EVENT_KEYS:
                parent.stats[key] += value
                group.stats[key] = 0
