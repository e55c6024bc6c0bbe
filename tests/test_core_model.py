"""A hypothesis state machine over mkdir / rmdir / limit writes, checked against a
small independent model of the hierarchy."""

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cgroupfs_emu.core import LINUX_6, PAGE_COUNTER_MAX, memory_hierarchy
from cgroupfs_emu.core.errors import Busy, Exists, Invalid, NoMemory

NAMES = st.sampled_from(["a", "b", "c"])
PAGES = st.one_of(st.integers(0, 64), st.just(PAGE_COUNTER_MAX))
NCPUS = 2
K = LINUX_6.mkdir_charge_pages(NCPUS)


class HierarchyMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.h, self.mc = memory_hierarchy(LINUX_6, ncpus=NCPUS)
        # model: path -> {"limit": pages, "memsw": pages}; usage of a group is K times
        # the number of its children plus what its children are charged, recursively
        self.model = {(): {"limit": PAGE_COUNTER_MAX, "memsw": PAGE_COUNTER_MAX}}

    def group(self, path):
        g = self.h.root
        for part in path:
            g = g.children[part]
        return g

    def children(self, path):
        return [p for p in self.model if len(p) == len(path) + 1 and p[:len(path)] == path]

    def usage(self, path):
        return sum(K + self.usage(c) for c in self.children(path))

    def paths(self):
        return sorted(self.model, key=lambda p: (len(p), p))

    @rule(data=st.data(), name=NAMES)
    def mkdir(self, data, name):
        parent = data.draw(st.sampled_from(self.paths()))
        path = parent + (name,)
        # a charge must fit every non-root ancestor-or-self of the parent
        fits = all(self.usage(parent[:i]) + K <= min(self.model[parent[:i]]["limit"],
                                                     self.model[parent[:i]]["memsw"])
                   for i in range(1, len(parent) + 1))
        try:
            self.h.mkdir(self.group(parent), name)
        except Exists:
            assert path in self.model
        except NoMemory:
            assert path not in self.model and not fits
        else:
            assert path not in self.model and fits
            self.model[path] = {"limit": PAGE_COUNTER_MAX, "memsw": PAGE_COUNTER_MAX}

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data())
    def rmdir(self, data):
        path = data.draw(st.sampled_from(self.paths()[1:]))
        try:
            self.h.rmdir(self.group(path))
        except Busy:
            assert self.children(path)
        else:
            assert not self.children(path)
            del self.model[path]

    @precondition(lambda self: len(self.model) > 1)
    @rule(data=st.data(), pages=PAGES, memsw=st.booleans())
    def set_limit(self, data, pages, memsw):
        path = data.draw(st.sampled_from(self.paths()[1:]))
        m = self.model[path]
        try:
            self.mc.resize_max(self.mc.of(self.group(path)), pages, memsw=memsw)
        except Invalid:
            assert (pages < m["limit"]) if memsw else (pages > m["memsw"])
        except Busy:
            assert self.usage(path) > pages
        else:
            m["memsw" if memsw else "limit"] = pages

    @invariant()
    def matches_model(self):
        for path in self.model:
            g = self.group(path)
            assert sorted(g.children) == sorted(p[-1] for p in self.children(path))
            if path:
                g = self.mc.of(g)
                assert g.memory.max == self.model[path]["limit"]
                assert g.memsw.max == self.model[path]["memsw"]
                assert g.memory.usage == g.memsw.usage == g.kmem.usage == self.usage(path)
                assert g.memory.max <= g.memsw.max
        assert self.mc.nr_groups == len(self.model)


TestHierarchy = HierarchyMachine.TestCase
TestHierarchy.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
