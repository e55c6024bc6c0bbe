"""The charging engine honours each profile's kmem design and counter kind (core only,
no mount). Expectations: docs/kernel-generations.md section 5 (memcg_charge_kmem() of
3.10, memcg_kmem_charge_memcg() of 4.19, __memcg_kmem_charge() of 5.10,
memcg1_account_kmem() of 6.18)."""

from __future__ import annotations

import pytest

from cgroupfs_emu.core import PROFILES, memory_hierarchy
from cgroupfs_emu.core.errors import Busy, NoMemory
from cgroupfs_emu.core.memcg.limits import limit_bytes
from cgroupfs_emu.core.memcg.kinds import Res

LLONG_MAX = (1 << 63) - 1


def world(profile_name, ncpus=2):
    h, mc = memory_hierarchy(PROFILES[profile_name], ncpus=ncpus)
    g = mc.of(h.mkdir(h.root, "g"))
    return h, mc, g


def usage(g):
    return g.memory.usage, g.memsw.usage, g.kmem.usage


def test_6_18_charges_kmem_without_a_limit():
    h, mc, g = world("linux-6.18")
    g.set_kmem_max(1)  # parsed, ignored
    o = mc.new_owner(1)
    assert mc.charge(o, g, "kmem", 5) is None
    assert usage(g) == (5, 5, 5)
    assert g.kmem.max > 5


@pytest.mark.parametrize("name", ["linux-4.19", "linux-5.10"])
def test_enforced_kmem_limit_refuses_after_memory_and_rolls_it_back(name):
    h, mc, g = world(name)
    g.set_kmem_max(2)
    o = mc.new_owner(1)
    with pytest.raises(NoMemory):
        mc.charge(o, g, "kmem", 3)
    assert usage(g) == (0, 0, 0)
    assert g.kmem.failcnt == 1 and g.memory.failcnt == 0
    assert mc.charge(o, g, "kmem", 2) is None
    assert usage(g) == (2, 2, 2)
    with pytest.raises(Busy):  # page_counter_set_max() below usage
        g.set_kmem_max(1)


def test_3_10_kmem_is_not_accounted_until_a_limit_activates_it():
    h, mc, g = world("linux-3.10")
    o = mc.new_owner(1)
    assert mc.charge(o, g, "kmem", 3) is None
    assert usage(g) == (0, 0, 0)  # not active: charged nowhere
    g.set_kmem_max(4)
    assert g.kmem_active
    assert mc.charge(o, g, "kmem", 3) is None
    assert usage(g) == (3, 3, 3)
    with pytest.raises(NoMemory):  # the kmem counter refuses first
        mc.charge(o, g, "kmem", 2)
    assert g.kmem.failcnt == 1 and g.memory.failcnt == 0
    assert usage(g) == (3, 3, 3)
    # children of an active group are active (memcg_propagate_kmem())
    child = mc.of(h.mkdir(g.cgroup, "c"))
    assert child.kmem_active


