"""The order in which a cgroup directory lists its entries, per kernel generation.

Pure functions and data: no I/O, no FUSE. The filesystem adapter asks for one page of a
listing at a time and remembers, per open directory, where each offset it handed out
came from (a *cursor*, the kernel's ``file->private_data``).

Two designs existed:

* **kernfs** (3.14+, so 4.19, 5.10 and 6.18). Siblings sit in an rbtree ordered by
  ``kernfs_name_compare()``: the 31-bit ``kernfs_name_hash(name, ns)`` first, then
  ``strcmp()`` of the names (fs/kernfs/dir.c). Child groups are nodes like files, so they
  fall among the files by the same rule. ``kernfs_fop_readdir()`` emits "." and ".." at
  positions 0 and 1 (``dir_emit_dots()``), then every node with its hash as the position
  (``ctx->pos = pos->hash``), and ends at ``INT_MAX``. Hash values 0, 1 and ``INT_MAX`` are
  reserved, so a position names an entry, not a count: a listing resumed after a
  concurrent mkdir or rmdir neither repeats nor skips an entry that existed throughout.
  The name hash changed twice (see :class:`NameHash`).
* **dcache** (3.10 and earlier: cgroupfs was its own dentry filesystem using
  ``simple_dir_operations``). ``dcache_readdir()`` walks the directory dentry's
  ``d_subdirs`` list, and ``d_alloc()`` puts every new dentry at the *head* of that list,
  so entries come newest first: child groups (made after the files) before the files,
  the files in reverse creation order. Positions are a running count (2, 3, ...) and a
  cursor dentry in the list keeps the place, so entries created after the listing
  started are not seen and removed ones are simply gone.

What is not emulated: ``d_move()`` of a renamed 3.10 group puts it at the head of the
list (we do the same by giving it a new sequence number, see
:meth:`DcacheOrder.key`); negative dentries left by failed lookups, which in 3.10 could
hold a name's list position before the group existed, are not modelled. For kernfs the
per-handle cursor plays ``file->private_data``; when two names in one directory have
the same hash (the R5 sum is weak: "ba" and "al" collide), the second one's position
carries its rank above bit 32, so only then does an offset differ from the kernel's.
"""

from __future__ import annotations

import enum
from typing import Iterable, Sequence

import attrs

__all__ = [
    "INT_MAX", "NameHash", "partial_name_hash_r5", "kernfs_name_hash", "Entry",
    "KernfsOrder", "DcacheOrder", "Cursor", "DOT", "DOTDOT", "readdir_page",
]

INT_MAX = (1 << 31) - 1
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
#: include/linux/hash.h
GOLDEN_RATIO_32 = 0x61C88647
GOLDEN_RATIO_64 = 0x61C8864680B583EB


class NameHash(enum.Enum):
    """How ``end_name_hash()`` folds the R5 sum into 32 bits on x86_64."""

    #: 3.14-4.7 (include/linux/dcache.h): ``(unsigned int) hash``.
    TRUNCATE = "truncate"
    #: 4.8-4.17 (include/linux/stringhash.h): ``__hash_32((unsigned int) hash)``, the
    #: low 32 bits times GOLDEN_RATIO_32.
    HASH_32 = "hash_32"
    #: 4.18+ (stringhash.h after "fix end_name_hash() for 64bit long"):
    #: ``hash_long(hash, 32)``, all 64 bits times GOLDEN_RATIO_64, top 32 bits. Verified
    #: against a running 6.18 kernel's getdents64 offsets (tests/data).
    HASH_LONG = "hash_long"


def partial_name_hash_r5(name: bytes) -> int:
    """The byte-at-a-time R5 sum of include/linux/stringhash.h (``init_name_hash(NULL)``
    then ``partial_name_hash(c, hash) = (hash + (c << 4) + (c >> 4)) * 11`` per byte), in
    64-bit ``unsigned long``. kernfs passes ``*name++``, a plain ``char``, which is signed
    on x86: bytes >= 0x80 arrive sign-extended, which changes ``c >> 4``."""
    h = 0
    for b in name:
        c = b if b < 0x80 else (b - 0x100) & _U64
        h = ((h + ((c << 4) & _U64) + (c >> 4)) * 11) & _U64
    return h


def kernfs_name_hash(name: str | bytes, fold: NameHash = NameHash.HASH_LONG) -> int:
    """Port of kernfs_name_hash() with ``ns == NULL`` (cgroup files have no namespace
    tag): a 31-bit value, never 0, 1 or INT_MAX (reserved for ".", ".." and the end)."""
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    h = partial_name_hash_r5(raw)
    if fold is NameHash.HASH_LONG:
        h = ((h * GOLDEN_RATIO_64) & _U64) >> 32
    elif fold is NameHash.HASH_32:
        h = ((h & _U32) * GOLDEN_RATIO_32) & _U32
    else:
        h &= _U32
    h &= 0x7FFFFFFF
    if h < 2:
        h += 2
    if h >= INT_MAX:
        h = INT_MAX - 1
    return h


