"""The pyfuse3 adapter: inodes, lookup, readdir, open/read/write, mkdir/rmdir/rename.

It sees a tree of directories (opaque group objects) holding control files (rows with a
name and a mode) through a ControlTree, and knows nothing about memory. Behaviour
follows kernfs as cgroup v1 uses it (fs/kernfs/file.c, dir.c):

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

from .. import dirorder
from ..core.errors import CgroupError
from ..files.kernfs import DIR_MODE, ROOT_INODE, Node
from ..files.request import Caller
from ..units import PAGE_SIZE

#: NAME_MAX: the longest file name statfs reports
NAME_MAX = 255

log = logging.getLogger(__name__)
assert ROOT_INODE == pyfuse3.ROOT_INODE


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


class Handle:
    __slots__ = ("node", "caller", "text")

    def __init__(self, node, caller: Caller):
        self.node = node
        self.caller = caller
        self.text: bytes | None = None


class CgroupFS(pyfuse3.Operations):
    """FUSE operations over a ControlTree."""

    def __init__(self, tree, timeout: float = 10.0, root_xattrs: dict[str, str] | None = None):
        super().__init__()
        #: read-only extended attributes of the mount root (e.g. where the client
        #: socket is); kernfs without the xattr option has no others: ENODATA
        self.root_xattrs = {k.encode(): v.encode() for k, v in (root_xattrs or {}).items()}
        self.tree = tree
        #: the node tree (files/kernfs.py): inodes, modes, owners, times
        self.nodes = tree.nodes
        self.timeout = timeout
        self._handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._file_info = pyfuse3.FileInfo(direct_io=True, keep_cache=False)
        #: set once the kernel connected (INIT): only then are there caches to drop
        self._mounted = False

    def init(self):
        self._mounted = True

    # ------------------------------------------------------------------ nodes

    def _dir_node(self, group, mode: int = DIR_MODE, uid: int = 0, gid: int = 0) -> Node:
        return self.nodes.dir_node(group, mode, uid, gid)

    def _stat_changed(self, node: Node) -> None:
        """Drop the kernel's cached attributes of *node* at once.

        Entries and attributes are cached for ``timeout`` seconds, so nothing a stat
        shows may change without this. For a change made by a request on this mount
        the kernel drops them too (fuse_dir_changed after mkdir, rmdir, rename);
        saying it here keeps the rule whatever path a change takes. attr_only never
        waits for a lock the kernel holds while this request runs.
        """
        self._changed(node)
        if self._mounted:
            try:
                pyfuse3.invalidate_inode(node.inode, attr_only=True)
            except OSError:
                pass  # ENOENT: the kernel holds no such inode, nothing cached

    def _node(self, inode: int) -> Node:
        node = self.nodes.get(inode)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _child(self, dnode: Node, name: str) -> Node | None:
        return self.nodes.child(dnode, name)

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        """The node's attributes, built once and kept on the node until something a
        stat shows changes (_changed: setattr, write, and for a directory mkdir, rmdir
        and rename in it; a group is removed only without children, so its link count
        stays 2); pyfuse3 copies them into each reply before this adapter runs again,
        so one object serves every reply."""
        a = node.attrs
        if a is None:
            a = node.attrs = pyfuse3.EntryAttributes()
            a.st_ino = node.inode
            a.st_mode = node.mode
            if node.is_dir:
                # 2 + number of child groups, like kernfs
                a.st_nlink = 2 + (len(self.tree.subgroups(node.group))
                                  if node.group.online else 0)
            else:
                a.st_nlink = 1
            a.st_uid = node.uid
            a.st_gid = node.gid
            a.st_size = 0
            a.st_blksize = PAGE_SIZE
            a.st_blocks = 0
            a.st_atime_ns = node.atime
            a.st_mtime_ns = node.mtime
            a.st_ctime_ns = node.ctime
            a.entry_timeout = self.timeout
            a.attr_timeout = self.timeout
            a.generation = 0
        return a

    @staticmethod
    def _changed(node: Node) -> None:
        """Something _attrs shows changed: build them afresh at the next reply."""
        node.attrs = None

    def _dir_arg(self, inode: int) -> Node:
        node = self._node(inode)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return node

    @staticmethod
    def _name(raw: bytes) -> str:
        return os.fsdecode(raw)

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
            self.nodes.forget(inode, nlookup)

    @_boundary
    def getattr(self, inode, ctx):
        return self._attrs(self._node(inode))

    @_boundary
    def setattr(self, inode, attr, fields, fh, ctx):
        node = self._node(inode)
        now = time.time_ns()
        if fields.update_mode:
            node.mode = stat.S_IFMT(node.mode) | stat.S_IMODE(attr.st_mode)
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
        # update_size: O_TRUNC and truncate(2) are accepted and change nothing (kernfs).
        self._changed(node)
        return self._attrs(node)

    @_boundary
    def getxattr(self, inode, name, ctx):
        # Asked for security.capability at every open with O_TRUNC (do_truncate ->
        # dentry_needs_remove_privs); only FUSE_HANDLE_KILLPRIV_V2 (SB_NOSEC) would
        # stop that, pyfuse3 offers no way to ask for it, and ENOSYS would stop the
        # kernel asking for the root's socket xattr too. So answer at once.
        value = self._xattrs(self._node(inode)).get(name)
        if value is None:
            raise pyfuse3.FUSEError(errno.ENODATA)
        return value

    @_boundary
    def listxattr(self, inode, ctx):
        return list(self._xattrs(self._node(inode)))

    def _xattrs(self, node: Node) -> dict[bytes, bytes]:
        found = dict(self.root_xattrs) if node.inode == ROOT_INODE else {}
        if node.is_dir and node.group.online:
            found.update((k.encode(), v) for k, v in self.tree.xattrs(node.group).items())
        return found

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
        s.f_bsize = PAGE_SIZE
        s.f_frsize = PAGE_SIZE
        s.f_namemax = NAME_MAX
        return s

    # ------------------------------------------------------------------ directories

    @_boundary
    def opendir(self, inode, ctx):
        dnode = self._dir_arg(inode)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = (dnode, dirorder.Cursor())
        return fh

    @_boundary
    def readdir(self, fh, start_id, token):
        """kernfs_fop_readdir() (or 3.10's dcache_readdir(), by profile): ".", "..",
        then the entries in the kernel's order, each offset being what the kernel's
        getdents64 reports as d_off; the handle's cursor resumes right after the entry
        the caller last received, whatever was created or removed meanwhile."""
        dnode, cursor = self._handles[fh]
        made = cursor.made
        replied = self._fill(dnode, cursor, start_id, token)
        if log.isEnabledFor(logging.DEBUG):
            # what tests/test_listing_cost.py holds on a real mount
            log.debug("readdir from %#x: %d entries made, %d replied", start_id,
                      cursor.made - made, replied)

    def _fill(self, dnode: Node, cursor: dirorder.Cursor, start: int, token) -> int:
        """Reply entries until the kernel's buffer is full; return how many groups and
        files went in."""
        nodes = self.nodes
        reply = pyfuse3.readdir_reply
        replied = 0
        for name, value, off in dirorder.iter_page(nodes.order, nodes.listing(dnode),
                                                    start, cursor):
            if value is None:
                node = dnode
                if name == b".." and dnode.group.parent is not None:
                    node = nodes.dir_node(dnode.group.parent)
                # "." and ".." never count as lookups (fuse_direntplus_link())
                if not reply(token, name, self._attrs(node), off):
                    break
                continue
            # a child group's directory node, or the row of a control file
            if value.__class__ is not Node:
                value = nodes.file_node(dnode, os.fsdecode(name), value)
            if not reply(token, name, self._attrs(value), off):
                break
            value.lookups += 1
            replied += 1
        return replied

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
        node = self._dir_node(group, mode=stat.S_IMODE(mode), uid=ctx.uid, gid=ctx.gid)
        node.lookups += 1
        dnode.mtime = dnode.ctime = time.time_ns()
        self._stat_changed(dnode)  # nlink, mtime
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
        dnode.mtime = dnode.ctime = time.time_ns()
        self._stat_changed(dnode)  # nlink, mtime

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
        self.nodes.renamed(group)
        old_dir.mtime = old_dir.ctime = time.time_ns()
        self._stat_changed(old_dir)

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
        fh = self._next_fh
        self._next_fh += 1
        # write(2) carries no pid: keep the opener's (needed for "echo 0 > tasks"; the
        # descriptors named in cgroup.event_control are the writer's, ControlTree.writer).
        self._handles[fh] = Handle(node, Caller(ctx.pid, ctx.uid, ctx.gid))
        # pyfuse3 copies the FileInfo into its reply as soon as this returns, so one
        # object serves every open
        info = self._file_info
        info.fh = fh
        return info

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
        self.tree.write(h.node.group, h.node.cf, h.caller, buf)
        h.node.mtime = time.time_ns()
        self._changed(h.node)
        return len(buf)

    @_boundary
    def flush(self, fh):
        # Nothing happens at close(2) on kernfs: a recorded empty write of
        # force_empty closes with 0 [G:36]. ENOSYS tells the kernel so once
        # (fc->no_flush) and it never sends FLUSH again: one request less per close.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    @_boundary
    def release(self, fh):
        self._handles.pop(fh, None)
