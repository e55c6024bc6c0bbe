"""What the memory controller's mechanisms share: one object, made once per mount.

Each mechanism module (charge, reclaim, oom, stock, slab, migration, vmpressure,
events) is a set of functions over this state and the groups; the controller
(controller.py) is this state plus the subsystem interface and the public entry
points. Nothing here computes.
"""

from __future__ import annotations

from typing import Protocol

from ..port import Effects
from ..profiles import Profile

#: the name the memory subsystem is bound under (Cgroup.subsys key)
SUBSYS = "memory"
#: the global vm.swappiness a fresh system starts with
DEFAULT_SWAPPINESS = 60


class TaskFacts(Protocol):
    """What the OOM killer asks about a real task (the service reads /proc)."""

    def may_signal(self, pid: int) -> bool:
        """False for pid 1, the daemon and its ancestors."""

    def oom_score_adj(self, pid: int) -> int:
        """/proc/PID/oom_score_adj."""


class AnyTask:
    """Facts for the pure core and its tests: every task may be killed, adj 0."""

    def may_signal(self, pid: int) -> bool:
        return True

    def oom_score_adj(self, pid: int) -> int:
        return 0


class MemState:
    def __init__(self, profile: Profile, effects: Effects | None = None,
                 facts: TaskFacts | None = None, swap_pages: int = 0, oom_kill: bool = True):
        self.profile = profile
        self.effects = effects or Effects()
        self.facts = facts or AnyTask()
        #: the emulated swap device (``-o swap=SIZE``)
        self.swap_total = swap_pages
        self.swap_used = 0
        #: False: ``-o oom_kill=none``, an OOM refuses the charge instead of killing
        self.oom_kill = oom_kill
        #: the global vm.swappiness (what the root group reads and writes)
        self.vm_swappiness = DEFAULT_SWAPPINESS
        #: live owners (see owners.Owner)
        self.owners: set = set()
        #: shared objects by key (shared.SharedObject): the first toucher's charge
        self.shared: dict = {}
        #: memcg IDs handed out, and groups alive (the ID space, profile.max_groups)
        self.next_id = 1
        self.nr_groups = 0
        #: grows at every oom_recover: a refused growth is worth retrying
        self.recover_gen = 0
        #: threshold listeners registered anywhere (0: nothing to check after a change)
        self.thresholds = 0
        #: the groups with at least one cgroup.event_control listener, as an ordered
        #: set (events.py keeps it: deepest first, then by first registration), so
        #: the threshold check and the watcher visit those, not every group
        self.listening: dict = {}
        #: the cgroup hierarchy this controller is bound to (Subsystem.bind)
        self.hierarchy = None
        #: the root group's memcg
        self.root = None

    def oom_recover(self, group) -> None:
        """memcg1_oom_recover(): wake tasks waiting on an OOM'ing group (a limit was
        raised, memory was freed or oom_kill_disable was cleared)."""
        self.recover_gen += 1
        self.effects.oom_recovered(group)
