"""The cgroup core alone (core/cgroup.py), with a recording subsystem: what it calls,
in which order, and what a refusal leaves behind."""

import pytest

from cgroupfs_emu.core import Hierarchy, RecordingEffects
from cgroupfs_emu.core.errors import Busy, NoMemory


class Recorder:
    """A subsystem that records every callback and refuses when told to."""

    def __init__(self, name):
        self.name = name
        self.calls = []
        self.refuse_alloc = self.refuse_attach = False

    def bind(self, hierarchy):
        self.calls.append(("bind",))
        return f"{self.name}:/"

    def css_alloc(self, cgroup, parent_css):
        if self.refuse_alloc:
            raise NoMemory("refused")
        self.calls.append(("alloc", cgroup.name, parent_css))
        return f"{self.name}:{cgroup.name}"

    def css_offline(self, css):
        self.calls.append(("offline", css))

    def css_free(self, css):
        self.calls.append(("free", css))

    def can_attach(self, tset):
        if self.refuse_attach:
            raise NoMemory("refused")
        self.calls.append(("can_attach", tset.tids, tset.leader, tset.src.name if tset.src else None))

    def attach(self, tset):
        self.calls.append(("attach", tset.tids, tset.dst.name))


def test_subsystems_are_called_in_order_and_a_refused_mkdir_undoes_the_others():
    a, b = Recorder("a"), Recorder("b")
    h = Hierarchy((a, b), RecordingEffects())
    g = h.mkdir(h.root, "g")
    assert g.subsys == {"a": "a:g", "b": "b:g"}
    assert a.calls == [("bind",), ("alloc", "g", "a:/")]
    b.refuse_alloc = True
    with pytest.raises(NoMemory):
        h.mkdir(h.root, "x")
    assert "x" not in h.root.children and a.calls[-1] == ("free", "a:x")
    h.rmdir(g)
    assert a.calls[-2:] == [("offline", "a:g"), ("free", "a:g")]


def test_a_refused_migration_moves_nothing():
    a = Recorder("a")
    h = Hierarchy((a,), RecordingEffects())
    g, other = h.mkdir(h.root, "g"), h.mkdir(h.root, "other")
    h.migrate([10, 11], g, leader=10)
    assert g.tasks == {10, 11} and h.group_of(11) is g
    assert a.calls[-2:] == [("can_attach", (10, 11), 10, ""), ("attach", (10, 11), "g")]
    a.refuse_attach = True
    with pytest.raises(NoMemory):
        h.migrate([10, 11], other, leader=10)
    assert g.tasks == {10, 11} and not other.tasks
    with pytest.raises(Busy):
        h.rmdir(g)


def test_release_is_reported_through_the_port():
    effects = RecordingEffects()
    h = Hierarchy((), effects, release_agent="/bin/agent")
    g = h.mkdir(h.root, "g")
    g.set_notify_on_release(1)
    child = h.mkdir(g, "c")
    assert child.notify_on_release  # copied at mkdir
    h.attach(7, child)
    h.attach(7, h.root)
    h.rmdir(child)
    assert effects.released == ["/g/c", "/g"]
