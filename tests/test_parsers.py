"""The value parsers, table-driven from spec section 1.3 and the golden transcripts."""

import errno

import pytest

from cgroupfs_emu.core.errors import CgroupError
from cgroupfs_emu.files import parsers

MAX = 9223372036854771712
P = 4096


def outcome(fn, buf):
    try:
        return fn(buf)
    except CgroupError as e:
        return errno.errorcode[e.errno]


LIMIT_CASES = [
    # (written bytes, limit in bytes or errno name) -- the kernfs write rules (docs/kernel-generations.md, section 2) and G:10-18
    (b"4096\n", 4096), (b"0\n", 0), (b"1073741824\n", 1073741824),
    (b"4k\n", 4096), (b"4M\n", 4 << 20), (b"1g\n", 1 << 30), (b"1T\n", 1 << 40),
    (b"1p\n", 1 << 50), (b"1E\n", 1 << 60), (b"7E\n", 7 << 60), (b"8E\n", MAX),
    (b"16E\n", 0), (b"17E\n", 1 << 60), (b"18446744073709551616\n", 0),
    (b"99999999999999999999\n", 7766279631452237824 // P * P),
    (b"-1\n", MAX), (b" -1 ", MAX), (b"-1", MAX),
    (b"-2\n", "EINVAL"), (b"-0\n", "EINVAL"), (b"-1K\n", "EINVAL"), (b"--1\n", "EINVAL"),
    (b"-1.0\n", "EINVAL"), (b"-01\n", "EINVAL"), (b"- 1\n", "EINVAL"),
    (b"\n", 0), (b"   ", 0), (b"", 0),
    (b"abc\n", "EINVAL"), (b"12abc\n", "EINVAL"), (b"1.5M\n", "EINVAL"), (b"4KB\n", "EINVAL"),
    (b"4 K\n", "EINVAL"), (b"+4096\n", "EINVAL"), (b"4096b\n", "EINVAL"), (b"0x\n", "EINVAL"),
    (b"1k1\n", "EINVAL"), (b"KK\n", "EINVAL"), (b"1KiB\n", "EINVAL"), (b"K\n", 0), (b"g\n", 0),
    (b"0x1000\n", 4096), (b"010\n", 0), (b"020000\n", 8192), (b"08\n", "EINVAL"),
    (b"1\n", 0), (b"4095\n", 0), (b"4097\n", 4096), (b"8191\n", 4096),
    (b"1000000\n", 999424), (b"123456789\n", 123453440), (b"1073741823\n", 1073737728),
    (b"4096\n8192\n", "EINVAL"), (b"\t4096\r\n", 4096),
]


@pytest.mark.parametrize("buf,expected", LIMIT_CASES)
def test_parse_limit(buf, expected):
    got = outcome(parsers.parse_limit, buf)
    assert (got * P if isinstance(got, int) else got) == expected


U64_CASES = [
    (b"0\n", 0), (b"100\n", 100), (b"0x10\n", 16), (b"010\n", 8), (b"+5\n", 5), (b"50", 50),
    (b"-1\n", "EINVAL"), (b"abc\n", "EINVAL"), (b"\n", "EINVAL"), (b"", "EINVAL"),
    (b" 50", "EINVAL"), (b"50 ", "EINVAL"), (b"50\n\n", "EINVAL"), (b"0x\n", "EINVAL"),
    (b"99999999999999999999\n", "ERANGE"), (b"18446744073709551616\n", "ERANGE"),
    (b"18446744073709551615\n", 18446744073709551615), (b"0x1\n", 1), (b"01\n", 1),
]


@pytest.mark.parametrize("buf,expected", U64_CASES)
def test_kstrtoull(buf, expected):
    assert outcome(parsers.kstrtoull, buf) == expected


PID_CASES = [
    (b"999999999", 999999999), (b"999999999\n", 999999999), (b" 999999999 ", 999999999),
    (b"0x3B9AC9FF\n", 999999999), (b"0\n", 0), (b"-0\n", 0),
    (b"abc\n", "EINVAL"), (b"-5\n", "EINVAL"), (b"\n", "EINVAL"), (b"99999999999\n", "EINVAL"),
    (b"2147483648\n", "EINVAL"), (b"2147483647\n", 2147483647), (b"999999999 1", "EINVAL"),
]


@pytest.mark.parametrize("buf,expected", PID_CASES)
def test_parse_pid(buf, expected):
    assert outcome(parsers.parse_pid, buf) == expected


def test_c_string_stops_at_nul():
    assert parsers.c_string(b"1234\0junk") == b"1234"
    assert parsers.c_string(b"\0\0\0") == b""
