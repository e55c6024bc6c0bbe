"""One look at the whole tree, read through the mount only (the control files a user
could cat), and its rendering as a table for `cgemu top` and `cgemu stat`.

Nothing here talks to the daemon's socket: what is shown is what the kernel
interface shows.
"""

from __future__ import annotations

import errno
import os
import time

from .common import CgemuError, group_dir, group_path, human

#: LONG_MAX rounded down to pages: what an unlimited counter reads
UNLIMITED = 9223372036854771712

#: snapshot key -> control file holding one number
NUMBER_FILES = {
    "usage": "memory.usage_in_bytes",
    "max_usage": "memory.max_usage_in_bytes",
    "limit": "memory.limit_in_bytes",
    "memsw": "memory.memsw.usage_in_bytes",
    "memsw_limit": "memory.memsw.limit_in_bytes",
    "kmem": "memory.kmem.usage_in_bytes",
    "failcnt": "memory.failcnt",
}

#: sort keys: snapshot key, largest first (path: by name)
SORT_KEYS = ("path", "usage", "limit", "memsw", "kmem", "failcnt", "oom_kill", "tasks",
             "delta")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENODEV, errno.EINVAL, errno.EACCES,
                       errno.EPERM):
            return None  # gone meanwhile, or not in this profile / not ours to read
        raise


def _keyed(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_group(directory: str, full: bool = False) -> dict | None:
    """The numbers of one group, or None if it vanished while being read."""
    row: dict = {}
    for key, name in NUMBER_FILES.items():
        text = _read(os.path.join(directory, name))
        row[key] = int(text) if text and text.strip().isdigit() else None
    if row["usage"] is None and not os.path.isdir(directory):
        return None
    oom = _keyed(_read(os.path.join(directory, "memory.oom_control")))
    row["oom_kill"] = oom.get("oom_kill")
    row["under_oom"] = oom.get("under_oom")
    stat = _keyed(_read(os.path.join(directory, "memory.stat")))
    row["hierarchical_limit"] = stat.get("hierarchical_memory_limit")
    tasks = _read(os.path.join(directory, "tasks"))
    row["tasks"] = len(tasks.split()) if tasks is not None else None
    if full:
        row["stat"] = stat
    return row


def snapshot(mount: str, top: str = "/", full: bool = False) -> dict:
    """Every group at or below *top*, depth first, siblings by name."""
    start = group_dir(mount, top)
    if not os.path.isdir(start):
        raise CgemuError(f"no group {top} in {mount}")
    groups = []
    for dirpath, dirnames, _ in os.walk(start):
        dirnames.sort()
        row = read_group(dirpath, full)
        if row is None:
            continue
        path = group_path(mount, dirpath)
        groups.append({"group": path, "depth": 0 if path == "/" else path.count("/"),
                       **row})
    return {"time": round(time.time(), 3), "mount": mount, "groups": groups}


def add_deltas(snap: dict, previous: dict | None) -> None:
    """delta: change of usage since the previous snapshot (None the first time, or for
    a group that is new)."""
    before = {g["group"]: g["usage"] for g in previous["groups"]} if previous else {}
    for g in snap["groups"]:
        old = before.get(g["group"])
        g["delta"] = (g["usage"] - old) if old is not None and g["usage"] is not None \
            else None


def ordered(groups: list[dict], key: str) -> list[dict]:
    """The tree order with siblings sorted by *key* (largest first; path: by name)."""
    children: dict[str, list[dict]] = {}
    by_path = {g["group"]: g for g in groups}
    roots = []
    for g in groups:
        parent = g["group"].rsplit("/", 1)[0] or "/"
        if g["group"] != "/" and parent in by_path:
            children.setdefault(parent, []).append(g)
        else:
            roots.append(g)

    def sort(rows: list[dict]) -> list[dict]:
        if key == "path":
            return sorted(rows, key=lambda g: g["group"])
        return sorted(rows, key=lambda g: (-(g.get(key) or 0), g["group"]))

    out: list[dict] = []

    def walk(rows: list[dict]) -> None:
        for g in sort(rows):
            out.append(g)
            walk(children.get(g["group"], []))
    walk(roots)
    return out


# ---------------------------------------------------------------- the table

#: (title, width) of the columns right of GROUP and the bar
COLUMNS = [("USAGE", 6), ("LIMIT", 6), ("MEMSW", 6), ("KMEM", 6), ("FAIL", 5),
           ("OOMK", 4), ("TASKS", 5), ("DELTA", 7)]
MIN_GROUP, MAX_GROUP, MIN_BAR, MAX_BAR = 12, 40, 8, 30


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return str(n) if n < 100000 else f"{n // 1000}k"


def _limit(n: int | None) -> str:
    return "-" if n is None or n >= UNLIMITED else human(n)


def _delta(n: int | None) -> str:
    if n is None:
        return "-"
    if n == 0:
        return "0"
    return ("+" if n > 0 else "-") + human(abs(n))


def _bar(usage: int | None, limit: int | None, width: int) -> str:
    """[####....] usage against the limit that applies (the group's own, else the
    nearest ancestor's: memory.stat's hierarchical_memory_limit). Blank if none."""
    inner = width - 2
    if not usage or limit is None or limit >= UNLIMITED or limit <= 0:
        return "[" + " " * inner + "]"
    filled = min(inner, round(inner * usage / limit))
    return "[" + "#" * filled + "." * (inner - filled) + "]"


def _name(g: dict, width: int) -> str:
    name = "/" if g["group"] == "/" else "  " * (g["depth"] - 1) + "- " + \
        g["group"].rsplit("/", 1)[1]
    if len(name) > width:
        name = name[:width - 1] + "~"
    return name.ljust(width)


def layout(width: int) -> tuple[int, int]:
    """Widths of the GROUP and bar columns for a terminal *width* columns wide."""
    fixed = sum(w for _, w in COLUMNS) + len(COLUMNS) + 1  # one space before each
    room = max(width - fixed, MIN_GROUP + MIN_BAR)
    group = max(MIN_GROUP, min(MAX_GROUP, room - MIN_BAR))
    bar = max(MIN_BAR, min(MAX_BAR, room - group))
    return group, bar


def render(groups: list[dict], width: int = 80, deltas: bool = True) -> list[str]:
    """Header and one row per group, none longer than *width*."""
    gw, bw = layout(width)
    columns = COLUMNS if deltas else COLUMNS[:-1]
    head = "GROUP".ljust(gw) + " " + "USE/LIM".ljust(bw) + "".join(
        " " + title.rjust(w) for title, w in columns)
    lines = [head]
    for g in groups:
        limit = g["limit"] if g["limit"] is not None and g["limit"] < UNLIMITED \
            else g.get("hierarchical_limit")
        cells = [human(g["usage"]), _limit(g["limit"]), human(g["memsw"]), human(g["kmem"]),
                 _count(g["failcnt"]), _count(g["oom_kill"]), _count(g["tasks"]),
                 _delta(g.get("delta"))]
        lines.append(_name(g, gw) + " " + _bar(g["usage"], limit, bw) + "".join(
            " " + cell.rjust(w) for cell, (_, w) in zip(cells, columns)))
    return [line[:width].rstrip() for line in lines]
