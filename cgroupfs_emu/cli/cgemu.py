"""``cgemu``: workload-side commands for shell scripts and tests.

Every subcommand finds its mount the same way (common.find_mount: ``-m``, then
$CGROUPFS_EMU_MOUNT, then the only cgroupfs_emu mount). A subcommand lives in a
module with a ``register(subparsers)`` function that adds its parser and sets
``func``; SUBCOMMANDS lists them.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import sys

from ..client import ChargeRefused, Client
from ..units import memparse_strict
from . import stat as stat_cmd
from . import top as top_cmd
from . import completion, run
from .common import (CgemuError, Parser, add_mount_arg, find_client_socket, find_mount,
                     group_dir, group_path, human, version_arg)

__all__ = ["main", "find_mount"]

EXIT_REFUSED = 3
#: per-task charges of a group directory (written by files.tree.ControlTree.xattrs)
TASK_MEMORY_XATTR = "user.cgroupfs_emu.task_memory"
ALLOC_HELP = """\
Charge memory to a group, print what was charged, and free it again on exit. With
-g GROUP the command joins that group itself, after it has connected, so only what it
charges is counted there; without -g it charges in the group it is already in.

examples:
  cgemu alloc -g jobs/a --anon 16M                  # prints what it charged
  cat /mnt/memory/jobs/a/memory.max_usage_in_bytes  # ... and the group saw it
  cgemu alloc -m /mnt/memory -g jobs/a --anon 16M --file 4M --hold   # until ^C / SIGTERM / EOF
  cgemu alloc --socket /run/cgroupfs_emu/mount-0123.sock --kmem 64K --slab dentry:192:100

