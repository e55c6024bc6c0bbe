"""Write mechanics of the two cgroup filesystem generations, without a mount
(cgroupfs_emu.files.mechanics; kernel/cgroup.c cgroup_write_X64(),
cgroup_write_string() and kernel/res_counter.c res_counter_memparse_write_strategy()
of 3.10)."""

from __future__ import annotations

import pytest

from cgroupfs_emu.core.errors import Invalid, OutOfRange, TooBig
from cgroupfs_emu.files.mechanics import (
    CGROUPFS, KERNFS, LLONG_MAX, HandlerKind, res_counter_memparse, simple_u64_stripped,
)


@pytest.mark.parametrize("buf, value", [
    (b"5", 5), (b" 5 \n", 5), (b"\t0x10\n", 16), (b"010", 8), (b"", 0), (b"\n", 0),
    (b"18446744073709551616", 0),  # wraps, no ERANGE
])
def test_cgroupfs_u64_accepts(buf, value):
    assert simple_u64_stripped(buf) == value


@pytest.mark.parametrize("buf", [b"+5", b"-1", b"5 5", b"abc", b"08", b"5\n\n x"])
def test_cgroupfs_u64_refuses(buf):
    with pytest.raises(Invalid):
        simple_u64_stripped(buf)


def test_kernfs_u64_is_kstrtoull():
    assert KERNFS.parse_u64(b"+5") == 5
    with pytest.raises(Invalid):
        KERNFS.parse_u64(b" 5")
    with pytest.raises(OutOfRange):
        KERNFS.parse_u64(b"18446744073709551616")


@pytest.mark.parametrize("buf, nbytes", [
    (b"1", 4096), (b"4096", 4096), (b"4097", 8192), (b"0", 0), (b"1k", 4096), (b"8k", 8192),
    (b"1G", 1 << 30), (b"-1", LLONG_MAX), (b"-01", LLONG_MAX),
    (b"9223372036854775807", 1 << 63),  # aligned up past LLONG_MAX
    (b"18446744073709551615", LLONG_MAX),  # the alignment overflows: unlimited
    (b"", 0),
])
def test_res_counter_memparse(buf, nbytes):
    assert res_counter_memparse(buf) == nbytes


@pytest.mark.parametrize("buf", [b"-2", b"-1K", b"-", b"1.5M", b"1T", b"1KB", b"abc"])
def test_res_counter_memparse_refuses(buf):
    with pytest.raises(Invalid):
        res_counter_memparse(buf)


def test_res_counter_memparse_with_later_suffixes():
    assert res_counter_memparse(b"1T", suffixes=None) == 1 << 40


@pytest.mark.parametrize("kind, ok, too_big", [
    (HandlerKind.U64, 63, 64),
    (HandlerKind.STRING, 62, 63),
])
def test_cgroupfs_sizes(kind, ok, too_big):
    CGROUPFS.check_size(kind, ok)
    with pytest.raises(TooBig):
        CGROUPFS.check_size(kind, too_big)


def test_cgroupfs_release_agent_size_and_triggers():
    CGROUPFS.check_size(HandlerKind.STRING, 4095, max_write_len=4096)
    with pytest.raises(TooBig):
        CGROUPFS.check_size(HandlerKind.STRING, 4096, max_write_len=4096)
    CGROUPFS.check_size(HandlerKind.TRIGGER, 1 << 20)


@pytest.mark.parametrize("kind", list(HandlerKind))
def test_kernfs_sizes(kind):
    KERNFS.check_size(kind, 4096)
    with pytest.raises(TooBig):
        KERNFS.check_size(kind, 4097)
