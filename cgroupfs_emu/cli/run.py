"""``cgemu run`` / ``cgemu shell`` / ``cgemu exec --system``: a command that sees the
emulator as its system's cgroup v1 memory hierarchy.

The command runs in a private mount namespace (root: unshare(CLONE_NEWNS); other
users: a user namespace mapping only themselves). There every cgroup and cgroup2 mount
is detached, a tmpfs is mounted at /sys/fs/cgroup (or --at DIR) as a v1 host lays it
out (mode 0755, nosuid, nodev, noexec, read-only once populated) and the emulator is
bind-mounted at its ``memory`` directory. The command is forked; it joins its group by
writing "0" to the group's cgroup.procs and execs, like ``cgexec``. cgemu stays behind
as its subreaper: it forwards termination signals, passes its exit status through and,
when it exits, kills whatever it left in the namespace, so the namespace and its
mounts end with the command. The host's namespace is never touched: the new
namespace's mounts are made private before anything is mounted.

What the kernel itself prints in /proc still describes the host, so the command is
shown the view (cli/view.py): a seccomp filter whose notifications cgemu answers for
every program, static or not (open of /proc/self/{mounts,mountinfo,cgroup} and
/proc/cgroups as a v1 host would print them, statfs of the emulator as a cgroup v1
mount), else, with one line saying why, the preload library through LD_PRELOAD for
dynamically linked programs (cgroupfs_emu/preload/cgview.c: one renderer serves both).
``CGROUPFS_EMU_VIEW`` is the view's memory mount (a program can tell it is in the view
by it); ``CGROUPFS_EMU_MOUNT`` and ``CGROUPFS_EMU_SOCKET`` are set as well so that cgemu
inside the view finds the emulator.

Not emulated: without the seccomp view, statically linked or set-ID commands see the
kernel's /proc files; a non-root user inside the view stays themselves (only their own
uid and gid are mapped), and where the kernel refuses unprivileged user namespaces the
command is not run at all.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import signal
import sys
import time
from collections.abc import Callable

from ..client import find_socket
from ..preload import VIEW_ENV, library_path
from . import view
from .common import group_dir, join_group
from .leftovers import kill_chosen, mount_namespace_of

DEFAULT_AT = "/sys/fs/cgroup"

RUN_HELP = """\
Run CMD in a private view of the system where the emulator is the cgroup v1 memory
hierarchy: /sys/fs/cgroup is a tmpfs with the emulator at /sys/fs/cgroup/memory, the
host's cgroup mounts are hidden, and /proc/mounts, /proc/self/mountinfo,
/proc/self/cgroup, /proc/cgroups and statfs(2) say so, for static programs (Go) too. CMD joins GROUP
(default: the root) before it starts. The host's mounts never change; the view ends
with CMD. Exit status: CMD's; 1 when the view cannot be set up; 127 CMD not found.

