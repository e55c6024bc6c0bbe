"""What every ``cgemu`` subcommand shares: finding the mount, joining a group, one-line
errors, sizes for people."""

from __future__ import annotations

import argparse
import os

from importlib.metadata import PackageNotFoundError, version

from ..client import find_socket

try:
    #: pyproject.toml's version as installed (the package's __version__ reads the same)
    VERSION = version("cgroupfs_emu")
except PackageNotFoundError:
    VERSION = "0+unknown"

MOUNT_ENV = "CGROUPFS_EMU_MOUNT"
SOCKET_ENV = "CGROUPFS_EMU_SOCKET"
FSTYPE = "fuse.cgroupfs_emu"


class CgemuError(Exception):
    """A failure the user can act on: one line on stderr, exit status 1."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line mistakes: "cgemu exec: <what is wrong> (see -h)"."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} -h')\n")


def unescape(field: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def cgroupfs_mounts() -> list[str]:
    """Mount points of cgroupfs_emu in this mount namespace, in mount order."""
    found = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                sep = fields.index("-")
                if fields[sep + 1] == FSTYPE:
                    found.append(unescape(fields[4]))
    except OSError:
        pass
    return found


def find_mount(args: argparse.Namespace | None = None) -> str:
    """The mount a command works on, found the same way by every subcommand: ``-m``,
    then ``$CGROUPFS_EMU_MOUNT``, then the only cgroupfs_emu mount in the mount table.
    With several and no choice made, the error lists them."""
    given = getattr(args, "mount", None) or os.environ.get(MOUNT_ENV)
    mounts = cgroupfs_mounts()
    if given:
        path = os.path.realpath(given)
        if path not in mounts:
            source = "-m" if getattr(args, "mount", None) else f"${MOUNT_ENV}"
            raise CgemuError(f"{given} ({source}) is not a cgroupfs_emu mount")
        return path
    if not mounts:
        raise CgemuError(f"no cgroupfs_emu mount found (mount one, or give -m MOUNT "
                         f"or ${MOUNT_ENV})")
    if len(set(mounts)) > 1:
        raise CgemuError("several cgroupfs_emu mounts, choose one with -m: "
                         + " ".join(dict.fromkeys(mounts)))
    return mounts[0]


def find_client_socket(args: argparse.Namespace) -> str:
    """The client socket: ``--socket``, the socket of ``-m MOUNT``,
    ``$CGROUPFS_EMU_SOCKET``, then that of the mount find_mount() finds."""
    if getattr(args, "socket", None):
        return args.socket
    if getattr(args, "mount", None) or not os.environ.get(SOCKET_ENV):
        return find_socket(find_mount(args))
    return os.environ[SOCKET_ENV]


def add_mount_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--mount", metavar="MOUNT",
                   help=f"the mount (default: ${MOUNT_ENV}, else the only cgroupfs_emu "
                        "mount)")


def version_arg(p: argparse.ArgumentParser, prog: str) -> None:
    p.add_argument("-V", "--version", action="version", version=f"{prog} {VERSION}")


def group_dir(mount: str, group: str) -> str:
    """The directory of GROUP ("jobs/a", "/jobs/a", "/" for the root) in the mount."""
    return os.path.join(mount, group.strip("/")) if group.strip("/") else mount


def group_path(mount: str, directory: str) -> str:
    """The group's path as the kernel names it: "/" for the root, "/jobs/a" below."""
    rel = os.path.relpath(directory, mount)
    return "/" if rel == "." else "/" + rel


def human(n: int | None) -> str:
    """Bytes for a narrow column: 0, 512B, 64K, 1.5M, 12M, 3.2G."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n}B" if n else "0"
    value = float(n)
    for unit in "KMGTPE":
        value /= 1024
        if value < 1024 or unit == "E":
            if value < 10 and value != int(value):
                return f"{value:.1f}{unit}"
            return f"{value:.0f}{unit}"
    return str(n)


def join_group(directory: str) -> None:
    """Move the calling process into the group at *directory*, as cgexec does: write
    "0" (the writer itself: cgroup_procs_write_start() takes pid 0 as current) to its cgroup.procs, or to
    tasks on kernels before 3.0, which have no cgroup.procs. Raises OSError."""
    procs = os.path.join(directory, "cgroup.procs")
    if not os.path.exists(procs) and os.path.exists(os.path.join(directory, "tasks")):
        procs = os.path.join(directory, "tasks")
    fd = os.open(procs, os.O_WRONLY)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)
