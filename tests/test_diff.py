"""`cgemu diff` (docs/diff.md): one command on several kernel profiles, each on a real
private daemon and mount, seen through `cgemu run`. Each example of docs/diff.md is
run for real and must show exactly the profiles its rules make differ, every
difference with its rule; a second run must capture the same; Ctrl-C and failures
leave no mount, directory or process behind."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import needs_fuse, wait_until

from cgroupfs_emu.cli import diff_report, diff_rules
from cgroupfs_emu.cli.diff import DEFAULT_PROFILES, SEED_PROFILES, UsageError, resolve_profiles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CGEMU = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu"]
TIMEOUT = 120

#: the four examples of docs/diff.md, as given there
LIMIT_4097 = ["sh", "-c", "cd /sys/fs/cgroup/memory/diff && mkdir box\n"
              "echo 4097 > box/memory.limit_in_bytes\n"
              "cat box/memory.limit_in_bytes"]
LTP = [os.path.join(ROOT, "examples", "diff", "ltp_memcg_limit_in_bytes.sh")]
CGROUP_TOOLS = ["sh", "-c", "cgcreate -g memory:/diff/app\n"
                "cgset -r memory.limit_in_bytes=100000 diff/app\n"
                "cgset -r memory.swappiness=150 diff/app\n"
                "cgget -r memory.limit_in_bytes -r memory.swappiness "
                "-r memory.use_hierarchy /diff/app"]
JAVA = ["sh", "-c", "echo 300000000 > /sys/fs/cgroup/memory/diff/memory.limit_in_bytes"
        " && exec java -XshowSettings:system -version"]

ROUNDING = "limit rounding (res_counter rounds up to a page, page_counter down)"
MKDIR = "the mkdir charge to the parent"
SWAPPINESS = "swappiness range"
HIERARCHY = "use_hierarchy (root 0 at mount before 5.11, forced 1 after)"


def needs(program: str, package: str):
    return pytest.mark.skipif(shutil.which(program) is None,
                              reason=f"{program} missing (scripts/install --test installs "
                                     f"{package})")


def _ours() -> tuple[set[str], list[str]]:
    """cgemu diff's temporary directories and mounts that exist now."""
    dirs = set(glob.glob(os.path.join(tempfile.gettempdir(), "cgemu-diff-*")))
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if "/cgemu-diff-" in line]
    return dirs, mounts


@pytest.fixture
def clean():
    """Whatever a test's cgemu diff made is gone when it returns."""
    before, _ = _ours()
    yield
    dirs, mounts = _ours()
    assert not mounts, mounts
    assert not dirs - before, dirs - before


def diff_json(*args: str, timeout: float = TIMEOUT) -> tuple[int, dict, str]:
    r = subprocess.run(CGEMU + ["diff", "--json", *args], capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout) if r.stdout else {}, r.stderr


def disagreeing(report: dict) -> dict[str, set[str]]:
    """stream -> the profiles that differ from the base there."""
    return {name: {p for d in s["disagreements"] for p in d["profiles"]}
            for name, s in report["streams"].items()}


def rules_of(report: dict, stream: str, profile: str) -> set[str]:
    return {r["name"] for d in report["streams"][stream]["disagreements"]
            if profile in d["profiles"] for r in d["rules"]}


def assert_every_difference_has_a_rule(report: dict) -> None:
    for name, s in report["streams"].items():
        for d in s["disagreements"]:
            assert d["rules"] and not d["unexplained"], (name, d)


# ------------------------------------------------------------------ the examples

@pytest.mark.mount
@needs_fuse
def test_a_limit_of_4097_reads_8192_on_3_10_and_4096_after(clean):
    rc, report, _ = diff_json("--", *LIMIT_4097)
    assert rc == 1
    assert report["profiles"] == list(DEFAULT_PROFILES)
    assert set(report["differ"]) == {"linux-3.10", "linux-4.19", "linux-5.10"}
    assert disagreeing(report) == {
        "stdout": {"linux-3.10"}, "stderr": set(), "status": set(),
        # the mkdir of box charged /diff on 5.10 (1 + ncpus pages) and 6.18 (2 + ncpus)
        "hierarchy": {"linux-3.10", "linux-4.19", "linux-5.10"}}
    assert report["streams"]["stdout"]["values"]["linux-3.10"] == ["8192"]
    assert report["streams"]["stdout"]["values"]["linux-6.18"] == ["4096"]
    assert rules_of(report, "stdout", "linux-3.10") == {ROUNDING}
    assert rules_of(report, "hierarchy", "linux-3.10") == {ROUNDING, MKDIR}
    assert rules_of(report, "hierarchy", "linux-4.19") == {MKDIR}
    assert_every_difference_has_a_rule(report)


