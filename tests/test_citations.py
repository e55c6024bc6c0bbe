"""Comments cite what a reader of the repository can look up: kernel functions, seed
files, docs sections. Issue numbers and the numbered sections of the project's spec
live outside the repository, so nothing in the code or tests may cite them."""

from __future__ import annotations

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
SOURCES = ("cgroupfs_emu", "tests", "scripts", "benchmarks", "examples")
SUFFIXES = (".py", ".c", ".sh", ".go", ".yml")
SCRIPTS = {"check-layers", "install", "test", "run_all"}
#: "issue 13", "Issue #4", "spec 1.3", "item 7": references that lead nowhere here
UNCITABLE = re.compile(r"\b[Ii]ssue ?#?\d+|\bspec \d+\.\d+|\bitems? \d+\b")


def cited_nowhere(text: str) -> list[str]:
    return [m.group(0) for m in UNCITABLE.finditer(text)]


def test_the_pattern_can_fail():
    assert cited_nowhere("# as issue 13 said; see spec 3.5 and item 7") == \
        ["issue 13", "spec 3.5", "item 7"]
    assert cited_nowhere("# mem_cgroup_css_alloc(); docs/kernel-generations.md §7") == []


def test_no_source_cites_an_issue_or_a_spec_section():
    found = []
    for top in SOURCES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in ("golden", "__pycache__", "_build")]
            for name in files:
                if not (name.endswith(SUFFIXES) or name in SCRIPTS):
                    continue
                path = os.path.join(folder, name)
                if os.path.abspath(path) == os.path.abspath(__file__):
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    for n, line in enumerate(f, 1):
                        for hit in cited_nowhere(line):
                            found.append(f"{os.path.relpath(path, ROOT)}:{n}: {hit}")
    assert not found, "\n".join(found)
