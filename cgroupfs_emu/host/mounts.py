"""Where a descriptor of another mount namespace lies in ours.

``/proc/PID/fd/N`` names a file by its path in PID's mount namespace. A task inside
``cgemu run`` reaches the emulator through a bind mount at /sys/fs/cgroup/memory of a
namespace of its own, so the path it shows means nothing to the daemon, which knows
its mount by its own mount point. The kernel says which mount the descriptor was
opened on (``mnt_id`` in /proc/PID/fdinfo/N, fs/proc/fd.c seq_show()) and where that
mount lies (/proc/PID/mountinfo: its device, the directory of the filesystem it shows
and its mount point, show_mountinfo()); a mount of the same device in our own
namespace then gives the path the daemon knows. Nothing else is compared: a file is
the same file on every mount of its filesystem.
"""

from __future__ import annotations

from ..protocol import unquote


def _mnt_id(proc: str, pid: int, fd: int) -> str | None:
    try:
        with open(f"{proc}/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def _mounts(path: str) -> list[tuple[str, str, str, str]]:
    """(mount id, major:minor, root, mount point) of each line of a mountinfo file."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4:
                    rows.append((fields[0], fields[2], unquote(fields[3]), unquote(fields[4])))
    except OSError:
        pass
    return rows


def _below(path: str, top: str) -> str | None:
    """*path* relative to directory *top* ("" for top itself), None if not below it."""
    top = top.rstrip("/")
    if path == top or (not top and path == "/"):
        return ""
    return path[len(top):] if path.startswith(top + "/") else None


def translate(proc: str, pid: int, fd: int, path: str) -> str | None:
    """Descriptor *fd* of *pid*, whose path in PID's namespace is *path*, as a path in
    our own namespace; None when no mount of ours shows that file."""
    mnt_id = _mnt_id(proc, pid, fd)
    theirs = [m for m in _mounts(f"{proc}/{pid}/mountinfo") if m[0] == mnt_id]
    if not theirs:
        return None
    _, dev, root, point = theirs[0]
    rest = _below(path, point)
    if rest is None:
        return None
    inside = root.rstrip("/") + rest or "/"  # the file's path within its filesystem
    for _, our_dev, our_root, our_point in _mounts(f"{proc}/self/mountinfo"):
        tail = _below(inside, our_root) if our_dev == dev else None
        if tail is not None:
            return our_point.rstrip("/") + tail or "/"
    return None
