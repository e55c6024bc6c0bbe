"""Kill what a command left behind: the one walk of /proc that ``cgemu run`` (every
process left in its private mount namespace) and ``cgemu diff`` (the orphans of a
runner it had to kill, reparented to it as their subreaper) share.

Each candidate is named by a pidfd opened *before* it is tested, and the signal goes
through that pidfd (pidfd_send_signal(2)): a pid that exits and is reused between the
test and the signal is never signalled, because the pidfd still names the first
process. Only the caller's own processes are ever chosen: a namespace the caller made,
or children reparented to the caller.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Container


def kill_chosen(chosen: Callable[[str], bool], spared: Container[int] = ()) -> list[int]:
    """SIGKILL each process (but the caller and *spared*) for which ``chosen(pid)``
    holds, *pid* as the name of its /proc directory; return the pids killed. A process
    gone before or during the test is skipped."""
    me, killed = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me or int(name) in spared:
            continue
        try:
            fd = os.pidfd_open(int(name))
        except OSError:
            continue  # gone already
        try:
            if chosen(name):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
                killed.append(int(name))
        except OSError:
            pass  # gone while it was tested
        finally:
            os.close(fd)
    return killed


def parent_of(pid: str) -> int:
    """The parent pid /proc/PID/stat names (after the command name, which may hold
    spaces and parentheses)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def mount_namespace_of(pid: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/mnt")
