"""What a FUSE mount helper is expected to do, apart from serving the mount: refuse a
mount point that is already ours or dead, detach like a daemon, write a pidfile, log
one line at start, and tell systemd when the mount is live.

Each piece is a small function so the daemon wiring can call them in its own order.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat

from .common import FSTYPE, VERSION, cgroupfs_mounts, unescape
from .options import MountConfig, UsageError

log = logging.getLogger("cgroupfs_emu")

#: read-only extended attribute of the mount root: the pid of the serving daemon
PID_XATTR = "user.cgroupfs_emu.pid"


def _dead(path: str, e: OSError) -> UsageError:
    # The daemon behind a FUSE mount died: the kernel keeps the mount and answers
    # every access with ENOTCONN until someone unmounts it.
    return UsageError(f"{path} is a dead FUSE mount (its daemon is gone: "
                      f"{os.strerror(e.errno)}); clear it with: fusermount3 -u {path}")


def check_mountpoint(path: str) -> None:
    """Refuse a mount point that cannot work, saying why and what to do about it."""
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise _dead(path, e) from None
        if e.errno == errno.ENOENT:
            raise UsageError(f"mountpoint {path} does not exist") from None
        raise UsageError(f"mountpoint {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"mountpoint {path} is not a directory")
    if os.path.realpath(path) in cgroupfs_mounts():
        # stat() may have been answered from the kernel's attribute cache; asking
        # the daemon itself tells a live mount from a dead one
        try:
            pid = os.getxattr(path, PID_XATTR).decode()
        except OSError as e:
            if e.errno == errno.ENOTCONN:
                raise _dead(path, e) from None
            pid = "?"
        raise UsageError(f"{path} is already mounted (cgroupfs_emu, pid {pid})")


def mount_device(path: str) -> str | None:
    """The device ("major:minor") of the newest cgroupfs_emu mount on *path*, from
    /proc/self/mountinfo: unlike stat() it never asks the file system itself."""
    # the parent resolved, never the mount point: a lookup there would wait for us
    path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    found = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == FSTYPE and unescape(fields[4]) == path:
                    found = fields[2]
    except OSError:
        pass
    return found


def detach() -> None:
    """The daemon half after fork: a session of its own and "/" as working directory,
    so it never keeps a file system busy. close_inherited_fds() and redirect_stdio()
    do the rest, the latter once mount errors can no longer happen."""
    os.setsid()
    os.chdir("/")


def close_inherited_fds(keep: set[int]) -> None:
    """Close every descriptor but stdio and *keep*: a detached daemon must not hold
    its caller's pipes, sockets or files open for as long as it lives."""
    for fd in _open_fds():
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _open_fds() -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir("/proc/self/fd"))
    except OSError:
        return list(range(os.sysconf("SC_OPEN_MAX")))


def redirect_stdio(log_file: str | None) -> None:
    """stdin from /dev/null; stdout and stderr to the log when there is one (stray
    output and crash dumps land there), else /dev/null."""
    devnull = os.open(os.devnull, os.O_RDWR)
    out = devnull
    if log_file:
        try:
            out = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError:
            out = devnull
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {devnull, out}:
        if fd > 2:
            os.close(fd)


def write_pidfile(path: str | None) -> None:
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)  # readers never see a half-written file


def remove_pidfile(path: str | None) -> None:
    if not path:
        return
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return  # another daemon's by now
        os.unlink(path)
    except OSError:
        pass


def log_start(cfg: MountConfig, socket_path: str, where: str) -> None:
    """The start line; *where* is where the log goes (cli/logs.py), so a reader of
    syslog or of the default file learns the rule."""
    log.info("cgroupfs_emu %s: mounted %s (source %s), profile %s, socket %s, pid %d, "
             "options %s, log %s", VERSION, cfg.mountpoint, cfg.source, cfg.profile,
             socket_path, os.getpid(), ",".join(cfg.options) or "-", where,
             extra={"always": True})


_notify_socket: list[str | None] = []


def _notify_address() -> str | None:
    """$NOTIFY_SOCKET, taken out of the environment at the first use so that programs
    the daemon runs (the release agent) cannot speak for it."""
    if not _notify_socket:
        _notify_socket.append(os.environ.pop("NOTIFY_SOCKET", None))
    return _notify_socket[0]


def sd_notify(state: str) -> bool:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ("@name" is an
    abstract socket). Returns whether a notification was sent; never fails the daemon."""
    addr = _notify_address()
    if not addr or addr[0] not in "/@":
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("sd_notify to %s failed: %s", addr.lstrip("\0"), e)
        return False
    return True


def notify_ready() -> None:
    """READY=1 once the mount is live; MAINPID too, because a detached daemon is not
    the process systemd started."""
    sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving")


def notify_stopping() -> None:
    sd_notify("STOPPING=1")
