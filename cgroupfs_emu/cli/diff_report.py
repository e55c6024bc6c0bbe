"""What ``cgemu diff`` keeps of a run, how it normalises it, and the report.

A run leaves four streams: stdout, stderr, the exit status and the hierarchy. The
hierarchy is every control file of every group, read before CMD (just after /diff was
made) and after it. Files hold ``key value`` lines (memory.stat, oom_control,
numa_stat) are split into one entry per key. Compared is what CMD changed: an entry
is shown when, on at least one profile, its final value differs from its value before
CMD (for a group CMD made, from the same file of the fresh /diff), so that `cgemu
diff -- true` agrees everywhere while a group CMD left behind still lists every file
it changed. A group CMD made or removed is one entry of its own.

Normalised, because they change from run to run on one profile: the temporary
directory (mount point and socket) to ``<tmp>``; date-times to ``<time>``; the pids in
``tasks`` and ``cgroup.procs`` to ``<pid>``; watermarks (``*max_usage_in_bytes``) and
memory.stat's event counts (pgpgin, pgpgout, pgfault, ...) to ``<sampled>``, since
they depend on when the daemon sampled CMD's processes. Pids that CMD prints itself
are not recognised.
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import re
import shlex

import attrs

from . import diff_rules

STREAMS = ("stdout", "stderr", "status", "hierarchy")
GROUP = "diff"
SAMPLED = "<sampled>"
_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?")
_EVENTS = frozenset(("pgpgin", "pgpgout", "pgfault", "pgmajfault",
                     "workingset_refault_anon", "workingset_refault_file"))
#: a line of a ``key value`` file (memory.stat, oom_control; numa_stat's key=value)
_KEYED = re.compile(r"(\w+)[ =]")


def _read(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return f"<{errno.errorcode.get(e.errno, e.errno)}>"
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="backslashreplace")
    except OSError as e:
        return f"<{errno.errorcode.get(e.errno, e.errno)}>"
    finally:
        os.close(fd)


def capture(mount: str) -> dict[str, str]:
    """Every group ("/diff/" -> "group") and control file ("/diff/tasks" -> its
    text, or "<EINVAL>" when reading fails) below *mount*."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(mount):
        dirnames.sort()
        rel = os.path.relpath(dirpath, mount)
        group = "" if rel == "." else "/" + rel
        entries[group + "/"] = "group"
        for name in sorted(filenames):
            entries[f"{group}/{name}"] = _read(os.path.join(dirpath, name))
    return entries


def _normal_value(name: str, key: str, value: str) -> str:
    if name in ("tasks", "cgroup.procs"):
        return "\n".join("<pid>" if v.isdigit() else v for v in value.split("\n"))
    if name.endswith("max_usage_in_bytes") and value.strip().isdigit():
        return SAMPLED
    if name.endswith(".stat") and (key in _EVENTS or key[6:] in _EVENTS and
                                   key.startswith("total_")):
        return SAMPLED
    return value


def flatten(entries: dict[str, str], tmp: str) -> dict[str, str]:
    """Entries normalised, files of ``key value`` lines split per key."""
    flat: dict[str, str] = {}
    for path, value in entries.items():
        if path in ("/tasks", "/cgroup.procs"):
            continue  # the root holds every process of the machine
        value = value.replace(tmp, "<tmp>")
        name = path.rsplit("/", 1)[1]
        lines = value.strip("\n").split("\n")
        keys = [m.group(1) if (m := _KEYED.match(line)) else None for line in lines]
        if len(lines) > 1 and name not in ("tasks", "cgroup.procs") and None not in keys \
                and len(set(keys)) == len(keys):
            for key, line in zip(keys, lines):
                rest = line[len(key):].lstrip(" =")
                flat[f"{path}:{key}"] = _normal_value(name, key, rest)
        else:
            flat[path] = _normal_value(name, "", value.strip("\n")).replace("\n", "\\n")
    return flat


def _reference(before: dict[str, str], key: str) -> str | None:
    """What *key* read before CMD; for a group CMD made, what the fresh /diff read."""
    if key in before:
        return before[key]
    group, _, rel = key.rpartition("/")
    if not rel or f"{group}/" in before:
        return None
    return before.get(f"/{GROUP}/{rel}")


def hierarchy_lines(captures: dict[str, "Capture"]) -> dict[str, list[str]]:
    """Per profile, ``key = value`` lines of every entry CMD changed on some profile."""
    flat = {p: (flatten(c.baseline, c.tmp), flatten(c.final, c.tmp))
            for p, c in captures.items()}
    keys: set[str] = set()
    for before, after in flat.values():
        for key in before.keys() | after.keys():
            group = key.rpartition("/")[0] + "/"
            if not key.endswith("/") and group not in after:
                continue  # a removed group is one entry, not one per file
            if after.get(key) != _reference(before, key):
                keys.add(key)
    return {p: [f"{k} = {after.get(k, '(absent)')}" for k in sorted(keys)]
            for p, (_, after) in flat.items()}


def normal_text(text: str, tmp: str) -> str:
    return _TIME.sub("<time>", text.replace(tmp, "<tmp>"))


