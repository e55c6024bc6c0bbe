"""The tree of memory cgroups: mkdir, rmdir and rename rules, and task membership.

Follows ``kernel/cgroup/cgroup.c`` / ``cgroup-v1.c`` for the directory rules (spec 1.2).
A task (thread) is in exactly one group; the root holds every task not attached to a
child. The core does not look at /proc: whoever attaches tasks also tells it, through
``prune``, which of them have exited.
"""

from __future__ import annotations

from typing import Callable, Iterator

from .errors import Busy, CrossParent, Exists, Invalid, NoEntry, NoSpace
from . import notify
from .charge import Charges
from .memcg import MemCgroup
from .profiles import DEFAULT_PROFILE, Profile


class Hierarchy:
    def __init__(self, profile: Profile = DEFAULT_PROFILE, release_agent: str = "",
                 owner_uid: int = 0, swap_pages: int = 0, oom_kill: bool = True):
        self.profile = profile
        #: the user who mounted: plays the part of root for privileged files
        self.owner_uid = owner_uid
        self.vm_swappiness = 60
        self.release_agent = release_agent
        self.root = MemCgroup(self, "", None)
        self.nr_groups = 1
        #: tid -> group, for tasks attached to a non-root group
        self.task_group: dict[int, MemCgroup] = {}
        self.charges = Charges(self, swap_pages=swap_pages, oom_kill=oom_kill)
        #: called with a group whenever OOM waiters of it may proceed (the service
        #: wakes its waiting charge requests)
        self.on_oom_recover: Callable[[MemCgroup], None] = lambda group: None
        #: signal one event listener (its eventfd); drop one (close the duplicate)
        self.on_event: Callable[[notify.EventListener], None] = lambda listener: None
        self.on_unregister: Callable[[notify.EventListener], None] = lambda listener: None
        #: a group with notify_on_release became empty: run release_agent with its path
        self.on_release: Callable[[str], None] = lambda path: None
        #: a thread-group leader is about to move (the process tracker settles it)
        self.before_move: Callable[[int], None] = lambda tgid: None
        #: grows at every oom_recover: a refused growth is worth retrying
        self.recover_gen = 0
        #: threshold listeners registered anywhere
        self.thresholds = 0

    # ------------------------------------------------------------------ tree

    def walk(self, group: MemCgroup | None = None) -> Iterator[MemCgroup]:
        group = group or self.root
        yield group
        for child in list(group.children.values()):
            yield from self.walk(child)

    def lookup(self, path: str) -> MemCgroup:
        group = self.root
        for part in filter(None, path.split("/")):
            try:
                group = group.children[part]
            except KeyError:
                raise NoEntry(path) from None
        return group

    def mkdir(self, parent: MemCgroup, name: str) -> MemCgroup:
        """cgroup_mkdir() + mem_cgroup_css_alloc().

        The caller (the filesystem) has already checked that *name* is free in the
        directory, control-file names included. A new child's kernel data is charged to
        the parent, so a parent whose limit cannot absorb it refuses with ENOMEM.
        """
        if "\n" in name:
            raise Invalid("group names cannot contain a newline")
        if name in parent.children:
            raise Exists(name)
        if not parent.online:
            raise NoEntry("parent group was removed")
        if self.nr_groups >= self.profile.max_groups:
            raise NoSpace("memcg ID space exhausted")
        pages = self.profile.mkdir_charge_pages
        if pages:
            parent.try_charge_kmem(pages)
        child = MemCgroup(self, name, parent)
        child.mkdir_charge = pages
        parent.children[name] = child
        self.nr_groups += 1
        return child

    def rmdir(self, group: MemCgroup) -> None:
        """cgroup_rmdir(): EBUSY with tasks or child groups (never ENOTEMPTY).

        Remaining charges never block removal (3.x+): kernel memory is uncharged, the
        rest moves to the parent (Charges.offline); the kernel data charged to the
        parent at mkdir is released with the group.
        """
        if group.is_root:
            raise Busy("the root cannot be removed")
        if group.children or group.tasks:
            raise Busy("group has tasks or children")
        parent = group.parent
        self.charges.offline(group)
        del parent.children[group.name]
        group.online = False
        self.nr_groups -= 1
        if group.mkdir_charge:
            parent.uncharge_kmem(group.mkdir_charge)
            group.mkdir_charge = 0
        # memcg_event_remove at offline: every listener hears once, then is dropped
        for listener in group.events:
            self.on_event(listener)
            self.thresholds -= listener.kind == notify.THRESHOLD
            self.on_unregister(listener)
        group.events.clear()
        self._check_release(parent)
        self.check_thresholds()

    def rename(self, group: MemCgroup, new_parent: MemCgroup, new_name: str) -> None:
        """cgroup1_rename(): same parent only (EIO otherwise); settings are kept."""
        if "\n" in new_name:
            raise Invalid("group names cannot contain a newline")
        if group.parent is not new_parent:
            raise CrossParent("cgroup v1 groups cannot move to another parent")
        if new_name == group.name:
            return
        if new_name in new_parent.children:
            raise Exists(new_name)
        del new_parent.children[group.name]
        group.name = new_name
        new_parent.children[new_name] = group
        group.forget_paths()

    # ------------------------------------------------------------------ tasks

    def group_of(self, tid: int) -> MemCgroup:
        return self.task_group.get(tid, self.root)

    def attach(self, tid: int, group: MemCgroup) -> None:
        """Move one thread. Existing charges stay behind (move_charge comes later)."""
        old = self.task_group.pop(tid, None)
        if old is not None:
            old.tasks.discard(tid)
        if not group.is_root:
            group.tasks.add(tid)
            self.task_group[tid] = group
        if old is not None and old is not group:
            self._check_release(old)

    def prune(self, is_alive: Callable[[int], bool]) -> None:
        """Forget tasks that exited: an exited pid must never keep rmdir busy."""
        left = set()
        for tid in [t for t in self.task_group if not is_alive(t)]:
            group = self.task_group.pop(tid)
            group.tasks.discard(tid)
            left.add(group)
        for group in left:
            self._check_release(group)

    def _check_release(self, group: MemCgroup) -> None:
        if notify.is_releasable(group):
            self.on_release(group.path())

    # ------------------------------------------------------------------ events

    def register_event(self, group: MemCgroup, listener: notify.EventListener) -> None:
        group.events.append(listener)
        if listener.kind == notify.THRESHOLD:
            self.thresholds += 1
            notify.arm_threshold(group, listener)
        elif listener.kind == notify.OOM and group.under_oom:
            self.on_event(listener)  # registered while already under OOM

    def unregister_event(self, listener: notify.EventListener) -> None:
        for group in self.walk():
            if listener in group.events:
                group.events.remove(listener)
                self.thresholds -= listener.kind == notify.THRESHOLD
                self.on_unregister(listener)
                return

    def listeners(self) -> Iterator[notify.EventListener]:
        for group in self.walk():
            yield from group.events

    def check_thresholds(self) -> None:
        if not self.thresholds:
            return  # the common case: called after every request, nothing to check
        for listener in notify.crossed_thresholds(self.walk()):
            self.on_event(listener)

    def oom_notify(self, group: MemCgroup) -> None:
        for listener in notify.oom_listeners(group):
            self.on_event(listener)

    def vmpressure(self, group: MemCgroup, scanned: int, reclaimed: int) -> None:
        """vmpressure(tree=true) on the group whose limit drove reclaim."""
        if scanned <= 0:
            return
        group.vmpr_scanned += scanned
        group.vmpr_reclaimed += min(reclaimed, scanned)
        if group.vmpr_scanned < notify.VMPRESSURE_WIN and reclaimed >= scanned:
            return
        level = notify.pressure_level(group.vmpr_scanned, group.vmpr_reclaimed)
        group.vmpr_scanned = group.vmpr_reclaimed = 0
        for listener in notify.pressure_listeners(group, level):
            self.on_event(listener)

    # ------------------------------------------------------------------ OOM

    def oom_recover(self, group: MemCgroup) -> None:
        """memcg1_oom_recover(): wake tasks waiting on an OOM'ing group (a limit was
        raised, memory was freed or oom_kill_disable was cleared)."""
        self.recover_gen += 1
        self.on_oom_recover(group)
