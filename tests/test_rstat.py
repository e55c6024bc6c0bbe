"""Hierarchical statistics kept as they change (core/memcg/stats.Stats) equal the
walks they replace: for every group and key, total_<key> is the sum over the
hierarchical subtree, and the root's usage the sum of cache + rss (+ swap) over every
live group. Driven by the charging state machine (charges, uncharges, slab, stocks,
limits and reclaim, moves, exits, rmdir), on the seeds profile, whose use_hierarchy
may be 0, and on linux-6."""

from hypothesis import settings
from hypothesis.stateful import invariant

from cgroupfs_emu.core import LINUX_6, memory_hierarchy
from cgroupfs_emu.core.memcg.stats import STAT_KEYS

from test_charge import ChargeMachine, mkdir


def check_totals(h):
    for g in h.walk():
        for key in STAT_KEYS:
            walked = sum(d.stats[key] for d in g.hierarchical_subtree())
            assert g.stat_total(key) == walked, (g.path(), key)
    live = list(h.walk())
    for memsw, keys in ((False, ("cache", "rss")), (True, ("cache", "rss", "swap"))):
        assert h.root.usage(memsw) == sum(g.stats[k] for g in live for k in keys)


class TotalsMachine(ChargeMachine):
    @invariant()
    def totals_match_walks(self):
        check_totals(self.h)


TestTotals = TotalsMachine.TestCase
TestTotals.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_a_non_hierarchical_parent_stops_the_totals():
    from cgroupfs_emu.core import SEEDS
    _, h = memory_hierarchy(SEEDS)
    h.root.set_use_hierarchy(0)  # pre-5.11: allowed while the root has no children
    flat = mkdir(h, h.root, "flat")  # inherits 0
    child = mkdir(h, flat, "child")
    deep = mkdir(h, h.root, "deep")
    deep.set_use_hierarchy(1)
    leaf = mkdir(h, deep, "leaf")
    o = h.new_owner(1)
    assert h.charge(o, child, "anon", 5) is None
    assert h.charge(o, leaf, "anon", 3) is None
    assert (child.stat_total("rss"), flat.stat_total("rss")) == (5, 0)
    assert (leaf.stat_total("rss"), deep.stat_total("rss")) == (3, 3)
    assert h.root.stat_total("rss") == 0  # the root's walk stops at once
    assert h.root.usage() == 8  # but its usage counts every group
    check_totals(h)


def test_root_totals_at_depth_and_after_rmdir():
    _, h = memory_hierarchy(LINUX_6)
    g = h.root
    chain = []
    for i in range(5):
        g = mkdir(h, g, f"d{i}")
        chain.append(g)
    o = h.new_owner(1)
    assert h.charge(o, chain[-1], "file", 7) is None
    assert all(c.stat_total("cache") == 7 for c in chain)
    assert h.root.stat_total("pgpgin") == 7
    h.uncharge(o, chain[-1], "file", 7)
    h.hierarchy.rmdir(chain[-1].cgroup)
    # its page events stay with it and leave the walk, as before
    check_totals(h)
