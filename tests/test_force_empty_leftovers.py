"""memory.force_empty and the pages reclaim cannot free, per kernel generation
(docs/kernel-generations.md section 5, profiles.Leftovers), through a real mount.

The pages left are a client's anon pages (no swap device, so reclaim cannot take
them) and its shmem pages; its page cache is reclaimed. The client leaves the group
first (3.x force_empty is EBUSY while the group has tasks), and its charges stay
where they were made (move_charge_at_immigrate 0).

* 3.5-3.15 (linux-3.10, kmem-2012 on 3.8): mem_cgroup_reparent_charges() moves them
  to a hierarchical parent, which already counted them, or else to the root;
* up to 3.4 (kmem-2011 on 3.2, kmem-slab-2012 on 3.3): mem_cgroup_move_parent()
  charges the parent first, hierarchical or not; when its limit refuses, EBUSY;
* 3.16+ (linux-4.19 ...): force_empty only reclaims, the pages stay.
"""

from __future__ import annotations

import errno
import os

import pytest

from conftest import P, errno_of, needs_fuse, num, stat_of, write

pytestmark = [pytest.mark.mount, needs_fuse]

ANON, SHMEM, FILE = 64 * P, 16 * P, 32 * P
LEFT = ANON + SHMEM


def setup(m, chargers, hierarchy: int):
    """a (use_hierarchy as given) / b; a client charges in b, then leaves b for the
    root. Returns the client."""
    os.mkdir(m.p("a"))
    write(m.p("a", "memory.use_hierarchy"), str(hierarchy))
    os.mkdir(m.p("a", "b"))
    c = chargers(m.path, "--no-stock")
    write(m.p("a", "b", "tasks"), str(c.pid))
    for kind, size in (("anon", ANON), ("shmem", SHMEM), ("file", FILE)):
        assert c.do(f"charge {kind} {size}").startswith("ok"), kind
    write(m.p("tasks"), str(c.pid))
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == ANON + SHMEM + FILE
    return c


@pytest.mark.parametrize("profile", ["linux-3.10", "kmem-2012", "kmem-2011", "kmem-slab-2012"])
def test_leftovers_move_to_a_hierarchical_parent(mount_with, chargers, profile):
    """3.x: what reclaim left moves to the hierarchical parent; the parent, which
    counted it already, does not change; b is empty; the pages stay the client's."""
    m = mount_with(f"kernel={profile}")
    c = setup(m, chargers, 1)
    write(m.p("a", "b", "memory.force_empty"), "0")
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == 0
    assert num(m.p("a", "b", "memory.memsw.usage_in_bytes")) == 0
    b = stat_of(m.p("a", "b", "memory.stat"))
    assert b["rss"] == 0 and b["cache"] == 0
    assert num(m.p("a", "memory.usage_in_bytes")) == LEFT  # the page cache was reclaimed
    a = stat_of(m.p("a", "memory.stat"))
    assert a["rss"] == ANON and a["cache"] == SHMEM  # a's own pages now
    assert a["total_rss"] == ANON
    # the client still holds them and frees them where they are now
    assert c.do(f"uncharge anon {ANON}").startswith("ok")
    assert num(m.p("a", "memory.usage_in_bytes")) == SHMEM
    assert stat_of(m.p("a", "memory.stat"))["rss"] == 0


@pytest.mark.parametrize("profile, busy", [("linux-3.10", 0), ("kmem-2012", 0),
                                           ("kmem-2011", errno.EBUSY),
                                           ("kmem-slab-2012", errno.EBUSY)])
def test_a_hierarchical_parent_at_its_limit(mount_with, chargers, profile, busy):
    """3.5+ moves the pages under a hierarchical parent without charging it: its limit
    does not matter. Up to 3.4 the parent is charged before the child gives the pages
    back, so a parent with no room for them a second time refuses: EBUSY."""
    m = mount_with(f"kernel={profile}")
    setup(m, chargers, 1)
    write(m.p("a", "memory.limit_in_bytes"), str(ANON + SHMEM + FILE))
    assert errno_of(write, m.p("a", "b", "memory.force_empty"), "0") == busy
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == (LEFT if busy else 0)
    assert num(m.p("a", "memory.usage_in_bytes")) == LEFT
    assert stat_of(m.p("a", "memory.stat"))["rss"] == (0 if busy else ANON)


