"""Making fork/clone fail inside a process, as the kernel does when a new task's
stack cannot be charged (seed 003: thread stacks are kernel memory, so a fork bomb
stops at the kmem limit).

``cgemu exec`` installs, in the child it starts, a seccomp filter that turns
``clone``, ``clone3``, ``fork`` and ``vfork`` into *user notifications*
(``SECCOMP_RET_USER_NOTIF``, Linux 5.0+; the listener descriptor comes from
``SECCOMP_FILTER_FLAG_NEW_LISTENER``). The listener is handed to the daemon, which
answers every notification: when THREAD_SIZE of kmem can be charged in the caller's
group it reserves the charge and lets the call proceed
(``SECCOMP_USER_NOTIF_FLAG_CONTINUE``); otherwise the call fails with ENOMEM, the
errno ``copy_process()`` returns when ``dup_task_struct()`` cannot get a stack. The
filter is inherited by every descendant, so the whole tree is guarded.

The filter is built by hand (classic BPF, no libseccomp needed) for x86_64 and
aarch64; elsewhere nothing is installed and forks are only checked after the fact.
A task of another architecture ABI (x32, compat) is let through.

The same builder makes the filter of `cgemu run`'s view (``VIEW_CALLS``: the calls
whose answer differs in the view, served by preload/supervise.c).

Filters are installed with ``SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`` (5.19+): once
the daemon has received a fork's notification, only a fatal signal ends the wait, as
only a fatal signal ends the kernel's own fork. The daemon receives at once
(guard_recv.py, which says what a signal before that does).

Not like the kernel:

* once the daemon is gone, nobody answers and a guarded process's fork fails with
  ENOSYS (the kernel's answer when a notifying filter has no listener);
* before 5.19 (the flag is refused with EINVAL) the filter is installed without it,
  with one warning: a signal that comes while a fork waits for its answer, caught by
  a handler installed without SA_RESTART, makes that fork fail with EINTR (with
  SA_RESTART or no handler, the fork is restarted and asked again).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import platform
import struct

log = logging.getLogger("cgroupfs_emu.fork_guard")

# <linux/seccomp.h>, <linux/filter.h>, <linux/audit.h>
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
PR_SET_NO_NEW_PRIVS = 38
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
BPF_RET_K = 0x06
BPF_JSET_K = 0x45

#: arch -> (AUDIT_ARCH_*, seccomp syscall number, {name: number} of task-creating calls)
ARCHES = {
    "x86_64": (0xC000003E, 317, {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435}),
    "aarch64": (0xC00000B7, 277, {"clone": 220, "clone3": 435}),
}

#: arch -> {name: number} of the calls the view of `cgemu run` answers: opening its
#: /proc files and statfs of the emulator (aarch64 has no open(2)).
VIEW_CALLS = {
    "x86_64": {"open": 2, "statfs": 137, "fstatfs": 138, "openat": 257, "openat2": 437},
    "aarch64": {"statfs": 43, "fstatfs": 44, "openat": 56, "openat2": 437},
}
#: arch -> {name: (argument, mask)}: a call of VIEW_CALLS whose flags argument has any
#: bit of mask cannot open a view file (it writes, or asks for a directory or an O_PATH
#: handle, which the view leaves to the kernel), so the filter lets it through at once.
#: Masks: O_ACCMODE | O_DIRECTORY | O_PATH of each arch's <asm/fcntl.h>.
VIEW_PASSED = {
    "x86_64": {"open": (1, 0o3 | 0o200000 | 0o10000000),
               "openat": (2, 0o3 | 0o200000 | 0o10000000)},
    "aarch64": {"openat": (2, 0o3 | 0o40000 | 0o10000000)},
}

_NOTIF = struct.Struct("=QIIiIQ6Q")        # struct seccomp_notif (80 bytes)
_RESP = struct.Struct("=QqiI")             # struct seccomp_notif_resp (24 bytes)


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("!") << 8) | nr


SECCOMP_IOCTL_NOTIF_RECV = _iowr(0, _NOTIF.size)
SECCOMP_IOCTL_NOTIF_SEND = _iowr(1, _RESP.size)

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def supported() -> bool:
    return platform.machine() in ARCHES


def program(machine: str | None = None, calls: dict[str, int] | None = None,
            passed: dict[str, tuple[int, int]] | None = None) -> list[tuple[int, int, int, int]]:
    """The filter: (code, jt, jf, k) instructions. Other ABIs and every other system
    call are allowed; *calls* (default: the task-creating ones) notify, except a call
    named in *passed* whose argument has a bit of its mask set (allowed)."""
    audit_arch, _, guarded = ARCHES[machine or platform.machine()]
    calls = guarded if calls is None else calls
    passed = passed or {}
    nrs = sorted(calls.values())
    n = len(nrs)
    by_nr = {calls[name]: how for name, how in passed.items() if name in calls}
    notify = 3 + n + 1
    prog = [(BPF_LD_W_ABS, 0, 0, 4),                      # A = seccomp_data.arch
            (BPF_JEQ_K, 0, n + 1, audit_arch),            # other ABI -> allow
            (BPF_LD_W_ABS, 0, 0, 0)]                      # A = seccomp_data.nr
    blocks: list[tuple[int, int, int, int]] = []
    for i, nr in enumerate(nrs):
        at = 3 + i
        if nr in by_nr:  # -> its own block after the two returns
            arg, mask = by_nr[nr]
            target = notify + 1 + len(blocks)
            blocks += [(BPF_LD_W_ABS, 0, 0, 16 + 8 * arg),  # low word of args[arg] (LE)
                       (BPF_JSET_K, 0, 1, mask),
                       (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
                       (BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF)]
        else:
            target = notify
        prog.append((BPF_JEQ_K, target - at - 1, 0, nr))  # -> notify or its block
    prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    prog.append((BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF))
    return prog + blocks


def install(calls: dict[str, int] | None = None,
            passed: dict[str, tuple[int, int]] | None = None) -> int:
    """Install the filter (notifying *calls*, default the task-creating ones) in the
    calling process; returns the listener descriptor. Raises OSError where seccomp user
    notification is unavailable (EBUSY: the process already has a listener's filter,
    and the kernel allows one per filter chain, has_duplicate_listener())."""
    if not supported():
        raise OSError(errno.ENOSYS, f"no seccomp filter for {platform.machine()}")
    _, sys_seccomp, _ = ARCHES[platform.machine()]
    insns = program(calls=calls, passed=passed)
    arr = (_SockFilter * len(insns))(*[_SockFilter(*i) for i in insns])
    fprog = _SockFprog(len(insns), arr)
    flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    for attempt in (1, 2, 3):
        fd = _libc.syscall(sys_seccomp, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))
        if fd >= 0:
            return fd
        e = ctypes.get_errno()
        if e == errno.EINVAL and flags & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV:
            # before 5.19 the flag is unknown (seccomp_set_mode_filter() refuses any
            # flag outside SECCOMP_FILTER_FLAG_MASK): install anyway, with
            # interruptible waits. One filter per process, so this says it once.
            log.warning("seccomp: this kernel has no SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV "
                        "(5.19+): a signal that comes while a guarded fork waits for its "
                        "answer can make it fail with EINTR")
            flags = SECCOMP_FILTER_FLAG_NEW_LISTENER
            continue
        # without CAP_SYS_ADMIN (in our user namespace) a filter needs no_new_privs
        # (seccomp(2)); set it only then: set-ID programs lose their ids under it
        if e != errno.EACCES or attempt == 3 or _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            break
    raise OSError(e, f"seccomp: {os.strerror(e)}")


def is_listener(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:seccomp notify"
    except OSError:
        return False


def receive(fd: int) -> tuple[int, int, int] | None:
    """One pending notification: (id, tid of the caller, syscall number), or None
    when the caller went away before it could be read."""
    buf = bytearray(_NOTIF.size)
    try:
        fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
            return None
        raise
    nid, pid, _, nr = _NOTIF.unpack_from(buf)[:4]
    return nid, pid, nr


def respond(fd: int, nid: int, error: int = 0) -> None:
    """Let the call run (*error* 0) or fail it with *error*. A caller that died
    meanwhile (ENOENT) needs no answer."""
    if error:
        resp = _RESP.pack(nid, 0, -error, 0)
    else:
        resp = _RESP.pack(nid, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
    try:
        fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, bytearray(resp))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def serve_passthrough(fd: int) -> None:
    """Answer every notification with "proceed" until the listener has no more
    guarded tasks (used by ``cgemu exec`` when the daemon refused the listener)."""
    import select
    p = select.poll()
    p.register(fd, select.POLLIN)
    while True:
        for _, ev in p.poll():
            if ev & (select.POLLHUP | select.POLLERR):
                return
            # nothing may end this loop but the tree's end: once the listener is
            # gone every guarded fork fails (ENOSYS)
            try:
                got = receive(fd)
                if got is not None:
                    respond(fd, got[0])
            except OSError:
                continue
