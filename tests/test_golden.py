"""The recorded real-kernel transcripts, replayed against a linux-6 mount."""

import subprocess
from pathlib import Path

import pytest

from conftest import needs_fuse

SHARED = Path(__file__).resolve().parents[2] / "shared" / "golden"
VENDOR_LINE = "| # non-upstream entries present: memory.shown_ram_in_bytes$"

pytestmark = [pytest.mark.mount, needs_fuse]


def test_golden_transcripts_match_byte_for_byte(linux6, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(SHARED / "run.sh"), linux6.path, str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    expected_dir = SHARED / "linux-6.18"
    names = sorted(p.name for p in expected_dir.glob("*.txt"))
    assert names, "no golden transcripts found"
    mismatches = []
    for name in names:
        expected = [l for l in (expected_dir / name).read_text().splitlines()
                    if l != VENDOR_LINE]
        got = (out / name).read_text().splitlines()
        if got != expected:
            diff = subprocess.run(["diff", str(expected_dir / name), str(out / name)],
                                  capture_output=True, text=True).stdout
            mismatches.append(f"{name}:\n{diff}")
    assert not mismatches, "\n".join(mismatches)
