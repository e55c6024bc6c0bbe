"""The cost of listing a directory, counted, not timed: at 2,000 and at 20,000 groups a
readdir request makes about as many entries as its reply takes, hashes no name and
sorts nothing, so a whole listing costs O(n). Before, every request sorted and keyed
the whole directory again (O(n^2 / page) per listing).

Three tiers: the ordering alone (dirorder), the FUSE adapter called directly with a
reply buffer of fixed room (no mount), and one real mount whose daemon logs what each
READDIRPLUS made (-d). A listing kept as groups come and go must also stay exactly
what a listing sorted from scratch gives, in both kernel orders.
"""

from __future__ import annotations

import os
import random
import re

import pyfuse3
import pytest
import trio

from cgroupfs_emu import dirorder
from cgroupfs_emu.core import LINUX_6, memory_hierarchy
from cgroupfs_emu.core.catalog import get_profile
from cgroupfs_emu.dirorder import Cursor, Entry, KernfsOrder, Run, iter_page, readdir_page
from cgroupfs_emu.files import ControlTree
from cgroupfs_emu.files.kernfs import _SEQ_SPAN, Kernfs
from cgroupfs_emu.fs import CgroupFS
from cgroupfs_emu.host import Host
from conftest import Mount, needs_fuse

#: entries one reply takes (a 32 KiB getdents buffer holds about 200 READDIRPLUS ones)
ROOM = 200
SMALL, LARGE = 2_000, 20_000


class Counts:
    """Calls of the functions whose per-request use would make a listing O(n^2)."""

    def __init__(self, monkeypatch):
        self.hashes = self.sorts = self.refiles = 0

        def counting(name, attr, fn):
            def wrapper(*args, **kw):
                setattr(self, attr, getattr(self, attr) + 1)
                return fn(*args, **kw)
            return wrapper

        monkeypatch.setattr(dirorder, "kernfs_name_hash",
                            counting("h", "hashes", dirorder.kernfs_name_hash))
        monkeypatch.setattr(dirorder, "sorted", counting("s", "sorts", sorted), raising=False)
        monkeypatch.setattr(Kernfs, "_file_all", counting("r", "refiles", Kernfs._file_all))

    def reset(self):
        self.hashes = self.sorts = self.refiles = 0


def _walk_runs(runs, room):
    """List like the kernel: each request takes up to *room* entries and resumes at
    the offset of the last one taken. Returns (names, per-request entries made)."""
    cursor, start, names, made = Cursor(), 0, [], []
    while True:
        before, taken = cursor.made, 0
        for name, value, off in iter_page(KernfsOrder(), runs, start, cursor):
            if taken == room:
                break
            taken += 1
            start = off
            if value is not None:
                names.append(name)
        made.append(cursor.made - before)
        if taken == 0:
            return names, made


@pytest.mark.parametrize("n", [SMALL, LARGE])
def test_a_request_makes_what_its_reply_takes_and_sorts_nothing(monkeypatch, n):
    order = KernfsOrder()
    files = Run.of(order, [Entry(f) for f in ("tasks", "cgroup.procs", "memory.stat")])
    groups = Run()
    for i in range(n):
        groups.add(order.key_of(f"g{i}"), i)
    counts = Counts(monkeypatch)
    names, made = _walk_runs([files, groups], ROOM)
    assert len(names) == n + 3
    assert counts.hashes == 0 and counts.sorts == 0
    # a request makes at most one entry more than it takes
    assert max(made) <= ROOM + 1
    assert sum(made) <= (n + 3) * (1 + 2 / ROOM) + ROOM


def _fs(profile=LINUX_6):
    tree = ControlTree(*memory_hierarchy(profile), Host())
    return tree, CgroupFS(tree)


def _mkdirs(ops, names, parent=pyfuse3.ROOT_INODE):
    ctx = pyfuse3.RequestContext()

    async def run():
        for name in names:
            await ops.mkdir(parent, os.fsencode(name), 0o755, ctx)
    trio.run(run)


class Reply:
    """pyfuse3.readdir_reply with room for *room* entries per request."""

    def __init__(self, room):
        self.room = room

    def __call__(self, token, name, attrs, off):
        if len(token) == self.room:
            return False
        token.append((os.fsdecode(name), off))
        return True


def _fs_listing(monkeypatch, ops, room=ROOM, inode=pyfuse3.ROOT_INODE):
    """List a directory through CgroupFS.readdir; (names, requests, made per request)."""
    monkeypatch.setattr(pyfuse3, "readdir_reply", Reply(room))
    ctx = pyfuse3.RequestContext()

    async def run():
        fh = await ops.opendir(inode, ctx)
        cursor = ops._handles[fh][1]
        start, names, made = 0, [], []
        while True:
            token, before = [], cursor.made
            await ops.readdir(fh, start, token)
            made.append(cursor.made - before)
            if not token:
                await ops.releasedir(fh)
                return names, len(made), made
            names += [name for name, _ in token]
            start = token[-1][1]
    return trio.run(run)


