"""The cgroup core: a tree of groups holding tasks, and how a task moves.

Follows ``kernel/cgroup/cgroup.c`` / ``cgroup-v1.c``. It knows nothing of
memory: like the kernel's core it calls each :class:`Subsystem` bound to the hierarchy
at the points where a subsystem has a say, and keeps the subsystem's per-group state
(its *css*) in ``Cgroup.subsys`` without looking inside.

================  ===============================  ==================================
kernel callback   when                             here
================  ===============================  ==================================
bind              the hierarchy is created         returns the root's css
css_alloc         mkdir, before the group exists   may refuse (ENOMEM, ENOSPC)
css_offline       rmdir, still linked              reparent, drop registrations
css_free          rmdir, unlinked                  give back what the group held
can_attach        a migration, before any move     may refuse (ENOMEM): nothing moved
attach            after the tasks moved
================  ===============================  ==================================

**How a task moves** (``echo PID > tasks`` / ``cgroup.procs``): the control file
checks the writer (files/handlers.py) and calls :meth:`Hierarchy.migrate` with the
thread ids. ``migrate`` builds a :class:`TaskSet`, asks every subsystem's
``can_attach`` (the memory controller precharges what ``move_charge_at_immigrate``
moves; refusal leaves every task where it was), moves each thread, then calls every
``attach`` (the memory controller commits the charge move). A task forked by a task
in a group joins it through :meth:`Hierarchy.attach`, with no callbacks, as
cgroup_post_fork() does. The root holds every task not attached to a child, and the
core does not look at /proc: whoever attaches tasks also tells it, through
:meth:`Hierarchy.prune`, which of them have exited.

Not emulated: other controllers, cgroup v2, cgroup namespaces, threaded groups.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator, Protocol

import attrs

from .errors import Busy, CrossParent, Exists, Invalid, NameTooLong, NoEntry
from .port import Effects


class Cgroup:
    """One group (``struct cgroup``): a directory of the hierarchy."""

    __slots__ = ("name", "parent", "children", "online", "tasks", "notify_on_release",
                 "clone_children", "subsys", "_path")

    def __init__(self, name: str, parent: Cgroup | None):
        self.name = name
        self.parent = parent
        self.children: dict[str, Cgroup] = {}
        self.online = True
        #: tids attached to this group (the root's set stays empty: see group_of)
        self.tasks: set[int] = set()
        #: subsystem name -> that subsystem's state for this group (its css)
        self.subsys: dict[str, object] = {}
        self._path: str | None = None
        # cgroup_create() copies both flags from the parent, once.
        self.notify_on_release = parent.notify_on_release if parent else False
        self.clone_children = parent.clone_children if parent else False

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def path(self) -> str:
        """Path relative to the hierarchy root, as /proc/<pid>/cgroup prints it
        (cached: every socket reply names the group; rename forgets it)."""
        if self._path is None:
            parts = []
            g = self
            while g.parent is not None:
                parts.append(g.name)
                g = g.parent
            self._path = "/" + "/".join(reversed(parts))
        return self._path

    def subtree(self) -> Iterator[Cgroup]:
        """This group and every descendant, parents first."""
        yield self
        for child in list(self.children.values()):
            yield from child.subtree()

    def set_notify_on_release(self, value: int) -> None:
        self.notify_on_release = bool(value)

    def set_clone_children(self, value: int) -> None:
        self.clone_children = bool(value)

    def releasable(self) -> bool:
        """check_for_release(): notify_on_release set, no tasks and no child groups."""
        return (self.parent is not None and self.online and self.notify_on_release
                and not self.tasks and not self.children)


@attrs.define(eq=False)
class TaskSet:
    """cgroup_taskset: the threads of one migration, and where they go."""

    dst: Cgroup
    tids: tuple[int, ...]
    #: the thread-group leader, when it is among the threads (its mm moves with it:
    #: that is when memory's move_charge_at_immigrate applies)
    leader: int | None
    #: the group the leader was in
    src: Cgroup | None
    #: what a subsystem's can_attach prepared for its attach, by subsystem name
    prepared: dict = attrs.field(factory=dict)


class Subsystem(Protocol):
    """What the core calls (``struct cgroup_subsys``); see the module docstring."""

    name: str

    def bind(self, hierarchy: Hierarchy) -> object: ...

    def css_alloc(self, cgroup: Cgroup, parent_css: object) -> object: ...

    def css_offline(self, css: object) -> None: ...

    def css_free(self, css: object) -> None: ...

    def can_attach(self, tset: TaskSet) -> None: ...

    def attach(self, tset: TaskSet) -> None: ...


class StatelessSubsystem:
    """A subsystem without files or per-group state: every hook does nothing until a
    subclass says otherwise."""

    name = ""

    def bind(self, hierarchy: Hierarchy) -> object:
        return None

    def css_alloc(self, cgroup: Cgroup, parent_css: object) -> object:
        return None

    def css_offline(self, css: object) -> None:
        pass

    def css_free(self, css: object) -> None:
        pass

    def can_attach(self, tset: TaskSet) -> None:
        pass

    def attach(self, tset: TaskSet) -> None:
        pass


@attrs.frozen
class NameRules:
    """What cgroup_mkdir() / cgroup1_rename() accept as a group name."""

    #: kernfs era: "\n" would make /proc/PID/cgroup unparsable, so EINVAL
    newline_einval: bool = True
    #: 3.10 cgroup_lookup(): longer than NAME_MAX is ENAMETOOLONG (None: no limit,
    #: kernfs looks names up without one)
    name_max: int | None = None

    def check(self, name: str) -> None:
        if self.name_max is not None and len(os.fsencode(name)) > self.name_max:
            raise NameTooLong("group name too long")
        if self.newline_einval and "\n" in name:
            raise Invalid("group names cannot contain a newline")


class Hierarchy:
    """The tree (``struct cgroup_root``), its tasks, and the v1 release agent."""

    def __init__(self, subsystems: list[Subsystem] | tuple = (), effects: Effects | None = None,
                 release_agent: str = "", owner_uid: int = 0,
                 names: NameRules | None = None):
        self.subsystems = tuple(subsystems)
        #: what a group name may be (differs across kernel generations)
        self.names = names or NameRules()
        self.effects = effects or Effects()
        #: the user who mounted: plays the part of root for privileged files
        self.owner_uid = owner_uid
        self.release_agent = release_agent
        self.root = Cgroup("", None)
        #: tid -> group, for tasks attached to a non-root group
        self.task_group: dict[int, Cgroup] = {}
        for ss in self.subsystems:
            self.root.subsys[ss.name] = ss.bind(self)

    def set_release_agent(self, path: str) -> None:
        """cgroup_release_agent_write(): the program run when a group empties."""
        self.release_agent = path

    # ------------------------------------------------------------------ tree

    def walk(self, group: Cgroup | None = None) -> Iterator[Cgroup]:
        return (group or self.root).subtree()

    def lookup(self, path: str) -> Cgroup:
        group = self.root
        for part in filter(None, path.split("/")):
            try:
                group = group.children[part]
            except KeyError:
                raise NoEntry(path) from None
        return group

    def mkdir(self, parent: Cgroup, name: str) -> Cgroup:
        """cgroup_mkdir(): every subsystem allocates its state first; one refusal
        (a full parent: ENOMEM, the ID space: ENOSPC) undoes the others'.

        The caller (the filesystem) has already checked that *name* is free in the
        directory, control-file names included."""
        self.names.check(name)
        if name in parent.children:
            raise Exists(name)
        if not parent.online:
            raise NoEntry("parent group was removed")
        child = Cgroup(name, parent)
        done = []
        try:
            for ss in self.subsystems:
                child.subsys[ss.name] = ss.css_alloc(child, parent.subsys[ss.name])
                done.append(ss)
        except BaseException:
            for ss in reversed(done):
                ss.css_free(child.subsys[ss.name])
            raise
        parent.children[name] = child
        return child

    def rmdir(self, group: Cgroup) -> None:
        """cgroup_rmdir(): EBUSY with tasks or child groups (never ENOTEMPTY). The
        subsystems take the group offline while it is still linked, then free it."""
        if group.is_root:
            raise Busy("the root cannot be removed")
        if group.children or group.tasks:
            raise Busy("group has tasks or children")
        for ss in self.subsystems:
            ss.css_offline(group.subsys[ss.name])
        parent = group.parent
        del parent.children[group.name]
        group.online = False
        for ss in self.subsystems:
            ss.css_free(group.subsys[ss.name])
        self._check_release(parent)

    def rename(self, group: Cgroup, new_parent: Cgroup, new_name: str) -> None:
        """cgroup1_rename(): same parent only (EIO otherwise); settings are kept."""
        self.names.check(new_name)
        if group.parent is not new_parent:
            raise CrossParent("cgroup v1 groups cannot move to another parent")
        if new_name == group.name:
            return
        if new_name in new_parent.children:
            raise Exists(new_name)
        del new_parent.children[group.name]
        group.name = new_name
        new_parent.children[new_name] = group
        for g in group.subtree():
            g._path = None

    # ------------------------------------------------------------------ tasks

    def group_of(self, tid: int) -> Cgroup:
        return self.task_group.get(tid, self.root)

    def attach(self, tid: int, group: Cgroup) -> None:
        """Put one thread in *group* without asking the subsystems: a task forked in a
        group (cgroup_post_fork), or the last step of a migration."""
        old = self.task_group.pop(tid, None)
        if old is not None:
            old.tasks.discard(tid)
        if not group.is_root:
            group.tasks.add(tid)
            self.task_group[tid] = group
        if old is not None and old is not group:
            self._check_release(old)

    def attach_all(self, tids, group: Cgroup) -> None:
        for tid in tids:
            self.attach(tid, group)

    def migrate(self, tids, dst: Cgroup, leader: int | None = None) -> None:
        """cgroup_migrate(): move threads *tids* into *dst*. *leader* names the
        thread-group leader when it is among them. Any subsystem's can_attach may
        refuse, and then nothing has moved."""
        src = self.group_of(leader) if leader is not None else None
        tset = TaskSet(dst, tuple(tids), leader, src)
        for ss in self.subsystems:
            ss.can_attach(tset)
        self.attach_all(tset.tids, dst)
        for ss in self.subsystems:
            ss.attach(tset)

    def prune(self, is_alive: Callable[[int], bool]) -> None:
        """Forget tasks that exited: an exited pid must never keep rmdir busy."""
        left = set()
        for tid in [t for t in self.task_group if not is_alive(t)]:
            group = self.task_group.pop(tid)
            group.tasks.discard(tid)
            left.add(group)
        for group in left:
            self._check_release(group)

    def _check_release(self, group: Cgroup) -> None:
        if group.releasable():
            self.effects.release(self.release_agent, group.path())
