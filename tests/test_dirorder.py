"""Directory order per kernel generation (cgroupfs_emu.dirorder), without a mount.

The kernfs expectations are not computed here: tests/data/kernfs_order.linux-6.18.txt
holds what getdents64 returned on a real Linux 6.18 kernel for a cgroup v1 hierarchy
(names and d_off values); see tests/data/record_kernfs_order.sh for how it was made.
"""

from __future__ import annotations

import os
import random

import pytest

from cgroupfs_emu.dirorder import (
    INT_MAX, Cursor, DcacheOrder, Entry, KernfsOrder, NameHash, kernfs_name_hash,
    readdir_page,
)

DATA = os.path.join(os.path.dirname(__file__), "data", "kernfs_order.linux-6.18.txt")


def recorded_blocks() -> dict[str, list[tuple[int, str]]]:
    blocks: dict[str, list[tuple[int, str]]] = {}
    current = None
    with open(DATA) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# "):
                current = line[2:].split(" ")[0]
                blocks[current] = []
            elif line:
                off, name = line.split(" ", 1)
                blocks[current].append((int(off), name))
    return blocks


BLOCKS = recorded_blocks()


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_kernfs_listing_matches_real_kernel(block):
    """Names in the kernel's order and every d_off, "." and ".." included."""
    real = BLOCKS[block]
    names = [n for _, n in real if n not in (".", "..")]
    random.Random(block).shuffle(names)  # the order must not come from the input
    page = readdir_page(KernfsOrder(), [Entry(n) for n in names], 0, Cursor())
    assert [(off, name) for name, _, off in page] == real


def test_recorded_data_covers_groups_among_files_and_memory_names():
    # ".", "..", the four core files of a non-root group, the 27 memory controller
    # names of 6.18 (26 memory.* and cgroup.event_control)
    assert len(BLOCKS["M"]) == 2 + 4 + 27
    g = [n for _, n in BLOCKS["G"]]
    # child groups interleave with the files, they are not listed first
    assert g.index("a") > g.index("cgroup.procs") and g.index("a") < g.index("tasks")


def test_hash_is_the_position_of_the_next_entry():
    real = BLOCKS["root"]
    for (_, name), (off, _) in zip(real[2:], real[1:]):
        assert kernfs_name_hash(name) == off


@pytest.mark.parametrize("fold", list(NameHash))
def test_reserved_positions_never_used(fold):
    rng = random.Random(fold.value)
    for _ in range(2000):
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz._-0123456789")
                       for _ in range(rng.randint(1, 20)))
        assert 2 <= kernfs_name_hash(name, fold) < INT_MAX


def test_non_ascii_bytes_are_signed_chars():
    """kernfs passes a plain (signed on x86) char: 0xe9 is -23, whose >> 4 on an
    unsigned long differs from 0xe9 >> 4."""
    from cgroupfs_emu.dirorder import partial_name_hash_r5
    as_signed = partial_name_hash_r5(b"\xe9")
    c = (0xE9 - 0x100) & ((1 << 64) - 1)
    assert as_signed == ((((c << 4) & ((1 << 64) - 1)) + (c >> 4)) * 11) & ((1 << 64) - 1)
    assert as_signed != ((0xE9 << 4) + (0xE9 >> 4)) * 11


def _walk(order, entries_at, page_size):
    """List a directory page by page like getdents with a small buffer: each call
    consumes at most page_size entries; entries_at(n) gives the directory contents
    before the n-th call (so they can change between calls)."""
    cursor, start, seen, calls = Cursor(), 0, [], 0
    while True:
        page = readdir_page(order, entries_at(calls), start, cursor)
        calls += 1
        if not page:
            return seen
        for name, _, off in page[:page_size]:
            seen.append(name)
            start = off
        if len(page) <= page_size:
            # the kernel asks again and gets nothing
            if not readdir_page(order, entries_at(calls), start, cursor):
                return seen


NAMES = ["cgroup.procs", "tasks", "memory.stat", "memory.limit_in_bytes", "notify_on_release",
         "memory.failcnt", "g1", "g2", "g3", "zeta", "alpha", "memory.oom_control"]


@pytest.mark.parametrize("page_size", [1, 2, 3, 5])
def test_kernfs_resume_across_mkdir_and_rmdir_neither_repeats_nor_skips(page_size):
    base = [Entry(n) for n in NAMES]
    removed, added = "g2", ["new1", "new2", "aaaa", "zzzz"]

    def entries_at(n):
        es = [e for e in base if not (n >= 2 and e.name == removed)]
        return es + [Entry(a) for a in added[:n]]

    seen = _walk(KernfsOrder(), entries_at, page_size)
    body = [n for n in seen if n not in (".", "..")]
    assert len(body) == len(set(body)), "an entry was listed twice"
    stable = set(NAMES) - {removed}
    assert stable <= set(body), "an entry present throughout was skipped"
    assert body == sorted(body, key=lambda n: KernfsOrder().key(Entry(n)))


def test_r5_sum_collides_for_ba_and_al():
    """The R5 sum is weak: "ba" and "al" have the same sum ((16*98 + 6)*11 + 16*97 + 6
    == (16*97 + 6)*11 + 16*108 + 6), so they collide under every fold."""
    from cgroupfs_emu.dirorder import partial_name_hash_r5
    assert partial_name_hash_r5(b"ba") == partial_name_hash_r5(b"al")
    for fold in NameHash:
        assert kernfs_name_hash("ba", fold) == kernfs_name_hash("al", fold)


@pytest.mark.parametrize("page_size", [1, 2])
def test_kernfs_resume_with_a_hash_collision_goes_on_after_the_consumed_entry(page_size):
    entries = [Entry(n) for n in ["ba", "al", "tasks", "cgroup.procs", "xal", "xba"]]
    order = KernfsOrder()
    walked = _walk(order, lambda n: entries, page_size)
    assert [n for n in walked if n not in (".", "..")] == [e.name for e in order.sort(entries)]


def test_dcache_lists_newest_first_with_counting_offsets():
    entries = [Entry(n, seq) for seq, n in enumerate(["tasks", "cgroup.procs", "memory.stat"])]
    entries.append(Entry("child", 10))
    page = readdir_page(DcacheOrder(), entries, 0, Cursor())
    assert [(n, off) for n, _, off in page] == [
        (".", 1), ("..", 2), ("child", 3), ("memory.stat", 4), ("cgroup.procs", 5),
        ("tasks", 6)]


@pytest.mark.parametrize("page_size", [1, 2, 4])
def test_dcache_resume_does_not_see_later_groups_and_skips_nothing(page_size):
    base = [Entry(n, seq) for seq, n in enumerate(NAMES)]

    def entries_at(n):
        es = [e for e in base if not (n >= 2 and e.name == "g2")]
        return es + [Entry(f"new{k}", 100 + k) for k in range(n)]

    walked = _walk(DcacheOrder(), entries_at, page_size)
    seen = [n for n in walked if n not in (".", "..")]
    assert len(seen) == len(set(seen))
    assert set(NAMES) - {"g2"} <= set(seen)
    # dcache_readdir() parks its cursor at the head when it reaches position 2, so
    # dentries made before the first real entry is read are listed; any made later
    # sit before the cursor and are not.
    calls_before_first = (walked.index(seen[0]) // page_size) + 1
    late = {f"new{k}" for k in range(calls_before_first, 50)}
    assert not late & set(seen)
