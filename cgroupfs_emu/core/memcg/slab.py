"""Per-group slab caches (seed 001 patches 07-12): objects pack into slabs, and new
slab pages are kernel memory charged through try_charge like any other kmem.

Not emulated: slab merging, per-CPU partial slabs, the shrinkers; a cache is
destroyed as soon as its last object is freed.
"""

from __future__ import annotations

import attrs

from ...units import PAGE_SIZE, pages_of
from ..errors import Invalid
from . import owners
from .charge import OnOom, charge_account
from .group import MemCgroup
from .kinds import Account, kmem_account
from .owners import Owner
from .state import MemState

#: the longest cache name (seed 001 patch 07 keeps 64 bytes)
MAX_CACHE_NAME = 64
#: KMALLOC_MAX_SIZE-like bound on one object: 8 MiB
MAX_OBJECT_SIZE = 8 << 20


@attrs.define
class SlabCache:
    """A group's copy of one cache."""

    display_name: str
    objsize: int
    active: int = 0
    #: the cache's pages by the kmem account they were charged through (which can
    #: change while the cache lives: seed 001's independent flag, 3.10's activation)
    charged: dict[Account, int] = attrs.Factory(dict)

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

    @property
    def pages(self) -> int:
        return sum(self.charged.values())


def slab_alloc(state: MemState, owner: Owner, group: MemCgroup, name: str, objsize: int,
               count: int) -> None:
    """kmem_cache_alloc() from the group's copy of cache *name*: new slab pages are
    charged as kmem; all or nothing."""
    cache = _cache(group, name, objsize)
    if count <= 0:
        raise Invalid("object count must be positive")
    grow = cache.pages_for(cache.active + count) - cache.pages_for(cache.active)
    if grow:
        # kernel memory: never an OOM kill or wait for slab pages, only a notification
        acc = kmem_account(group)
        charge_account(state, group, acc, grow, on_oom=OnOom.NOTIFY)
        cache.charged[acc] = cache.charged.get(acc, 0) + grow
    cache.active += count
    key = (group, name)
    owner.slab_objects[key] = owner.slab_objects.get(key, 0) + count
    _publish(group, name, cache)


def slab_free(state: MemState, owner: Owner, name: str, objsize: int, count: int,
              group: MemCgroup | None = None) -> None:
    """kmem_cache_free(): objects of *name* the owner allocated, those in *group*
    first; slabs left empty give their pages back."""
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
        slab_change(state, owner, g, n, -take)
        left -= take
        if not left:
            break


def _cache(group: MemCgroup, name: str, objsize: int) -> SlabCache:
    if not name or any(c.isspace() for c in name) or len(name) > MAX_CACHE_NAME:
        raise Invalid(f"cache names are 1-{MAX_CACHE_NAME} characters without whitespace")
    if objsize <= 0 or objsize > MAX_OBJECT_SIZE:
        raise Invalid("object size must be 1..8M bytes")
    cache = group.slab.get(name)
    if cache is None:
        # Seed 001 patch 07: a group's copy is named <cache>(<css_id>:<dir name>).
        shown = name if group.is_root else f"{name}({group.id}:{group.name})"
        cache = group.slab[name] = SlabCache(shown, objsize)
    elif cache.objsize != objsize:
        raise Invalid(f"cache {name} has object size {cache.objsize}")
    return cache


def _uncharge_pages(group: MemCgroup, cache: SlabCache, nr: int) -> None:
    """*nr* slab pages leave every counter their account charged (seed 001 patch 02:
    those charged while not independent leave memory and memsw too)."""
    for acc in list(cache.charged):
        take = min(nr, cache.charged[acc])
        if take:
            owners.uncharge_counters(group, acc, take)
            cache.charged[acc] -= take
            nr -= take
        if not cache.charged[acc]:
            del cache.charged[acc]


def slab_change(state: MemState, owner: Owner, group: MemCgroup, name: str, delta: int) -> None:
    """*delta* (negative) objects of the owner's leave the cache; empty slabs go."""
    cache = group.slab[name]
    shrink = cache.pages_for(cache.active) - cache.pages_for(cache.active + delta)
    cache.active += delta
    key = (group, name)
    owner.slab_objects[key] += delta
    if not owner.slab_objects[key]:
        del owner.slab_objects[key]
    _uncharge_pages(group, cache, shrink)
    if shrink:
        state.oom_recover(group)
    _publish(group, name, cache)


def drop_caches(state: MemState, group: MemCgroup) -> None:
    """At offline: the group's caches go, and their pages with them."""
    for name, cache in list(group.slab.items()):
        for owner in state.owners:
            owner.slab_objects.pop((group, name), None)
        _uncharge_pages(group, cache, cache.pages)
        cache.active = 0
    group.slab.clear()
    group.slab_caches.clear()


def _publish(group: MemCgroup, name: str, cache: SlabCache) -> None:
    """memory.kmem.slabinfo rows; an empty cache is destroyed."""
    if cache.active == 0 and not cache.pages:
        del group.slab[name]
        group.slab_caches.pop(cache.display_name, None)
    else:
        group.slab_caches[cache.display_name] = (cache.active, cache.num_objs,
                                                  cache.objsize)
