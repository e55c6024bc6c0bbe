"""The memory controller's charging (core/memcg/), without a socket or a mount.

The invariant every test ends with: each group's counters hold exactly what the
owners' ledgers, orphaned page cache, slab pages, stocks and children's mkdir charges
say. It is computed here from the ledgers, independently of the counters.
"""

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cgroupfs_emu.core import LINUX_6, SEEDS, RecordingEffects, memory_hierarchy
from cgroupfs_emu.core.memcg import OomVerdict, Res
from cgroupfs_emu.core.memcg.kinds import ACCOUNTS
from cgroupfs_emu.core.errors import Busy, Invalid, NoMemory


def own(group):
    """Pages a group's own counters hold, from the ledgers (not the counters)."""
    by_res = {Res.MEM: 0, Res.MEMSW: 0, Res.KMEM: 0, Res.TCP: 0}

    def add(acc, n):
        for res in acc.counters:
            by_res[res] += n

    for led in group.ledgers.values():
        for name, acc in ACCOUNTS.items():
            add(acc, led[name])
    by_res[Res.MEM] += group.orphan_file
    by_res[Res.MEMSW] += group.orphan_file
    for cache in group.slab.values():
        for acc, n in cache.charged.items():
            add(acc, n)
    for owner in group.state.owners:
        if owner.stock_group is group:
            by_res[Res.MEM] += owner.stock
            by_res[Res.MEMSW] += owner.stock
    for child in group.children():
        if child.mkdir_charge:
            add(child.mkdir_account, child.mkdir_charge)
    mem, swap = by_res[Res.MEM], by_res[Res.MEMSW] - by_res[Res.MEM]
    kmem, tcp = by_res[Res.KMEM], by_res[Res.TCP]
    return {"memory": mem, "memsw": mem + swap, "kmem": kmem, "tcpmem": tcp}


def check_invariant(h):
    expected = {}
    for g in reversed(list(h.walk())):
        e = own(g)
        for child in g.children():
            for res in e:
                if getattr(child, res).parent is getattr(g, res):
                    e[res] += expected[child][res]
        expected[g] = e
        for res, n in e.items():
            assert getattr(g, res).usage == n, (g.path(), res)
    for g in h.walk():
        assert g.stats["rss"] == sum(led["anon"] for led in g.ledgers.values())
        assert g.stats["swap"] == sum(led["swap"] for led in g.ledgers.values())
        assert g.stats["cache"] == g.orphan_file + sum(
            led["file"] + led["shmem"] + led["mapped"] for led in g.ledgers.values())
        assert g.stats["unevictable"] == sum(led["locked"] for led in g.ledgers.values())
        assert all(v >= 0 for v in g.stats.values())


def mkdir(h, parent, name):
    """A child group of the memcg *parent*; its memcg."""
    return h.of(h.hierarchy.mkdir(parent.cgroup, name))


def setup(profile=SEEDS, swap=0, facts=None, **limits):
    """The memory controller of a fresh hierarchy (effects recorded) and a group."""
    _, h = memory_hierarchy(profile, RecordingEffects(), swap_pages=swap, facts=facts)
    g = mkdir(h, h.root, "g")
    for name, pages in limits.items():
        if name == "memsw":
            h.resize_max(g, pages, memsw=True)
        else:
            h.resize_max(g, pages, memsw=False)
    return h, g


def test_charge_walks_up_and_counts_stats():
    h, g = setup()
    c = mkdir(h, g, "c")
    o = h.new_owner(100)
    assert h.charge(o, c, "anon", 3) is None
    assert h.charge(o, c, "file", 2) is None
    assert h.charge(o, c, "shmem", 1) is None
    assert (c.memory.usage, g.memory.usage) == (6, 6 + h.mkdir_charge_pages)
    assert c.stats["rss"] == 3 and c.stats["cache"] == 3 and c.stats["shmem"] == 1
    assert c.stats["mapped_file"] == 1 and c.stats["pgpgin"] == 6 and c.stats["pgfault"] == 4
    assert g.stat_total("rss") == 3 and g.stats["rss"] == 0
    h.uncharge(o, c, "anon", 3)
    assert c.stats["pgpgout"] == 3 and c.memory.watermark == 6
    check_invariant(h)


