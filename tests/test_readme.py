"""The README's two-minute tour runs as written.

Every ``    $ `` line of the tour section is a command; the indented lines after it, up
to the next command, are what it prints. The commands run in order in one bash, with
the README's mount point ``/tmp/cg`` replaced by a fresh temporary directory (and
``CGROUPFS_EMU_MOUNT`` pointing there, so ``cgemu`` finds this mount even when
others exist). In an expected line ``...`` stands for any text; a line that is only
``...`` stands for any number of lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest

from conftest import needs_fuse, wait_until

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")
TOUR = "## A two-minute tour"
MARK = "@@cgemu-readme-step@@"


def tour_steps() -> list[tuple[str, list[str]]]:
    """(command, expected lines) of the tour, in order."""
    text = open(README, encoding="utf-8").read()
    section = text.split(TOUR, 1)[1].split("\n## ", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    in_block = False
    for line in section.split("\n"):
        if line.startswith("    $ "):
            steps.append((line[6:], []))
            in_block = True
        elif line.startswith("    ") and in_block and steps:
            steps[-1][1].append(line[4:])
        else:
            in_block = False
    return steps


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line match; ``...`` inside a line is any text, a lone ``...`` any lines."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(_matches(rest, actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.rstrip().split("..."))
    return re.fullmatch(pattern, actual[0].rstrip()) is not None and _matches(rest, actual[1:])


def test_the_tour_is_found():
    steps = tour_steps()
    commands = [c for c, _ in steps]
    assert commands[0].startswith("cgroupfs_emu memory /tmp/cg")
    assert commands[-1] == "fusermount3 -u /tmp/cg"
    for word in ("echo 64M", "cgemu exec", "cgemu ps", "cgemu top", "cgemu run"):
        assert any(word in c for c in commands), word


def test_matcher_can_fail():
    assert _matches(["a...c"], ["abbc"])
    assert not _matches(["a...c"], ["abbd"])
    assert _matches(["x", "...", "z"], ["x", "1", "2", "z"])
    assert not _matches(["x", "z"], ["x", "y", "z"])


@needs_fuse
@pytest.mark.mount
def test_readme_tour_runs_as_written():
    steps = tour_steps()
    where = tempfile.mkdtemp(prefix="cgemu-readme-")
    mountpoint = os.path.join(where, "cg")
    os.mkdir(mountpoint)
    script = ["set -m"]  # job control, so the tour's `kill %1` names its background job
    for i, (command, _) in enumerate(steps):
        script.append(f"echo {MARK}{i}")
        script.append(command.replace("/tmp/cg", mountpoint))
    env = dict(os.environ, CGROUPFS_EMU_MOUNT=mountpoint)
    try:
        out = subprocess.run(["bash", "-c", "\n".join(script)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env, timeout=120,
                             stdin=subprocess.DEVNULL)
        chunks = re.split(rf"^{MARK}(\d+)\n", out.stdout, flags=re.M)
        got = {int(n): [l for l in body.split("\n") if l]
               for n, body in zip(chunks[1::2], chunks[2::2])}
        for i, (command, expected) in enumerate(steps):
            expected = [e.replace("/tmp/cg", mountpoint) for e in expected]
            actual = got.get(i, [])
            assert _matches(expected, actual), (command, expected, actual)
        assert out.returncode == 0, out.stdout
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-u", mountpoint], check=False)
        wait_until(lambda: not os.path.ismount(mountpoint), timeout=10)
        os.rmdir(mountpoint)
        os.rmdir(where)
