"""``cgemu top``: a live view of the tree, like systemd-cgtop.

The terminal is driven with blessed: it wraps the terminfo database (so the escape
sequences are the terminal's own, not hand-written ones), tells the size, and reads
single keys with a timeout, which is all a refresh loop needs; it is small, pure
Python and maintained. The screen is redrawn in place (home, each row followed by
clear-to-end-of-line, then clear-to-end-of-screen), never cleared whole, so it does
not flicker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

from .common import CgemuError, add_mount_arg, find_mount
from .snapshot import SORT_KEYS, add_deltas, ordered, render, snapshot

HELP = """\
A live view of every group, as a tree: usage, limit, a usage bar (against the limit
that applies), memsw and kmem usage, failcnt, oom_kill, tasks and the change of usage
since the last refresh. Everything is read through the mount's control files.

keys: p path, u usage, l limit, w memsw, k kmem, f failcnt, o oom_kill, t tasks,
      d delta (sort siblings by it), space refresh now, q or Ctrl-C quit

Without a terminal, or with -b, it prints one table per refresh (--json: one JSON
object per line) and goes on until -n refreshes or a signal.

examples:
  cgemu top
  cgemu top -b -n 2 -d 0.5
  cgemu top -b -n 1 --json | python3 -m json.tool"""

#: key -> sort order in the live view
SORT_BY_KEY = {"p": "path", "u": "usage", "m": "usage", "l": "limit", "w": "memsw",
               "k": "kmem", "f": "failcnt", "o": "oom_kill", "t": "tasks", "d": "delta"}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delay in seconds (0.05..3600)")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of refreshes (1 or more)")
    return int(text)


def register(sub) -> None:
    p = sub.add_parser("top", help="live view of the tree (like systemd-cgtop)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(p)
    p.add_argument("-d", "--delay", type=_seconds, default=1.0, metavar="SECONDS",
                   help="time between refreshes (default 1)")
    p.add_argument("-n", "--iterations", type=_count, metavar="N",
                   help="stop after N refreshes")
    p.add_argument("-b", "--batch", action="store_true",
                   help="plain output, one table per refresh, no terminal control")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per refresh (implies -b)")
    p.add_argument("-s", "--sort", choices=SORT_KEYS, default="path",
                   help="order siblings by this column (default path)")
    p.add_argument("group", nargs="?", default="/", metavar="GROUP",
                   help="show only this subtree")
    p.set_defaults(func=run)


def _header(snap: dict, key: str) -> str:
    clock = time.strftime("%H:%M:%S", time.localtime(snap["time"]))
    return (f"cgemu top - {snap['mount']} - {clock} - {len(snap['groups'])} groups - "
            f"sort: {key}")


def _refreshes(args):
    """Snapshots with deltas, one per delay, -n of them."""
    previous = None
    count = 0
    mount = find_mount(args)
    while True:
        snap = snapshot(mount, args.group)
        add_deltas(snap, previous)
        previous = snap
        count += 1
        yield snap, args.iterations is not None and count >= args.iterations
        if args.iterations is not None and count >= args.iterations:
            return


def run_batch(args) -> int:
    width = shutil.get_terminal_size((80, 24)).columns
    for snap, last in _refreshes(args):
        if args.json:
            snap["sort"] = args.sort
            snap["groups"] = ordered(snap["groups"], args.sort)
            print(json.dumps(snap), flush=True)
        else:
            print(_header(snap, args.sort)[:width])
            print("\n".join(render(ordered(snap["groups"], args.sort), width)), flush=True)
            if not last:
                print(flush=True)
        if not last:
            time.sleep(args.delay)
    return 0


def run_live(args) -> int:
    # blessed asks the terminal about itself at start and waits up to 5 s per query
    # for a terminal that never answers (a serial console, some multiplexers); a
    # terminal that answers does so at once, so a second is plenty.
    os.environ.setdefault("BLESSED_QUERY_TIMEOUT_SECONDS", "1")
    from blessed import Terminal  # only the live view needs a terminal

    term = Terminal()
    key = args.sort
    with term.fullscreen(), term.cbreak(), term.hidden_cursor():
        try:
            for snap, last in _refreshes(args):
                _draw(term, snap, key)
                if last:
                    break
                deadline = time.monotonic() + args.delay
                while (left := deadline - time.monotonic()) > 0:
                    pressed = term.inkey(timeout=left)
                    if not pressed:
                        continue
                    if pressed.lower() == "q":
                        return 0
                    if pressed.lower() in SORT_BY_KEY:
                        key = SORT_BY_KEY[pressed.lower()]
                        _draw(term, snap, key)
                    elif pressed == " ":
                        break
        except KeyboardInterrupt:
            return 0
    return 0


def _draw(term, snap: dict, key: str) -> None:
    width, height = term.width or 80, term.height or 24
    lines = [_header(snap, key)[:width]] + render(ordered(snap["groups"], key), width)
    out = [term.home]
    for row, line in enumerate(lines[:height]):
        out.append(term.move_yx(row, 0) + (term.reverse(line.ljust(width)) if row == 1
                                           else line) + term.clear_eol)
    out.append(term.clear_eos)
    sys.stdout.write("".join(out))
    sys.stdout.flush()


def run(args) -> int:
    if args.json or args.batch or not sys.stdout.isatty() or not sys.stdin.isatty():
        return run_batch(args)
    try:
        return run_live(args)
    except ImportError:
        raise CgemuError("the live view needs the blessed package (pip install blessed); "
                         "-b works without it") from None