A process that joins a group before it connects (sh -c 'echo $$ > g/tasks; exec cgemu
alloc ...') is a real process in that group until it says hello: the daemon follows its
memory from /proc meanwhile, as the kernel would charge it, and a small limit can OOM
it before it starts.

exit status: 0 charged (and freed), 3 a charge was refused (ENOMEM), 1 other errors;
a process killed by the emulated OOM killer dies of SIGKILL (137 in a shell).
While holding, eviction notices of page cache are printed as they arrive."""


EXEC_HELP = """\
Run CMD inside GROUP, like cgexec: cgemu writes itself into the group's cgroup.procs
and then executes CMD in its own place, so CMD keeps cgemu's pid, its very first page
is charged to the group, and its exit status (or the signal that killed it) is the
command's own. A CMD that cannot be found exits 127, one that cannot be run 126.

examples:
  cgemu exec -g jobs/a -- sh -c 'echo "I am $$"; cat /mnt/memory/jobs/a/tasks'
  cgemu exec -m /mnt/memory -g box -- ./my-test --quick"""

SOCKET_HELP = """\
Print the client socket of the mount: the user.cgroupfs_emu.socket attribute of its
root. Programs that charge memory connect there (docs/protocol.md).

examples:
  cgemu socket
  printf 'hello 1\\nstatus\\n' | socat - UNIX-CONNECT:$(cgemu socket -m /mnt/memory)"""

PS_HELP = """\
List the tasks of every group: pid, group, the memory the emulator charged for the
task (anon, shmem, page cache, in every group it was charged in) and its command.
The root group's tasks are left out unless --all is given.

examples:
  cgemu ps
  cgemu ps --all | head"""


def _size(text: str) -> int:
    try:
        return memparse_strict(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 4096, 64K, 16M)")


def _slab(text: str) -> tuple[str, int, int]:
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError
        return parts[0], memparse_strict(parts[1]), int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not CACHE:OBJSIZE[:COUNT]") from None


def _register_alloc(sub) -> None:
    a = sub.add_parser("alloc", help="charge memory, print it, free it",
                       description=ALLOC_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(a)
    a.add_argument("--socket", help="the socket to use (default: that of -m MOUNT, else "
                                    "$CGROUPFS_EMU_SOCKET, else that of the only mount)")
    for kind in ("anon", "file", "shmem", "kmem", "tcp"):
        a.add_argument(f"--{kind}", type=_size, default=0, metavar="SIZE",
                       help=f"bytes of {kind} memory to charge")
    a.add_argument("--slab", type=_slab, action="append", default=[],
                   metavar="CACHE:OBJSIZE[:COUNT]", help="slab objects to allocate")
    a.add_argument("--fork", type=int, default=0, metavar="N",
                   help="start N tasks (kmem-2012: each charges a 16K thread stack)")
    a.add_argument("--hold", action="store_true",
                   help="keep the memory until SIGTERM, SIGINT or EOF on stdin")
    a.add_argument("--no-stock", action="store_true", help="charge every page exactly")
    a.add_argument("-g", "--group", help="join this group (a path below the mount) first")
    a.set_defaults(func=cmd_alloc)


def _register_socket(sub) -> None:
    s = sub.add_parser("socket", help="print the client socket of a mount",
                       description=SOCKET_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(s)
    s.set_defaults(func=cmd_socket, socket=None)


def _register_exec(sub) -> None:
    e = sub.add_parser("exec", help="run a command inside a group (like cgexec)",
                       description=EXEC_HELP,
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
    # issue 12: `cgemu exec --system`, the view of `cgemu run` without a shell
    run.add_system_arguments(e)
    e.set_defaults(func=cmd_exec)


def _register_ps(sub) -> None:
    ps = sub.add_parser("ps", help="list the tasks of every group with their memory",
                        description=PS_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(ps)
    ps.add_argument("--all", action="store_true", help="include the root group's tasks")
    ps.set_defaults(func=cmd_ps)


#: Each adds one subcommand to the parser (its ``register(subparsers)``), in help order.
SUBCOMMANDS = [_register_alloc, _register_socket, _register_exec, _register_ps,
               top_cmd.register, stat_cmd.register,
               lambda sub: run.register(sub, find_mount),
               lambda sub: completion.register(sub, _parser)]


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="cgemu", description="cgroupfs_emu workload tools: charge memory, "
               "run commands in groups, look at the tree",
               epilog="'cgemu COMMAND -h' shows each command's help with an example. "
                      "Every command finds its mount with -m, $CGROUPFS_EMU_MOUNT, or "
                      "as the only cgroupfs_emu mount.")
    version_arg(p, "cgemu")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=Parser)
    for register in SUBCOMMANDS:
        register(sub)
    return p


def _connect(args, use_stock: bool = True) -> Client:
    return Client.connect(socket_path=find_client_socket(args), use_stock=use_stock)


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def _hold(client: Client) -> None:
    """Wait for SIGTERM/SIGINT or stdin EOF, printing events meanwhile."""
    watch = [client]
    try:
        os.fstat(0)
        watch.append(sys.stdin)
    except OSError:
        pass
    while True:
        ready = select.select(watch, [], [])[0]
        if sys.stdin in ready and not os.read(0, 4096):
            return
        if client in ready:
            for ev in client.poll_events():
                print("event " + " ".join(f"{k}={v}" for k, v in ev.items() if k != "event")
                      if ev["event"] != "evicted" else
                      f"evicted file {ev.get('bytes')} bytes in {ev.get('group')}", flush=True)


def cmd_alloc(args) -> int:
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        with _connect(args, use_stock=not args.no_stock) as client:
            if args.group:
                gdir = group_dir(find_mount(args), args.group)
                # kernels before 3.0 (and the 2007 seed) have only tasks
                procs = os.path.join(gdir, "cgroup.procs")
                with open(procs if os.path.exists(procs) else os.path.join(gdir, "tasks"),
                          "w") as f:
                    f.write("0")
            done: list[tuple] = []
            try:
                for kind in ("anon", "file", "shmem", "kmem", "tcp"):
                    nbytes = getattr(args, kind)
                    if nbytes:
                        pages = client.charge(nbytes, kind)
                        done.append(("charge", nbytes, kind))
                        print(f"charged {kind} {nbytes} bytes ({pages} pages)", flush=True)
                for cache, objsize, count in args.slab:
                    reply = client.slab_alloc(cache, objsize, count)
                    done.append(("slab", cache, objsize, count))
                    print(f"allocated {count} {cache} objects of {objsize} bytes "
                          f"({reply['slab_pages']} slab pages)", flush=True)
                if args.fork:
                    client.fork(args.fork)
                    print(f"forked {args.fork} tasks", flush=True)
                info = client.status()
                print("holding " + " ".join(f"{k}={v}" for k, v in info.items()), flush=True)
                if args.hold:
                    _hold(client)
            except ChargeRefused as e:
                print(f"cgemu alloc: charge refused: {e.strerror}", file=sys.stderr)
                status = EXIT_REFUSED
            except _Stop:
                pass
            # free in reverse order; the daemon would do it at disconnect anyway
            for item in reversed(done):
                try:
                    if item[0] == "charge":
                        client.uncharge(item[1], item[2])
                    else:
                        client.slab_free(*item[1:])
                except OSError:
                    pass
    except _Stop:
        pass
    except (OSError, ConnectionError) as e:
        print(f"cgemu alloc: {e}", file=sys.stderr)
        return 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return status


def cmd_socket(args) -> int:
    print(find_client_socket(args))
    return 0


def cmd_exec(args) -> int:
    """cgexec's shape: join with pid 0 (the writer itself), then exec in place."""
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if args.system:
        return run.run(args.mount, args.group, args.at, command, find_mount, prog="cgemu exec")
    if not command:
        raise CgemuError("no command given: cgemu exec -g GROUP -- CMD [ARGS...]")
    # Look the command up first: a command that is not there never joins the group.
    if "/" not in command[0] and shutil.which(command[0]) is None:
        print(f"cgemu exec: {command[0]}: command not found", file=sys.stderr)
        return 127
    procs = os.path.join(group_dir(find_mount(args), args.group), "cgroup.procs")
    from ..service import fork_guard
    # Forked before the join (it never belongs to the group) and before the guard
    # exists (once it does, every fork of this process waits for an answer).
    standby = (_standby_passthrough() if not args.no_guard and fork_guard.supported()
               else None)
    try:
        fd = os.open(procs, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)
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


def _daemon_request(args, line: str, timeout: float = 10.0) -> tuple[str, dict]:
    """One request that does not make this process a client (``follow``,
    ``followed``): ("ok", fields) or ("err", {"errno": NAME, "message": ...})."""
    import socket as _socket
    from ..protocol import parse_reply
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(find_client_socket(args))
        sock.sendall(line.encode() + b"\n")
        buf = b""
        while True:
            while b"\n" not in buf:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the daemon closed the connection")
                buf += data
            reply, _, buf = buf.partition(b"\n")
            if not reply.startswith(b"event "):
                break
    finally:
        sock.close()
    kind, fields = parse_reply(reply.decode())
    if kind == "err":
        return "err", {"errno": fields[0], "message": fields[1]}
    return kind, fields


def _hand_over(args, standby) -> None:
    """Issue 13, between joining and exec: install the fork guard (a seccomp filter
    whose listener the daemon takes with pidfd_getfd and answers: a fork beyond the
    kmem limit fails with ENOMEM inside the command) and give the command its own
    slow sampling rate (--poll-ms). *standby*: see _standby_passthrough."""
    from ..service import fork_guard
    listener = -1
    if standby is not None:
        try:
            listener = fork_guard.install()
        except OSError as e:
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
            status, fields = _daemon_request(args, line)
        except (OSError, ConnectionError, CgemuError) as e:
            status, fields = "err", {"message": str(e)}
        if listener >= 0 and (status != "ok" or fields.get("guard") != "1"):
            print(f"cgemu exec: the daemon did not take the fork guard "
                  f"({fields.get('message', '')}); forks are let through", file=sys.stderr)
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
    from ..service import fork_guard
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


def _task_memory(directory: str) -> dict[int, tuple[int, int, int]]:
    """pid -> (anon, shmem, file) bytes, from the group's task_memory attribute
    (files.tree.ControlTree.xattrs)."""
    try:
        raw = os.getxattr(directory, TASK_MEMORY_XATTR).decode()
    except OSError:
        return {}
    found = {}
    for line in raw.splitlines():
        pid, anon, shmem, file = (int(x) for x in line.split())
        found[pid] = (anon, shmem, file)
    return found


def cmd_ps(args) -> int:
    """PID, group, charged memory and command of every task in a group."""
    mount = find_mount(args)
    # issue 13: how long ago the daemon last sampled each followed task
    ages: dict[int, int] = {}
    try:
        status, fields = _daemon_request(args, "followed")
    except (OSError, ConnectionError, CgemuError):
        status, fields = "err", {}
    if status == "ok" and fields.get("tasks", "-") != "-":
        for item in fields["tasks"].split(","):
            fpid, _, age, _ = item.split(":")
            ages[int(fpid)] = int(age)
    print(f"{'PID':>7}  {'GROUP':<24} {'ANON':>6} {'SHMEM':>6} {'FILE':>6} {'SAMPLED':>8}"
          f"  COMMAND")
    for dirpath, dirnames, _ in os.walk(mount):
        dirnames.sort()
        group = group_path(mount, dirpath)
        if group == "/" and not args.all:
            continue
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        memory = _task_memory(dirpath)
        for pid in pids:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            anon, shmem, file = (human(n) for n in memory.get(pid, (0, 0, 0)))
            sampled = f"{ages[pid]}ms" if pid in ages else "-"
            print(f"{pid:>7}  {group:<24} {anon:>6} {shmem:>6} {file:>6} {sampled:>8}  {comm}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()
        return status
    except CgemuError as e:
        print(f"cgemu {args.command}: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (cgemu ps | head): stop quietly, as a C tool killed by
        # SIGPIPE would, and keep the interpreter's final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
