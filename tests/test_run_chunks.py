"""dirorder.Run kept as sorted chunks: whatever adds and removals happen, across chunk
boundaries, splits and emptied chunks, it holds exactly what one plain sorted list
would, and a listing resumed from any position gives that list's tail.

The chunk size is made small here (monkeypatched CHUNK) so that a few hundred entries
cross many chunk boundaries; the structure does not depend on its value."""

from __future__ import annotations

import bisect
import random

import pytest

from cgroupfs_emu import dirorder
from cgroupfs_emu.dirorder import Cursor, KernfsOrder, Run, iter_page


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(dirorder, "CHUNK", 8)
    return 8


def _same(run: Run, oracle: list) -> None:
    """The run equals the oracle (a sorted list of (key, value)) by every accessor, and
    its chunks respect their invariants."""
    keys = [k for k, _ in oracle]
    assert list(run.keys()) == keys
    assert len(run) == len(oracle)
    assert list(run.items_from(0)) == oracle
    assert all(run.chunks) and all(len(c) <= dirorder.CHUNK for c in run.chunks)
    assert run.maxes == [c[-1] for c in run.chunks]
    assert [len(v) for v in run.vchunks] == [len(c) for c in run.chunks]
    for i in range(0, len(keys), 7):
        assert run.key_at(i) == keys[i]
        assert run.bisect_left(keys[i]) == bisect.bisect_left(keys, keys[i])
        assert run.bisect_right(keys[i]) == bisect.bisect_right(keys, keys[i])
        probe = (keys[i][0], keys[i][1] + b"\0")  # between two keys
        assert run.bisect_left(probe) == bisect.bisect_left(keys, probe)


def test_many_adds_and_removes_equal_a_sorted_list(small_chunks):
    order = KernfsOrder()
    rng = random.Random(22)
    run, oracle, alive = Run(), [], set()
    for step in range(3000):
        name = f"g{rng.randrange(400)}"
        key = order.key_of(name)
        if name in alive:
            assert run.remove(key)
            oracle.remove((key, name))
            alive.discard(name)
        else:
            run.add(key, name)
            bisect.insort(oracle, (key, name))
            alive.add(name)
        assert not run.remove(order.key_of("absent"))
        if step % 97 == 0:
            _same(run, oracle)
    _same(run, oracle)
    assert len(run.chunks) > 1


def test_a_full_chunk_splits_and_an_emptied_chunk_goes(small_chunks):
    # keys in ascending order: every add lands in the last chunk, which splits at the
    # cap; removing them all again leaves no empty chunk behind
    run, oracle = Run(), []
    for i in range(5 * small_chunks):
        key = (i, b"n")
        run.add(key, i)
        oracle.append((key, i))
        _same(run, oracle)
    assert len(run.chunks) >= 5
    # descending adds (the 3.10 order: newest first) split the first chunk instead
    for i in range(-1, -3 * small_chunks, -1):
        run.add((i, b"n"), i)
        oracle.insert(0, ((i, b"n"), i))
        _same(run, oracle)
    # empty a chunk in the middle, then the first and the last
    middle = run.chunks[len(run.chunks) // 2][:]
    for key in middle:
        assert run.remove(key)
        oracle = [kv for kv in oracle if kv[0] != key]
        _same(run, oracle)
    while oracle:
        key = oracle[0][0] if len(oracle) % 2 else oracle[-1][0]
        assert run.remove(key)
        oracle = [kv for kv in oracle if kv[0] != key]
        _same(run, oracle)
    assert run.chunks == [] and run.maxes == [] and len(run) == 0
    assert not run.remove((0, b"n"))


def test_a_run_built_from_sorted_keys_then_changed(small_chunks):
    order = KernfsOrder()
    names = sorted((f"x{i}" for i in range(100)), key=order.key_of)
    oracle = [(order.key_of(n), n) for n in names]
    run = Run([k for k, _ in oracle], [v for _, v in oracle])
    _same(run, oracle)
    for n in names[::3]:
        assert run.remove(order.key_of(n))
    oracle = [kv for kv in oracle if kv[1] not in set(names[::3])]
    _same(run, oracle)


def test_a_listing_resumes_from_every_position(small_chunks):
    """Every offset a listing hands out, taken back fresh (the lseek path: no cursor)
    and from the handle's cursor, gives the rest of one plain sorted listing, also
    with colliding hashes ("ba"/"al") and with the control files merged in."""
    order = KernfsOrder()
    files = Run.of(order, [dirorder.Entry(f) for f in ("tasks", "cgroup.procs", "notify")])
    names = [f"g{i}" for i in range(60)] + ["ba", "al"]
    assert order.key_of("ba")[0] == order.key_of("al")[0]
    groups = Run()
    for n in names:
        groups.add(order.key_of(n), n)
    full = [(name, off) for name, _, off in iter_page(order, [files, groups], 0, Cursor())]
    want = sorted([*names, "tasks", "cgroup.procs", "notify"], key=order.key_of)
    assert [n.decode() for n, _ in full[2:]] == want
    cursor = Cursor()
    list(iter_page(order, [files, groups], 0, cursor))
    for at, (_, off) in enumerate(full[:-1]):
        rest = full[at + 1:]
        again = [(n, o) for n, _, o in iter_page(order, [files, groups], off, cursor)]
        assert again == rest
        fresh = [(n, o) for n, _, o in iter_page(order, [files, groups], off, Cursor())]
        assert fresh == rest
