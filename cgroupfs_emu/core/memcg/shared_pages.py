"""Shared pages: the first toucher's group owns them (seed 002 patch 4, and every memcg
since).

Seed 002 gives every page one ``meta_page`` with a reference count: the first
process to map it charges its container; later mappers take a reference and are
charged nothing; the page is uncharged from the first container when the last
reference goes, even if the first process left long before. A socket client names
such a shared object with ``share=KEY`` on ``charge shmem`` / ``uncharge shmem``.

The pages are held by a :class:`~.owners.Owner` of the object's own (the meta_page's
side of the story), not by the first client, so they outlive it; it is not in the
live owners, so the OOM killer never picks it (its pid is the first toucher's, for
the group the charge goes to).
"""

from __future__ import annotations

import attrs

from ..errors import Invalid
from .charge import uncharge
from .group import MemCgroup
from .kinds import KIND_SHMEM
from .owners import Owner
from .state import MemState


@attrs.define(eq=False)
class SharedObject:
    key: str
    pages: int
    #: holds the charge (Owner of the object, not of a process)
    holder: Owner
    #: the group the first toucher was in
    group: MemCgroup
    #: live references per mapping owner
    refs: dict = attrs.field(factory=dict)


def holder(state: MemState, pid: int) -> Owner:
    """The owner a new shared object's pages are charged to (not a live task)."""
    return Owner(pid)


def created(state: MemState, key: str, owner: Owner, held_by: Owner, group: MemCgroup,
            nr: int) -> None:
    """The first toucher *owner* charged *nr* pages through *held_by* in *group*."""
    state.shared[key] = SharedObject(key, nr, held_by, group, {owner: 1})


def lookup(state: MemState, key: str, nr: int) -> SharedObject | None:
    obj = state.shared.get(key)
    if obj is not None and obj.pages != nr:
        raise Invalid(f"shared object {key!r} has {obj.pages} pages, not {nr}")
    return obj


def take(state: MemState, obj: SharedObject, owner: Owner) -> None:
    """A later mapper: a reference, no charge."""
    obj.refs[owner] = obj.refs.get(owner, 0) + 1


def drop(state: MemState, key: str, owner: Owner, nr: int) -> int:
    """*owner* unmaps; the last reference uncharges the pages from the group that was
    charged. Returns the pages uncharged (0 while others still map it)."""
    obj = lookup(state, key, nr)
    if obj is None or not obj.refs.get(owner):
        raise Invalid(f"no mapping of shared object {key!r} to drop")
    obj.refs[owner] -= 1
    if not obj.refs[owner]:
        del obj.refs[owner]
    return _maybe_free(state, obj)


def drop_all(state: MemState, owner: Owner) -> None:
    """A process exit unmaps everything it mapped."""
    for obj in list(state.shared.values()):
        if obj.refs.pop(owner, None):
            _maybe_free(state, obj)


def _maybe_free(state: MemState, obj: SharedObject) -> int:
    if obj.refs:
        return 0
    del state.shared[obj.key]
    if obj.holder.held(KIND_SHMEM):
        uncharge(state, obj.holder, obj.group, KIND_SHMEM.name, obj.pages)
    return obj.pages