def test_failcnt_on_the_refusing_level_and_reclaim_of_page_cache():
    h, g = setup(memory=SEEDS.mkdir_charge_pages(1) + 2)
    c = mkdir(h, g, "c")  # charges its kernel data to g: g has room for 2 pages more
    a, b = h.new_owner(1), h.new_owner(2)
    h.charge(a, c, "file", 2)
    # b needs 1 more page: g refuses, reclaim takes a's page cache, a is told
    assert h.charge(b, c, "anon", 1) is None
    assert g.memory.failcnt == 1 and c.memory.failcnt == 0
    assert h.effects.notices == [("evicted", a, {"file": 1, "group": c})]
    assert a.ledger(c)["file"] == 1
    check_invariant(h)


def test_oom_picks_the_biggest_task_in_the_subtree():
    h, g = setup(memory=20, memsw=20)
    small, big, outside = (h.new_owner(p) for p in (11, 12, 13))
    h.hierarchy.attach(11, g.cgroup)
    h.hierarchy.attach(12, g.cgroup)
    h.charge(small, g, "anon", 2)
    h.charge(big, g, "anon", 10)
    h.charge(outside, g, "anon", 5)  # charged here, but the task is elsewhere
    verdict = h.charge(small, g, "anon", 5)
    assert verdict == OomVerdict(g, big)
    h.oom_killed(big)
    assert g.oom_kill == 1 and not big.alive
    assert h.charge(small, g, "anon", 5) is None
    check_invariant(h)


def test_oom_with_no_killable_task_refuses():
    h, g = setup(memory=4, memsw=4)
    o = h.new_owner(5)  # not in g's tasks: never a victim
    h.charge(o, g, "anon", 4)
    with pytest.raises(NoMemory):
        h.charge(o, g, "anon", 1)
    h.oom_kill = False
    h.hierarchy.attach(5, g.cgroup)
    with pytest.raises(NoMemory):
        h.charge(o, g, "anon", 1)
    check_invariant(h)


def test_oom_kill_disable_waits_for_user_pages_and_refuses_kernel_charges():
    h, g = setup(memory=4, memsw=4)
    g.set_oom_kill_disable(1)
    o = h.new_owner(5)
    h.hierarchy.attach(5, g.cgroup)
    h.charge(o, g, "anon", 4)
    assert h.charge(o, g, "anon", 1) == OomVerdict(g, None)
    with pytest.raises(NoMemory):
        h.charge(o, g, "kmem", 1)
    check_invariant(h)


def test_swap_keeps_memsw_and_respects_swappiness():
    h, g = setup(swap=100, memory=10)
    o = h.new_owner(5)
    h.charge(o, g, "anon", 10)
    assert h.charge(o, g, "anon", 4) is None
    assert (g.memory.usage, g.memsw.usage, g.stats["swap"]) == (10, 14, 4)
    assert h.swap_used == 4
    g.set_swappiness(0)
    h.hierarchy.attach(5, g.cgroup)
    verdict = h.charge(o, g, "anon", 1)
    assert verdict is not None and verdict.victim is o
    h.uncharge(o, g, "anon", 14)  # resident first, then swap
    assert h.swap_used == 0 and g.memsw.usage == 0
    check_invariant(h)


def test_memsw_limit_cannot_be_met_by_swapping():
    h, g = setup(swap=100, memory=10, memsw=10)
    o = h.new_owner(5)
    h.charge(o, g, "anon", 10)
    with pytest.raises(NoMemory):  # nobody in tasks: refused, not swapped
        h.charge(o, g, "anon", 1)
    assert g.memsw.failcnt == 1 and g.memory.failcnt == 0


