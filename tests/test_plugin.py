"""The pytest plugin (cgroupfs_emu.testing), as a user's suite meets it: inner pytest
runs in a scratch directory, loading the plugin only through its entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cgroupfs_emu.testing import option_string
from conftest import needs_fuse

pytestmark = [pytest.mark.mount, needs_fuse]
REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "pytest" / "test_memory_agent.py"


def mounts_below(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def inner_pytest(where: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """pytest in *where*, outside the checkout: no conftest of ours, the plugin comes
    from the installed package's entry point. Its tmp dirs are below *where*/base."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           f"--basetemp={where / 'base'}", *args],
                          cwd=where, capture_output=True, text=True, timeout=timeout)


def test_the_example_in_the_guide_is_the_example_file_and_it_passes(tmp_path):
    example = EXAMPLE.read_text()
    guide = (REPO / "docs" / "testing.md").read_text()
    assert f"```python\n{example}```" in guide  # verbatim
    (tmp_path / "test_memory_agent.py").write_text(example)
    r = inner_pytest(tmp_path, "-q", "-rA")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\b7 passed\b", r.stdout), r.stdout
    assert mounts_below(tmp_path) == []  # every mount of the inner run is gone


def test_a_daemon_that_fails_fails_the_test(tmp_path):
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import os, signal

        def test_clean(cgroupfs):
            assert cgroupfs.mkdir("a").usage == 0

        def test_traceback_while_running(cgroupfs):
            # what a crashed handler leaves in the log, as the check sees it
            with open(cgroupfs.stderr_path, "a") as log:
                log.write("Traceback (most recent call last):\\n  boom\\n")

        def test_daemon_dies(cgroupfs):
            cgroupfs.proc.send_signal(signal.SIGKILL)  # the fixture's own child
            cgroupfs.proc.wait()
    """))
    r = inner_pytest(tmp_path, "-rA")
    out = r.stdout
    assert r.returncode == 1, out + r.stderr
    assert "PASSED test_inner.py::test_clean" in out
    assert "FAILED test_inner.py::test_traceback_while_running" in out
    assert "cgroupfs_emu logged a traceback" in out
    assert "ERROR test_inner.py::test_daemon_dies" in out and "cgroupfs_emu exited -9" in out
    assert mounts_below(tmp_path) == []


def test_marker_options_and_the_session_mount(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\ncgroupfs_session_options = kernel=linux-6\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import os, pytest

        pytestmark = pytest.mark.cgroupfs(kernel="linux-3.10")

        @pytest.mark.cgroupfs(swap="64M", oom_kill="none")
        def test_marked(cgroupfs):
            assert "kernel=linux-3.10,swap=64M,oom_kill=none" in cgroupfs.log()
            assert os.path.exists(cgroupfs.p("memory.memsw.limit_in_bytes"))

        def test_session_a(cgroupfs_session):
            cgroupfs_session.mkdir("a")
            assert "kernel=linux-6" in cgroupfs_session.log()

        def test_session_b(cgroupfs_session):
            assert os.path.isdir(cgroupfs_session.p("a"))  # the same mount
    """))
    r = inner_pytest(tmp_path, "-q")
    assert r.returncode == 0 and "3 passed" in r.stdout, r.stdout + r.stderr


def _fifo_reader(fifo: Path, after: float, got: list[bytes]) -> threading.Thread:
    """Open *fifo* for reading only after *after* seconds (a writer's open blocks until
    then), then drain it to EOF."""
    def read():
        time.sleep(after)
        with open(fifo, "rb") as f:
            got.append(f.read())
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def test_a_slow_session_start_says_what_it_waits_for(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ncgroupfs_session_options = log={fifo}\n")
    (tmp_path / "test_inner.py").write_text(
        "def test_it(cgroupfs_session):\n    assert cgroupfs_session.usage >= 0\n")
    got: list[bytes] = []
    reader = _fifo_reader(fifo, 2.5, got)
    r = inner_pytest(tmp_path, "-q")
    reader.join(timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    said = [line for line in r.stdout.splitlines() if line.startswith("cgroupfs: waiting")]
    assert said and "to mount" in said[0] and str(tmp_path) in said[0], r.stdout
    assert b"mounted" in got[0]


def test_a_slow_background_mount_says_what_it_waits_for(tmp_path):
    fifo, mnt = tmp_path / "log.fifo", tmp_path / "cg"
    os.mkfifo(fifo)
    mnt.mkdir()
    got: list[bytes] = []
    reader = _fifo_reader(fifo, 2.5, got)
    try:
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "cgroupfs_emu", "-o", f"log={fifo}",
                            "memory", str(mnt)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 >= 2.5
        lines = r.stderr.splitlines()
        assert len(lines) == 1, r.stderr
        assert re.fullmatch(rf"cgroupfs_emu: waiting 1s for the daemon \(pid \d+\) "
                            rf"to open its log {fifo}", lines[0]), lines
        assert os.path.ismount(mnt)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
    reader.join(timeout=30)
    assert b"exiting with status 0" in got[0]


@pytest.mark.cgroupfs(kernel="linux-6", swap="64M")
def test_the_fixture_serves_the_projects_own_suite(cgroupfs):
    g = cgroupfs.mkdir("jobs/a", limit="64M", memsw="128M")
    assert g.name == "/jobs/a" and int(g.read("limit_in_bytes")) == 64 << 20
    r = g.run(["sh", "-c", "cat /proc/self/status >/dev/null; echo $$"])
    assert r.returncode == 0 and r.stdout.strip().isdigit()
    with pytest.raises(OSError):
        g.write("limit_in_bytes", "not-a-size")
    assert cgroupfs.group("/jobs").p() == cgroupfs.p("jobs")


def test_option_strings_from_marker_arguments():
    assert option_string("allow_other", kernel="linux-6", swap="64M", thread_stacks=True,
                         release_agent=None, oom_kill=False) == \
        "allow_other,kernel=linux-6,swap=64M,thread_stacks=1"
