"""benchmarks/run_all is not run by the suite (it takes minutes and the machine's
quiet); its command line must still work: --help, and --dry-run listing every
benchmark's command without measuring anything."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

RUN_ALL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "benchmarks", "run_all")


def test_run_all_help_and_dry_run():
    r = subprocess.run([sys.executable, RUN_ALL, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--quick" in r.stdout
    r = subprocess.run([sys.executable, RUN_ALL, "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    benches = {os.path.basename(shlex.split(line)[1]) for line in r.stdout.splitlines()}
    assert benches == {f"bench_{n}.py" for n in
                       ("files", "scale", "socket", "follow", "overshoot", "view")}
    for bench in benches:
        assert os.path.exists(os.path.join(os.path.dirname(RUN_ALL), bench))
    r = subprocess.run([sys.executable, RUN_ALL, "--dry-run", "--only", "nosuch"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "nosuch" in r.stderr