def test_fs_listing_cost_per_entry_is_the_same_at_2000_and_20000_groups(monkeypatch):
    per_entry = {}
    for n in (SMALL, LARGE):
        tree, ops = _fs()
        _mkdirs(ops, [f"g{i}" for i in range(n)])
        counts = Counts(monkeypatch)
        _fs_listing(monkeypatch, ops)
        # the first listing makes the root's file run: its names hashed once
        assert counts.hashes <= len(tree.files(tree.root)) and counts.refiles == 0
        counts.reset()
        names, requests, made = _fs_listing(monkeypatch, ops)
        assert len(names) == n + len(tree.files(tree.root)) + 2
        assert counts.hashes == 0 and counts.sorts == 0 and counts.refiles == 0
        assert max(made) <= ROOM + 1
        per_entry[n] = (requests / len(names), sum(made) / len(names))
        monkeypatch.undo()
    (req_small, made_small), (req_large, made_large) = per_entry[SMALL], per_entry[LARGE]
    assert req_large <= 1.2 * req_small and made_large <= 1.2 * made_small


@pytest.mark.parametrize("profile", ["linux-6.18", "linux-3.10"])
def test_kept_listing_equals_a_listing_sorted_from_scratch(monkeypatch, profile):
    """mkdir, rmdir and rename, in the root and in a child, keep each directory's
    entries exactly where a sort of them all puts them, offsets included."""
    tree, ops = _fs(get_profile(profile))
    ctx = pyfuse3.RequestContext()
    rng = random.Random(profile)
    _mkdirs(ops, ["sub"])
    sub = trio.run(ops.lookup, pyfuse3.ROOT_INODE, b"sub", ctx).st_ino
    alive = {pyfuse3.ROOT_INODE: {"sub"}, sub: set()}

    async def churn():
        for step in range(400):
            where = rng.choice([pyfuse3.ROOT_INODE, sub])
            names = alive[where] - {"sub"}
            name = f"n{rng.randrange(60)}" if rng.random() < 0.7 else "ba"  # "ba"/"al" collide
            if name in names and rng.random() < 0.5:
                new = rng.choice(["al", f"r{step}"])
                if new not in names:
                    await ops.rename(where, name.encode(), where, new.encode(), 0, ctx)
                    alive[where] = (alive[where] - {name}) | {new}
                    continue
            if name in names:
                await ops.rmdir(where, name.encode(), ctx)
                alive[where].discard(name)
            else:
                await ops.mkdir(where, name.encode(), 0o755, ctx)
                alive[where].add(name)

    trio.run(churn)
    order = tree.dir_order
    for inode in (pyfuse3.ROOT_INODE, sub):
        dnode = tree.nodes.get(inode)
        got = _fs_listing(monkeypatch, ops, room=7, inode=inode)[0]
        # from scratch: the groups by their names now (3.10: newest birth first) and
        # the files as the profile lists them
        files = tree.nodes.listing(dnode)[0]
        entries = [Entry(name, tree.nodes.dir_node(group).born * _SEQ_SPAN)
                   for name, group in dnode.group.children.items()]
        entries += [Entry(os.fsdecode(k[1]), -k[0]) for k in files.keys()]
        want = [name for name, _, _ in readdir_page(order, entries, 0, Cursor())]
        assert got == want
        assert set(got) == alive[inode] | {".", ".."} | set(tree.files(dnode.group))


@needs_fuse
@pytest.mark.mount
def test_real_mount_makes_per_request_what_the_reply_takes():
    """A real mount at 300 and 3,000 groups: READDIRPLUS requests per entry stay the
    same and no request makes more than one entry beyond what its reply took (the
    daemon's debug log says what each made)."""
    per_entry = {}
    m = Mount("kernel=linux-6", flags=("-d",))
    try:
        made_re = re.compile(r"readdir from \S+: (\d+) entries made, (\d+) replied")
        n = 0
        for size in (300, 3_000):
            while n < size:
                os.mkdir(m.p(f"g{n}"))
                n += 1
            start = os.path.getsize(m.stderr_path)
            names = os.listdir(m.path)
            assert {f"g{i}" for i in range(size)} <= set(names)
            assert len(names) == len(set(names))
            with open(m.stderr_path, "rb") as f:
                f.seek(start)
                log = f.read().decode(errors="replace")
            requests = [(int(a), int(b)) for a, b in made_re.findall(log)]
            assert requests, log[-2000:]
            assert all(made <= replied + 1 for made, replied in requests), requests
            per_entry[size] = len(requests) / len(names)
    finally:
        m.stop()
    assert per_entry[3_000] <= 1.2 * per_entry[300]
