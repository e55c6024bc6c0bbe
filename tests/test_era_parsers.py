"""The 2007 value parsers (files/era_parsers.py), table-driven, without a mount.
Each row names the rule of docs/seed-profiles.md it checks."""

from __future__ import annotations

import errno

import pytest

from cgroupfs_emu.core.errors import CgroupError
from cgroupfs_emu.files import era_parsers as ep

LLONG_MAX = (1 << 63) - 1


def outcome(fn, *args):
    try:
        return fn(*args)
    except CgroupError as e:
        return errno.errorcode[e.errno]


@pytest.mark.parametrize("tag,buf,want", [
    ("M5-bare-number", b"100", 100),
    ("M5-newline-EINVAL", b"100\n", "EINVAL"),
    ("M5-leading-blank-EINVAL", b" 100", "EINVAL"),
    ("M5-minus-EINVAL", b"-1", "EINVAL"),
    ("M5-plus-EINVAL", b"+5", "EINVAL"),
    ("M5-suffix-EINVAL", b"1K", "EINVAL"),
    ("M5-hex-EINVAL", b"0x10", "EINVAL"),
    ("M5-leading-zero-is-decimal", b"010", 10),
    ("M5-empty-is-0", b"", 0),
    ("M5-wraps", b"18446744073709551617", 1),
    ("M5-max-u64", b"18446744073709551615", (1 << 64) - 1),
])
def test_mem_limit_2007(tag, buf, want):
    assert outcome(ep.mem_limit_2007, buf) == want


@pytest.mark.parametrize("tag,buf,want", [
    ("M12-pid", b"1234", 1234),
    ("M12-leading-blanks", b"  77\n", 77),
    ("M12-trailing-garbage-ignored", b"12abc", 12),
    ("M12-negative", b"-5", -5),
    ("M12-plus-EIO", b"+5", "EIO"),
    ("M12-not-a-number-EIO", b"abc", "EIO"),
    ("M12-empty-EIO", b"", "EIO"),
    ("M12-low-32-bits", b"4294967297", 1),
])
def test_tasks_pid_2007(tag, buf, want):
    assert outcome(ep.tasks_pid_2007, buf) == want


@pytest.mark.parametrize("tag,buf,want", [
    ("M12-one", b"1", True),
    ("M12-seven", b"7\n", True),
    ("M12-zero", b"0", False),
    ("M12-garbage-is-0", b"abc", False),
    ("M12-blank-first-is-0", b" 1", False),
])
def test_flag_2007(tag, buf, want):
    assert ep.flag_2007(buf) is want
