"""The kernel's value parsers, byte for byte (docs/kernel-generations.md, sections 1 and 2).

Each takes the bytes of one write(2), already cut at the first NUL (handlers parse a C
string), and returns a number or raises the kernel's errno.

The integer scanners and ``memparse`` live in ``units`` (the command line and the
client protocol parse sizes with them too).

* ``parse_limit``  -- page_counter_memparse(strstrip(buf), "-1"): memparse with base
  auto-detection and one k/m/g/t/p/e suffix, silent wrap-around mod 2^64, "-1" = MAX,
  empty = 0, bytes rounded down to pages and clamped to MAX.
* ``kstrtoull``    -- the u64 files: optional '+', base prefixes, one trailing newline.
* ``parse_pid``    -- kstrtoint(strstrip(buf), 0) for tasks / cgroup.procs.
"""

from __future__ import annotations

from ..core.errors import Invalid, OutOfRange
from ..core.page_counter import PAGE_COUNTER_MAX
from ..units import PAGE_SIZE, S64_MAX, fixup_radix, memparse, parse_integer, simple_strtoull

__all__ = ["c_string", "strstrip", "simple_strtoull", "memparse", "parse_limit",
           "parse_size_no_unlimited", "kstrtoull", "kstrtoll", "kstrtoint", "parse_pid"]

#: LLONG_MAX + 1: the first value kstrtoll() refuses (ERANGE)
_S64_LIMIT = S64_MAX + 1
#: INT_MIN .. INT_MAX for kstrtoint()
_INT_MIN, _INT_LIMIT = -(1 << 31), 1 << 31
#: The kernel's isspace(): \t \n \v \f \r, space, and Latin-1 NBSP (0xa0).
_SPACE = b"\t\n\x0b\x0c\r \xa0"


def c_string(buf: bytes) -> bytes:
    """kernfs NUL-terminates the written bytes; handlers stop at the first NUL."""
    nul = buf.find(b"\0")
    return buf if nul < 0 else buf[:nul]


def strstrip(buf: bytes) -> bytes:
    return buf.strip(_SPACE)


def parse_limit(buf: bytes, suffixes: bytes | None = None) -> int:
    """page_counter_memparse(strstrip(buf), "-1"): a limit in pages (*suffixes*: the
    memparse() suffixes the kernel knew, None for all)."""
    s = strstrip(buf)
    if s == b"-1":
        return PAGE_COUNTER_MAX
    value, end = memparse(s, suffixes)
    if end != len(s):
        raise Invalid("not a size")
    return min(value // PAGE_SIZE, PAGE_COUNTER_MAX)


def parse_size_no_unlimited(buf: bytes) -> int:
    """Seed 004's shrink_in_bytes: the size parser without the "-1" shorthand."""
    s = strstrip(buf)
    if s == b"-1":
        raise Invalid("-1 is not a size here")
    return parse_limit(s)


def _kstrtoull_raw(s: bytes, base: int = 0) -> int:
    base, start = fixup_radix(s, base)
    value, end, overflow = parse_integer(s, start, base)
    if overflow:
        raise OutOfRange("value does not fit in 64 bits")
    if end == start:
        raise Invalid("not a number")
    if s[end:end + 1] == b"\n":
        end += 1
    if end != len(s):
        raise Invalid("trailing characters")
    return value


def kstrtoull(buf: bytes, base: int = 0) -> int:
    """lib/kstrtox.c kstrtoull(): no blanks, one trailing newline, ERANGE on overflow."""
    if buf[:1] == b"+":
        buf = buf[1:]
    return _kstrtoull_raw(buf, base)


def kstrtoll(buf: bytes, base: int = 0) -> int:
    if buf[:1] == b"-":
        value = _kstrtoull_raw(buf[1:], base)
        if value > _S64_LIMIT:
            raise OutOfRange("value does not fit in 64 bits")
        return -value
    value = kstrtoull(buf, base)
    if value >= _S64_LIMIT:
        raise OutOfRange("value does not fit in 64 bits")
    return value


def kstrtoint(buf: bytes, base: int = 0) -> int:
    value = kstrtoll(buf, base)
    if not _INT_MIN <= value < _INT_LIMIT:
        raise OutOfRange("value does not fit in an int")
    return value


def parse_pid(buf: bytes) -> int:
    """cgroup_procs_write_start(): any parse error or a negative number is EINVAL."""
    try:
        pid = kstrtoint(strstrip(buf), 0)
    except (Invalid, OutOfRange):
        raise Invalid("not a pid") from None
    if pid < 0:
        raise Invalid("negative pid")
    return pid
