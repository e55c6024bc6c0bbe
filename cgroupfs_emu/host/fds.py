"""pidfd and eventfd helpers: descriptors the daemon takes from, or holds on, other
processes.

* :func:`open_pidfd` -- a pidfd for a process the daemon may later signal or wait on
  (a pid the kernel reuses for another process is never hit through it);
* :func:`take_eventfd` -- the daemon's own duplicate of a descriptor of another
  process (pidfd_getfd), as cgroup.event_control registrations need;
* :class:`EventFd` -- that duplicate: signal it, notice the registering process
  closing its end, close it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform

from ..core.errors import NotPermitted

#: pidfd_getfd(2) is 438 on every architecture that has the unified syscall table
#: (x86_64, aarch64, riscv64, ...); Python's os module has no wrapper for it.
SYS_PIDFD_GETFD = 438
#: kcmp(2): 312 on x86_64, 272 on the unified table (aarch64, riscv64, ...)
SYS_KCMP = {"x86_64": 312}.get(platform.machine(), 272)
KCMP_FILES = 2
#: eventfd_write() adds an unsigned 64-bit value
_EVENTFD_ONE = (1).to_bytes(8, "little")
log = logging.getLogger("cgroupfs_emu.host")
_libc = ctypes.CDLL(None, use_errno=True)


def open_pidfd(pid: int) -> int:
    """pidfd_open(2); OSError (ProcessLookupError for no such process) as os raises."""
    return os.pidfd_open(pid)


def same_files(pid1: int, pid2: int) -> bool:
    """Do two tasks share one descriptor table? (kcmp(KCMP_FILES); a thread made by
    clone() without CLONE_FILES has its own.) False when it cannot be told."""
    if pid1 == pid2:
        return True
    return _libc.syscall(SYS_KCMP, pid1, pid2, KCMP_FILES, 0, 0) == 0


def take_fd(pid: int, fd: int) -> int:
    """Our own duplicate of descriptor *fd* of process *pid* (pidfd_getfd(2)); OSError
    with the errno of pidfd_open or pidfd_getfd (EPERM without ptrace rights)."""
    pidfd = os.pidfd_open(pid)
    try:
        ours = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if ours < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"pidfd_getfd({pid}, {fd}) on {platform.machine()}: "
                                f"{os.strerror(code)}")
        return ours
    finally:
        os.close(pidfd)


def take_eventfd(pid: int, fd: int, proc: str = "/proc") -> EventFd:
    """Our own duplicate of eventfd *fd* of process *pid* (take_fd)."""
    try:
        ours = take_fd(pid, fd)
    except OSError as e:
        if e.strerror.startswith("pidfd_getfd"):
            raise NotPermitted(f"{e.strerror} (needs root or ptrace rights)") from None
        raise NotPermitted(f"pidfd_open({pid}): {e.strerror}") from None
    return EventFd(ours, pid, fd, proc)


def _eventfd_id(path: str) -> str | None:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("eventfd-id:"):
                    return line.split()[1]
    except OSError:
        return None
    return ""


class EventFd:
    """The emulator's duplicate of a listener's eventfd."""

    def __init__(self, fd: int, pid: int, their_fd: int, proc: str = "/proc"):
        self.fd = fd
        self.pid = pid
        self.their_fd = their_fd
        self.proc = proc
        self.id = _eventfd_id(f"/proc/self/fdinfo/{fd}")

    def signal(self) -> None:
        """eventfd_signal(): add 1 to the counter. Delivery never fails the operation
        that caused it: a saturated counter already has events pending, and a
        descriptor that went bad is dropped at the next poll."""
        if self.fd < 0:
            return
        try:
            os.write(self.fd, _EVENTFD_ONE)
        except OSError as e:
            if e.errno != errno.EAGAIN:
                log.warning("cannot signal eventfd of pid %d: %s", self.pid, e.strerror)

    def listener_closed(self) -> bool:
        """True once the registering process no longer holds this eventfd at the
        number it registered (closed it, or exited). Recent kernels print an
        eventfd-id in fdinfo; without it, any eventfd at that number counts as ours."""
        theirs = _eventfd_id(f"{self.proc}/{self.pid}/fdinfo/{self.their_fd}")
        if theirs is None:
            return True
        return theirs != self.id

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