@pytest.mark.mount
@needs_fuse
def test_the_same_limit_on_every_profile_and_seed_system(clean):
    rc, report, _ = diff_json("--profiles", "all", "--", *LIMIT_4097)
    assert rc == 1
    assert report["profiles"] == [*DEFAULT_PROFILES, *SEED_PROFILES]
    res_counter = {"linux-3.10", "shrink-2008", "kmem-2011", "kmem-slab-2012", "kmem-2012"}
    assert disagreeing(report)["stdout"] == res_counter | {"memctl-2007"}
    assert set(report["differ"]) == res_counter | {"memctl-2007", "linux-4.19", "linux-5.10"}
    assert "seeds" not in report["differ"]
    for profile in res_counter:
        assert rules_of(report, "stdout", profile) == {ROUNDING}
    # 2007 has no memory.limit_in_bytes: its limit file is mem_limit, in pages
    assert rules_of(report, "stderr", "memctl-2007") == {
        "the control-file set of memctl-2007 (mem_usage, mem_limit, mem_failcnt, in pages; "
        "no cgroup.procs)"}
    assert_every_difference_has_a_rule(report)


@pytest.mark.mount
@needs_fuse
def test_ltp_memcg_limit_in_bytes_differs_only_in_3_10_rounding(clean):
    rc, report, _ = diff_json("--", *LTP)
    assert rc == 1
    assert set(report["differ"]) == {"linux-3.10"}
    assert disagreeing(report)["stdout"] == {"linux-3.10"}
    out = report["streams"]["stdout"]["values"]
    assert len(out["linux-6.18"]) == 7 and all(" TPASS: " in line for line in out["linux-6.18"])
    assert "memcg_limit_in_bytes 10 TPASS: input=4097, limit_in_bytes=8192" in out["linux-3.10"]
    assert "memcg_limit_in_bytes 10 TPASS: input=4097, limit_in_bytes=4096" in out["linux-6.18"]
    assert rules_of(report, "stdout", "linux-3.10") == {ROUNDING}
    assert_every_difference_has_a_rule(report)


@pytest.mark.mount
@needs_fuse
@needs("cgget", "cgroup-tools")
def test_a_cgroup_tools_session(clean):
    rc, report, _ = diff_json("--", *CGROUP_TOOLS)
    assert rc == 1
    assert set(report["differ"]) == {"linux-3.10", "linux-4.19", "linux-5.10"}
    assert disagreeing(report) == {
        "stdout": {"linux-3.10", "linux-4.19", "linux-5.10"},
        "stderr": {"linux-3.10", "linux-4.19"},  # swappiness 150 refused before 5.8
        "status": set(),
        "hierarchy": {"linux-3.10", "linux-4.19", "linux-5.10"}}
    assert rules_of(report, "stdout", "linux-3.10") == {ROUNDING, SWAPPINESS, HIERARCHY}
    assert rules_of(report, "stdout", "linux-4.19") == {SWAPPINESS, HIERARCHY}
    assert rules_of(report, "stdout", "linux-5.10") == {HIERARCHY}
    assert rules_of(report, "stderr", "linux-4.19") == {SWAPPINESS}
    assert_every_difference_has_a_rule(report)


@pytest.mark.mount
@needs_fuse
@needs("java", "openjdk-17-jre-headless")
def test_java_show_settings_rounds_the_limit_on_3_10(clean):
    rc, report, _ = diff_json("--", *JAVA)
    assert rc == 1
    assert set(report["differ"]) == {"linux-3.10"}
    assert disagreeing(report) == {"stdout": set(), "stderr": {"linux-3.10"},
                                   "status": set(), "hierarchy": {"linux-3.10"}}
    err = report["streams"]["stderr"]["values"]
    assert "    Memory Limit: 286.11M" in err["linux-3.10"]
    assert "    Memory Limit: 286.10M" in err["linux-6.18"]
    assert rules_of(report, "stderr", "linux-3.10") == {ROUNDING}
    assert_every_difference_has_a_rule(report)


