"""``cgemu alloc``: charge memory through the client socket, print it, free it."""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys

from ..client import ChargeRefused, Client
from ..units import memparse_strict
from .common import add_mount_arg, find_client_socket, find_mount, group_dir, join_group

#: the exit status of a refused charge (1 is every other error)
EXIT_REFUSED = 3

HELP = """\
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


def register(sub) -> None:
    a = sub.add_parser("alloc", help="charge memory, print it, free it",
                       description=HELP,
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
    a.set_defaults(func=run)


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


def run(args) -> int:
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        with Client.connect(socket_path=find_client_socket(args),
                            use_stock=not args.no_stock) as client:
            if args.group:
                join_group(group_dir(find_mount(args), args.group))
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
