"""Pure core: page counters, memory cgroup rules and the hierarchy, without FUSE."""

import pytest

import attrs

from cgroupfs_emu.core import LINUX_6, PAGE_COUNTER_MAX, SEEDS, PageCounter, memory_hierarchy
from cgroupfs_emu.core.errors import Busy, CrossParent, Exists, Invalid, NoMemory, NoSpace


class World:
    """A hierarchy and its memory controller; mkdir returns the child's memcg."""

    def __init__(self, profile):
        self.h, self.mc = memory_hierarchy(profile)
        self.root = self.mc.root

    def mkdir(self, parent, name):
        return self.mc.of(self.h.mkdir(parent.cgroup, name))

    def rmdir(self, g):
        self.h.rmdir(g.cgroup)

    def rename(self, g, parent, name):
        self.h.rename(g.cgroup, parent.cgroup, name)

    def attach(self, tid, g):
        self.h.attach(tid, g.cgroup)

    def prune(self, is_alive):
        self.h.prune(is_alive)


def test_try_charge_walks_up_and_fails_on_the_refusing_level():
    root = PageCounter()
    parent = PageCounter(root, max=10)
    child = PageCounter(parent)
    assert child.try_charge(6) is None
    assert (child.usage, parent.usage, root.usage) == (6, 6, 6)
    assert child.try_charge(5) is parent
    # only the level that refused counts the failure; the rollback is complete
    assert (child.failcnt, parent.failcnt, root.failcnt) == (0, 1, 0)
    assert (child.usage, parent.usage, root.usage) == (6, 6, 6)
    # the child's watermark saw the attempted charge, as in the kernel
    assert child.watermark == 11 and parent.watermark == 6


def test_set_max_refuses_below_usage_and_reset_watermark_goes_to_usage():
    c = PageCounter()
    c.charge(5)
    with pytest.raises(Busy):
        c.set_max(4)
    c.set_max(5)
    c.uncharge(2)
    assert c.watermark == 5
    c.reset_watermark()
    assert c.watermark == 3
    c.uncharge(100)
    assert c.usage == 0  # never negative


def test_memsw_ordering_compared_in_pages():
    h = World(LINUX_6)
    g = h.mkdir(h.root, "g")
    with pytest.raises(Invalid):
        h.mc.resize_max(g, 0, memsw=True)  # below the unlimited memory limit [G:26]
    h.mc.resize_max(g, 1 << 18, memsw=False)
    h.mc.resize_max(g, 1 << 18, memsw=True)
    with pytest.raises(Invalid):
        h.mc.resize_max(g, PAGE_COUNTER_MAX, memsw=False)  # -1 while memsw is finite [G:24]
    h.mc.resize_max(g, PAGE_COUNTER_MAX, memsw=True)
    h.mc.resize_max(g, PAGE_COUNTER_MAX, memsw=False)
    with pytest.raises(Invalid):
        h.mc.resize_max(h.root, 1, memsw=False)


def test_mkdir_charges_the_parent_and_rmdir_gives_it_back():
    h = World(LINUX_6)
    parent = h.mkdir(h.root, "p")
    assert parent.memory.usage == 0
    child = h.mkdir(parent, "c")
    pages = h.mc.mkdir_charge_pages
    assert pages == LINUX_6.mkdir_charge_pages(1)  # World: one possible CPU
    assert (parent.memory.usage, parent.kmem.usage, parent.memsw.usage) == (pages,) * 3
    with pytest.raises(Busy):
        h.mc.resize_max(parent, pages - 1, memsw=False)
    h.rmdir(child)
    assert parent.memory.usage == 0 and parent.memory.watermark == pages


def test_mkdir_under_a_full_parent_is_enomem_and_counts_a_failure():
    h = World(LINUX_6)
    parent = h.mkdir(h.root, "p")
    h.mc.resize_max(parent, 0, memsw=False)
    with pytest.raises(NoMemory):
        h.mkdir(parent, "c")
    assert parent.memory.failcnt == 1 and "c" not in parent.cgroup.children
    assert parent.memsw.usage == 0


def test_inheritance_at_mkdir_only():
    h = World(LINUX_6)
    a = h.mkdir(h.root, "a")
    a.set_swappiness(5)
    a.set_oom_kill_disable(1)
    a.cgroup.set_notify_on_release(1)
    b = h.mkdir(a, "b")
    assert (b.swappiness, b.oom_kill_disable, b.cgroup.notify_on_release) == (5, True, True)
    a.set_swappiness(7)
    assert b.swappiness == 5
    h.root.set_swappiness(30)  # the root writes the global vm.swappiness
    assert h.mkdir(h.root, "c").swappiness == 30


def test_rmdir_and_rename_rules():
    h = World(LINUX_6)
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    with pytest.raises(Busy):
        h.rmdir(a)
    with pytest.raises(CrossParent):
        h.rename(b, h.root, "b")
    c = h.mkdir(a, "c")
    with pytest.raises(Exists):
        h.rename(b, a, "c")
    with pytest.raises(Invalid):
        h.rename(b, a, "x\ny")
    h.mc.resize_max(b, 100, memsw=False)
    h.rename(b, a, "z")
    assert a.cgroup.children["z"] is b.cgroup and b.memory.max == 100
    h.attach(4242, c)
    with pytest.raises(Busy):
        h.rmdir(c)
    h.prune(lambda tid: False)
    h.rmdir(c)


def test_memcg_id_space():
    h = World(attrs.evolve(LINUX_6, max_groups=3, mkdir_charge_fixed=0,
                           mkdir_charge_per_cpu=0))
    h.mkdir(h.root, "a")
    h.mkdir(h.root, "b")
    with pytest.raises(NoSpace):
        h.mkdir(h.root, "c")


def test_use_hierarchy_legacy_rules_in_seeds_profile():
    h = World(SEEDS)
    assert h.root.use_hierarchy
    with pytest.raises(Invalid):
        h.mkdir(h.root, "a").set_use_hierarchy(0)  # parent is hierarchical
    h2 = World(SEEDS)
    a = h2.mkdir(h2.root, "a")
    h2.root.cgroup.children.clear()
    h2.root.set_use_hierarchy(0)
    b = h2.mkdir(h2.root, "b")
    assert not b.use_hierarchy and b.memory.parent is None
    b.set_use_hierarchy(1)
    c = h2.mkdir(b, "c")
    assert c.memory.parent is b.memory
    with pytest.raises(Busy):
        b.set_use_hierarchy(0)
    with pytest.raises(Invalid):
        b.set_use_hierarchy(2)
    assert a.use_hierarchy


def test_seed_kmem_limit_needs_independence():
    h = World(SEEDS)
    g = h.mkdir(h.root, "g")
    with pytest.raises(Invalid):
        g.set_kmem_max(10)
    g.set_independent_kmem_limit(1)
    g.set_kmem_max(10)
    assert g.kmem.max == 10
    g.set_independent_kmem_limit(0)
    assert g.kmem.max == PAGE_COUNTER_MAX
    h6 = World(LINUX_6)
    g6 = h6.mkdir(h6.root, "g")
    g6.set_kmem_max(10)  # parsed, then ignored
    assert g6.kmem.max == PAGE_COUNTER_MAX
