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

Cost. A directory keeps its entries sorted as they come and go (:class:`Run`, the
kernel's rbtree of siblings): a child group's key is made once, when it is filed at
mkdir, and the directory's control files form a second run made once per profile. A
readdir request finds where it resumes by bisection and makes only the entries its
reply takes (:func:`iter_page` is lazy), so listing n entries costs O(n) in all, not a
sort per request.

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
from bisect import bisect_left, bisect_right
from typing import Iterable, Iterator, Sequence

import attrs

__all__ = [
    "INT_MAX", "NameHash", "partial_name_hash_r5", "kernfs_name_hash", "Entry",
    "KernfsOrder", "DcacheOrder", "Run", "Cursor", "DOT", "DOTDOT", "iter_page",
    "readdir_page", "name_of",
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



def _bytes_of(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def name_of(key: tuple) -> str:
    """The entry name a key (of either order) was made from."""
    return key[1].decode("utf-8", "surrogateescape")


@attrs.frozen
class KernfsOrder:
    """kernfs: (hash, name) order, the hash is the position."""

    fold: NameHash = NameHash.HASH_LONG
    kind = "kernfs"

    def key_of(self, name: str, seq: int = 0) -> tuple:
        """kernfs_name_compare()'s order as a tuple: computed once per name (at mkdir
        for a group), never per listing."""
        return (kernfs_name_hash(name, self.fold), _bytes_of(name))

    def key(self, entry: Entry) -> tuple:
        return self.key_of(entry.name)

    def sort(self, entries: Iterable[Entry]) -> list[Entry]:
        return sorted(entries, key=self.key)


@attrs.frozen
class DcacheOrder:
    """3.10 cgroupfs: newest dentry first; positions count entries."""

    kind = "dcache"

    def key_of(self, name: str, seq: int = 0) -> tuple:
        return (-seq, _bytes_of(name))

    def key(self, entry: Entry) -> tuple:
        return self.key_of(entry.name, entry.seq)

    def sort(self, entries: Iterable[Entry]) -> list[Entry]:
        return sorted(entries, key=self.key)


class Run:
    """Entries kept in key order as they come and go: a list of keys and, beside it,
    what the caller wants back for each (the kernel's rbtree of siblings,
    kernfs_link_sibling()). An add or a removal is one bisection and one list
    insert/delete: O(log n) comparisons and a memmove of pointers."""

    __slots__ = ("keys", "values")

    def __init__(self, keys: list | None = None, values: list | None = None):
        self.keys: list[tuple] = keys if keys is not None else []
        self.values: list = values if values is not None else []

    @classmethod
    def of(cls, order, entries: Iterable[Entry]) -> Run:
        """A run of *entries* (sorted once), the entries themselves as values."""
        listing = order.sort(entries)
        return cls([order.key(e) for e in listing], listing)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: tuple, value) -> None:
        i = bisect_left(self.keys, key)
        self.keys.insert(i, key)
        self.values.insert(i, value)

    def remove(self, key: tuple) -> bool:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i], self.values[i]
            return True
        return False


#: no entries (a missing run)
_NONE = Run()
DOT = "."
DOTDOT = ".."
_DOT, _DOTDOT = b".", b".."


@attrs.define
class Cursor:
    """Per open directory: for every offset handed out, the key of the entry it follows
    (the kernel keeps the equivalent in ``file->private_data`` / the cursor dentry)."""

    after: dict[int, tuple] = attrs.Factory(dict)
    #: dcache only: the running count that goes with each handed-out offset
    count: dict[int, int] = attrs.Factory(dict)
    #: entries made for this handle so far ("." and ".." aside): what a listing cost
    made: int = 0


def _from(runs: Sequence[Run], begins: Sequence[int]) -> Iterator[tuple[tuple, object]]:
    """(key, value) of every entry of *runs* (none, one or two: a directory's files
    and its child groups) from the given start index of each, in key order, made one
    at a time as the caller takes them. Keys are unique within a directory (a group
    cannot take a file's name), so the runs merge by one compare per entry."""
    if len(runs) > 2:
        raise ValueError("a directory listing merges at most two runs")
    runs, begins = [*runs, _NONE, _NONE][:2], [*begins, 0, 0][:2]
    (ak, av), i = (runs[0].keys, runs[0].values), begins[0]
    (bk, bv), j = (runs[1].keys, runs[1].values), begins[1]
    na, nb = len(ak), len(bk)
    while i < na and j < nb:
        if ak[i] < bk[j]:
            yield ak[i], av[i]
            i += 1
        else:
            yield bk[j], bv[j]
            j += 1
    while i < na:
        yield ak[i], av[i]
        i += 1
    while j < nb:
        yield bk[j], bv[j]
        j += 1


def _rank(runs: Sequence[Run], key: tuple) -> int:
    """How many entries before *key* have its hash (0 unless names collide)."""
    low = (key[0],)
    return sum(bisect_left(r.keys, key) - bisect_left(r.keys, low) for r in runs)


def _nth(runs: Sequence[Run], n: int) -> list[int]:
    """Start indexes, one per run, of the merged listing's *n*-th entry (0-based): by
    bisection on each run for the entry with exactly *n* entries before it."""
    for run in runs:
        lo, hi = 0, len(run)
        while lo < hi:
            mid = (lo + hi) // 2
            before = sum(bisect_left(r.keys, run.keys[mid]) for r in runs)
            if before == n:
                return [bisect_left(r.keys, run.keys[mid]) for r in runs]
            lo, hi = (mid + 1, hi) if before < n else (lo, mid)
    return [len(r) for r in runs]  # past the end


def iter_page(order, runs: Sequence[Run], start: int,
              cursor: Cursor) -> Iterator[tuple[str, object, int]]:
    """Everything a readdir starting at offset *start* may return, in order, as
    ``(name as bytes, value or None for "."/"..", next offset)``, made one at a time: the
    caller stops taking when its reply buffer is full, so a request costs the bisections
    that find its start plus the entries one reply holds, whatever the directory's
    size. *runs* are the directory's entries now, as sorted runs of *order*'s keys (a
    directory's files and its child groups). Every offset is recorded in *cursor*
    before it is handed out.

    *start* is 0 for a fresh listing, else an offset this function returned earlier
    (the FUSE kernel passes back the offset of the last entry the user consumed).
    """
    if order.kind == "kernfs":
        return _kernfs_page(runs, start, cursor)
    return _dcache_page(runs, start, cursor)


def _kernfs_page(runs, start, cursor):
    if start == 0:
        yield _DOT, None, 1
    skip = h = 0
    if start <= 1:
        begins = [0] * len(runs)
    elif start == INT_MAX:
        return
    elif start in cursor.after:
        last = cursor.after[start]
        begins = [bisect_right(r.keys, last) for r in runs]
    else:
        # kernfs_dir_pos(): the first node whose hash is >= the position (then skip
        # the colliding entries the offset's rank says were consumed)
        h, skip = start & 0xFFFFFFFF, start >> 32
        begins = [bisect_left(r.keys, (h,)) for r in runs]
    entries = _from(runs, begins)
    cur = next(entries, None)
    while skip and cur is not None and cur[0][0] == h:
        cur, skip = next(entries, None), skip - 1
    if start <= 1:
        yield _DOTDOT, None, INT_MAX if cur is None else cur[0][0]
    if cur is None:
        return
    # Rank of an entry among the earlier ones with the same hash: 0 unless two names
    # collide. The kernel's positions are the bare hash and it tells colliding
    # entries apart through file->private_data; a FUSE server only gets the offset
    # back, so a colliding entry's offset carries its rank above bit 32.
    rank = _rank(runs, cur[0])
    while cur is not None:
        nxt = next(entries, None)
        if nxt is None:
            off = INT_MAX
        else:
            rank = rank + 1 if nxt[0][0] == cur[0][0] else 0
            off = nxt[0][0] | (rank << 32)
        cursor.after[off] = cur[0]
        cursor.made += 1
        yield cur[0][1], cur[1], off
        cur = nxt


def _dcache_page(runs, start, cursor):
    # dcache_readdir(): f_pos 0 ".", 1 "..", then 2, 3, ... one per positive dentry
    if start == 0:
        yield _DOT, None, 1
    if start <= 1:
        yield _DOTDOT, None, 2
        begins, pos = [0] * len(runs), 2
    elif start in cursor.after:
        last = cursor.after[start]
        begins, pos = [bisect_right(r.keys, last) for r in runs], cursor.count[start]
    else:
        # dcache_dir_lseek(): move the cursor past start - 2 entries from the head
        begins, pos = _nth(runs, start - 2), start
    for key, value in _from(runs, begins):
        pos += 1
        cursor.after[pos] = key
        cursor.count[pos] = pos
        cursor.made += 1
        yield key[1], value, pos


def readdir_page(order, entries: Sequence[Entry], start: int,
                 cursor: Cursor) -> list[tuple[str, Entry | None, int]]:
    """:func:`iter_page` over a plain sequence of entries (sorted once here), taken
    to the end: ``(name, entry or None for "."/"..", next offset)``."""
    return [(name.decode("utf-8", "surrogateescape"), entry, off)
            for name, entry, off in iter_page(order, [Run.of(order, entries)], start, cursor)]