@attrs.frozen
class Capture:
    """What one profile's run left: the streams as read, the hierarchy before and
    after CMD, and the temporary directory (normalised away)."""

    stdout: str
    stderr: str
    status: int | None
    baseline: dict
    final: dict
    tmp: str


@attrs.define
class Disagreement:
    profiles: list[str]
    diff: list[str]
    rules: list[diff_rules.Rule]
    unexplained: list[str]


@attrs.define
class Stream:
    name: str
    #: profiles with the same text as the base first, then each other class
    classes: list[list[str]]
    disagreements: list[Disagreement]
    texts: dict[str, list[str]]


@attrs.define
class Report:
    base: str
    profiles: list[str]
    streams: list[Stream]

    @property
    def differs(self) -> bool:
        return any(s.disagreements for s in self.streams)

    def disagreeing(self) -> set[str]:
        """Every profile that differs from the base in some stream."""
        return {p for s in self.streams for d in s.disagreements for p in d.profiles}


def _classes(texts: dict[str, list[str]], base: str) -> list[list[str]]:
    classes: list[list[str]] = [[base]]
    for profile, text in texts.items():
        if profile == base:
            continue
        for cls in classes:
            if texts[cls[0]] == text:
                cls.append(profile)
                break
        else:
            classes.append([profile])
    return classes


def normalised(captures: dict[str, Capture]) -> dict[str, dict[str, list[str]]]:
    """stream -> label -> the lines compared (labels are profiles, or any names)."""
    return {
        "stdout": {p: normal_text(c.stdout, c.tmp).splitlines() for p, c in captures.items()},
        "stderr": {p: normal_text(c.stderr, c.tmp).splitlines() for p, c in captures.items()},
        "status": {p: [str(c.status)] for p, c in captures.items()},
        "hierarchy": hierarchy_lines(captures),
    }


def compare(base: str, captures: dict[str, Capture]) -> Report:
    """Group the profiles of each stream by identical (normalised) content; diff each
    group against the base and name the rules behind it."""
    texts = normalised(captures)
    streams = {}
    evidence: dict[str, dict] = {p: {} for p in captures}
    # the hierarchy first: the streams borrow its rules for lines that name no file
    for name in ("hierarchy", "stdout", "stderr", "status"):
        classes = _classes(texts[name], base)
        disagreements = []
        for cls in classes[1:]:
            lines = list(difflib.unified_diff(
                texts[name][base], texts[name][cls[0]], f"{name} {base}",
                f"{name} {' '.join(cls)}", lineterm="", n=2))
            changed = [line for line in lines[2:] if line[:1] in "-+"]
            rules, unexplained, found = diff_rules.explain(
                changed, base, cls[0], evidence[cls[0]], status=name == "status")
            for profile in cls:
                for rule, why in found.items():
                    evidence[profile].setdefault(rule, why)
            disagreements.append(Disagreement(cls, lines, rules, unexplained))
        streams[name] = Stream(name, classes, disagreements, texts[name])
    return Report(base, list(captures), [streams[name] for name in STREAMS])


def to_text(report: Report, command: list[str]) -> str:
    """The table of agreement per stream, then each disagreement's diff and rules."""
    out = [f"cgemu diff: {shlex.join(command)}", f"base: {report.base}", ""]
    width = max(len(p) for p in report.profiles)
    out.append("stream     " + "  ".join(p.ljust(width) for p in report.profiles))
    for stream in report.streams:
        letter = {p: chr(ord("A") + i) for i, cls in enumerate(stream.classes) for p in cls}
        out.append(f"{stream.name:<10} " + "  ".join(
            (letter[p] if letter[p] != "A" else "=").ljust(width) for p in report.profiles))
    out.append("(= agrees with the base; each other letter is a group of profiles that "
               "agree with each other)")
    for stream in report.streams:
        for d in stream.disagreements:
            out += ["", f"== {stream.name}: {', '.join(d.profiles)} differ from {report.base}"]
            out += d.diff
            for rule in d.rules:
                out.append(f"rule: {rule.name}: {rule.doc} ({rule.row})")
            if d.unexplained:
                out.append("no known rule for: " + "; ".join(d.unexplained[:5])
                           + (" ..." if len(d.unexplained) > 5 else ""))
    out += ["", "all profiles agree" if not report.differs else
            "profiles that differ: " + ", ".join(p for p in report.profiles
                                                  if p in report.disagreeing())]
    return "\n".join(out) + "\n"


def to_json(report: Report, command: list[str]) -> str:
    return json.dumps({
        "command": command, "base": report.base, "profiles": report.profiles,
        "differ": sorted(report.disagreeing(), key=report.profiles.index),
        "streams": {s.name: {
            "classes": s.classes,
            "values": {p: s.texts[p] for p in report.profiles},
            "disagreements": [{
                "profiles": d.profiles, "diff": d.diff, "unexplained": d.unexplained,
                "rules": [{"name": r.name, "doc": r.doc, "row": r.row} for r in d.rules],
            } for d in s.disagreements]} for s in report.streams},
    }, indent=2)
