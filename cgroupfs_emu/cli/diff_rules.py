"""Which profile rule explains a line that differs between two profiles.

Profiles are data (core/profiles.py), so a rule here is a view of that data: the
profile attribute the rule reads, the doc row that states it, and a pattern for the
lines it changes. A rule explains a changed line of a pair of profiles when its
attribute differs between them and its pattern is found in the line. A line no
pattern finds borrows a rule from the hierarchy of the same pair (a number it shows,
or an errno message of a write the hierarchy shows refused); what is still left is
reported as having no known rule. tests/test_diff.py checks that every doc row named
here exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import attrs

from ..core.catalog import get_profile
from ..core.profiles import Feature, Profile

GENERATIONS = "docs/kernel-generations.md"
SEEDS = "docs/seed-profiles.md"
S1 = GENERATIONS + "#1-counters-limits-parsing"
S2 = GENERATIONS + "#2-write-mechanics"
S3 = GENERATIONS + "#3-file-set-and-modes"
S4 = GENERATIONS + "#4-memorystat"
S5 = GENERATIONS + "#5-rules-that-changed"
S6 = GENERATIONS + "#6-directory-order"
S9 = GENERATIONS + "#9-not-settled-from-source-and-what-the-emulator-does"
#: what a refused write prints (strerror of the kernel's errno; dash's echo says "I/O
#: error" whatever the errno)
ERRNO_TEXT = re.compile(r"Invalid argument|I/O error|Device or resource busy|Operation not permitted|"
                        r"Permission denied|Argument list too long|Cannot allocate memory|"
                        r"No such file or directory|modify error")


@attrs.frozen
class Rule:
    name: str
    doc: str
    #: the row (or bullet tag) of *doc* that states the rule, as written there
    row: str
    #: the profile value the rule reads; it explains a pair whose values differ
    attr: Callable[[Profile], object] = attrs.field(eq=False, repr=False)
    pattern: re.Pattern = attrs.field(converter=re.compile, eq=False, repr=False)
    #: a write the rule refuses prints an errno message
    refuses: bool = False


RULES = (
    Rule("unlimited value", S1, "unlimited reads", lambda p: p.counter.unlimited,
         r"922337203685477(5807|1712)"),
    Rule("-1 means unlimited", S1, "`-1`", lambda p: (p.counter, p.minus_one_unlimited),
         r"(^|\D)-1\b", refuses=True),
    Rule("limit rounding (res_counter rounds up to a page, page_counter down)", S1,
         "`echo 1 > limit` reads", lambda p: p.counter, r"(?i)limit"),
    Rule("the mkdir charge to the parent", S5, "mkdir charge to the parent",
         lambda p: (p.mkdir_charge_fixed, p.mkdir_charge_per_cpu),
         r"usage_in_bytes|memory\.stat:(total_)?(cache|rss)\b|failcnt"),
    Rule("thread stacks charged to kmem", S9, "**Thread stacks of followed tasks.**",
         lambda p: p.charges_thread_stacks, r"kmem\.(max_)?usage"),
    Rule("swappiness range", S5, "swappiness range", lambda p: p.max_swappiness,
         r"swappiness", refuses=True),
    Rule("swappiness/oom_control restrictions under use_hierarchy", S5,
         "swappiness restriction", lambda p: p.has(Feature.LEGACY_HIERARCHY_WRITES),
         r"swappiness|oom_kill_disable", refuses=True),
    Rule("use_hierarchy (root 0 at mount before 5.11, forced 1 after)", S5, "use_hierarchy",
         lambda p: (p.hierarchy_forced, p.root_use_hierarchy),
         r"use_hierarchy|hierarchical_memsw", refuses=True),
    Rule("kmem accounting and limit", S5, "kmem limit", lambda p: p.kmem, r"kmem",
         refuses=True),
    Rule("oom_control's oom_kill line", S5, "oom_control lines",
         lambda p: p.has(Feature.OOM_KILL_LINE), r"oom_kill\b"),
    Rule("move_charge_at_immigrate bits", S5, "move_charge_at_immigrate",
         lambda p: p.move_charge_mask, r"move_charge", refuses=True),
    Rule("force_empty with tasks and what it leaves behind", S5, "force_empty",
         lambda p: (p.has(Feature.FORCE_EMPTY_BUSY), p.force_empty_leftovers,
                    p.force_empty_drops), r"force_empty", refuses=True),
    Rule("cgroup.event_control's mode", S3, "cgroup.event_control",
         lambda p: p.has(Feature.EVENT_CONTROL_OWNER_ONLY),
         r"event_control|--w--w--w-|--w-------", refuses=True),
    Rule("memory.pressure_level's mode and read", S3, "memory.pressure_level",
         lambda p: p.has(Feature.PRESSURE_LEVEL_READ), r"pressure_level", refuses=True),
    Rule("release_agent needs CAP_SYS_ADMIN", S5, "release_agent write",
         lambda p: p.has(Feature.RELEASE_AGENT_CAP), r"release_agent", refuses=True),
    Rule("memory.stat keys", S4, "generation", lambda p: p.stat_keys,
         r"memory\.stat:|^(total_)?(cache|rss|rss_huge|shmem|mapped_file|dirty|"
         r"writeback|workingset_refault_\w+|swap|swapcached|pgpg\w+|pg\w*fault|"
         r"(in)?active_\w+|unevictable|hierarchical_\w+) \d+$"),
    Rule("write mechanics (cgroupfs before 3.14, kernfs after)", S2, "u64 files",
         lambda p: p.mechanics, r"Argument list too long", refuses=True),
    Rule("memparse suffixes", S9, "**memparse() suffixes on 3.10.**",
         lambda p: p.memparse_suffixes, r"\d[TtPpEe]\b", refuses=True),
)
#: readdir order: a rule of its own, found by what it does (the same lines, reordered,
#: or the name of a file both profiles have where a listing shows another)
ORDER = Rule("directory order (kernfs name hash, or the 3.10 dcache's newest first)", S6,
             "### dcache (3.10)",
             lambda p: (type(p.dir_order).__name__, p.file_creation_order), r"$^")
#: a line naming a control file only one of the two profiles has: the seed system's
#: own file table where one is involved, else the generations' (section 3)
FILES = Rule("the control-file set", S3, "File set and modes",
             lambda p: _files(p), r"$^", refuses=True)
SEED_FILES = {name: Rule(f"the control-file set of {name} ({what})", SEEDS + anchor, tag,
                         lambda p: _files(p), r"$^", refuses=True)
              for name, anchor, tag, what in (
    ("memctl-2007", "#memctl-2007--seed-002-the-memory-controller-introduction", "[M4]",
     "mem_usage, mem_limit, mem_failcnt, in pages; no cgroup.procs"),
    ("shrink-2008", "#shrink-2008--seed-004-memoryshrink_in_bytes", "[S1]",
     "2.6.26's files and memory.shrink_in_bytes"),
    ("kmem-2011", "#kmem-2011--seed-000-memoryindependent_kmem_limit", "[K1]",
     "3.2's files and the seed's three"),
    ("kmem-slab-2012", "#kmem-slab-2012--seed-001-per-group-slab-accounting", "[L1]",
     "3.3's files and the seed's four"),
    ("kmem-2012", "#kmem-2012--seed-003-the-kmem-controller-as-merged-in-38", "[G1]",
     "3.3's files with the kmem quartet"))}
_NAME = re.compile(r"[\w.]+")


def _files(p: Profile) -> frozenset[str]:
    """Every control file name of the profile, root and child groups."""
    from ..files.table import files_for
    return frozenset(files_for(p, True)) | frozenset(files_for(p, False))


def _applies(rule: Rule, base: Profile, other: Profile) -> bool:
    return rule.attr(base) != rule.attr(other)


def explain(changed: list[str], base: str, other: str,
            evidence: dict[Rule, list[str]] | None = None, status: bool = False
            ) -> tuple[list[Rule], list[str], dict[Rule, list[str]]]:
    """The rules behind the *changed* lines (``-``/``+`` lines of a unified diff) of
    *other* against *base*: (rules in order of first use, lines no rule explains,
    the lines each rule explained). *evidence*: what the other streams of the same
    pair were explained by, for lines that name no file; *status*: the lines are exit
    statuses, which the rules behind the pair's stderr explain."""
    bp, op = get_profile(base), get_profile(other)
    files = SEED_FILES.get(other, SEED_FILES.get(base, FILES))
    rules = [r for r in RULES if _applies(r, bp, op)]
    found: dict[Rule, list[str]] = {}
    left: list[str] = []
    minus = sorted(line[1:] for line in changed if line.startswith("-"))
    plus = sorted(line[1:] for line in changed if line.startswith("+"))
    if changed and minus == plus and _applies(ORDER, bp, op):
        return [ORDER], [], {ORDER: changed}
    only = _files(bp) ^ _files(op)
    both = (_files(bp) & _files(op)) if _applies(ORDER, bp, op) else frozenset()
    for line in changed:
        names = set(_NAME.findall(line[1:]))
        # a bare file name is a listing's line: only the set or the order moves it
        rule = files if names & only else ORDER if line[1:].strip() in both else None
        rule = rule or next((r for r in rules if r.pattern.search(line[1:])), None)
        if rule is None and status and evidence:
            rule = next((r for r in reversed(evidence) if r.refuses), None)
        elif rule is None and evidence:
            rule = _borrow(line, evidence)
        if rule is None:
            left.append(line)
        else:
            found.setdefault(rule, []).append(line)
    return list(found), left, found


def _borrow(line: str, evidence: dict[Rule, list[str]]) -> Rule | None:
    """A stream line's rule from the hierarchy lines of the same pair: one whose value
    the line shows, else for an errno message the one refusing rule seen there."""
    numbers = set(re.findall(r"\d{3,}", line))
    for rule, lines in evidence.items():
        values = [h.partition(" = ")[2] for h in lines]
        if line[1:].strip() in values or numbers and any(
                numbers & set(re.findall(r"\d{3,}", v)) for v in values):
            return rule
    if ERRNO_TEXT.search(line):
        refusing = [r for r in evidence if r.refuses]
        if refusing:
            return refusing[0]
    return None