examples:
  cgemu run -g jobs/a -- java -XshowSettings:system -version
  cgemu run -g jobs/a -- cgget -g memory /jobs/a
  cgemu run --at /cgroup -- sh -c 'cat /cgroup/memory/memory.limit_in_bytes'
  cgemu shell -g jobs/a"""


class SetupError(Exception):
    """The view cannot be built; one line for the user."""


def register(sub, find_mount: Callable[[], str]) -> None:
    """Add `run` and `shell` to cgemu's subparsers. *find_mount* is cgemu's finder of
    the default mount (called without arguments, only when -m is not given)."""
    r = sub.add_parser("run", help="run a command that sees the emulator as /sys/fs/cgroup/memory",
                       description=RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(r)
    r.set_defaults(func=lambda args: cmd_run(args, find_mount))
    s = sub.add_parser("shell", help="cgemu run $SHELL",
                       description="The same as `cgemu run -- $SHELL`.")
    add_arguments(s, command=False)
    s.set_defaults(func=lambda args: cmd_shell(args, find_mount))


def add_system_arguments(p: argparse.ArgumentParser) -> None:
    """`cgemu exec --system [--at DIR]`: exec's parser gains run's view."""
    p.add_argument("--system", action="store_true",
                   help="run CMD in the view of `cgemu run` (emulator at /sys/fs/cgroup/memory)")
    p.add_argument("--at", default=DEFAULT_AT, metavar="DIR", help="with --system: as for run")
    add_preload_only(p)


def add_preload_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preload-only", action="store_true",
                   help="no seccomp view: only dynamically linked programs see the emulated "
                        "/proc files (for programs that install their own seccomp listener)")


def add_arguments(p: argparse.ArgumentParser, *, command: bool = True) -> None:
    p.add_argument("-m", "--mount", help="mount point (default: the cgroupfs_emu mount)")
    p.add_argument("-g", "--group", default="/",
                   help="group to join, below the mount (default: the root)")
    p.add_argument("--at", default=DEFAULT_AT, metavar="DIR",
                   help=f"where the v1 hierarchy appears (default: {DEFAULT_AT})")
    add_preload_only(p)
    if command:
        p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                       help="the command to run")


def _discover_mount(given: str | None, find_mount: Callable[[], str]) -> str:
    """The emulator's mount point: -m, else what cgemu's own finder says (handed in by
    cgemu, which imports this module). The one place run.py asks for it."""
    return os.path.realpath(given or find_mount())


# ------------------------------------------------------------------ kernel calls

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


# -------------------------------------------------------------- the namespace

def _enter_namespace() -> None:
    """A mount namespace of our own whose mounts never propagate back to the host."""
    if os.geteuid() == 0:
        try:
            _unshare(CLONE_NEWNS)
        except OSError as e:
            raise SetupError(f"cannot create a mount namespace: {e.strerror}") from None
    else:
        uid, gid = os.getuid(), os.getgid()
        try:
            _unshare(CLONE_NEWUSER | CLONE_NEWNS)
        except OSError as e:
            raise SetupError(
                f"cannot create a user namespace as uid {uid} ({e.strerror}): this kernel "
                "does not let unprivileged users have one (see user.max_user_namespaces, "
                "kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns); "
                "run cgemu run as root") from None
        # Map only ourselves (no helper binaries, no subordinate ids needed).
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    try:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as e:
        raise SetupError(f"cannot make the new namespace's mounts private: {e.strerror}") from None


def _unescape(path: str) -> str:
    # mountinfo mangles space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(path):
        if path[i] == "\\" and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, type) of every mount in our namespace."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            points.append((_unescape(before.split(" ")[4]), after.split(" ", 1)[0]))
    return points


def _detach(point: str) -> None:
    rc = _libc.umount2(_b(point), MNT_DETACH)
    if rc != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.EPERM, errno.ENOENT):
        err = ctypes.get_errno()
        raise SetupError(f"cannot hide {point}: {os.strerror(err)}")


def _hide_cgroup_mounts(at: str) -> None:
    """Detach the host's cgroup hierarchies, deepest first, then the host's own tmpfs
    at *at* if that is what held them (a v1 host has one tmpfs there). In a user
    namespace the kernel locks inherited mounts (EINVAL/EPERM); those stay under our
    tmpfs and the preload library leaves them out of the tables it prints."""
    cgroups = [p for p, kind in _mounts() if kind in ("cgroup", "cgroup2")]
    for point in sorted(cgroups, key=len, reverse=True):
        _detach(point)
    for point, kind in _mounts():
        if point == at and kind == "tmpfs" and any(os.path.dirname(c) == at for c in cgroups):
            _detach(point)


def _build_view(mount: str, at: str) -> str:
    """tmpfs at *at*, the emulator bound at at/memory; returns at/memory."""
    # Hold the emulator's root before anything can cover it (it may live below *at*).
    root = os.open(mount, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _hide_cgroup_mounts(at)
        flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME
        _mount("tmpfs", at, "tmpfs", flags, "mode=755")
        memory = os.path.join(at, "memory")
        os.mkdir(memory, 0o755)
        _mount(f"/proc/self/fd/{root}", memory, None, MS_BIND)
        try:  # a v1 host mounts its hierarchies nosuid,nodev,noexec
            _mount(None, memory, None, MS_REMOUNT | MS_BIND | flags)
        except OSError:
            pass
        # systemd leaves the v1 tmpfs read-only once populated: mkdir there is EROFS
        _mount(None, at, None, MS_REMOUNT | MS_RDONLY | flags, "mode=755")
    except OSError as e:
        raise SetupError(f"cannot build the view at {at}: {e.strerror}") from None
    finally:
        os.close(root)
    return memory


def _join(memory: str, group: str) -> None:
    try:
        join_group(group_dir(memory, group))  # the writer itself, which then execs CMD
    except OSError as e:
        raise SetupError(f"cannot join {group}: {e.strerror}") from None


# ---------------------------------------------------------------- the command

def _environment(memory: str, mount: str) -> dict[str, str]:
    env = dict(os.environ)
    env[VIEW_ENV] = memory
    # the emulator's own mount, which the view still shows as fuse.cgroupfs_emu (its
    # bind at *memory* reads as type cgroup there, so cgemu would not recognize it)
    env["CGROUPFS_EMU_MOUNT"] = mount
    try:
        env.setdefault("CGROUPFS_EMU_SOCKET", find_socket(mount))
    except OSError:
        pass
    return env


def run(mount: str | None, group: str, at: str, command: list[str],
        find_mount: Callable[[], str], prog: str = "cgemu run", preload_only: bool = False) -> int:
    """Build the view, run *command* in it and return its exit status."""
    if not command:
        print(f"{prog}: no command given", file=sys.stderr)
        return 2
    try:
        try:
            mount = _discover_mount(mount, find_mount)
        except OSError as e:
            raise SetupError(str(e.strerror or e)) from None
        if not os.path.isdir(os.path.join(mount, group.strip("/"))):
            raise SetupError(f"no group {group} in {mount}")
        at = os.path.abspath(at)
        if not os.path.isdir(at):
            raise SetupError(f"{at} is not a directory (--at needs an existing one)")
        try:
            library = library_path()
        except FileNotFoundError as e:
            raise SetupError(str(e)) from None
        outer = os.readlink("/proc/self/ns/mnt")
        _enter_namespace()
        if os.readlink("/proc/self/ns/mnt") == outer:
            raise SetupError("the mount namespace did not change")  # never kill the host's
        memory = _build_view(mount, at)
    except SetupError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    return _supervise(command, _environment(memory, mount), memory, group, prog, outer, library,
                      preload_only)


# ----------------------------------------------------------- nothing outlives CMD

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM)
# The terminal sends SIGINT/SIGQUIT/SIGTSTP to CMD itself (same process group).
TERMINAL = (signal.SIGINT, signal.SIGQUIT)


def _start(command: list[str], env: dict[str, str], memory: str, group: str, prog: str,
           library: str, handoff: view.Handoff | None) -> int:
    """Fork CMD: the child joins its group, takes the view's seccomp filter (sending its
    listener through *handoff*) or, failing that, the preload library, and execs;
    returns the child's pid."""
    # Everything that opens a file is done before the filter exists.
    note = view.static_note(prog, command)
    preloaded = view.with_preload(env, library)
    # Held from the fork until the parent's forwarding handlers are in place (its
    # caller unblocks them): a SIGTERM that came before would end cgemu by the
    # default action and leave CMD running with nobody to pass its status on.
    unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, (*FORWARDED, *TERMINAL))
    pid = os.fork()
    if pid:
        return pid
    try:
        # Python ignores SIGPIPE and SIGXFSZ; CMD must start with the defaults
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, *TERMINAL, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        _join(memory, group)
        reason = handoff.child() if handoff else None
        if reason and handoff.busy and VIEW_ENV in os.environ:
            # in another cgemu run: its supervisor serves this tree already
            os.write(2, f"{prog}: inside another view; its supervisor answers\n".encode())
        elif reason or not handoff:  # (no handoff: cgemu said why already)
            if reason:
                os.write(2, (view.fallback_line(prog, reason) + "\n").encode())
            if note:
                os.write(2, (note + "\n").encode())
            else:
                env = preloaded
        os.execvpe(command[0], command, env)
    except SetupError as e:
        os.write(2, f"{prog}: {e}\n".encode())
        os._exit(1)
    except OSError as e:
        os.write(2, f"{prog}: {command[0]}: {e.strerror}\n".encode())
        os._exit(126 if e.errno == errno.EACCES else 127)
    except BaseException:
        os._exit(1)
    raise AssertionError("not reached")


