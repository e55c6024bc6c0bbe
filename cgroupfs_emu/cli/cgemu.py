"""``cgemu``: workload-side commands for shell scripts and tests.

Every subcommand finds its mount the same way (common.find_mount: ``-m``, then
$CGROUPFS_EMU_MOUNT, then the only cgroupfs_emu mount). Each subcommand is its own
module with a ``register(subparsers)`` function that adds its parser and sets
``func``; SUBCOMMANDS lists them. This module only builds the parser and dispatches.
"""

from __future__ import annotations

import os
import signal
import sys

from . import alloc, completion, diff, ps, run, socket, stat, top
from . import exec as exec_cmd
from .common import CgemuError, Parser, find_mount, version_arg

__all__ = ["main", "find_mount"]

#: Each adds one subcommand to the parser (its ``register(subparsers)``), in help order.
SUBCOMMANDS = [
    alloc.register,
    socket.register,
    exec_cmd.register,
    ps.register,
    top.register,
    stat.register,
    lambda sub: run.register(sub, find_mount),
    diff.register,
    lambda sub: completion.register(sub, _parser),
]


def _parser() -> Parser:
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
