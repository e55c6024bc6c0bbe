"""The memory controller: cgroup v1's memory subsystem, one module per mechanism.

==============  ==============================================================
module          mechanism
==============  ==============================================================
kinds           the kind table: counters charged, stat keys, reclaimable, ...
stats           memory.stat and how charges move it
state           what the mechanisms share (one per mount), TaskFacts
group           MemCgroup: page counters and per-group settings
owners          owners and their ledgers
events          cgroup.event_control: thresholds, OOM notification
vmpressure      memory.pressure_level
stock           clients' charge stocks
reclaim         try_to_free_mem_cgroup_pages()
oom             victim selection, OomVerdict
charge          the one try_charge; charge / uncharge of every kind
shared_pages    shared pages: the first toucher owns them (seed 002)
stacks          a client's tasks and their thread stacks (seed 003)
slab            per-group slab caches (seed 001)
task_exit       what a task's end frees, OOM victims
migration       move_charge, reparenting at rmdir, followed tasks
limits          writes that reclaim: limits, force_empty, shrink_in_bytes
controller      the subsystem interface and the entry points
==============  ==============================================================

Imports point up this list only (a module imports those above it).
"""

from .charge import OnOom
from .controller import MemoryController
from .events import OOM, PRESSURE, THRESHOLD, EventListener
from .group import MemCgroup
from .kinds import KINDS, Kind, Res
from .oom import OomVerdict
from .owners import Ledger, Owner
from .state import SUBSYS, AnyTask, TaskFacts
from .stats import EVENT_KEYS, STAT_KEYS

__all__ = ["OnOom", "MemoryController", "OOM", "PRESSURE", "THRESHOLD", "EventListener",
           "MemCgroup", "KINDS", "Kind", "Res", "OomVerdict", "Ledger", "Owner", "SUBSYS",
           "AnyTask", "TaskFacts", "EVENT_KEYS", "STAT_KEYS"]