def _supervise(command: list[str], env: dict[str, str], memory: str, group: str,
               prog: str, outer: str, library: str, preload_only: bool) -> int:
    """Run CMD as our child and, once it exits, kill whatever it left in the namespace.

    A process left behind would keep the namespace, and with it the bind mount of the
    emulator, alive: the daemon could not finish unmounting. The kernel would kill them
    if CMD were the init of a PID namespace, but then CMD's pids would not be the ones
    the daemon sees (`echo $$ > tasks` would name another process). So cgemu stays as
    a subreaper (orphans come to it), waits for CMD, then SIGKILLs every process still in
    its mount namespace -- all of them descendants of CMD. CMD's exit status is passed
    through (128+N when it dies of signal N)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    reason = None if preload_only else view.unavailable()
    if reason:
        print(view.fallback_line(prog, reason), file=sys.stderr)
    handoff = None if reason or preload_only else view.Handoff()
    # loaded before the fork: once CMD has sent its listener each of its opens waits
    # for the supervisor, which must not be loading a library then
    supervisor = view.Supervisor(library, memory, prog) if handoff else None
    pid = _start(command, env, memory, group, prog, library, handoff)
    if supervisor is not None:
        supervisor.start(handoff)
    done = False

    def forward(signum, frame):
        if not done:
            os.kill(pid, signum)  # our own child, not reaped yet

    old = {s: signal.signal(s, forward) for s in FORWARDED}
    old.update({s: signal.signal(s, signal.SIG_IGN) for s in TERMINAL})
    # what came since the fork is forwarded now (_start() held it)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (*FORWARDED, *TERMINAL))
    try:
        while True:
            try:
                reaped, status = os.waitpid(-1, 0)
            except ChildProcessError:
                status = 1 << 8
                break
            if reaped == pid:
                break
        done = True
        _kill_leftovers(outer)
    finally:
        if supervisor is not None:
            supervisor.stop()
        for s, h in old.items():
            signal.signal(s, h)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _kill_leftovers(outer: str, rounds: int = 100) -> None:
    """SIGKILL every other process in our mount namespace and reap those that are ours.
    *outer* is the namespace we came from: if ours were it, nothing is killed."""
    ns = mount_namespace_of("self")
    if ns == outer:
        return
    for _ in range(rounds):
        left = kill_chosen(lambda p: mount_namespace_of(p) == ns)
        while True:  # orphans reparented to us, and CMD's zombies
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not left:
            return
        time.sleep(0.02)


def cmd_run(args, find_mount: Callable[[], str]) -> int:
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    return run(args.mount, args.group, args.at, command, find_mount,
               preload_only=args.preload_only)


def cmd_shell(args, find_mount: Callable[[], str]) -> int:
    return run(args.mount, args.group, args.at, [os.environ.get("SHELL") or "/bin/sh"],
               find_mount, prog="cgemu shell", preload_only=args.preload_only)
