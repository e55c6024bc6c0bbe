"""``cgemu``: workload-side commands for shell scripts and tests."""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys

from ..client import ChargeRefused, Client, find_socket
from ..files.parsers import memparse_strict

EXIT_REFUSED = 3

ALLOC_HELP = """\
Charge memory to the group this process is in, print what was charged, and free it
again on exit. The process joins no group by itself: write its pid into a group's
tasks first (cgemu exec does that for you), or run it from a shell that is in one.

examples:
  cgemu alloc -m /mnt/memory --anon 16M
  cgemu alloc -m /mnt/memory --anon 16M --file 4M --hold      # until ^C / SIGTERM / EOF
  cgemu alloc --socket /run/cgroupfs_emu/mount-0123.sock --kmem 64K --slab dentry:192:100
  sh -c 'echo $$ > /mnt/memory/g/tasks; exec cgemu alloc -m /mnt/memory --anon 8M'

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

    s = sub.add_parser("socket", help="print the client socket of a mount")
    _where(s)
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return {"alloc": cmd_alloc, "socket": cmd_socket}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
