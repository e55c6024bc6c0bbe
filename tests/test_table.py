"""The control-file table walked as data, checked against the real kernel's listings."""

import re
from pathlib import Path

import pytest

from cgroupfs_emu.core import LINUX_6, PROFILES
from cgroupfs_emu.files.table import ALL_FILES, CFlags, files_for

GOLDEN = Path(__file__).resolve().parent / "golden" / "linux-6.18"
PERMS = {"r": 4, "w": 2, "-": 0}


def golden_listing(name: str) -> dict[str, int]:
    """mode per file name from a recorded `ls` transcript (directories left out)."""
    modes = {}
    for line in (GOLDEN / name).read_text().splitlines():
        m = re.match(r"\| -([rwx-]{9}) (\S+)\$$", line)
        if m:
            bits = m.group(1)
            mode = 0
            for i in range(3):
                mode = mode * 8 + sum(PERMS.get(c, 0) for c in bits[i * 3:i * 3 + 3])
            modes[m.group(2)] = mode
    return modes


def listing(profile, root: bool) -> dict[str, int]:
    return {name: cf.mode for name, cf in files_for(profile, root).items()}


@pytest.mark.parametrize("root,transcript", [(False, "01_fresh_group_listing.txt"),
                                             (True, "03_root_listing.txt")])
def test_linux6_file_set_and_modes_equal_the_kernel(root, transcript):
    assert listing(LINUX_6, root) == golden_listing(transcript)


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_row_is_complete_and_names_are_unique(profile):
    for root in (True, False):
        placed = [(n, cf) for n, cf in ALL_FILES if cf.placed_in(root, profile)
                  and (profile.file_set is None or n in profile.file_set)]
        names = [n for n, _ in placed]
        assert len(names) == len(set(names)), "a file appears twice"
        for name, cf in placed:
            # memory.pressure_level before 6.x: an event_control target with no
            # handler at all (mode 0000)
            assert cf.readable or cf.writable or CFlags.EVENT_ONLY in cf.flags, name
            assert cf.read_u64 is None or cf.seq_show is None, name
            assert cf.write_u64 is None or cf.write is None, name
            assert name.startswith(("memory.", "cgroup.", "tasks", "notify_on_release",
                                    "release_agent", "mem_")), name  # mem_: seed 002
        assert len(files_for(profile, root)) == len(placed)


def test_seeds_profile_adds_exactly_the_seed_files():
    seeds, linux6 = listing(PROFILES["seeds"], False), listing(LINUX_6, False)
    assert set(seeds) - set(linux6) == {"memory.kmem.independent_kmem_limit",
                                         "memory.shrink_in_bytes"}
    assert seeds["memory.shrink_in_bytes"] == 0o200
    assert seeds["memory.kmem.independent_kmem_limit"] == 0o644
    assert "memory.shrink_in_bytes" not in listing(PROFILES["seeds"], True)
