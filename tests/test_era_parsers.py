"""The 2007-2012 value parsers (files/era_parsers.py), table-driven, without a mount.
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


@pytest.mark.parametrize("tag,buf,minus_one,want", [
    ("S3-rounds-up", b"1", False, 4096),
    ("S3-exact-page", b"8192", False, 8192),
    ("S3-k", b"3k", False, 4096),
    ("S3-M", b"1M", False, 1 << 20),
    ("S3-G", b"2G", False, 2 << 30),
    ("S3-T-EINVAL", b"1T", False, "EINVAL"),
    ("S3-hex", b"0x2000", False, 8192),
    ("S3-octal", b"010", False, 4096),
    ("S3-octal-8-EINVAL", b"08", False, "EINVAL"),
    ("S3-empty-0", b"", False, 0),
    ("S3-minus-one-EINVAL-2008", b"-1", False, "EINVAL"),
    ("S3-page-align-wraps", b"18446744073709551615", False, 0),
    ("S3-parse-wraps", b"18446744073709551616", False, 0),
    ("S3-llong-max-rounds-up", b"9223372036854775807", False, 1 << 63),
    ("S3-suffix-overflow-wraps", b"17179869184G", False, 0),
    ("S3-two-suffixes-EINVAL", b"1KK", False, "EINVAL"),
    ("K6-minus-one", b"-1", True, LLONG_MAX),
    ("K6-minus-01", b"-01", True, LLONG_MAX),
    ("K6-minus-0-EINVAL", b"-0", True, "EINVAL"),
    ("K6-minus-2-EINVAL", b"-2", True, "EINVAL"),
    ("K6-minus-1K-EINVAL", b"-1K", True, "EINVAL"),
    ("K6-number", b"5000", True, 8192),
])
def test_res_counter_memparse(tag, buf, minus_one, want):
    assert outcome(ep.res_counter_memparse, buf, minus_one) == want


@pytest.mark.parametrize("tag,buf,want", [
    ("S9-plain", b"5", 5),
    ("S9-stripped", b" 0x10 \n", 16),
    ("S9-empty-0", b"\n", 0),
    ("S9-plus-EINVAL", b"+1", "EINVAL"),
    ("S9-minus-EINVAL", b"-1", "EINVAL"),
    ("S9-two-newlines-ok", b"7\n\n", 7),  # strstrip takes them all, unlike kstrtoull
    ("S9-inner-blank-EINVAL", b"1 2", "EINVAL"),
    ("S9-wraps", b"18446744073709551617", 1),
])
def test_old_u64(tag, buf, want):
    assert outcome(ep.old_u64, buf) == want


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