@attrs.frozen
class Entry:
    """One directory entry as the ordering sees it."""

    name: str
    #: creation sequence number (larger = created later); only the dcache order uses it
    seq: int = 0
    #: whatever the caller wants back (its node)
    node: object = attrs.field(default=None, eq=False)


@attrs.frozen
class KernfsOrder:
    """kernfs: (hash, name) order, the hash is the position."""

    fold: NameHash = NameHash.HASH_LONG
    kind = "kernfs"

    def key(self, entry: Entry) -> tuple:
        return (kernfs_name_hash(entry.name, self.fold),
                entry.name.encode("utf-8", "surrogateescape"))

    def sort(self, entries: Iterable[Entry]) -> list[Entry]:
        return sorted(entries, key=self.key)


@attrs.frozen
class DcacheOrder:
    """3.10 cgroupfs: newest dentry first; positions count entries."""

    kind = "dcache"

    def key(self, entry: Entry) -> tuple:
        return (-entry.seq, entry.name.encode("utf-8", "surrogateescape"))

    def sort(self, entries: Iterable[Entry]) -> list[Entry]:
        return sorted(entries, key=self.key)


DOT = "."
DOTDOT = ".."


@attrs.define
class Cursor:
    """Per open directory: for every offset handed out, the key of the entry it follows
    (the kernel keeps the equivalent in ``file->private_data`` / the cursor dentry)."""

    after: dict[int, tuple] = attrs.Factory(dict)
    #: dcache only: the running count that goes with each handed-out offset
    count: dict[int, int] = attrs.Factory(dict)


def readdir_page(order, entries: Sequence[Entry], start: int,
                 cursor: Cursor) -> list[tuple[str, Entry | None, int]]:
    """Everything a readdir starting at offset *start* may return, in order, as
    ``(name, entry or None for "."/"..", next offset)``. The caller stops when its
    reply buffer is full; offsets it did not hand out are never remembered wrongly
    because every offset is recorded here before being returned.

    *start* is 0 for a fresh listing, else an offset this function returned earlier
    (the FUSE kernel passes back the offset of the last entry the user consumed).
    """
    listing = order.sort(entries)
    keys = [order.key(e) for e in listing]
    out: list[tuple[str, Entry | None, int]] = []

    if order.kind == "kernfs":
        positions = [k[0] for k in keys]
        # Rank of each entry among earlier ones with the same hash: 0 unless two names
        # collide. The kernel's positions are the bare hash and it tells colliding
        # entries apart through file->private_data; a FUSE server only gets the offset
        # back, so a colliding entry's offset carries its rank above bit 32.
        ranks = [0] * len(listing)
        for i in range(1, len(listing)):
            if positions[i] == positions[i - 1]:
                ranks[i] = ranks[i - 1] + 1

        def next_off(i: int) -> int:
            if i + 1 >= len(listing):
                return INT_MAX
            return positions[i + 1] | (ranks[i + 1] << 32)

        if start == 0:
            out.append((DOT, None, 1))
        if start <= 1:
            first = positions[0] if listing else INT_MAX
            out.append((DOTDOT, None, first))
            begin = 0
        elif start == INT_MAX:
            return out
        elif start in cursor.after:
            last = cursor.after[start]
            begin = next((i for i, k in enumerate(keys) if k > last), len(listing))
        else:
            # kernfs_dir_pos(): the first node whose hash is >= the position (then skip
            # the colliding entries the offset's rank says were consumed)
            h, rank = start & 0xFFFFFFFF, start >> 32
            begin = next((i for i, p in enumerate(positions) if p >= h), len(listing))
            while rank and begin < len(listing) and positions[begin] == h:
                begin, rank = begin + 1, rank - 1
        for i in range(begin, len(listing)):
            off = next_off(i)
            cursor.after[off] = keys[i]
            out.append((listing[i].name, listing[i], off))
        return out

    # dcache_readdir(): f_pos 0 ".", 1 "..", then 2, 3, ... one per positive dentry
    if start == 0:
        out.append((DOT, None, 1))
    if start <= 1:
        out.append((DOTDOT, None, 2))
        begin, pos = 0, 2
    elif start in cursor.after:
        last = cursor.after[start]
        begin = next((i for i, k in enumerate(keys) if k > last), len(listing))
        pos = cursor.count[start]
    else:
        # dcache_dir_lseek(): move the cursor past start - 2 entries from the head
        begin, pos = min(start - 2, len(listing)), start
    for i in range(begin, len(listing)):
        pos += 1
        cursor.after[pos] = keys[i]
        cursor.count[pos] = pos
        out.append((listing[i].name, listing[i], pos))
    return out
