"""``cgemu exec``: run a command inside a group, like cgexec, under the fork guard."""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import sys

from ..client import ChargeRefused, ProtocolFailure, ask
from ..preload import VIEW_ENV
from ..service import fork_guard
from . import run as run_cmd
from .common import (CgemuError, add_mount_arg, find_client_socket, find_mount, group_dir,
                     join_group)

HELP = """\
Run CMD inside GROUP, like cgexec: cgemu writes itself into the group's cgroup.procs
and then executes CMD in its own place, so CMD keeps cgemu's pid, its very first page
is charged to the group, and its exit status (or the signal that killed it) is the
command's own. A CMD that cannot be found exits 127, one that cannot be run 126.

examples:
  cgemu exec -g jobs/a -- sh -c 'echo "I am $$"; cat /mnt/memory/jobs/a/tasks'
  cgemu exec -m /mnt/memory -g box -- ./my-test --quick"""


def register(sub) -> None:
    e = sub.add_parser("exec", help="run a command inside a group (like cgexec)",
                       description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("-g", "--group", required=True, help="group path below the mount, e.g. jobs/a")
    add_mount_arg(e)
    e.add_argument("--poll-ms", type=int, metavar="MS",
                   help="sample the command's memory every MS ms while it is idle "
                   "(default: the mount's poll_ms; busy tasks are sampled every fast_ms)")
    e.add_argument("--no-guard", action="store_true",
                   help="no seccomp fork guard: forks beyond the kmem limit are killed "
                   "after the fact instead of failing with ENOMEM")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run")
    # `cgemu exec --system`: the view of `cgemu run` without a shell
    run_cmd.add_system_arguments(e)
    e.set_defaults(func=run)


def run(args) -> int:
    """cgexec's shape: join with pid 0 (the writer itself), then exec in place."""
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.system:
        return run_cmd.run(args.mount, args.group, args.at, command, find_mount, prog="cgemu exec",
                           preload_only=args.preload_only)
    if not command:
        raise CgemuError("no command given: cgemu exec -g GROUP -- CMD [ARGS...]")
    # Look the command up first: a command that is not there never joins the group.
    if "/" not in command[0] and shutil.which(command[0]) is None:
        print(f"cgemu exec: {command[0]}: command not found", file=sys.stderr)
        return 127
    directory = group_dir(find_mount(args), args.group)
    # Forked before the join (it never belongs to the group) and before the guard
    # exists (once it does, every fork of this process waits for an answer).
    standby = (_standby_passthrough() if not args.no_guard and fork_guard.supported()
               else None)
    try:
        join_group(directory)
    except OSError as e:
        if standby is not None:
            standby.close()
        raise CgemuError(f"cannot join group {args.group}: {e.strerror}") from None
    _hand_over(args, standby)
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE, and an ignored signal stays ignored across exec.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as e:
        missing = isinstance(e, FileNotFoundError)
        print(f"cgemu exec: {command[0]}: "
              f"{'command not found' if missing else e.strerror}", file=sys.stderr)
        return 127 if missing else 126
    return 126  # not reached


def _hand_over(args, standby) -> None:
    """Between joining and exec: install the fork guard (a seccomp filter
    whose listener the daemon takes with pidfd_getfd and answers: a fork beyond the
    kmem limit fails with ENOMEM inside the command) and give the command its own
    slow sampling rate (--poll-ms). *standby*: see _standby_passthrough."""
    listener = -1
    if standby is not None:
        try:
            listener = fork_guard.install()
        except OSError as e:
            if e.errno == errno.EBUSY and VIEW_ENV in os.environ:
                # the kernel allows one listener per filter chain (has_duplicate_listener())
                print("cgemu exec: no fork guard inside cgemu run's view (it has the one "
                      "seccomp listener a process may have): forks are not limited",
                      file=sys.stderr)
            else:
                print(f"cgemu exec: no fork guard: {e.strerror}", file=sys.stderr)
    try:
        if listener < 0 and not args.poll_ms:
            return
        line = f"follow {os.getpid()}"
        if listener >= 0:
            line += f" guard={listener}"
        if args.poll_ms:
            line += f" poll_ms={args.poll_ms}"
        try:
            taken, why = ask(find_client_socket(args), line).get("guard") == "1", ""
        except ProtocolFailure as e:
            taken, why = False, e.strerror
        except (OSError, ChargeRefused, CgemuError) as e:
            taken, why = False, str(e)
        if listener >= 0 and not taken:
            print(f"cgemu exec: the daemon did not take the fork guard "
                  f"({why}); forks are let through", file=sys.stderr)
            if standby is not None:
                socket.send_fds(standby, [b"L"], [listener])
    finally:
        if standby is not None:
            standby.close()  # a stand-in given nothing exits
        if listener >= 0:
            os.close(listener)


def _standby_passthrough():
    """A detached process that waits for the guard's listener on a socket and, if it
    is given one, lets every guarded fork proceed until the command's tree is gone
    (the filter cannot be removed once installed); given nothing, it exits. Returns
    this end of the socket (None if it could not be started)."""
    try:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError:
        return None
    pid = os.fork()
    if pid:
        theirs.close()
        os.waitpid(pid, 0)
        return mine
    try:
        mine.close()
        if os.fork():
            os._exit(0)
        os.setsid()
        # hold nothing of the command's (its pipes would never see EOF)
        null = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        keep = theirs.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
        _, fds, _, _ = socket.recv_fds(theirs, 1, 1)
        if fds:
            fork_guard.serve_passthrough(fds[0])
    finally:
        os._exit(0)
