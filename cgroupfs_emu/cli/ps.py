"""``cgemu ps``: the tasks of every group with the memory charged for each."""

from __future__ import annotations

import argparse
import os

from ..client import ChargeRefused, ask
from .common import CgemuError, add_mount_arg, find_client_socket, find_mount, group_path, human

HELP = """\
List the tasks of every group: pid, group, the memory the emulator charged for the
task (anon, shmem, page cache, in every group it was charged in) and its command.
The root group's tasks are left out unless --all is given.

examples:
  cgemu ps
  cgemu ps --all | head"""

#: per-task charges of a group directory (written by files.tree.ControlTree.xattrs)
TASK_MEMORY_XATTR = "user.cgroupfs_emu.task_memory"


def register(sub) -> None:
    ps = sub.add_parser("ps", help="list the tasks of every group with their memory",
                        description=HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mount_arg(ps)
    ps.add_argument("--all", action="store_true", help="include the root group's tasks")
    ps.set_defaults(func=run)


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


def run(args) -> int:
    """PID, group, charged memory and command of every task in a group."""
    mount = find_mount(args)
    # how long ago the daemon last sampled each followed task (docs/protocol.md)
    ages: dict[int, int] = {}
    try:
        fields = ask(find_client_socket(args), "followed")
    except (OSError, ChargeRefused, CgemuError):
        fields = {}
    if fields.get("tasks", "-") != "-":
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
