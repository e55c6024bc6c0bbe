"""Command line and ``-o`` options of the mount helper, as pure functions.

``cgroupfs_emu [-f] [-d] [-o OPT[,OPT...]] [SOURCE] MOUNTPOINT`` -- the FUSE helper
convention, so ``mount -t fuse.cgroupfs_emu SOURCE DIR`` (via mount.fuse3) and fstab
lines work.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable

import attrs

from ..core.catalog import ALIASES, PROFILES, profile_names
from ..core.profiles import DEFAULT_PROFILE
from ..units import memparse_strict
from .common import VERSION

#: Added by mount(8), mount.fuse3 or fstab; they mean nothing to this filesystem.
IGNORED = frozenset({
    "defaults", "nofail", "auto", "noauto", "user", "nouser", "users", "owner", "group",
    "_netdev", "relatime", "norelatime", "strictatime", "nostrictatime", "lazytime",
    "nolazytime", "diratime", "nodiratime", "loud", "silent", "nofail", "iversion",
    "noiversion", "mand", "nomand",
})
#: VFS flags handed on to the kernel mount.
PASSED = frozenset({"rw", "ro", "suid", "nosuid", "dev", "nodev", "exec", "noexec",
                    "sync", "async", "dirsync", "atime", "noatime"})


class UsageError(Exception):
    """A mistake on the command line: one line to stderr, exit status 2."""


class ShowAndExit(Exception):
    """-h or -V: print the text on stdout and exit 0."""


@attrs.define
class MountConfig:
    mountpoint: str
    source: str = "cgroup"
    foreground: bool = False
    debug: bool = False
    profile: str = DEFAULT_PROFILE.name
    allow_other: bool = False
    release_agent: str = ""
    log_file: str | None = None
    fuse_options: set[str] = attrs.field(factory=set)
    #: client socket; None: the default path for this mount (service.socket_path)
    socket: str | None = None
    socket_mode: int = 0o600
    #: bytes of the emulated swap device (0: no swap, as on most container hosts)
    swap: int = 0
    #: False: OOM never signals a process, the charge is refused instead
    oom_kill: bool = True
    #: how often the daemon looks at real processes (exits, closed eventfds, ...)
    poll_ms: int = 500
    #: how process events arrive (auto: the proc connector when root,
    #: else pidfds + /proc scans), the fast sampling period of busy tasks, and
    #: thread-stack charging (None: as the profile says)
    events: str = "auto"
    fast_ms: int = 10
    thread_stacks: bool | None = None
    #: write the daemon's pid here once the mount is live
    pidfile: str | None = None
    #: the -o options as given, for the start log line
    options: list[str] = attrs.field(factory=list)
    #: possible CPUs the mkdir charge counts (None: this machine's)
    ncpus: int | None = None


def _take_kernel(cfg: MountConfig, value: str) -> None:
    if value not in PROFILES and value not in ALIASES:
        raise UsageError(f"unknown kernel profile {value!r} "
                         f"(choose from {', '.join(profile_names())})")
    cfg.profile = ALIASES.get(value, value)


def _take_path(key: str, attr: str):
    def take(cfg: MountConfig, value: str) -> None:
        if not value:
            raise UsageError(f"{key} needs a path: {key}=PATH")
        setattr(cfg, attr, os.path.abspath(value))  # absolute: the detached daemon works from "/"
    return take


def _take_number(key: str, low: int, high: int, what: str):
    def take(cfg: MountConfig, value: str) -> None:
        if not value.isdigit() or not low <= int(value) <= high:
            raise UsageError(f"{key}={value!r}: {what}, {low}..{high}")
        setattr(cfg, key, int(value))
    return take


def _take_socket_mode(cfg: MountConfig, value: str) -> None:
    try:
        cfg.socket_mode = int(value, 8)
    except ValueError:
        raise UsageError(f"socket_mode={value!r} is not an octal mode") from None
    if not 0 <= cfg.socket_mode <= 0o777:
        raise UsageError(f"socket_mode={value!r} is not a permission mode")


def _take_swap(cfg: MountConfig, value: str) -> None:
    try:
        cfg.swap = memparse_strict(value)
    except ValueError:
        raise UsageError(f"swap={value!r} is not a size (e.g. 64M)") from None


def _take_choice(key: str, choices: tuple[str, ...], store):
    def take(cfg: MountConfig, value: str) -> None:
        if value not in choices:
            raise UsageError(f"{key} must be {' or '.join(choices)}, not {value!r}")
        store(cfg, value)
    return take


def _set(attr: str, value):
    return lambda cfg, _: setattr(cfg, attr, value)


@attrs.frozen
class Option:
    """One ``-o`` option of ours: ``NAME=VALUE`` (a *value* metavar) or a bare flag."""

    name: str
    value: str  # the metavar in --help; "" for a flag that takes no value
    help: str
    default: str  # what holds when the option is not given, as --help prints it
    take: Callable[[MountConfig, str], None]


def _default(attr: str) -> str:
    return str(attrs.fields_dict(MountConfig)[attr].default)


#: Every option of ours, in --help order: apply_option() takes only these (and the
#: VFS and ignored names below), and USAGE is printed from this table.
OPTIONS = (
    Option("kernel", "NAME", "kernel generation or seed system to emulate: "
           + ", ".join(n for n in profile_names() if n not in ALIASES)
           + "".join(f"; {a} = {t}" for a, t in ALIASES.items())
           + " (docs/kernel-generations.md, docs/seed-profiles.md)",
           _default("profile"), _take_kernel),
    Option("ncpus", "N", "possible CPUs a new group's per-CPU data is charged for",
           "this machine's", _take_number("ncpus", 1, 8192, "a number of CPUs")),
    Option("allow_other", "", "let other users use the mount (needs user_allow_other)",
           "off", _set("allow_other", True)),
    Option("default_permissions", "", "the kernel checks modes, like kernfs", "always on",
           lambda cfg, _: None),
    Option("release_agent", "PATH", "initial release_agent of the hierarchy", "empty",
           lambda cfg, value: setattr(cfg, "release_agent", value)),
    Option("log", "FILE", "append the daemon's log to FILE",
           "stderr with -f; detached: warnings and errors to syslog, else to "
           "~/.local/state/cgroupfs_emu/daemon.log, docs/logging.md",
           _take_path("log", "log_file")),
    Option("pidfile", "FILE", "write the daemon's pid to FILE once the mount is live",
           "none", _take_path("pidfile", "pidfile")),
    Option("socket", "PATH", "client socket", "see 'cgemu socket --help'",
           _take_path("socket", "socket")),
    Option("socket_mode", "OCTAL", "permissions of the client socket",
           f"{attrs.fields(MountConfig).socket_mode.default:04o}", _take_socket_mode),
    Option("swap", "SIZE", "size of the emulated swap device, e.g. 256M",
           _default("swap"), _take_swap),
    Option("oom_kill", "kill|none", "none: an OOM refuses the charge instead of SIGKILL",
           "kill", _take_choice("oom_kill", ("kill", "none"),
                                lambda cfg, v: setattr(cfg, "oom_kill", v == "kill"))),
    Option("poll_ms", "N", "how often idle real processes are sampled, in ms",
           _default("poll_ms"), _take_number("poll_ms", 10, 60000, "a number of milliseconds")),
    Option("fast_ms", "N", "how often busy real processes are sampled, in ms",
           _default("fast_ms"), _take_number("fast_ms", 1, 1000, "a number of milliseconds")),
    Option("events", "auto|connector|scan", "how forks and exits are learned",
           _default("events"), _take_choice("events", ("auto", "connector", "scan"),
                                            lambda cfg, v: setattr(cfg, "events", v))),
    Option("thread_stacks", "0|1", "charge 16K of kmem per followed task",
           "the profile's", _take_choice("thread_stacks", ("0", "1"),
                                         lambda cfg, v: setattr(cfg, "thread_stacks", v == "1"))),
)
_BY_NAME = {o.name: o for o in OPTIONS}


def apply_option(cfg: MountConfig, opt: str) -> None:
    """Take one ``-o`` option: ours (OPTIONS), a VFS flag for the kernel, or an ignored one."""
    key, eq, value = opt.partition("=")
    row = _BY_NAME.get(key)
    if row is not None:
        if row.value.isupper() and not eq:
            # (a choice's own error lists its values: "oom_kill must be kill or none")
            raise UsageError(f"{key} needs a value: {key}={row.value}")
        if not row.value and eq:
            raise UsageError(f"{key} takes no value")
        row.take(cfg, value)
    elif opt in PASSED:
        cfg.fuse_options.add(opt)
    elif opt in IGNORED or key.startswith("x-") or key in ("comment", "fsname", "subtype"):
        pass
    else:
        raise UsageError(f"unknown mount option {opt!r}")


def parse_args(argv: list[str]) -> MountConfig:
    """Parse ``[-f] [-d] [-o OPTS] [SOURCE] MOUNTPOINT`` (options may come anywhere,
    as mount.fuse3 puts ``-o`` after the positionals)."""
    positional: list[str] = []
    options: list[str] = []
    flags = {"foreground": False, "debug": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-f", "--foreground"):
            flags["foreground"] = True
        elif arg in ("-d", "--debug"):
            flags["debug"] = True
        elif arg == "-o":
            if i + 1 >= len(argv):
                raise UsageError("-o needs an argument")
            options.extend(o for o in argv[i + 1].split(",") if o)
            i += 1
        elif arg.startswith("-o") and len(arg) > 2:
            options.extend(o for o in arg[2:].split(",") if o)
        elif arg in ("-h", "--help"):
            raise ShowAndExit(USAGE)
        elif arg in ("-V", "--version"):
            raise ShowAndExit(f"cgroupfs_emu {VERSION}")
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown flag {arg!r}")
        else:
            positional.append(arg)
        i += 1
    if len(positional) == 1:
        cfg = MountConfig(mountpoint=positional[0])
    elif len(positional) == 2:
        cfg = MountConfig(source=positional[0], mountpoint=positional[1])
    else:
        raise UsageError("expected [SOURCE] MOUNTPOINT")
    cfg.debug = flags["debug"]
    cfg.foreground = flags["foreground"] or cfg.debug
    for opt in options:
        apply_option(cfg, opt)
    cfg.options = options
    return cfg


def _usage() -> str:
    """cgroupfs_emu --help, its option list printed from OPTIONS."""
    lines = []
    for o in OPTIONS:
        spec = f"{o.name}={o.value}" if o.value else o.name
        text = f"{o.help} (default: {o.default})"
        lines.extend(_columns(spec, text))
    lines += _columns(", ".join(sorted(PASSED)), "VFS flags, handed to the kernel")
    lines += _columns(", ".join(sorted(IGNORED)) + ", x-*, comment=, fsname=, subtype=",
                      "accepted and ignored, as mount(8) and fstab add them")
    return _HEAD + "\n".join(lines) + _TAIL


def _columns(spec: str, text: str, width: int = 88) -> list[str]:
    """"  spec   text" with text wrapped at column 23 (a long spec gets a line of its own)."""
    body = textwrap.wrap(text, width - 23, break_on_hyphens=False) or [""]
    if len(spec) > 19:
        spec_lines = textwrap.wrap(spec, width - 2, break_on_hyphens=False)
        return [f"  {s}" for s in spec_lines] + [" " * 23 + b for b in body]
    return [f"  {spec:<20} {body[0]}"] + [" " * 23 + b for b in body[1:]]


_HEAD = """usage: cgroupfs_emu [-f] [-d] [-o OPT[,OPT...]] [SOURCE] MOUNTPOINT
       cgroupfs_emu -h | -V

Mount an emulated cgroup v1 memory hierarchy at MOUNTPOINT. Returns once the mount is
live and keeps serving in the background (-f: stay in the foreground; -d: debug log,
implies -f). Unmount with 'fusermount3 -u MOUNTPOINT' or SIGTERM.

options (-o, comma-separated):
"""
_TAIL = """

example:
  mkdir -p /tmp/cg && cgroupfs_emu -o kernel=linux-6 memory /tmp/cg && ls /tmp/cg"""

USAGE = _usage()
