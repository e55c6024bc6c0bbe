"""Value parsers of the kernels the seed patches were written against (2007-2012).

Byte for byte what the old handlers did with a written buffer (already cut at its
first NUL, as every C handler sees it); each raises the kernel's errno. The modern
parsers (kernfs era) are in ``parsers``. What each profile uses is in
docs/seed-profiles.md, whose tags ([M5], [S3], ...) the docstrings cite.

* ``mem_limit_2007``      -- seed 002 res_counter_write(): ``simple_strtoul(buf, &end,
  10)``, then ``*end`` must be the terminating NUL. Pages.
* ``res_counter_memparse`` -- res_counter_memparse_write_strategy() of 2.6.26 (no "-1")
  and 2.6.29-3.11 ("-1" = unlimited): memparse with K/M/G only, rounded up to a page
  with PAGE_ALIGN()'s wrap-around. Bytes.
* ``old_u64``             -- cgroup_write_X64() before kernfs: stripped,
  simple_strtoull() base 0, no sign, silent wrap, leftover EINVAL.
* ``tasks_pid_2007``      -- the containers framework's attach_task(): sscanf("%d"),
  EIO when there is no number.
* ``flag_2007``           -- the framework's update_flag(): simple_strtoul(buf, NULL, 10)
  != 0, garbage reads as 0.
"""

from __future__ import annotations

from ..core.errors import Invalid, IOFailure
from .parsers import simple_strtoull, strstrip

U64 = (1 << 64) - 1
PAGE_SIZE = 4096
#: LLONG_MAX: res_counter's RESOURCE_MAX until ≈3.11, what "-1" stores.
RESOURCE_MAX = (1 << 63) - 1
#: cgroup_write_X64()'s on-stack buffer: a write of this many bytes or more is E2BIG.
X64_BUFFER = 64
#: cgroup_write_string()'s default max_write_len (sizeof(local_buffer) - 1): a write of
#: this many bytes or more is E2BIG.
STRING_MAX_WRITE = 63

_OLD_SHIFTS = {ord(c): shift for shift, cs in enumerate(("kK", "mM", "gG"), 1) for c in cs}


def _decimal(s: bytes) -> tuple[int, int]:
    """simple_strtoul(s, &end, 10): digits only (no blanks, no sign), wraps mod 2^64."""
    value, i = 0, 0
    while i < len(s) and 48 <= s[i] <= 57:
        value = (value * 10 + s[i] - 48) & U64
        i += 1
    return value, i


def mem_limit_2007(buf: bytes) -> int:
    """[M5] Seed 002 patch 1, res_counter_write(): the whole buffer is one base-10
    number, so the newline of ``echo 100 >`` is EINVAL; an empty buffer is 0."""
    value, end = _decimal(buf)
    if end != len(buf):
        raise Invalid("mem_limit takes a bare base-10 number (use echo -n)")
    return value


def old_memparse(s: bytes) -> tuple[int, int]:
    """memparse() before ≈3.15: simple_strtoull(base 0), then one of K, M, G."""
    value, end = simple_strtoull(s)
    if end < len(s) and s[end] in _OLD_SHIFTS:
        value = (value << (10 * _OLD_SHIFTS[s[end]])) & U64
        end += 1
    return value, end


def page_align(nbytes: int) -> int:
    """PAGE_ALIGN() on a u64: rounds up, and wraps to 0 within a page of 2^64."""
    return ((nbytes + PAGE_SIZE - 1) & U64) & ~(PAGE_SIZE - 1)


def res_counter_memparse(buf: bytes, minus_one: bool) -> int:
    """[S3] [K6] res_counter_memparse_write_strategy() on an already stripped string:
    bytes, rounded up to a page. With *minus_one* (2.6.29+), a '-' followed by a
    base-10 number equal to 1 (so "-01" too) is RESOURCE_MAX; without it, "-1" is just
    garbage."""
    if minus_one and buf[:1] == b"-":
        value, end = _decimal(buf[1:])
        if value != 1 or end != len(buf) - 1:
            raise Invalid("only -1 may start with a minus")
        return RESOURCE_MAX
    value, end = old_memparse(buf)
    if end != len(buf):
        raise Invalid("not a size")
    return page_align(value)


def old_u64(buf: bytes) -> int:
    """[S9] cgroup_write_X64() (≤3.14): strstrip(), simple_strtoull(…, 0), leftover
    EINVAL. No '+', overflow wraps silently, an empty string is 0. The E2BIG check on
    the raw length (``X64_BUFFER``) belongs to the caller, which sees it before the
    buffer is cut at its NUL."""
    s = strstrip(buf)
    value, end = simple_strtoull(s)
    if end != len(s):
        raise Invalid("not a number")
    return value


def tasks_pid_2007(buf: bytes) -> int:
    """[M12] The containers framework's attach_task(): ``sscanf(buf, "%d", &pid) != 1``
    is EIO. vsscanf() skips leading blanks, takes a '-' (not a '+'), stops at the
    first non-digit (so "12abc" is 12) and keeps the low 32 bits of a long number."""
    s = buf.lstrip(b" \t\n\x0b\x0c\r")
    sign = 1
    if s[:1] == b"-":
        sign = -1
        s = s[1:]
    value, end = _decimal(s)
    if end == 0:
        raise IOFailure("no pid in the written text")
    value = (sign * value) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def flag_2007(buf: bytes) -> bool:
    """[M12] The framework's update_flag(): simple_strtoul(buf, NULL, 10) != 0; it skips
    nothing, so a leading blank or any garbage reads as 0."""
    return _decimal(buf)[0] != 0
