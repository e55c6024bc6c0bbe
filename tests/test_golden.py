"""The recorded real-kernel transcripts, replayed against a linux-6 mount."""

import hashlib
import subprocess
from pathlib import Path

import pytest

from conftest import needs_fuse

#: the real-kernel recordings, kept in the repository (tests/golden/PROVENANCE.md)
GOLDEN = Path(__file__).resolve().parent / "golden"
VENDOR_LINE = "| # non-upstream entries present: memory.shown_ram_in_bytes$"


def test_recordings_are_unchanged():
    """The transcripts are data from a real kernel: byte for byte as recorded."""
    sums = (GOLDEN / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == 40
    for line in sums:
        digest, name = line.split(maxsplit=1)
        assert hashlib.sha256((GOLDEN / name).read_bytes()).hexdigest() == digest, name
    assert len(list((GOLDEN / "linux-6.18").glob("*.txt"))) == 38


@pytest.mark.mount
@needs_fuse
def test_golden_transcripts_match_byte_for_byte(linux6, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(["bash", str(GOLDEN / "run.sh"), linux6.path, str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    expected_dir = GOLDEN / "linux-6.18"
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
