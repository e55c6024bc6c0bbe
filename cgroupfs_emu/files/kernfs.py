"""The kernfs node tree: one node per group directory and per control file of a
group, with its inode number, mode, owner and times.

Kept here, beside the control files, and not in the FUSE adapter, because the files
need it too: cgroup.event_control names a control file by a descriptor of the writer,
and only the node tree can say which file of this mount that is and whether the
writer may read it. The adapter (fs/) turns nodes into pyfuse3 attributes and knows
nothing else of them.

Follows kernfs as cgroup v1 uses it: chmod/chown persist for the life of the group
(delegation); a file's mode comes from its row (table.py); a new group's directory
has the mode and owner of the mkdir(2) call.
"""

from __future__ import annotations

import os
import stat
import time
from operator import itemgetter

from .. import dirorder
from ..core.cgroup import Cgroup
from .request import Caller

#: room for a group's control files between two directory births (3.10 order)
_SEQ_SPAN = 1 << 12
#: FUSE_ROOT_ID: the mount root's inode number in the FUSE protocol
ROOT_INODE = 1
#: a directory the kernel creates for a group (the root) is rwxr-xr-x
DIR_MODE = 0o755
_MAY_READ_USER, _MAY_READ_GROUP, _MAY_READ_OTHER = 0o400, 0o040, 0o004
#: the order of profiles that name none
_KERNFS = dirorder.KernfsOrder()
_EMPTY = dirorder.Run()


class Node:
    """One inode: a group directory or a control file of a group."""

    __slots__ = ("inode", "dir", "name", "mode", "uid", "gid", "atime", "mtime", "ctime",
                 "lookups", "group", "cf", "files", "born", "sub", "key",
                 "attrs")

    def __init__(self, inode, mode, uid, gid, group, cf=None, dir=None, name=""):
        self.inode = inode
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.atime = self.mtime = self.ctime = time.time_ns()
        self.lookups = 0
        self.group = group
        self.cf = cf
        self.dir = dir  # the directory node a file node lives in
        self.name = name
        self.files: dict[str, Node] | None = {} if cf is None else None
        #: directories: when the entry was made (mkdir, or rename: 3.10's d_move()
        #: puts it back at the head), for the 3.10 order
        self.born = 0
        #: directories: the child groups' directory nodes in the profile's order
        #: (dirorder.Run), kept as groups come and go; None before the first child
        self.sub: dirorder.Run | None = None
        #: directories: the key this directory is filed under in its parent's run
        self.key: tuple | None = None
        #: the FUSE adapter's attributes of this node, kept until they change
        #: (fs/operations.py CgroupFS._attrs); None: build afresh
        self.attrs = None

    @property
    def is_dir(self) -> bool:
        return self.cf is None

    def may_read(self, caller: Caller) -> bool:
        """generic_permission(MAY_READ) with the owner/group/other bits; root always
        may."""
        if caller.uid == 0:
            return True
        if caller.uid == self.uid:
            return bool(self.mode & _MAY_READ_USER)
        if caller.gid == self.gid:
            return bool(self.mode & _MAY_READ_GROUP)
        return bool(self.mode & _MAY_READ_OTHER)