def test_3_10_kmem_activation_is_ebusy_with_tasks_or_hierarchical_children():
    h, mc, g = world("linux-3.10")
    h.attach(4242, g.cgroup)
    with pytest.raises(Busy):
        g.set_kmem_max(10)
    h.prune(lambda tid: False)
    g.set_use_hierarchy(1)
    h.mkdir(g.cgroup, "c")
    with pytest.raises(Busy):
        g.set_kmem_max(10)
    g.set_kmem_max(LLONG_MAX // 4096, nbytes=LLONG_MAX)  # "-1" never activates
    assert not g.kmem_active
    with pytest.raises(Busy):  # the page-aligned maximum is not RESOURCE_MAX
        g.set_kmem_max(LLONG_MAX // 4096, nbytes=(LLONG_MAX // 4096) * 4096)


def test_3_10_limits_compare_and_read_in_bytes():
    h, mc, g = world("linux-3.10")
    assert limit_bytes(g, Res.MEM) == LLONG_MAX
    # 2^63 (LLONG_MAX rounded up) is above the memsw limit, in bytes
    from cgroupfs_emu.core.errors import Invalid
    with pytest.raises(Invalid):
        mc.resize_max(g, (1 << 63) // 4096, memsw=False, nbytes=1 << 63)
    # a memsw limit of PAGE_COUNTER_MAX pages is below LLONG_MAX bytes: refused,
    # though the pages are equal (the 3.10 comparison is in bytes)
    with pytest.raises(Invalid):
        mc.resize_max(g, LLONG_MAX // 4096, memsw=True, nbytes=(LLONG_MAX // 4096) * 4096)
    mc.resize_max(g, 2, memsw=False, nbytes=8192)
    assert limit_bytes(g, Res.MEM) == 8192


@pytest.mark.parametrize("name, pages", [
    ("linux-3.10", 0), ("linux-4.19", 0), ("linux-5.10", 1 + 2), ("linux-6.18", 2 + 2),
    ("seeds", 2 + 2)])
def test_mkdir_charge_per_profile(name, pages):
    h, mc, g = world(name, ncpus=2)
    c = mc.of(h.mkdir(g.cgroup, "c"))
    assert g.memory.usage == pages
    h.rmdir(c.cgroup)
    assert g.memory.usage == 0 and g.kmem.usage == 0


def test_mkdir_charge_grows_with_the_cpus():
    for ncpus in (1, 4, 64):
        h, mc, g = world("linux-6.18", ncpus=ncpus)
        h.mkdir(g.cgroup, "c")
        assert g.memory.usage == 2 + ncpus


def test_5_10_mkdir_charge_meets_the_kmem_limit():
    h, mc, g = world("linux-5.10")
    g.set_kmem_max(0)
    with pytest.raises(NoMemory):
        h.mkdir(g.cgroup, "c")
    assert g.kmem.failcnt == 1 and usage(g) == (0, 0, 0)


@pytest.mark.parametrize("name, refused", [
    ("linux-3.10", False), ("linux-4.19", False), ("linux-5.10", False),
    ("linux-6.18", True)])
def test_release_agent_privilege_per_profile(name, refused):
    """cgroup_release_agent_write(): CAP_SYS_ADMIN only since 5.17; before, write
    permission on the file (root-owned 0644, so a delegated chown) was enough."""
    from cgroupfs_emu.core.errors import NotPermitted
    from cgroupfs_emu.files import ControlTree
    from cgroupfs_emu.files.request import Caller
    from cgroupfs_emu.host import Host

    h, mc = memory_hierarchy(PROFILES[name], owner_uid=0)
    t = ControlTree(h, mc, Host())
    cf = t.files(t.root)["release_agent"]
    writer = Caller(pid=1, uid=1000, gid=1000)
    if refused:
        with pytest.raises(NotPermitted):
            t.write(t.root, cf, writer, b"/bin/agent\n")
    else:
        t.write(t.root, cf, writer, b"/bin/agent\n")
        assert h.release_agent == "/bin/agent"


@pytest.mark.parametrize("text, n", [("0-1\n", 2), ("0", 1), ("0-3,8,10-11", 7), ("", 0)])
def test_possible_cpu_list(text, n):
    from cgroupfs_emu.host.cpus import parse_cpu_list
    assert parse_cpu_list(text) == n


def test_every_profile_is_data_with_one_hash_per_kernfs_generation():
    from cgroupfs_emu.core import catalog
    from cgroupfs_emu.dirorder import DcacheOrder, KernfsOrder
    for name, p in catalog.PROFILES.items():
        assert p.name == name
        assert isinstance(p.dir_order, (KernfsOrder, DcacheOrder))
        assert set(p.stat_keys) <= set(catalog.PROFILES["linux-6.18"].stat_keys)
    assert catalog.get_profile("linux-6") is catalog.PROFILES["linux-6.18"]