def test_kmem_per_profile():
    h, g = setup(SEEDS)
    o = h.new_owner(5)
    h.charge(o, g, "kmem", 3)
    assert (g.memory.usage, g.kmem.usage) == (3, 3)
    g.set_independent_kmem_limit(1)
    g.set_kmem_max(5)
    h.charge(o, g, "kmem", 2)  # independent: kmem only, limit enforced
    assert (g.memory.usage, g.kmem.usage) == (3, 5)
    with pytest.raises(NoMemory):
        h.charge(o, g, "kmem", 1)
    assert g.kmem.failcnt == 1 and g.memory.failcnt == 0
    h.uncharge(o, g, "kmem", 5)
    assert (g.memory.usage, g.kmem.usage) == (0, 0)
    h6, g6 = setup(LINUX_6)
    o6 = h6.new_owner(5)
    g6.set_kmem_max(1)  # ignored on 6.6+
    h6.charge(o6, g6, "kmem", 3)
    assert (g6.memory.usage, g6.kmem.usage) == (3, 3)
    check_invariant(h)


def test_tcp_counts_once_activated():
    h, g = setup()
    o = h.new_owner(5)
    h.charge(o, g, "tcp", 3)
    assert g.tcpmem.usage == 0 and g.memory.usage == 0
    g.set_tcp_max(4)
    h.charge(o, g, "tcp", 4)
    with pytest.raises(NoMemory):
        h.charge(o, g, "tcp", 1)
    assert g.tcpmem.usage == 4 and g.tcpmem.failcnt == 1
    h.uncharge(o, g, "tcp", 7)
    assert g.tcpmem.usage == 0
    check_invariant(h)


def test_slab_objects_pack_into_pages():
    h, g = setup()
    o = h.new_owner(5)
    h.slab_alloc(o, g, "dentry", 192, 21)  # 21 objects per page
    assert g.kmem.usage == 1 and g.memory.usage == 1
    h.slab_alloc(o, g, "dentry", 192, 1)
    assert g.kmem.usage == 2
    assert g.slab_caches == {f"dentry({g.id}:g)": (22, 42, 192)}
    with pytest.raises(Invalid):
        h.slab_alloc(o, g, "dentry", 256, 1)
    h.slab_free(o, "dentry", 192, 22)
    assert g.kmem.usage == 0 and g.slab_caches == {}
    check_invariant(h)


def test_release_frees_all_but_page_cache():
    h, g = setup()
    o = h.new_owner(5)
    for kind in ("anon", "file", "shmem", "kmem", "tcp"):
        h.charge(o, g, kind, 2)
    h.slab_alloc(o, g, "kmalloc-64", 64, 1)
    h.release(o)
    assert g.memory.usage == 2 and g.orphan_file == 2 and g.stats["cache"] == 2
    h.force_empty(g)
    assert g.memory.usage == 0
    check_invariant(h)


def test_lowering_limits_reclaims_or_is_busy():
    h, g = setup(swap=2)
    o = h.new_owner(5)
    h.charge(o, g, "file", 4)
    h.charge(o, g, "anon", 4)
    h.resize_max(g, 6, memsw=False)  # drops 2 file pages
    assert g.memory.usage == 6 and a_file(o, g) == 2
    h.resize_max(g, 2, memsw=False)  # 2 file pages, then 2 anon pages to swap
    assert (g.memory.usage, g.memsw.usage) == (2, 4)
    with pytest.raises(Busy):
        h.resize_max(g, 1, memsw=False)  # swap is full
    with pytest.raises(Busy):
        h.resize_max(g, 3, memsw=True)  # memsw cannot swap
    assert g.memory.max == 2
    with pytest.raises(Busy):
        h.shrink_usage_to(g, 1)
    h.shrink_usage_to(g, 2)
    check_invariant(h)


def a_file(owner, group):
    return owner.ledger(group)["file"]


