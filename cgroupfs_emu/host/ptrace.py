"""The few ptrace(2) requests the daemon uses to stop a task where job control cannot
see it (service/stopper.py), and the signals a task has pending.

A seized tracee (PTRACE_SEIZE, 3.4+) is not stopped by the seizing; PTRACE_INTERRUPT
stops it in a *ptrace-stop* (PTRACE_EVENT_STOP), which its parent's
``waitpid(WUNTRACED)`` does not report: a shell keeps the job Running. Every request
for one tracee must come from the thread that seized it, and only that thread's
process may wait for its stops (``__WALL``: threads too).
"""

from __future__ import annotations

import ctypes
import os

PTRACE_DETACH = 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_O_TRACECLONE = 8
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_STOP = 128
WALL = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _ptrace(request: int, tid: int, addr: int = 0, data: int = 0) -> int:
    ctypes.set_errno(0)
    r = _libc.ptrace(request, tid, addr, data)
    if r == -1 and ctypes.get_errno():
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def seize(tid: int) -> None:
    """Trace *tid* without stopping it; its new threads are traced too, and start
    in a ptrace-stop (PTRACE_O_TRACECLONE)."""
    _ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACECLONE)


def interrupt(tid: int) -> None:
    _ptrace(PTRACE_INTERRUPT, tid)


def detach(tid: int, signum: int = 0) -> None:
    """Let *tid* go (it must be in a ptrace-stop), delivering *signum* to it."""
    _ptrace(PTRACE_DETACH, tid, 0, signum)


def event_msg(tid: int) -> int:
    msg = ctypes.c_ulong()
    _ptrace(PTRACE_GETEVENTMSG, tid, 0, ctypes.addressof(msg))
    return msg.value


def poll_stop(tid: int) -> tuple[str, int, int] | None:
    """One report of tracee *tid* without waiting: ("stop", signal, event),
    ("gone", 0, 0), or None when nothing new."""
    try:
        pid, status = os.waitpid(tid, os.WNOHANG | WALL)
    except ChildProcessError:
        return ("gone", 0, 0)
    if pid == 0:
        return None
    if os.WIFSTOPPED(status):
        return ("stop", os.WSTOPSIG(status), status >> 16)
    return ("gone", 0, 0)


#: signals whose default action ends the process (signal(7)): a stopped task that is
#: sent one it neither catches nor ignores must die, as a task sleeping in the
#: kernel's page fault does (TASK_KILLABLE)
_NOT_FATAL = {17, 18, 19, 20, 21, 22, 23, 28}  # CHLD CONT STOP TSTP TTIN TTOU URG WINCH


def fatal_pending(proc: str, tgid: int) -> bool:
    """Does process *tgid* have a signal pending that would end it (not caught, ignored
    or blocked; default action terminate or core)?"""
    try:
        with open(f"{proc}/{tgid}/status") as f:
            fields = dict(line.split(":\t", 1) for line in f if ":\t" in line)
        pending = int(fields["ShdPnd"], 16) | int(fields["SigPnd"], 16)
        handled = (int(fields["SigCgt"], 16) | int(fields["SigIgn"], 16)
                   | int(fields["SigBlk"], 16))
    except (OSError, KeyError, ValueError):
        return False
    live = pending & ~handled
    return any(live >> (s - 1) & 1 for s in range(1, 65) if s not in _NOT_FATAL)