@pytest.mark.parametrize("profile", ["linux-3.10", "kmem-2012"])
def test_leftovers_go_to_the_root_past_a_flat_parent(mount_with, chargers, profile):
    """3.5-3.15: a non-hierarchical parent is passed over: the pages go to the
    root (mem_cgroup_move_parent(): no parent_mem_cgroup(), so root_mem_cgroup), so a
    parent's limit cannot refuse them."""
    m = mount_with(f"kernel={profile}")
    setup(m, chargers, 0)
    write(m.p("a", "memory.limit_in_bytes"), str(16 * P))
    write(m.p("a", "b", "memory.force_empty"), "0")
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == 0
    assert num(m.p("a", "memory.usage_in_bytes")) == 0
    root = stat_of(m.p("memory.stat"))
    assert root["rss"] == ANON and root["cache"] == SHMEM
    assert num(m.p("memory.usage_in_bytes")) == LEFT  # the root: every group's pages


@pytest.mark.parametrize("profile", ["kmem-2011", "kmem-slab-2012"])
def test_leftovers_charge_a_flat_parent_up_to_its_limit(mount_with, chargers, profile):
    """Up to 3.4: a non-hierarchical parent is charged (__mem_cgroup_try_charge());
    when its limit refuses, force_empty is EBUSY after its reclaim and the pages stay;
    with room they move and the parent's usage grows by them."""
    m = mount_with(f"kernel={profile}")
    setup(m, chargers, 0)
    write(m.p("a", "memory.limit_in_bytes"), str(LEFT - P))
    assert errno_of(write, m.p("a", "b", "memory.force_empty"), "0") == errno.EBUSY
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == LEFT  # reclaimed, not moved
    assert num(m.p("a", "memory.usage_in_bytes")) == 0
    write(m.p("a", "memory.limit_in_bytes"), str(LEFT))
    write(m.p("a", "b", "memory.force_empty"), "0")
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == 0
    assert num(m.p("a", "memory.usage_in_bytes")) == LEFT
    assert stat_of(m.p("a", "memory.stat"))["rss"] == ANON


@pytest.mark.parametrize("profile", ["linux-4.19", "linux-5.10", "linux-6.18"])
def test_leftovers_stay_from_3_16(mount_with, chargers, profile):
    """3.16+ mem_cgroup_force_empty() only reclaims: the pages it could not free stay."""
    m = mount_with(f"kernel={profile}")
    setup(m, chargers, 1)
    write(m.p("a", "b", "memory.force_empty"), "0")
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == LEFT
    assert stat_of(m.p("a", "b", "memory.stat"))["rss"] == ANON


@pytest.mark.parametrize("profile", ["kmem-2011", "kmem-slab-2012"])
def test_rmdir_up_to_3_4_needs_room_in_the_parent(mount_with, chargers, profile):
    """Up to 3.4 rmdir runs the same move (mem_cgroup_pre_destroy() ->
    mem_cgroup_force_empty(memcg, false)): a flat parent is charged for the pages;
    without room the group is reclaimed, tried again, and the rmdir is EBUSY."""
    m = mount_with(f"kernel={profile}")
    setup(m, chargers, 0)
    write(m.p("a", "memory.limit_in_bytes"), str(LEFT - P))
    assert errno_of(os.rmdir, m.p("a", "b")) == errno.EBUSY
    assert os.path.isdir(m.p("a", "b"))
    assert num(m.p("a", "b", "memory.usage_in_bytes")) == LEFT  # reclaimed, kept
    write(m.p("a", "memory.limit_in_bytes"), str(LEFT))
    os.rmdir(m.p("a", "b"))
    assert num(m.p("a", "memory.usage_in_bytes")) == LEFT
    assert stat_of(m.p("a", "memory.stat"))["rss"] == ANON


@pytest.mark.parametrize("profile", ["linux-3.10", "kmem-2012"])
def test_rmdir_from_3_5_passes_a_flat_parent(mount_with, chargers, profile):
    """3.5+: rmdir's reparenting cannot fail; past a flat parent the pages go to the
    root, whatever the parent's limit."""
    m = mount_with(f"kernel={profile}")
    setup(m, chargers, 0)
    write(m.p("a", "memory.limit_in_bytes"), str(16 * P))
    os.rmdir(m.p("a", "b"))
    assert num(m.p("a", "memory.usage_in_bytes")) == 0
    assert stat_of(m.p("memory.stat"))["rss"] == ANON
