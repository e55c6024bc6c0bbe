"""The one errno vocabulary of the core.

Core code raises these; the FUSE adapter turns them into ``FUSEError(errno)`` in one
place. Each class carries the errno a kernel would return for the same condition.
"""

import errno as _errno


class CgroupError(Exception):
    """Base class: an error a control-file operation reports to the user."""

    errno = _errno.EIO

    def __init__(self, message: str = ""):
        super().__init__(message or _errno.errorcode.get(self.errno, "EIO"))


def _error(name: str, code: int, doc: str) -> type:
    return type(name, (CgroupError,), {"errno": code, "__doc__": doc})


Invalid = _error("Invalid", _errno.EINVAL, "EINVAL: malformed value or forbidden operation.")
Busy = _error("Busy", _errno.EBUSY, "EBUSY: the group is in use, or usage is above the new limit.")
NoEntry = _error("NoEntry", _errno.ENOENT, "ENOENT: no such group or file.")
Exists = _error("Exists", _errno.EEXIST, "EEXIST: the name is taken.")
OutOfRange = _error("OutOfRange", _errno.ERANGE, "ERANGE: integer overflow in a u64 file.")
TooBig = _error("TooBig", _errno.E2BIG, "E2BIG: a write larger than one page.")
NoDevice = _error("NoDevice", _errno.ENODEV, "ENODEV: the group was removed under an open file.")
AccessDenied = _error("AccessDenied", _errno.EACCES, "EACCES: permission denied.")
NotPermitted = _error("NotPermitted", _errno.EPERM, "EPERM: operation not permitted.")
NoSuchProcess = _error("NoSuchProcess", _errno.ESRCH, "ESRCH: no such process.")
NoMemory = _error("NoMemory", _errno.ENOMEM, "ENOMEM: a charge could not be satisfied.")
NoSpace = _error("NoSpace", _errno.ENOSPC, "ENOSPC: the memcg ID space is exhausted.")
BadFd = _error("BadFd", _errno.EBADF, "EBADF: a file descriptor is not open.")
NameTooLong = _error("NameTooLong", _errno.ENAMETOOLONG,
                     "ENAMETOOLONG: a group name longer than the kernel looks up.")
IOFailure = _error("IOFailure", _errno.EIO, "EIO: the kernel answers an I/O error (e.g. 3.x "
                   "kmem.slabinfo of a group without kmem accounting, the 2007 "
                   "framework's tasks file given no number).")
CrossParent = _error("CrossParent", _errno.EIO, "EIO: cgroup v1 refuses renames across parents.")