def test_stock_precharges_and_settles():
    h, g = setup()
    o = h.new_owner(5)
    assert h.set_stock(o, g, {}, 64) == 64
    assert g.memory.usage == 64 and g.stats["rss"] == 0
    assert h.set_stock(o, g, {"anon": 10, "file": 2}, 64) == 64
    assert g.memory.usage == 12 + 64 and g.stats["rss"] == 10
    with pytest.raises(Invalid):
        h.set_stock(o, g, {"anon": 65}, 0)
    with pytest.raises(Invalid):
        h.set_stock(o, g, {"kmem": 1}, 0)
    assert h.set_stock(o, g, {"anon": -4}, 0) == 0
    assert g.memory.usage == 8
    h.resize_max(g, 1000, memsw=False)  # 1000 - 8 < 64 + 1024 headroom: no stock
    assert h.set_stock(o, g, {}, 64) == 0
    check_invariant(h)


def test_rmdir_drops_kmem_and_reparents_the_rest():
    h, g = setup()
    c = mkdir(h, g, "c")
    o = h.new_owner(5)
    h.charge(o, c, "anon", 3)
    h.charge(o, c, "kmem", 2)
    h.slab_alloc(o, c, "dentry", 192, 1)
    h.set_stock(o, c, {}, 64)
    h.hierarchy.rmdir(c.cgroup)
    assert g.memory.usage == 3 + 64 and g.kmem.usage == 0 and g.stats["rss"] == 3
    h.uncharge(o, g, "anon", 3)
    h.release(o)
    assert g.memory.usage == 0
    check_invariant(h)


# ---------------------------------------------------------------------- random


KIND = st.sampled_from(["anon", "file", "shmem", "kmem", "tcp"])


