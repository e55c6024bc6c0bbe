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
run is a list of sorted chunks of at most :data:`CHUNK` keys, so a mkdir or rmdir
moves at most a chunk's pointers, not half the directory. A readdir request finds
where it resumes by bisection and makes only the entries its reply takes
(:func:`iter_page` is lazy), merging the few control files into the groups' chunks by
bisection, so listing n entries costs O(n) in all, not a sort per request.

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
#: most keys one chunk of a Run holds (an add or a removal moves at most this many)
CHUNK = 1024
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
    """Entries kept in key order as they come and go (the kernel's rbtree of siblings,
    kernfs_link_sibling()), with what the caller wants back for each.

    Kept as sorted *chunks* of at most :data:`CHUNK` keys, each with its values beside
    it, and the largest key of every chunk: an add or a removal bisects the maxima,
    then one chunk, and moves at most a chunk's pointers, whatever the directory's
    size. One flat list moved half the directory per mkdir: at 65,535 groups a mkdir
    cost twice what it cost at 100. An index (:meth:`bisect_left`, :meth:`items_from`)
    counts entries across chunks, as if they were one list."""

    __slots__ = ("chunks", "vchunks", "maxes", "size")

    def __init__(self, keys: list | None = None, values: list | None = None):
        """A run of *keys* (sorted already) and their *values*."""
        keys = keys or []
        values = values if values is not None else [None] * len(keys)
        if len(values) != len(keys):
            raise ValueError("one value per key")
        step = CHUNK // 2  # half full: the next adds split nothing
        self.chunks: list[list[tuple]] = [keys[i:i + step] for i in range(0, len(keys), step)]
        self.vchunks: list[list] = [values[i:i + step] for i in range(0, len(keys), step)]
        self.maxes: list[tuple] = [c[-1] for c in self.chunks]
        self.size = len(keys)

    @classmethod
    def of(cls, order, entries: Iterable[Entry]) -> Run:
        """A run of *entries* (sorted once), the entries themselves as values."""
        listing = order.sort(entries)
        return cls([order.key(e) for e in listing], listing)

    def __len__(self) -> int:
        return self.size

    def keys(self) -> Iterator[tuple]:
        for chunk in self.chunks:
            yield from chunk

    def add(self, key: tuple, value) -> None:
        maxes = self.maxes
        if not maxes:
            self.chunks.append([key])
            self.vchunks.append([value])
            maxes.append(key)
            self.size = 1
            return
        c = bisect_left(maxes, key)
        if c == len(maxes):  # past every key: the last chunk grows
            c -= 1
            maxes[c] = key
        chunk, vchunk = self.chunks[c], self.vchunks[c]
        i = bisect_left(chunk, key)
        chunk.insert(i, key)
        vchunk.insert(i, value)
        self.size += 1
        if len(chunk) > CHUNK:
            half = len(chunk) // 2
            self.chunks[c:c + 1] = [chunk[:half], chunk[half:]]
            self.vchunks[c:c + 1] = [vchunk[:half], vchunk[half:]]
            maxes[c:c + 1] = [chunk[half - 1], chunk[-1]]

    def remove(self, key: tuple) -> bool:
        maxes = self.maxes
        c = bisect_left(maxes, key)
        if c == len(maxes):
            return False
        chunk, vchunk = self.chunks[c], self.vchunks[c]
        i = bisect_left(chunk, key)
        if chunk[i] != key:  # i < len(chunk): maxes[c] >= key
            return False
        del chunk[i], vchunk[i]
        self.size -= 1
        if not chunk:
            del self.chunks[c], self.vchunks[c], maxes[c]
        elif i == len(chunk):
            maxes[c] = chunk[-1]
        return True

    def _index(self, c: int, i: int) -> int:
        """The run-wide index of entry *i* of chunk *c*."""
        chunks = self.chunks
        return sum(map(len, chunks[:c])) + i if c < len(chunks) else self.size

    def bisect_left(self, key: tuple) -> int:
        """How many keys are below *key* (bisect.bisect_left on the whole run)."""
        c = bisect_left(self.maxes, key)
        return self._index(c, bisect_left(self.chunks[c], key) if c < len(self.maxes) else 0)

    def bisect_right(self, key: tuple) -> int:
        """How many keys are at most *key*."""
        c = bisect_right(self.maxes, key)
        return self._index(c, bisect_right(self.chunks[c], key) if c < len(self.maxes) else 0)

    def _locate(self, index: int) -> tuple[int, int]:
        """(chunk, index in it) of the run-wide *index*; (len(chunks), 0) past the end."""
        for c, chunk in enumerate(self.chunks):
            if index < len(chunk):
                return c, index
            index -= len(chunk)
        return len(self.chunks), 0

    def key_at(self, index: int) -> tuple:
        c, i = self._locate(index)
        return self.chunks[c][i]

    def items_from(self, index: int) -> Iterator[tuple[tuple, object]]:
        """(key, value) of every entry from the run-wide *index* on, a chunk at a time:
        a request that takes a hundred entries copies at most one chunk."""
        c, i = self._locate(index)
        chunks, vchunks = self.chunks, self.vchunks
        if c < len(chunks):
            yield from zip(chunks[c][i:], vchunks[c][i:])
        for c in range(c + 1, len(chunks)):
            yield from zip(chunks[c], vchunks[c])


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
    cannot take a file's name). The shorter run (the files: a few dozen) is merged
    into the longer one by bisecting each chunk of the longer one at the next short
    key, so the entries in between come straight from the chunk, not one compare
    each."""
    if len(runs) > 2:
        raise ValueError("a directory listing merges at most two runs")
    if not runs:
        return
    if len(runs) == 1:
        yield from runs[0].items_from(begins[0])
        return
    (short, s), (long, i) = zip(runs, begins)
    if len(short) > len(long):
        (short, s), (long, i) = (long, i), (short, s)
    shorts = short.items_from(s)
    nxt = next(shorts, None)
    c, i = long._locate(i)
    for chunk, vchunk in zip(long.chunks[c:], long.vchunks[c:]):
        while nxt is not None:
            j = bisect_left(chunk, nxt[0], i)
            if j == len(chunk):
                break
            yield from zip(chunk[i:j], vchunk[i:j])
            yield nxt
            nxt, i = next(shorts, None), j
        yield from zip(chunk[i:], vchunk[i:])
        i = 0
    if nxt is not None:
        yield nxt
        yield from shorts


def _rank(runs: Sequence[Run], key: tuple) -> int:
    """How many entries before *key* have its hash (0 unless names collide)."""
    low = (key[0],)
    return sum(r.bisect_left(key) - r.bisect_left(low) for r in runs)


def _nth(runs: Sequence[Run], n: int) -> list[int]:
    """Start indexes, one per run, of the merged listing's *n*-th entry (0-based): by
    bisection on each run for the entry with exactly *n* entries before it."""
    for run in runs:
        lo, hi = 0, len(run)
        while lo < hi:
            mid = (lo + hi) // 2
            key = run.key_at(mid)
            before = sum(r.bisect_left(key) for r in runs)
            if before == n:
                return [r.bisect_left(key) for r in runs]
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
        begins = [r.bisect_right(last) for r in runs]
    else:
        # kernfs_dir_pos(): the first node whose hash is >= the position (then skip
        # the colliding entries the offset's rank says were consumed)
        h, skip = start & 0xFFFFFFFF, start >> 32
        begins = [r.bisect_left((h,)) for r in runs]
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
    after = cursor.after
    key, value = cur
    for nkey, nvalue in entries:
        # each entry's offset is the position of the one after it
        if nkey[0] == key[0]:
            rank += 1
            off = nkey[0] | (rank << 32)
        else:
            rank = 0
            off = nkey[0]
        after[off] = key
        cursor.made += 1
        yield key[1], value, off
        key, value = nkey, nvalue
    after[INT_MAX] = key
    cursor.made += 1
    yield key[1], value, INT_MAX


def _dcache_page(runs, start, cursor):
    # dcache_readdir(): f_pos 0 ".", 1 "..", then 2, 3, ... one per positive dentry
    if start == 0:
        yield _DOT, None, 1
    if start <= 1:
        yield _DOTDOT, None, 2
        begins, pos = [0] * len(runs), 2
    elif start in cursor.after:
        last = cursor.after[start]
        begins, pos = [r.bisect_right(last) for r in runs], cursor.count[start]
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
