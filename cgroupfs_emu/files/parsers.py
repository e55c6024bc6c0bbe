"""The kernel's value parsers, byte for byte (spec 1.3).

Each takes the bytes of one write(2), already cut at the first NUL (handlers parse a C
string), and returns a number or raises the kernel's errno.

* ``parse_limit``  -- page_counter_memparse(strstrip(buf), "-1"): memparse with base
  auto-detection and one k/m/g/t/p/e suffix, silent wrap-around mod 2^64, "-1" = MAX,
  empty = 0, bytes rounded down to pages and clamped to MAX.
* ``kstrtoull``    -- the u64 files: optional '+', base prefixes, one trailing newline.
* ``parse_pid``    -- kstrtoint(strstrip(buf), 0) for tasks / cgroup.procs.
"""

from __future__ import annotations

from ..core.errors import Invalid, OutOfRange
from ..core.page_counter import PAGE_COUNTER_MAX, PAGE_SIZE

U64 = (1 << 64) - 1
#: The kernel's isspace(): \t \n \v \f \r, space, and Latin-1 NBSP (0xa0).
_SPACE = b"\t\n\x0b\x0c\r \xa0"


def c_string(buf: bytes) -> bytes:
    """kernfs NUL-terminates the written bytes; handlers stop at the first NUL."""
    nul = buf.find(b"\0")
    return buf if nul < 0 else buf[:nul]


def strstrip(buf: bytes) -> bytes:
    return buf.strip(_SPACE)


def _digit(c: int) -> int:
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return 99


def _fixup_radix(s: bytes, base: int) -> tuple[int, int]:
    """_parse_integer_fixup_radix(): returns (base, index of the first digit)."""
    if base == 0:
        if s[:1] == b"0":
            base = 16 if s[1:2] in (b"x", b"X") and len(s) > 2 and _digit(s[2]) < 16 else 8
        else:
            base = 10
    if base == 16 and s[:1] == b"0" and s[1:2] in (b"x", b"X"):
        return base, 2
    return base, 0


def _parse_integer(s: bytes, start: int, base: int) -> tuple[int, int, bool]:
    """_parse_integer(): (value mod 2^64, index after the digits, overflowed)."""
    res = 0
    overflow = False
    i = start
    while i < len(s):
        val = _digit(s[i])
        if val >= base:
            break
        res = res * base + val
        if res > U64:
            overflow = True
            res &= U64
        i += 1
    return res, i, overflow


def simple_strtoull(s: bytes, base: int = 0) -> tuple[int, int]:
    """(value, end index); no sign, overflow wraps silently."""
    base, start = _fixup_radix(s, base)
    value, end, _ = _parse_integer(s, start, base)
    return value, end


_SHIFTS = {ord(c): shift for shift, cs in enumerate(("kK", "mM", "gG", "tT", "pP", "eE"), 1)
           for c in cs}


def memparse(s: bytes) -> tuple[int, int]:
    """lib/cmdline.c memparse(): number, then at most one binary suffix."""
    value, end = simple_strtoull(s)
    if end < len(s) and s[end] in _SHIFTS:
        value = (value << (10 * _SHIFTS[s[end]])) & U64
        end += 1
    return value, end


def memparse_strict(text: str) -> int:
    """A byte size for command lines and the client protocol: memparse() that must
    consume the whole, non-empty, plain-digit string ("64M", "4096", "0x1000").
    ValueError otherwise."""
    s = text.encode()
    if not s or not s[:1].isdigit():
        raise ValueError(f"not a size: {text!r}")
    value, end = memparse(s)
    if end != len(s):
        raise ValueError(f"not a size: {text!r}")
    # memparse() wraps silently at 2^64; a command line must not
    digits = s[:-1] if s[-1] in _SHIFTS else s
    base = 16 if digits[:2].lower() == b"0x" else 8 if digits[:1] == b"0" and len(digits) > 1 else 10
    unwrapped = int(digits[2:] if base == 16 else digits, base) << (
        10 * _SHIFTS[s[-1]] if s[-1] in _SHIFTS else 0)
    if unwrapped != value:
        raise ValueError(f"size out of range: {text!r}")
    return value


def parse_limit(buf: bytes) -> int:
    """page_counter_memparse(strstrip(buf), "-1"): a limit in pages."""
    s = strstrip(buf)
    if s == b"-1":
        return PAGE_COUNTER_MAX
    value, end = memparse(s)
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
    base, start = _fixup_radix(s, base)
    value, end, overflow = _parse_integer(s, start, base)
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
        if value > 1 << 63:
            raise OutOfRange("value does not fit in 64 bits")
        return -value
    value = kstrtoull(buf, base)
    if value >= 1 << 63:
        raise OutOfRange("value does not fit in 64 bits")
    return value


def kstrtoint(buf: bytes, base: int = 0) -> int:
    value = kstrtoll(buf, base)
    if not -(1 << 31) <= value < 1 << 31:
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
