"""The memcg OOM killer's decisions: which task, or wait.

The core never blocks and never signals. When reclaim cannot make room, try_charge
returns an :class:`OomVerdict`: kill this victim and retry, or (oom_kill_disable)
wait until the group recovers. The service executes it (service/oom.py); when the
victim is dead, ``task_exit.oom_killed`` counts it and frees its memory, as the kernel's
OOM reaper does.
"""

from __future__ import annotations

import attrs

from .group import MemCgroup
from .owners import Owner
from .state import SUBSYS, MemState

#: oom_score_adj of a task the OOM killer must never choose
OOM_SCORE_ADJ_MIN = -1000
#: oom_score_adj is in thousandths of the group's limit
OOM_SCORE_ADJ_SCALE = 1000


@attrs.frozen
class OomVerdict:
    """Reclaim could not make room in *group*: kill *victim* (then retry the charge),
    or, with *victim* None, wait until the group recovers (oom_kill_disable)."""

    group: MemCgroup
    victim: Owner | None


def memcg_of_task(state: MemState, pid: int) -> MemCgroup:
    """mem_cgroup_from_task(): the memcg of the group the task is in now."""
    return state.hierarchy.group_of(pid).subsys[SUBSYS]


def select_victim(state: MemState, group: MemCgroup) -> Owner | None:
    """mem_cgroup_out_of_memory() -> select_bad_process(): among live owners whose
    task is in *group*'s subtree now, the one with the highest oom_badness():
    charged pages plus oom_score_adj thousandths of the group's limit. A task
    with oom_score_adj -1000 is never chosen."""
    subtree = set(group.hierarchical_subtree())
    limit = min(group.memory.max, group.memsw.max)
    facts = state.facts
    best, best_points = None, None
    for owner in state.owners:
        if memcg_of_task(state, owner.pid) not in subtree or not facts.may_signal(owner.pid):
            continue
        adj = facts.oom_score_adj(owner.pid)
        if adj <= OOM_SCORE_ADJ_MIN:
            continue
        points = (max(1, owner.badness() + adj * limit // OOM_SCORE_ADJ_SCALE), owner.id)
        if best is None or points > best_points:
            best, best_points = owner, points
    return best


def mark_under_oom(group: MemCgroup, delta: int) -> None:
    """mem_cgroup_mark_under_oom(): under_oom reads 1 in the group and below."""
    for g in group.hierarchical_subtree():
        g.under_oom += delta
