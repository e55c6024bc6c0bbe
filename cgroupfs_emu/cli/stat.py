"""``cgemu stat``: one snapshot of the tree, for scripts (``--json``) and people."""

from __future__ import annotations

import argparse
import json
import shutil

from .common import add_mount_arg, find_mount
from .snapshot import ordered, render, snapshot

HELP = """\
One snapshot of the tree at or below GROUP (default: the root), read through the
mount's control files: usage, limit, memsw, kmem, failcnt, oom_kill and task count
per group. --json prints one object: {"time", "mount", "groups": [...]}, each group
with its numbers in bytes (limits as the files read them) and its memory.stat.

examples:
  cgemu stat
  cgemu stat --json jobs | python3 -m json.tool"""


def register(sub) -> None:
    p = sub.add_parser("stat", help="one snapshot of the tree (--json for scripts)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(p)
    p.add_argument("group", nargs="?", default="/", metavar="GROUP",
                   help="the subtree to show (default: the whole tree)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    snap = snapshot(find_mount(args), args.group, full=args.json)
    if args.json:
        print(json.dumps(snap))
        return 0
    width = shutil.get_terminal_size((80, 24)).columns
    for line in render(ordered(snap["groups"], "path"), width, deltas=False):
        print(line)
    return 0
