"""Command line and ``-o`` options of the mount helper, as pure functions.

``cgroupfs_emu [-f] [-d] [-o OPT[,OPT...]] [SOURCE] MOUNTPOINT`` -- the FUSE helper
convention, so ``mount -t fuse.cgroupfs_emu SOURCE DIR`` (via mount.fuse3) and fstab
lines work.
"""

from __future__ import annotations

import os

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
    #: issue 13: how process events arrive (auto: the proc connector when root,
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


def apply_option(cfg: MountConfig, opt: str) -> None:
    """Take one ``-o`` option: ours, a VFS flag for the kernel, or an ignored one."""
    key, eq, value = opt.partition("=")
    if key == "kernel":
        if value not in PROFILES and value not in ALIASES:
            raise UsageError(f"unknown kernel profile {value!r} "
                             f"(choose from {', '.join(profile_names())})")
        cfg.profile = ALIASES.get(value, value)
    elif key == "release_agent" and eq:
        cfg.release_agent = value
    elif key in ("log", "socket", "pidfile"):
        if not value:
            raise UsageError(f"{key} needs a path: {key}=PATH")
        # absolute: the detached daemon works from "/"
        setattr(cfg, {"log": "log_file"}.get(key, key), os.path.abspath(value))
    elif key == "socket_mode" and eq:
        try:
            cfg.socket_mode = int(value, 8)
        except ValueError:
            raise UsageError(f"socket_mode={value!r} is not an octal mode") from None
        if not 0 <= cfg.socket_mode <= 0o777:
            raise UsageError(f"socket_mode={value!r} is not a permission mode")
    elif key == "swap" and eq:
        try:
            cfg.swap = memparse_strict(value)
        except ValueError:
            raise UsageError(f"swap={value!r} is not a size (e.g. 64M)") from None
    elif key == "poll_ms" and eq:
        if not value.isdigit() or not 10 <= int(value) <= 60000:
            raise UsageError(f"poll_ms={value!r}: a number of milliseconds, 10..60000")
        cfg.poll_ms = int(value)
    elif key == "events" and value in ("auto", "connector", "scan"):
        cfg.events = value
    elif key == "fast_ms" and eq:
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            raise UsageError(f"fast_ms={value!r}: a number of milliseconds, 1..1000")
        cfg.fast_ms = int(value)
    elif key == "thread_stacks" and value in ("0", "1"):
        cfg.thread_stacks = value == "1"
    elif key == "ncpus" and eq:
        if not value.isdigit() or not 1 <= int(value) <= 8192:
            raise UsageError(f"ncpus={value!r}: a number of CPUs, 1..8192")
        cfg.ncpus = int(value)
    elif key == "oom_kill":
        if value not in ("kill", "none"):
            raise UsageError(f"oom_kill must be kill or none, not {value!r}")
        cfg.oom_kill = value == "kill"
    elif key in ("release_agent", "swap", "poll_ms", "socket_mode"):
        raise UsageError(f"{key} needs a value: {key}=...")
    elif key == "allow_other" and eq:
        raise UsageError("allow_other takes no value")
    elif opt == "allow_other":
        cfg.allow_other = True
    elif opt == "default_permissions":
        pass  # always on: the kernel checks modes, like kernfs
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


USAGE = """usage: cgroupfs_emu [-f] [-d] [-o OPT[,OPT...]] [SOURCE] MOUNTPOINT
       cgroupfs_emu -h | -V

Mount an emulated cgroup v1 memory hierarchy at MOUNTPOINT. Returns once the mount is
live and keeps serving in the background (-f: stay in the foreground; -d: debug log,
implies -f). Unmount with 'fusermount3 -u MOUNTPOINT' or SIGTERM.

options:
  kernel=NAME          kernel generation to emulate: seeds (default), linux-3.10,
                       linux-4.19, linux-5.10, linux-6.18 (linux-6 = linux-6.18);
                       a seed system: memctl-2007, shrink-2008, kmem-2011,
                       kmem-slab-2012, kmem-2012 (docs/seed-profiles.md)
  ncpus=N              possible CPUs a new group's per-CPU data is charged for
                       (default: this machine's)
  allow_other          let other users use the mount (needs user_allow_other)
  release_agent=PATH   initial release_agent of the hierarchy
  log=FILE             append the daemon's log to FILE (default when detached:
                       warnings and errors to syslog, else to
                       ~/.local/state/cgroupfs_emu/daemon.log, docs/logging.md)
  pidfile=FILE         write the daemon's pid to FILE once the mount is live
  socket=PATH          client socket (default: see 'cgemu socket --help' / README)
  socket_mode=OCTAL    permissions of the client socket (default 0600)
  swap=SIZE            size of the emulated swap device, e.g. 256M (default 0)
  oom_kill=kill|none   none: an OOM refuses the charge instead of sending SIGKILL
  poll_ms=N            how often idle real processes are sampled (default 500)
  fast_ms=N            how often busy real processes are sampled (default 10)
  events=auto|connector|scan  how forks and exits are learned (default auto)
  thread_stacks=0|1    charge 16K of kmem per followed task (default: the profile's)
  rw,ro,nosuid,...     VFS flags, handed to the kernel
  defaults,nofail,...  accepted and ignored, as mount(8) adds them

example:
  mkdir -p /tmp/cg && cgroupfs_emu -o kernel=linux-6 memory /tmp/cg && ls /tmp/cg"""
