"""Units every layer shares: the page, and the kernel's size parser.

The bottom of the import graph: it imports nothing of the package, so the core, the
control files, the protocol, the client and the command lines all read the same
``PAGE_SIZE`` and parse "64M" the same way.

* ``memparse``        -- lib/cmdline.c memparse(): base auto-detection, one k/m/g/t/p/e
  suffix, silent wrap-around mod 2^64 (the control files want exactly that);
* ``memparse_strict`` -- the same grammar for command lines and the client protocol,
  where a size must be the whole, non-empty string and must not wrap.
"""

from __future__ import annotations

PAGE_SIZE = 4096
#: LLONG_MAX, LONG_MAX and S64_MAX on every 64-bit kernel: RESOURCE_MAX (res_counter),
#: the largest page counter in bytes, the largest value kstrtoll() takes
S64_MAX = (1 << 63) - 1
#: Bytes per kB, as /proc/PID/status counts them
KIB = 1024
U64 = (1 << 64) - 1

_ZERO, _NINE, _LOWER_A, _LOWER_F = ord("0"), ord("9"), ord("a"), ord("f")
#: what _digit() returns for a byte that is no digit in any base
_NOT_A_DIGIT = 99
#: OR-ing an ASCII letter with this lowers its case (_tolower() in the kernel)
_CASE_BIT = 0x20


def pages_of(nbytes: int) -> int:
    """Whole pages for an allocation of *nbytes* (rounded up, like a fault)."""
    return -(-nbytes // PAGE_SIZE)


def _digit(c: int) -> int:
    if _ZERO <= c <= _NINE:
        return c - _ZERO
    c |= _CASE_BIT
    if _LOWER_A <= c <= _LOWER_F:
        return c - _LOWER_A + 10
    return _NOT_A_DIGIT


def fixup_radix(s: bytes, base: int) -> tuple[int, int]:
    """_parse_integer_fixup_radix(): returns (base, index of the first digit)."""
    if base == 0:
        if s[:1] == b"0":
            base = 16 if s[1:2] in (b"x", b"X") and len(s) > 2 and _digit(s[2]) < 16 else 8
        else:
            base = 10
    if base == 16 and s[:1] == b"0" and s[1:2] in (b"x", b"X"):
        return base, 2
    return base, 0


def parse_integer(s: bytes, start: int, base: int) -> tuple[int, int, bool]:
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
    base, start = fixup_radix(s, base)
    value, end, _ = parse_integer(s, start, base)
    return value, end


_SHIFTS = {ord(c): shift for shift, cs in enumerate(("kK", "mM", "gG", "tT", "pP", "eE"), 1)
           for c in cs}


#: the suffixes of lib/cmdline.c before T, P and E were added (3.10)
SUFFIXES_KMG = b"kKmMgG"


def memparse(s: bytes, suffixes: bytes | None = None) -> tuple[int, int]:
    """lib/cmdline.c memparse(): number, then at most one binary suffix (of
    *suffixes*, if given: older kernels knew fewer)."""
    value, end = simple_strtoull(s)
    if end < len(s) and s[end] in _SHIFTS and (suffixes is None or s[end] in suffixes):
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
