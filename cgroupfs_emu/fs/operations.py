"""The pyfuse3 adapter: inodes, lookup, readdir, open/read/write, mkdir/rmdir/rename.

It sees a tree of directories (opaque group objects) holding control files (rows with a
name and a mode) through a ControlTree, and knows nothing about memory. Behaviour
follows kernfs as cgroup v1 uses it (spec 1.2, 1.3):

* control files are regular, st_size 0, opened with direct I/O; each open handle renders
  its text at its first read and again whenever a read starts at offset 0 (seq_file);
* every write(2) is one command and its offset is ignored;
* creating files is EACCES; unlink, symlink, mknod and link are EPERM; renaming a
  file is ENOTDIR; rename(2) flags are EINVAL (kernfs accepts none);
* a handle whose group was removed reads and writes ENODEV;
* chmod/chown persist for the life of the group (delegation); access checks are the
  kernel's, through ``default_permissions``.

Every handler runs behind one error boundary: core errors become their errno, anything
unexpected is logged with its traceback and answered EIO, and the mount stays up.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time

import pyfuse3

from ..core.errors import CgroupError
from ..files.request import Caller

log = logging.getLogger(__name__)


def _boundary(fn):
    """Turn every exception of a handler into an errno; never let one escape."""

    @functools.wraps(fn)
    async def handler(self, *args):
        try:
            return fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except CgroupError as e:
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            log.exception("unexpected error in %s%r", fn.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler


def _may_read(node, caller: Caller) -> bool:
    """generic_permission(MAY_READ) with the owner/group/other bits; root always may."""
    if caller.uid == 0:
        return True
    if caller.uid == node.uid:
        return bool(node.mode & 0o400)
    if caller.gid == node.gid:
        return bool(node.mode & 0o040)
    return bool(node.mode & 0o004)


class Node:
    """One inode: a group directory or a control file of a group."""

    __slots__ = ("inode", "dir", "name", "mode", "uid", "gid", "atime", "mtime", "ctime",
                 "lookups", "group", "cf", "files")

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

    @property
    def is_dir(self) -> bool:
        return self.cf is None


class Handle:
    __slots__ = ("node", "caller", "for_write", "text", "wrote", "truncated")

    def __init__(self, node: Node, caller: Caller, for_write: bool, truncated: bool):
        self.node = node
        self.caller = caller
        self.for_write = for_write
        self.text: bytes | None = None
        self.wrote = False
        self.truncated = truncated


class CgroupFS(pyfuse3.Operations):
    """FUSE operations over a ControlTree."""

    def __init__(self, tree, mountpoint: str = "", uid: int | None = None,
                 gid: int | None = None, timeout: float = 10.0,
                 root_xattrs: dict[str, str] | None = None):
        super().__init__()
        #: read-only extended attributes of the mount root (e.g. where the client
        #: socket is); kernfs without the xattr option has no others: ENODATA
        self.root_xattrs = {k.encode(): v.encode() for k, v in (root_xattrs or {}).items()}
        self.tree = tree
        self.mountpoint = os.path.abspath(mountpoint) if mountpoint else ""
        self.timeout = timeout
        uid = os.getuid() if uid is None else uid
        gid = os.getgid() if gid is None else gid
        root = Node(pyfuse3.ROOT_INODE, stat.S_IFDIR | 0o755, uid, gid, tree.root)
        self._nodes: dict[int, Node] = {root.inode: root}
        self._dir_of_group: dict[int, Node] = {id(tree.root): root}
        self._next_inode = pyfuse3.ROOT_INODE + 1
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        tree.resolve = self.resolve_path

    # ------------------------------------------------------------------ nodes

    def _new_inode(self) -> int:
        inode = self._next_inode
        self._next_inode += 1
        return inode

    def _dir_node(self, group, parent: Node | None = None, mode: int = 0o755,
                  uid: int = 0, gid: int = 0) -> Node:
        node = self._dir_of_group.get(id(group))
        if node is None:
            node = Node(self._new_inode(), stat.S_IFDIR | mode, uid, gid, group)
            self._nodes[node.inode] = node
            self._dir_of_group[id(group)] = node
        return node

    def _file_node(self, dnode: Node, name: str, cf) -> Node:
        node = dnode.files.get(name)
        if node is None:
            node = Node(self._new_inode(), stat.S_IFREG | cf.mode, dnode.uid, dnode.gid,
                        dnode.group, cf=cf, dir=dnode, name=name)
            dnode.files[name] = node
            self._nodes[node.inode] = node
        return node

    def _node(self, inode: int) -> Node:
        try:
            return self._nodes[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _child(self, dnode: Node, name: str) -> Node | None:
        group = dnode.group
        if not group.online:
            return None
        sub = self.tree.subgroups(group).get(name)
        if sub is not None:
            return self._dir_node(sub)
        cf = self.tree.files(group).get(name)
        if cf is not None:
            return self._file_node(dnode, name, cf)
        return None

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.inode
        a.st_mode = node.mode
        if node.is_dir:
            # 2 + number of child groups, like kernfs
            a.st_nlink = 2 + (len(self.tree.subgroups(node.group)) if node.group.online else 0)
        else:
            a.st_nlink = 1
        a.st_uid = node.uid
        a.st_gid = node.gid
        a.st_size = 0
        a.st_blksize = 4096
        a.st_blocks = 0
        a.st_atime_ns = node.atime
        a.st_mtime_ns = node.mtime
        a.st_ctime_ns = node.ctime
        a.entry_timeout = self.timeout
        a.attr_timeout = self.timeout
        a.generation = 0
        return a

    def _dir_arg(self, inode: int) -> Node:
        node = self._node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    @staticmethod
    def _name(raw: bytes) -> str:
        return os.fsdecode(raw)

    def resolve_path(self, path: str, caller: Caller):
        """If *path* (as /proc/PID/fd shows it) is a control file of this mount:
        (group, file name, whether *caller* may read it); else None."""
        if not self.mountpoint or not path.startswith(self.mountpoint + "/"):
            return None
        node = self._nodes[pyfuse3.ROOT_INODE]
        for part in path[len(self.mountpoint) + 1:].split("/"):
            if node is None or not node.is_dir:
                return None
            node = self._child(node, part)
        if node is None or node.is_dir:
            return None
        return node.group, node.name, _may_read(node, caller)

    # ------------------------------------------------------------------ lookup & attrs

    @_boundary
    def lookup(self, parent_inode, name, ctx):
        dnode = self._dir_arg(parent_inode)
        name = self._name(name)
        if name == ".":
            node = dnode
        elif name == "..":
            parent = dnode.group.parent
            node = dnode if parent is None else self._dir_node(parent)
        else:
            node = self._child(dnode, name)
            if node is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
        node.lookups += 1
        return self._attrs(node)

    @_boundary
    def forget(self, inode_list):
        for inode, nlookup in inode_list:
            node = self._nodes.get(inode)
            if node is None:
                continue
            node.lookups -= nlookup
            if node.lookups <= 0 and not node.group.online and inode != pyfuse3.ROOT_INODE:
                del self._nodes[inode]

    @_boundary
    def getattr(self, inode, ctx):
        return self._attrs(self._node(inode))

    @_boundary
    def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        now = time.time_ns()
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | (attr.st_mode & 0o7777)
            node.ctime = now
        if fields.update_uid:
            node.uid = attr.st_uid
            node.ctime = now
        if fields.update_gid:
            node.gid = attr.st_gid
            node.ctime = now
        if fields.update_atime:
            node.atime = attr.st_atime_ns
        if fields.update_mtime:
            node.mtime = attr.st_mtime_ns
        if fields.update_size:
            # O_TRUNC and truncate(2) are accepted and change nothing (kernfs).
            if fh is not None and fh in self._handles:
                self._handles[fh].truncated = True
        return self._attrs(node)

    @_boundary
    def getxattr(self, inode, name, ctx):
        self._node(inode)
        if inode == pyfuse3.ROOT_INODE and name in self.root_xattrs:
            return self.root_xattrs[name]
        raise pyfuse3.FUSEError(errno.ENODATA)

    @_boundary
    def listxattr(self, inode, ctx):
        self._node(inode)
        return list(self.root_xattrs) if inode == pyfuse3.ROOT_INODE else []

    @_boundary
    def setxattr(self, inode, name, value, ctx):
        self._node(inode)
        raise pyfuse3.FUSEError(errno.EOPNOTSUPP)

    @_boundary
    def removexattr(self, inode, name, ctx):
        self._node(inode)
        raise pyfuse3.FUSEError(errno.EOPNOTSUPP)

    @_boundary
    def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = 4096
        s.f_frsize = 4096
        s.f_namemax = 255
        return s

    # ------------------------------------------------------------------ directories

    @_boundary
    def opendir(self, inode, ctx):
        dnode = self._dir_arg(inode)
        group = dnode.group
        names = []
        if group.online:
            names = sorted(self.tree.subgroups(group)) + list(self.tree.files(group))
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = (dnode, names)
        return fh

    @_boundary
    def readdir(self, fh, start_id, token):
        dnode, names = self._handles[fh]
        for i in range(start_id, len(names)):
            node = self._child(dnode, names[i])
            if node is None:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(names[i]), self._attrs(node), i + 1):
                break
            node.lookups += 1

    @_boundary
    def releasedir(self, fh):
        self._handles.pop(fh, None)

    @_boundary
    def mkdir(self, parent_inode, name, mode, ctx):
        dnode = self._dir_arg(parent_inode)
        name = self._name(name)
        if not dnode.group.online:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if name in self.tree.files(dnode.group):
            raise pyfuse3.FUSEError(errno.EEXIST)
        group = self.tree.mkdir(dnode.group, name)
        node = self._dir_node(group, mode=mode & 0o7777, uid=ctx.uid, gid=ctx.gid)
        node.lookups += 1
        dnode.mtime = dnode.ctime = time.time_ns()
        return self._attrs(node)

    @_boundary
    def rmdir(self, parent_inode, name, ctx):
        dnode = self._dir_arg(parent_inode)
        name = self._name(name)
        group = self.tree.subgroups(dnode.group).get(name) if dnode.group.online else None
        if group is None:
            if dnode.group.online and name in self.tree.files(dnode.group):
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            raise pyfuse3.FUSEError(errno.ENOENT)
        self.tree.rmdir(group)
        node = self._dir_of_group.pop(id(group), None)
        if node is not None:
            # Its file nodes stay until the kernel forgets them; open handles then
            # see ENODEV because the group is offline.
            if node.lookups <= 0:
                self._nodes.pop(node.inode, None)
        dnode.mtime = dnode.ctime = time.time_ns()

    @_boundary
    def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old_dir = self._dir_arg(parent_inode_old)
        new_dir = self._dir_arg(parent_inode_new)
        name_old, name_new = self._name(name_old), self._name(name_new)
        if "\n" in name_new:
            raise pyfuse3.FUSEError(errno.EINVAL)
        group = self.tree.subgroups(old_dir.group).get(name_old)
        if group is None:
            if name_old in self.tree.files(old_dir.group):
                raise pyfuse3.FUSEError(errno.ENOTDIR)
            raise pyfuse3.FUSEError(errno.ENOENT)
        if new_dir is old_dir and name_new in self.tree.files(new_dir.group):
            raise pyfuse3.FUSEError(errno.EEXIST)
        self.tree.rename(group, new_dir.group, name_new)
        old_dir.mtime = old_dir.ctime = time.time_ns()

    # ------------------------------------------------------------------ refused

    @_boundary
    def create(self, parent_inode, name, mode, flags, ctx):
        raise pyfuse3.FUSEError(errno.EACCES)

    @_boundary
    def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    @_boundary
    def symlink(self, parent_inode, name, target, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    @_boundary
    def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    @_boundary
    def unlink(self, parent_inode, name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    # ------------------------------------------------------------------ files

    @_boundary
    def open(self, inode, flags, ctx):
        node = self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        for_write = (flags & os.O_ACCMODE) != os.O_RDONLY
        fh = self._next_fh
        self._next_fh += 1
        # write(2) carries no pid: keep the opener's (needed for "echo 0 > tasks" and
        # for the descriptors named in cgroup.event_control).
        self._handles[fh] = Handle(node, Caller(ctx.pid, ctx.uid, ctx.gid), for_write,
                                   bool(flags & os.O_TRUNC))
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    @_boundary
    def read(self, fh, off, size):
        h = self._handles[fh]
        if off == 0 or h.text is None:
            # seq_file renders afresh whenever a read starts at 0
            h.text = self.tree.read(h.node.group, h.node.cf, h.caller)
        return h.text[off:off + size]

    @_boundary
    def write(self, fh, off, buf):
        h = self._handles[fh]
        h.wrote = True
        self.tree.write(h.node.group, h.node.cf, h.caller, buf)
        h.node.mtime = time.time_ns()
        return len(buf)

    @_boundary
    def flush(self, fh):
        h = self._handles.get(fh)
        # Observed on 6.18 [G:36]: opening a write-only file with O_TRUNC and closing it
        # without writing reports EINVAL (dd with empty input); files with a read
        # handler close cleanly.
        if (h is not None and h.for_write and h.truncated and not h.wrote
                and not h.node.cf.readable):
            h.wrote = True  # report once per open
            raise pyfuse3.FUSEError(errno.EINVAL)

    @_boundary
    def release(self, fh):
        self._handles.pop(fh, None)