class ChargeMachine(RuleBasedStateMachine):
    """Random interleavings of charges, frees, slabs, stocks, limits, moves, kills,
    rmdir and exits; the invariant must hold after every step."""

    def __init__(self):
        super().__init__()
        _, self.h = memory_hierarchy(SEEDS, swap_pages=16)
        a = mkdir(self.h, self.h.root, "a")
        mkdir(self.h, a, "b")
        self.owners = []

    def groups(self):
        return list(self.h.walk())

    @rule(pid=st.integers(1, 4), followed=st.booleans())
    def new_owner(self, pid, followed):
        self.owners.append(self.h.new_owner(pid, followed))

    @precondition(lambda self: self.owners)
    @rule(data=st.data(), kind=KIND, nr=st.integers(1, 40), wait=st.booleans())
    def charge(self, data, kind, nr, wait):
        o = data.draw(st.sampled_from(self.owners))
        if not o.alive or o.followed:
            return
        g = self.h.memcg_of_task(o.pid)
        try:
            verdict = self.h.charge(o, g, kind, nr, may_wait=wait)
        except NoMemory:
            return
        if verdict is not None and verdict.victim is not None:
            self.h.oom_killed(verdict.victim)

    @precondition(lambda self: self.owners)
    @rule(data=st.data(), kind=KIND, nr=st.integers(1, 40))
    def uncharge(self, data, kind, nr):
        o = data.draw(st.sampled_from(self.owners))
        if o.followed:
            return  # a followed task's charges move only through follow()
        try:
            self.h.uncharge(o, self.h.memcg_of_task(o.pid), kind, nr)
        except Invalid:
            assert nr > o.held(kind)

    @precondition(lambda self: self.owners)
    @rule(data=st.data(), n=st.integers(1, 30), size=st.sampled_from([64, 700, 5000]))
    def slab(self, data, n, size):
        o = data.draw(st.sampled_from(self.owners))
        if not o.alive or o.followed:
            return
        try:
            if data.draw(st.booleans()):
                self.h.slab_alloc(o, self.h.memcg_of_task(o.pid), f"c{size}", size, n)
            else:
                self.h.slab_free(o, f"c{size}", size, n)
        except (NoMemory, Invalid):
            pass

    @precondition(lambda self: self.owners)
    @rule(data=st.data(), used=st.integers(-5, 64), want=st.integers(0, 64))
    def stock(self, data, used, want):
        o = data.draw(st.sampled_from(self.owners))
        if not o.alive or o.followed:
            return
        try:
            self.h.set_stock(o, self.h.memcg_of_task(o.pid), {"anon": used}, want)
        except Invalid:
            pass

    @rule(data=st.data(), pages=st.integers(0, 200), memsw=st.booleans())
    def limit(self, data, pages, memsw):
        g = data.draw(st.sampled_from(self.groups()[1:] or [None]))
        if g is None:
            return
        try:
            self.h.resize_max(g, pages, memsw)
        except (Invalid, Busy):
            pass

    @rule(data=st.data(), pid=st.integers(1, 4), mask=st.integers(0, 3))
    def move(self, data, pid, mask):
        dst = data.draw(st.sampled_from(self.groups()))
        src = self.h.memcg_of_task(pid)
        owners = [o for o in self.owners if o.pid == pid and o.alive]
        try:
            self.h.move_charge(owners, src, dst, mask)
        except NoMemory:
            return
        self.h.hierarchy.attach(pid, dst.cgroup)

    @precondition(lambda self: self.owners)
    @rule(data=st.data(), anon=st.integers(0, 30), shmem=st.integers(0, 10),
          mapped=st.integers(0, 10), locked=st.integers(0, 20))
    def follow(self, data, anon, shmem, mapped, locked):
        o = data.draw(st.sampled_from(self.owners))
        if not o.alive or not o.followed:
            return
        verdict = self.h.follow(o, self.h.memcg_of_task(o.pid),
                                        {"anon": anon, "shmem": shmem, "mapped": mapped}, locked)
        if verdict is not None and verdict.victim is not None:
            self.h.oom_killed(verdict.victim)

    @rule(data=st.data())
    def shrink_or_empty(self, data):
        g = data.draw(st.sampled_from(self.groups()[1:] or [None]))
        if g is None:
            return
        try:
            self.h.shrink_usage_to(g, data.draw(st.integers(0, 100)))
        except Busy:
            pass
        self.h.force_empty(g)

    @precondition(lambda self: self.owners)
    @rule(data=st.data())
    def exit(self, data):
        self.h.release(data.draw(st.sampled_from(self.owners)))

    @rule(data=st.data())
    def rmdir_leaf(self, data):
        leaves = [g for g in self.groups()[1:] if not g.cgroup.children]
        if not leaves:
            mkdir(self.h, self.h.root, "a")
            return
        g = data.draw(st.sampled_from(leaves))
        for tid in list(g.cgroup.tasks):
            self.h.hierarchy.attach(tid, self.h.root.cgroup)
        self.h.hierarchy.rmdir(g.cgroup)

    @invariant()
    def counters_match_ledgers(self):
        check_invariant(self.h)
        assert 0 <= self.h.swap_used <= self.h.swap_total


TestChargeMachine = ChargeMachine.TestCase
TestChargeMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_oom_score_adj_weighs_in_and_minus_1000_is_never_chosen():
    adj = {11: 0, 12: 0}

    class Facts:
        def may_signal(self, pid):
            return True

        def oom_score_adj(self, pid):
            return adj[pid]

    h, g = setup(memory=100, memsw=100, facts=Facts())
    big, small = h.new_owner(11), h.new_owner(12)
    for o in (big, small):
        h.hierarchy.attach(o.pid, g.cgroup)
    h.charge(big, g, "anon", 60)
    h.charge(small, g, "anon", 30)
    assert h.select_victim(g) is big
    adj[12] = 400  # +40 pages' worth of a 100-page limit: 70 > 60
    assert h.select_victim(g) is small
    adj[12] = 0
    adj[11] = -1000
    assert h.select_victim(g) is small
    adj[12] = -1000
    assert h.select_victim(g) is None
