"""``cgemu socket``: the client socket of a mount."""

from __future__ import annotations

import argparse

from .common import add_mount_arg, find_client_socket

HELP = """\
Print the client socket of the mount: the user.cgroupfs_emu.socket attribute of its
root. Programs that charge memory connect there (docs/protocol.md).

examples:
  cgemu socket
  printf 'hello 1\\nstatus\\n' | socat - UNIX-CONNECT:$(cgemu socket -m /mnt/memory)"""


def register(sub) -> None:
    s = sub.add_parser("socket", help="print the client socket of a mount",
                       description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(s)
    s.set_defaults(func=run, socket=None)


def run(args) -> int:
    print(find_client_socket(args))
    return 0
