"""Value parsers of the 2007 containers framework and seed 002 (the cgroupfs-era
parsers of 2008-3.14 are in ``mechanics``, the kernfs ones in ``parsers``).

Byte for byte what the old handlers did with a written buffer (already cut at its
first NUL, as every C handler sees it); each raises the kernel's errno. The tags
([M5], [M12]) are docs/seed-profiles.md's.

* ``mem_limit_2007``      -- seed 002 res_counter_write(): ``simple_strtoul(buf, &end,
  10)``, then ``*end`` must be the terminating NUL. Pages.
* ``tasks_pid_2007``      -- the containers framework's attach_task(): sscanf("%d"),
  EIO when there is no number.
* ``flag_2007``           -- the framework's update_flag(): simple_strtoul(buf, NULL, 10)
  != 0, garbage reads as 0.
"""

from __future__ import annotations

from ..core.errors import Invalid, IOFailure

U64 = (1 << 64) - 1


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