@pytest.mark.mount
@needs_fuse
@pytest.mark.parametrize("command", [
    pytest.param(LIMIT_4097, id="limit"), pytest.param(LTP, id="ltp"),
    pytest.param(CGROUP_TOOLS, id="cgroup-tools", marks=needs("cgget", "cgroup-tools")),
    pytest.param(JAVA, id="java", marks=needs("java", "openjdk-17-jre-headless"))])
def test_a_second_run_captures_exactly_the_same(clean, command):
    """Normalisation leaves nothing that changes from run to run on one profile."""
    first = diff_json("--", *command)[1]["streams"]
    second = diff_json("--", *command)[1]["streams"]
    for name in diff_report.STREAMS:
        assert first[name]["values"] == second[name]["values"], name


@pytest.mark.mount
@needs_fuse
def test_a_command_that_changes_nothing_agrees_everywhere(clean):
    r = subprocess.run(CGEMU + ["diff", "--profiles", "all", "--", "true"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("all profiles agree")


# ------------------------------------------------------------- the command line

@pytest.mark.parametrize("argv", [["--profiles"], ["--profiles", "linux-9", "--", "true"],
                                  ["--base", "nope", "--", "true"], []],
                         ids=["no-value", "unknown-profile", "unknown-base", "no-command"])
def test_usage_errors_exit_2(argv):
    r = subprocess.run(CGEMU + ["diff", *argv], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("cgemu diff") and "Traceback" not in r.stderr


def test_profile_lists():
    assert resolve_profiles("linux-3.10, linux-6", "linux-6.18") == (
        ["linux-3.10", "linux-6.18"], "linux-6.18")
    # the base is added where the list lacks it
    assert resolve_profiles("linux-3.10", "linux-4.19") == (["linux-3.10", "linux-4.19"],
                                                           "linux-4.19")
    assert resolve_profiles("all", "linux-6.18")[0] == [*DEFAULT_PROFILES, *SEED_PROFILES]
    with pytest.raises(UsageError):
        resolve_profiles("linux-3.10,kmem-1999", "linux-6.18")


# ---------------------------------------------------------------- teardown

def _with_marker(marker: str) -> list[int]:
    """The sleep processes of CMD (cgemu diff and its forks carry the marker too)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", marker.encode()]:
                    found.append(int(name))
        except (OSError, ValueError):
            pass
    return found


@pytest.mark.mount
@needs_fuse
@pytest.mark.parametrize("when", ["start-up", "running"])
def test_ctrl_c_tears_everything_down(clean, when):
    """SIGINT to cgemu diff's process group, as a terminal sends it, once the first
    mount is up (daemons still starting) or while CMD runs: every CMD, daemon, mount
    and directory is gone, and the status is 130."""
    marker = "31.41592"
    p = subprocess.Popen(CGEMU + ["diff", "--", "sleep", marker], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        started = (lambda: _ours()[1]) if when == "start-up" else (
            lambda: len(_with_marker(marker)) >= 2)
        assert wait_until(lambda: started() or p.poll() is not None, timeout=30)
        assert p.poll() is None, p.communicate()
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err, err
    assert wait_until(lambda: not _with_marker(marker), timeout=5)


@pytest.mark.mount
@needs_fuse
def test_a_failing_command_and_keep(clean):
    """A CMD that fails is a result like any other; --keep leaves the mounts up (the
    test unmounts them, and each daemon then exits by itself)."""
    rc, report, _ = diff_json("--", "sh", "-c", "echo no >&2; exit 3")
    assert rc == 0 and report["streams"]["status"]["values"]["linux-3.10"] == ["3"]
    r = subprocess.run(CGEMU + ["diff", "--keep", "--profiles", "linux-3.10", "--",
                                "mkdir", "/sys/fs/cgroup/memory/diff/kept"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    kept = re.findall(r"kept (\S+) at (\S+) \(daemon pid (\d+)", r.stderr)
    try:
        assert [k[0] for k in kept] == ["linux-3.10", "linux-6.18"], r.stderr
        for _, mount, _ in kept:
            assert os.path.isdir(os.path.join(mount, "diff", "kept"))
    finally:
        for _, mount, pid in kept:
            subprocess.run(["fusermount3", "-u", mount], check=False)
            assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10)
            shutil.rmtree(os.path.dirname(mount), ignore_errors=True)


# ------------------------------------------------------------ rules, no mount

def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("rule", [*diff_rules.RULES, diff_rules.ORDER, diff_rules.FILES,
                                  *diff_rules.SEED_FILES.values()],
                         ids=lambda r: r.name)
def test_every_rule_names_a_doc_row_that_exists(rule):
    path, _, anchor = rule.doc.partition("#")
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    headings = {_slug(line.lstrip("#")): i for i, line in enumerate(text.splitlines())
                if line.startswith("#")}
    assert anchor in headings, (anchor, sorted(headings))
    section = text.splitlines()[headings[anchor]:]
    end = next((i for i, line in enumerate(section[1:], 1) if line.startswith("## ")),
               len(section))
    assert rule.row in "\n".join(section[:end]), rule.row


def test_a_rule_explains_only_profiles_whose_value_differs():
    lines = ["-/diff/memory.swappiness = 150", "+/diff/memory.swappiness = 60"]
    rules, left, _ = diff_rules.explain(lines, "linux-6.18", "linux-4.19")
    assert [r.name for r in rules] == [SWAPPINESS] and not left
    # 5.10 and 6.18 share the range: nothing in the profiles explains such a line
    rules, left, _ = diff_rules.explain(lines, "linux-6.18", "linux-5.10")
    assert not rules and left == lines


def test_the_same_lines_reordered_are_the_directory_order():
    lines = ["-memory.stat", "-memory.usage_in_bytes", "+memory.usage_in_bytes", "+memory.stat"]
    rules, left, _ = diff_rules.explain(lines, "linux-6.18", "linux-3.10")
    assert rules == [diff_rules.ORDER] and not left


def test_a_stream_line_borrows_the_rule_of_the_hierarchy_value_it_shows():
    hierarchy = ["-/diff/box/memory.limit_in_bytes = 4096",
                 "+/diff/box/memory.limit_in_bytes = 8192"]
    _, _, found = diff_rules.explain(hierarchy, "linux-6.18", "linux-3.10")
    rules, left, _ = diff_rules.explain(["-4096", "+8192"], "linux-6.18", "linux-3.10",
                                        found)
    assert [r.name for r in rules] == [ROUNDING] and not left


def test_volatile_values_are_normalised():
    entries = {"/diff/": "group", "/diff/tasks": "123\n456\n",
               "/diff/memory.max_usage_in_bytes": "1638400\n",
               "/diff/memory.stat": "cache 0\npgfault 99\ntotal_pgpgin 7\n",
               "/diff/memory.limit_in_bytes": "4096\n",
               "/release_agent": "/tmp/cgemu-diff-x/agent\n"}
    flat = diff_report.flatten(entries, "/tmp/cgemu-diff-x")
    assert flat["/diff/tasks"] == "<pid>\\n<pid>"
    assert flat["/diff/memory.max_usage_in_bytes"] == diff_report.SAMPLED
    assert flat["/diff/memory.stat:cache"] == "0"
    assert flat["/diff/memory.stat:pgfault"] == diff_report.SAMPLED
    assert flat["/diff/memory.stat:total_pgpgin"] == diff_report.SAMPLED
    assert flat["/diff/memory.limit_in_bytes"] == "4096"
    assert flat["/release_agent"] == "<tmp>/agent"
    assert diff_report.normal_text("at 2026-12-06 02:03:01,814 in /tmp/x/mnt",
                                   "/tmp/x") == "at <time> in <tmp>/mnt"


def test_a_file_only_one_profile_has_is_the_file_set():
    lines = ["-/diff/memory.shrink_in_bytes = (absent)", "+/diff/memory.shrink_in_bytes = 0"]
    rules, left, _ = diff_rules.explain(lines, "linux-6.18", "seeds")
    assert rules == [diff_rules.FILES] and not left
    # a listing's line naming a file both have is placed by the directory order
    rules, left, _ = diff_rules.explain(["-memory.usage_in_bytes", "+tasks"], "linux-6.18",
                                        "linux-3.10")
    assert rules == [diff_rules.ORDER] and not left


def test_dash_reports_a_refused_write_as_an_io_error():
    hierarchy = ["-/diff/box/memory.swappiness = 150", "+/diff/box/memory.swappiness = 60"]
    _, _, found = diff_rules.explain(hierarchy, "linux-6.18", "linux-4.19")
    rules, left, _ = diff_rules.explain(["+sh: 1: echo: echo: I/O error", "-150", "+60"],
                                        "linux-6.18", "linux-4.19", found)
    assert [r.name for r in rules] == [SWAPPINESS] and not left
