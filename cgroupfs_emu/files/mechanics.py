"""How one write(2) reaches a control-file handler, per filesystem generation.

Two generations of the cgroup file plumbing, both data here so a profile picks one:

* ``KERNFS`` (3.14+; kernfs_fop_write_iter() of 6.18): a write above PAGE_SIZE is
  E2BIG (``atomic_write_len``); u64 files are parsed with ``kstrtoull(buf, 0)`` on the
  raw buffer (one trailing newline, ERANGE on overflow); other handlers get the
  NUL-terminated buffer and strip it themselves.
* ``CGROUPFS`` (3.10 and every earlier cgroup filesystem: kernel/cgroup.c
  ``cgroup_file_write()``): a u64 write is copied into a 64-byte buffer (nothing
  written is EINVAL, 64 bytes or more E2BIG), ``strstrip()``ped and parsed by
  ``simple_strtoull(base 0)``, which takes no sign and wraps silently; anything left is
  EINVAL and an empty string is 0. A ``write_string`` handler gets at most
  ``max_write_len - 1`` bytes (62 unless the file says otherwise; 63 or more is E2BIG),
  stripped. A ``trigger`` handler ignores the content and any size.

Which kind of handler a file has is the row's business (the table); the numbers and
parsers are here. Not emulated: a 0-byte write(2) never reaches a FUSE server, so the
CGROUPFS "nothing written" EINVAL cannot be seen.
"""

from __future__ import annotations

import enum

import attrs

from ..core.errors import Invalid, TooBig
from ..units import PAGE_SIZE, S64_MAX as LLONG_MAX, SUFFIXES_KMG, memparse, simple_strtoull
from . import parsers

_U64 = (1 << 64) - 1
#: kernel/cgroup.c CGROUP_LOCAL_BUFFER_SIZE
CGROUP_LOCAL_BUFFER_SIZE = 64


class HandlerKind(enum.Enum):
    """The kernel's handler types, as far as writing is concerned."""

    U64 = "u64"  # write_u64 / write_s64
    STRING = "string"  # write_string (3.x) / write (kernfs)
    TRIGGER = "trigger"  # trigger (3.x) / write that ignores its buffer (kernfs)
    #: the 2007 containers framework's raw ``write``: the handler copies the whole
    #: buffer itself (seed 002's res_counter_write(), the framework's attach_task())
    RAW = "raw"


def simple_u64_stripped(buf: bytes) -> int:
    """cgroup_write_X64(): ``simple_strtoull(strstrip(buffer), &end, 0)``, EINVAL
    unless the whole stripped string was consumed. No sign, silent wrap-around, and an
    empty string is 0 (``echo > f`` writes "\\n", which strips to nothing)."""
    s = parsers.strstrip(buf)
    value, end = simple_strtoull(s, 0)
    if end != len(s):
        raise Invalid("not a number")
    return value & _U64


def u64_pid(value: int) -> int:
    """3.x tasks / cgroup.procs are write_u64 files: attach_task_by_pid(cgrp, u64 pid)
    looks the value up as a pid_t, so it is cut to 32 signed bits; what is left
    negative finds no task (ESRCH)."""
    pid = value & 0xFFFFFFFF
    return pid - (1 << 32) if pid >= 1 << 31 else pid


def res_counter_memparse(buf: bytes, suffixes: bytes | None = SUFFIXES_KMG) -> int:
    """res_counter_memparse_write_strategy() (kernel/res_counter.c, 3.x), on an already
    stripped buffer; returns **bytes**.

    A leading '-' must be followed by the decimal number 1 and nothing else (so "-1"
    and "-01" are unlimited, RESOURCE_MAX = LLONG_MAX). Otherwise memparse(), nothing
    may be left, and the result is rounded **up** to a page; a value whose rounding
    overflows 64 bits becomes unlimited. *suffixes*: the letters memparse() knew; 3.10's
    lib/cmdline.c stops at G (T, P and E came later).
    """
    s = buf
    if s[:1] == b"-":
        value, end = simple_strtoull(s[1:], 10)
        if value != 1 or end != len(s) - 1:
            raise Invalid("only -1 may be negative")
        return LLONG_MAX
    value, end = memparse(s, suffixes)
    if end != len(s):
        raise Invalid("not a size")
    aligned = (value + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if aligned > _U64:
        return LLONG_MAX
    return aligned



@attrs.frozen
class Mechanics:
    name: str
    #: largest u64 write(2); more is E2BIG
    u64_max: int
    #: largest write(2) to a string handler with the given max_write_len (0: default)
    string_max: object
    #: largest write(2) to a trigger; None = any size
    trigger_max: int | None
    #: parser of u64 files (gets the buffer cut at its first NUL)
    parse_u64: object
    #: string handlers receive the buffer already strstrip()ped
    strips_strings: bool
    #: parser of tasks / cgroup.procs writes: a pid (0 = the writer)
    parse_pid: object

    def check_size(self, kind: HandlerKind, nbytes: int, max_write_len: int = 0) -> None:
        """E2BIG before any parsing: the kernel checks the size first."""
        if kind is HandlerKind.U64:
            limit = self.u64_max
        elif kind is HandlerKind.STRING:
            limit = self.string_max(max_write_len)
        else:  # a trigger or a raw handler takes whatever the filesystem passes on
            limit = self.trigger_max
        if limit is not None and nbytes > limit:
            raise TooBig("write too large for this file")


KERNFS = Mechanics(
    name="kernfs",
    u64_max=PAGE_SIZE,
    # cgroup_init_cftypes(): atomic_write_len = max_write_len, PAGE_SIZE by default
    string_max=lambda max_write_len: max_write_len or PAGE_SIZE,
    trigger_max=PAGE_SIZE,
    parse_u64=parsers.kstrtoull,
    strips_strings=False,
    # cgroup_procs_write_start(): kstrtoint(strstrip(buf)), negative EINVAL
    parse_pid=parsers.parse_pid,
)

CGROUPFS = Mechanics(
    name="cgroupfs",
    # cgroup_write_X64(): "if (nbytes >= sizeof(buffer)) return -E2BIG"
    u64_max=CGROUP_LOCAL_BUFFER_SIZE - 1,
    # cgroup_write_string(): max_bytes = max_write_len ?: sizeof(local_buffer) - 1,
    # "if (nbytes >= max_bytes) return -E2BIG"
    string_max=lambda max_write_len: (max_write_len or CGROUP_LOCAL_BUFFER_SIZE - 1) - 1,
    trigger_max=None,
    parse_u64=simple_u64_stripped,
    strips_strings=True,
    parse_pid=lambda buf: u64_pid(simple_u64_stripped(buf)),
)

MECHANICS = {m.name: m for m in (KERNFS, CGROUPFS)}


def of(profile) -> Mechanics:
    """The mechanics a profile names (core/profiles.py WriteMechanics)."""
    return MECHANICS[profile.mechanics.value]

__all__ = ["HandlerKind", "Mechanics", "KERNFS", "CGROUPFS", "MECHANICS", "of",
           "simple_u64_stripped", "res_counter_memparse", "u64_pid", "LLONG_MAX"]