class Kernfs:
    """Nodes by inode, created when first looked up, forgotten when the kernel
    forgets them and their group is gone."""

    def __init__(self, tree, mountpoint: str = "", uid: int | None = None,
                 gid: int | None = None):
        #: the ControlTree whose groups and files the nodes stand for
        self.tree = tree
        self.mountpoint = os.path.abspath(mountpoint) if mountpoint else ""
        uid = os.getuid() if uid is None else uid
        gid = os.getgid() if gid is None else gid
        root = Node(ROOT_INODE, stat.S_IFDIR | DIR_MODE, uid, gid, tree.root)
        self.nodes: dict[int, Node] = {root.inode: root}
        self._dir_of_group: dict[int, Node] = {id(tree.root): root}
        self._next_inode = ROOT_INODE + 1
        self._births = 0
        #: (files of a directory, 3.10: its birth) -> their run, see _file_run
        self._file_runs: dict[tuple, dirorder.Run] = {}

    @property
    def root(self) -> Node:
        return self.nodes[ROOT_INODE]

    def _birth(self) -> int:
        self._births += 1
        return self._births

    def renamed(self, group: Cgroup) -> None:
        """The group took a new name (cgroup1_rename()): refile it in its parent's
        listing. 3.10: d_move() puts a renamed group's dentry back at the head of its
        parent's list, as if just created."""
        node = self.dir_node(group)
        self._unfile(node)
        node.born = self._birth()
        self._file(node)

    @property
    def order(self):
        return self.tree.dir_order or _KERNFS

    def _file(self, node: Node) -> None:
        """Enter a group's directory in its parent's listing, its key made once here
        (kernfs_add_one() -> kernfs_link_sibling())."""
        group = node.group
        parent = self._dir_of_group.get(id(group.parent)) if group.parent else None
        if parent is None or not group.online:
            return
        if parent.sub is None:
            parent.sub = dirorder.Run()
        node.key = self.order.key_of(group.name, node.born * _SEQ_SPAN)
        parent.sub.add(node.key, node)

    def _unfile(self, node: Node) -> None:
        parent = self._dir_of_group.get(id(node.group.parent))
        if node.key is not None and parent is not None and parent.sub is not None:
            parent.sub.remove(node.key)
        node.key = None

    def listing(self, dnode: Node) -> list[dirorder.Run]:
        """The directory's entries now (kernfs lists live, not a snapshot), as runs
        of the profile's order: its control files (values: rows) and its child groups
        (values: their directory nodes). Each child's key was made once, when it was
        filed; a listing only bisects and merges."""
        group = dnode.group
        if not group.online:
            return []
        if len(dnode.sub or ()) != len(group.children):
            self._file_all(dnode)
        return [self._file_run(dnode), dnode.sub or _EMPTY]

    def _file_all(self, dnode: Node) -> None:
        """File every child group afresh, for groups the hierarchy holds that were
        never filed (made without this node tree: none of ours do)."""
        pairs = []
        for sub in self.tree.subgroups(dnode.group).values():
            node = self.dir_node(sub)
            node.key = self.order.key_of(sub.name, node.born * _SEQ_SPAN)
            pairs.append((node.key, node))
        pairs.sort(key=itemgetter(0))
        dnode.sub = dirorder.Run([k for k, _ in pairs], [n for _, n in pairs])

    def _file_run(self, dnode: Node) -> dirorder.Run:
        """A directory's control files in the profile's order. kernfs: the same for
        every non-root directory, made once. 3.10: a group's files are made right
        after the group, so their keys follow its birth (one directory cached)."""
        group = dnode.group
        files = self.tree.files(group)
        cache_key = (id(files), dnode.born if self.order.kind == "dcache" else 0)
        run = self._file_runs.get(cache_key)
        if run is None:
            creation = {name: i for i, name in enumerate(self.tree.file_creation_order)}
            base = dnode.born * _SEQ_SPAN + 1
            run = dirorder.Run()
            for i, (name, cf) in enumerate(files.items()):
                run.add(self.order.key_of(name, base + creation.get(name, len(creation) + i)),
                        cf)
            if self.order.kind == "dcache":
                self._file_runs.clear()
            self._file_runs[cache_key] = run
        return run

    def _new_inode(self) -> int:
        inode = self._next_inode
        self._next_inode += 1
        return inode

    def get(self, inode: int) -> Node | None:
        return self.nodes.get(inode)

    def dir_node(self, group: Cgroup, mode: int = DIR_MODE, uid: int = 0,
                 gid: int = 0) -> Node:
        node = self._dir_of_group.get(id(group))
        if node is None:
            node = Node(self._new_inode(), stat.S_IFDIR | mode, uid, gid, group)
            node.born = self._birth()
            self.nodes[node.inode] = node
            self._dir_of_group[id(group)] = node
            self._file(node)
        return node

    def file_node(self, dnode: Node, name: str, cf) -> Node:
        node = dnode.files.get(name)
        if node is None:
            node = Node(self._new_inode(), stat.S_IFREG | cf.mode, dnode.uid, dnode.gid,
                        dnode.group, cf=cf, dir=dnode, name=name)
            dnode.files[name] = node
            self.nodes[node.inode] = node
        return node

    def child(self, dnode: Node, name: str) -> Node | None:
        """The node of *name* in directory *dnode*: a child group or a control file."""
        group = dnode.group
        if not group.online:
            return None
        sub = self.tree.subgroups(group).get(name)
        if sub is not None:
            return self.dir_node(sub)
        cf = self.tree.files(group).get(name)
        if cf is not None:
            return self.file_node(dnode, name, cf)
        return None

    def forget(self, inode: int, nlookup: int) -> None:
        node = self.nodes.get(inode)
        if node is None:
            return
        node.lookups -= nlookup
        if node.lookups <= 0 and not node.group.online and inode != ROOT_INODE:
            del self.nodes[inode]

    def removed(self, group: Cgroup) -> None:
        """The group was removed. Its file nodes stay until the kernel forgets them;
        open handles then see ENODEV because the group is offline."""
        node = self._dir_of_group.get(id(group))
        if node is not None:
            self._unfile(node)
            del self._dir_of_group[id(group)]
        if node is not None and node.lookups <= 0:
            self.nodes.pop(node.inode, None)

    def resolve(self, path: str, caller: Caller):
        """If *path* (as /proc/PID/fd shows it) is a control file of this mount:
        (group, file name, whether *caller* may read it); else None."""
        if not self.mountpoint or not path.startswith(self.mountpoint + "/"):
            return None
        node = self.root
        for part in path[len(self.mountpoint) + 1:].split("/"):
            if node is None or not node.is_dir:
                return None
            node = self.child(node, part)
        if node is None or node.is_dir:
            return None
        return node.group, node.name, node.may_read(caller)
