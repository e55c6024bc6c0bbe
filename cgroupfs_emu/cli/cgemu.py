"""``cgemu``: workload-side commands for shell scripts and tests."""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys

from ..client import ChargeRefused, Client, find_socket
from ..units import memparse_strict

EXIT_REFUSED = 3

ALLOC_HELP = """\
Charge memory to a group, print what was charged, and free it again on exit. With
-g GROUP the command joins that group itself, after it has connected, so only what it
charges is counted there; without -g it charges in the group it is already in.

examples:
  cgemu alloc -m /mnt/memory -g jobs/a --anon 16M
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
Start CMD already inside GROUP: the new process writes itself into the group's
cgroup.procs before it executes CMD, so its very first page is charged there. The exit
status of CMD is passed through (128+N when it dies of signal N).

The command and its descendants run under a seccomp filter that asks the daemon
before every fork/clone: where thread stacks are charged (kmem), a fork beyond the
kmem limit fails with ENOMEM inside the process, as on the kernel. --poll-ms sets how
often the command's memory is sampled while idle.

examples:
  cgemu exec -g jobs/a -- ./my-test --quick
  cgemu exec -g jobs/a --poll-ms 50 -- ./server
  cgemu exec -m /mnt/memory -g box -- sh -c 'echo 16M > /dev/null'"""


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cgemu", description="cgroupfs_emu workload tools")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("alloc", help="charge memory, print it, free it",
                       description=ALLOC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _where(a)
    for kind in ("anon", "file", "shmem", "kmem", "tcp"):
        a.add_argument(f"--{kind}", type=_size, default=0, metavar="SIZE",
                       help=f"bytes of {kind} memory to charge")
    a.add_argument("--slab", type=_slab, action="append", default=[],
                   metavar="CACHE:OBJSIZE[:COUNT]", help="slab objects to allocate")
    a.add_argument("--hold", action="store_true",
                   help="keep the memory until SIGTERM, SIGINT or EOF on stdin")
    a.add_argument("--no-stock", action="store_true", help="charge every page exactly")
    a.add_argument("-g", "--group", help="join this group (a path below the mount) first")

    s = sub.add_parser("socket", help="print the client socket of a mount")
    _where(s)

    e = sub.add_parser("exec", help="run a command inside a group (like cgexec)",
                       description=EXEC_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("-g", "--group", required=True, help="group path below the mount, e.g. jobs/a")
    e.add_argument("-m", "--mount", help="mount point (default: the first cgroupfs_emu mount)")
    e.add_argument("--poll-ms", type=int, metavar="MS",
                   help="sample this command's memory every MS ms while it is idle "
                   "(default: the mount's poll_ms; busy tasks are sampled every fast_ms)")
    e.add_argument("--no-guard", action="store_true",
                   help="no seccomp fork guard: forks beyond the kmem limit are killed "
                   "after the fact instead of failing with ENOMEM")
    e.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run")

    ps = sub.add_parser("ps", help="list the tasks of every group")
    ps.add_argument("-m", "--mount", help="mount point (default: the first cgroupfs_emu mount)")
    ps.add_argument("--all", action="store_true", help="include the root group's tasks")
    return p


def _where(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("-m", "--mount", help="mount point (default: $CGROUPFS_EMU_SOCKET)")
    g.add_argument("--socket", help="socket path")


def _connect(args, use_stock: bool = True) -> Client:
    return Client.connect(args.mount, socket_path=args.socket, use_stock=use_stock)


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
                mount = args.mount or find_mount()
                with open(os.path.join(mount, args.group.strip("/"), "cgroup.procs"), "w") as f:
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
                info = client.status()
                print("holding " + " ".join(f"{k}={v}" for k, v in info.items()), flush=True)
                if args.hold:
                    _hold(client)
            except ChargeRefused as e:
                print(f"cgemu: charge refused: {e.strerror}", file=sys.stderr)
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
        print(f"cgemu: {e}", file=sys.stderr)
        return 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return status


def cmd_socket(args) -> int:
    try:
        print(args.socket or find_socket(args.mount))
    except OSError as e:
        print(f"cgemu: {e}", file=sys.stderr)
        return 1
    return 0


def find_mount() -> str:
    """The first cgroupfs_emu mount in /proc/mounts."""
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "fuse.cgroupfs_emu":
                return fields[1].replace("\\040", " ")
    raise FileNotFoundError("no cgroupfs_emu mount found (give -m MOUNT)")


def _daemon_request(mount: str, line: str, timeout: float = 10.0) -> tuple[str, dict]:
    """One request that does not make this process a client (``follow``,
    ``followed``): ("ok", fields) or ("err", {"errno": NAME, "message": ...})."""
    import socket
    from ..protocol import parse_reply
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(find_socket(mount))
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


def cmd_exec(args) -> int:
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        print("cgemu exec: no command given", file=sys.stderr)
        return 2
    try:
        mount = args.mount or find_mount()
    except OSError as e:
        print(f"cgemu: {e}", file=sys.stderr)
        return 1
    procs = os.path.join(mount, args.group.strip("/"), "cgroup.procs")
    from ..service import fork_guard
    # The child joins, installs the fork guard and reports its listener; the daemon
    # takes the listener from it (pidfd_getfd) before the child may exec.
    to_parent_r, to_parent_w = os.pipe()
    to_child_r, to_child_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(to_parent_r)
            os.close(to_child_w)
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, b"0")  # "0" is the writer itself
            finally:
                os.close(fd)
            listener = -1
            if not args.no_guard:
                try:
                    listener = fork_guard.install()
                except OSError as e:
                    os.write(2, f"cgemu exec: no fork guard: {e.strerror}\n".encode())
            os.write(to_parent_w, b"%d\n" % listener)
            os.close(to_parent_w)
            os.read(to_child_r, 1)  # the daemon holds the listener now (or refused it)
            os.close(to_child_r)
            if listener >= 0:
                os.close(listener)
            os.execvp(command[0], command)
        except OSError as e:
            os.write(2, f"cgemu exec: {e}\n".encode())
            os._exit(127)
    os.close(to_parent_w)
    os.close(to_child_r)
    with os.fdopen(to_parent_r, "rb") as r:
        report = r.readline().strip()
    listener = int(report) if report.lstrip(b"-").isdigit() else -1
    passthrough = None
    if report:
        line = f"follow {pid}"
        if listener >= 0:
            line += f" guard={listener}"
        if args.poll_ms:
            line += f" poll_ms={args.poll_ms}"
        try:
            status, fields = _daemon_request(mount, line)
        except (OSError, ConnectionError) as e:
            status, fields = "err", {"errno": "EIO", "message": str(e)}
        if status != "ok" or (listener >= 0 and fields.get("guard") != "1"):
            print(f"cgemu exec: the daemon did not take the fork guard: "
                  f"{fields.get('message', '')}", file=sys.stderr)
            if listener >= 0:
                passthrough = _serve_guard_ourselves(pid, listener)
    try:
        os.write(to_child_w, b"x")
    except BrokenPipeError:
        pass  # the child failed before exec (it said why)
    os.close(to_child_w)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if passthrough is not None:
        os.close(passthrough)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _serve_guard_ourselves(pid: int, fd: int) -> int | None:
    """Nobody else answers the guarded tree's forks: let every one proceed, from a
    thread of this process, so the command runs as if unguarded."""
    import threading
    from ..service import fork_guard
    from ..service.follower import _take_fd
    try:
        ours = _take_fd(pid, fd)
    except OSError as e:
        print(f"cgemu exec: cannot serve the fork guard: {e}", file=sys.stderr)
        return None
    threading.Thread(target=fork_guard.serve_passthrough, args=(ours,), daemon=True).start()
    return ours


def cmd_ps(args) -> int:
    """PID, group and command of every task in a group, from the tasks files."""
    try:
        mount = args.mount or find_mount()
    except OSError as e:
        print(f"cgemu: {e}", file=sys.stderr)
        return 1
    rows = []
    for dirpath, dirnames, _ in os.walk(mount):
        dirnames.sort()
        group = "/" if dirpath == mount else "/" + os.path.relpath(dirpath, mount)
        if group == "/" and not args.all:
            continue
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            rows.append((pid, group, comm))
    followed: dict[int, tuple[int, int]] = {}
    try:
        status, fields = _daemon_request(mount, "followed")
    except (OSError, ConnectionError):
        status, fields = "err", {}
    if status == "ok" and fields.get("tasks", "-") != "-":
        for item in fields["tasks"].split(","):
            fpid, nbytes, age, _ = item.split(":")
            followed[int(fpid)] = (int(nbytes), int(age))
    print(f"{'PID':>7}  {'GROUP':<24} {'CHARGED':>10} {'SAMPLED':>8}  COMMAND")
    for pid, group, comm in rows:
        if pid in followed:
            nbytes, age = followed[pid]
            charged, sampled = _human(nbytes), f"{age}ms"
        else:
            charged = sampled = "-"
        print(f"{pid:>7}  {group:<24} {charged:>10} {sampled:>8}  {comm}")
    return 0


def _human(nbytes: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):.1f}{unit}"
    return str(nbytes)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"alloc": cmd_alloc, "socket": cmd_socket, "exec": cmd_exec,
            "ps": cmd_ps}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
