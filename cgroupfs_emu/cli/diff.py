"""``cgemu diff``: run one command against several kernel profiles and show where
they disagree.

For each profile a private daemon is started on a temporary mount: all of them at
once, each forked from this process, which imported the daemon's modules once (most
of the cost is that import; benchmarks/README.md). A fresh group ``diff`` is made and
CMD runs in that group inside the view of ``cgemu run`` (run.run(), in a forked
child), so its hard-coded /sys/fs/cgroup/memory paths work. At most one CMD per CPU runs at a time.
What is kept of each run: stdout, stderr, the exit status, and every control file of
every group before and after CMD; diff_report.py normalises and compares them.

Everything is torn down on every path, Ctrl-C included: the runners (each the
subreaper of its CMD, which it kills with its namespace) get SIGTERM, then SIGKILL;
the daemons SIGTERM (they unmount themselves), then SIGKILL and a lazy unmount. With
--keep the mounts of a finished run stay up for inspection.

Not done: CMD gets /dev/null as stdin (every profile must see the same input).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import attrs

from .common import CgemuError, cgroupfs_mounts
from .leftovers import kill_chosen, parent_of
from .run import PR_SET_CHILD_SUBREAPER

DEFAULT_PROFILES = ("linux-3.10", "linux-4.19", "linux-5.10", "linux-6.18")
#: what `--profiles all` adds: the default profile, then the five seed systems
#: (docs/seed-profiles.md)
SEED_PROFILES = ("seeds", "memctl-2007", "shrink-2008", "kmem-2011", "kmem-slab-2012",
                 "kmem-2012")
DEFAULT_BASE = "linux-6.18"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
EXIT_USAGE = 2

DIFF_HELP = """\
Run CMD once per kernel profile, each on a private emulator mount seen at
/sys/fs/cgroup/memory (as `cgemu run` shows it), in a fresh group /diff, and report
where the profiles disagree: stdout, stderr, the exit status and the control files of
every group CMD changed or left behind (volatile values normalised). Each disagreement
comes as a unified diff against --base with the profile rule behind it, a row of
docs/kernel-generations.md or docs/seed-profiles.md, where one is known.

Exit status: 0 all profiles agree, 1 some differ (or a profile could not run), 2 usage
error. docs/diff.md has the examples with their reports.

examples:
  cgemu diff -- sh -c 'cd /sys/fs/cgroup/memory/diff && mkdir box
      echo 4097 > box/memory.limit_in_bytes; cat box/memory.limit_in_bytes'
  cgemu diff --profiles all -- cgget -g memory:/diff
  cgemu diff --json --profiles linux-3.10,linux-6.18 -- java -XshowSettings:system -version"""


class UsageError(Exception):
    """A mistake on the command line: exit status 2."""


def register(sub) -> None:
    d = sub.add_parser("diff", help="run a command on every kernel profile and compare",
                       description=DIFF_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--profiles", metavar="LIST", default=",".join(DEFAULT_PROFILES),
                   help="comma-separated profiles (-o kernel= names), or 'all' for every "
                        "generation and seed system (default: %(default)s)")
    d.add_argument("--base", metavar="PROFILE", default=DEFAULT_BASE,
                   help="the profile the others are compared with (default: %(default)s; "
                        "added to the list if missing)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--keep", action="store_true",
                   help="leave the mounts up (and their logs) after a run, for inspection")
    d.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]",
                   help="the command to run")
    d.set_defaults(func=cmd_diff)


def resolve_profiles(text: str, base: str) -> tuple[list[str], str]:
    """The profiles named by --profiles (aliases resolved, order kept, base added)."""
    from ..core.catalog import ALIASES, PROFILES, profile_names
    names: list[str] = []
    for item in text.replace(" ", ",").split(","):
        if not item:
            continue
        expanded = [*DEFAULT_PROFILES, *SEED_PROFILES] if item == "all" else [item]
        for name in expanded:
            name = ALIASES.get(name, name)
            if name not in PROFILES:
                raise UsageError(f"unknown profile {item!r} (choose from "
                                 f"{', '.join(profile_names())}, or all)")
            if name not in names:
                names.append(name)
    base = ALIASES.get(base, base)
    if base not in PROFILES:
        raise UsageError(f"unknown --base profile {base!r}")
    if base not in names:
        names.append(base)
    return names, base


@attrs.define
class Run:
    """One profile's daemon, mount and run of CMD. Both are our children, each named
    by a pidfd: nothing else is ever signalled."""

    profile: str
    tmp: str
    daemon: int = 0
    daemon_fd: int = -1
    daemon_status: int | None = None
    notify: socket.socket | None = None
    runner: int = 0
    runner_fd: int = -1
    status: int | None = None
    baseline: dict = attrs.field(factory=dict)
    final: dict = attrs.field(factory=dict)
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    #: time.monotonic() at each step: spawn, ready, run, done, stopped (the benchmark's
    #: breakdown, benchmarks/bench_diff.py)
    times: dict = attrs.field(factory=dict)

    @property
    def mount(self) -> str:
        return os.path.join(self.tmp, "mnt")

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)


def _child(body, stdin: str, stdout: str, stderr: str) -> tuple[int, int]:
    """Fork a child in a session of its own (the terminal's Ctrl-C is ours to
    handle), with its stdio on files and no other descriptor of ours, that runs
    *body* and exits with what it returns. (pid, pidfd)."""
    # Ctrl-C between the fork and the child's own session would reach the child:
    # blocked until then (the parent takes a pending one once it unblocks)
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.setsid()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            fds = (os.open(stdin, os.O_RDONLY),
                   os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                   os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            for std, fd in enumerate(fds):
                os.dup2(fd, std)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            status = body()
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(status)
    try:
        return pid, os.pidfd_open(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _start_daemon(run: Run) -> None:
    """The daemon, forked from this process (its modules are imported here once, not
    once per profile), in the foreground; it says READY=1 on a notify socket of ours
    once it is mounted (helper.notify_ready, the sd_notify protocol)."""
    from . import mount
    run.times["spawn"] = time.monotonic()
    os.mkdir(run.mount)
    run.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    run.notify.bind(run.path("notify"))
    options = f"kernel={run.profile},socket={run.path('sock')}"

    def serve() -> int:
        os.environ["NOTIFY_SOCKET"] = run.path("notify")
        return mount.main(["-f", "-o", options, "memory", run.mount])

    log = run.path("daemon.log")
    run.daemon, run.daemon_fd = _child(serve, os.devnull, log, log)


def _wait_ready(runs: list[Run]) -> None:
    """Wait for every daemon's READY=1 (or its exit), all at once."""
    waiting = {r.notify.fileno(): r for r in runs}
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        for fd in select.select(list(waiting), [], [], 0.05)[0]:
            run = waiting[fd]
            if b"READY=1" in run.notify.recv(4096):
                run.times["ready"] = time.monotonic()
                del waiting[fd]
        for fd, run in list(waiting.items()):
            if _reap(run, "daemon", wait=False) or time.monotonic() > deadline:
                run.error = "the daemon did not mount: " + _tail(run.path("daemon.log"))
                del waiting[fd]


def _tail(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = f.read().strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "no log"


def _start_runner(run: Run, command: list[str]) -> None:
    """The child that makes /diff, reads the hierarchy, runs CMD in `cgemu run`'s view
    of the mount (run.run builds it in this child's own mount namespace and kills what
    CMD leaves there), and reads the hierarchy again; the captures come back as JSON
    files, so the profiles' reads go on in parallel too."""
    from . import diff_report, run as run_cmd

    def body() -> int:
        os.environ.pop("NOTIFY_SOCKET", None)
        os.mkdir(os.path.join(run.mount, diff_report.GROUP))
        _dump(run.path("baseline.json"), diff_report.capture(run.mount))
        status = run_cmd.run(run.mount, "/" + diff_report.GROUP, run_cmd.DEFAULT_AT,
                             command, lambda: run.mount)
        sys.stdout.flush()
        sys.stderr.flush()
        _dump(run.path("final.json"), diff_report.capture(run.mount))
        return status

    run.times["run"] = time.monotonic()
    run.runner, run.runner_fd = _child(body, os.devnull, run.path("stdout"),
                                       run.path("stderr"))


def _dump(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def _load(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _reap(run: Run, which: str, wait: bool = True, timeout: float | None = None) -> bool:
    """Collect the exit of run's *which* ("runner" or "daemon") child; False while it
    still runs (after *timeout* seconds, or at once with wait=False)."""
    pid = getattr(run, which)
    if not pid:
        return True
    fd = getattr(run, which + "_fd")
    if not wait or timeout is not None:
        if not select.select([fd], [], [], 0 if not wait else timeout)[0]:
            return False
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    setattr(run, "status" if which == "runner" else "daemon_status",
            128 - code if code < 0 else code)
    setattr(run, which, 0)
    os.close(fd)
    setattr(run, which + "_fd", -1)
    return True


def _signal(run: Run, which: str, sig: int) -> None:
    if getattr(run, which):  # not reaped yet: the pidfd still names our child
        signal.pidfd_send_signal(getattr(run, which + "_fd"), sig)


def _run_all(runs: list[Run], command: list[str], slots: int) -> None:
    """CMD on every mounted profile, at most *slots* at a time; a daemon whose run is
    over is told to stop at once (SIGTERM: it unmounts and exits)."""
    queue = [r for r in runs if not r.error]
    active: list[Run] = []
    while queue or active:
        while queue and len(active) < slots:
            run = queue.pop(0)
            _start_runner(run, command)
            active.append(run)
        select.select([r.runner_fd for r in active], [], [])
        for run in list(active):
            if _reap(run, "runner", wait=False):
                run.times["done"] = time.monotonic()
                active.remove(run)
                run.baseline = _load(run.path("baseline.json"))
                run.final = _load(run.path("final.json"))
                if not run.final:
                    run.error = "the run failed: " + _tail(run.path("stderr"))


def _stop_runners(runs: list[Run]) -> None:
    """SIGTERM (forwarded to CMD; the runner then kills what CMD left in its
    namespace), SIGKILL after a grace period."""
    live = [r for r in runs if r.runner]
    for run in live:
        _signal(run, "runner", signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    for run in live:
        if not _reap(run, "runner", timeout=max(0.0, deadline - time.monotonic())):
            _signal(run, "runner", signal.SIGKILL)
            _reap(run, "runner")


def _kill_orphans(runs: list[Run]) -> None:
    """SIGKILL what a killed runner left: this process is a subreaper (see execute),
    so CMD's orphans are our children; daemons are spared. Each is reaped at once (a
    child of ours cannot be reused before that)."""
    me = os.getpid()
    for pid in kill_chosen(lambda p: parent_of(p) == me, spared={r.daemon for r in runs}):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _stop_daemons(runs: list[Run]) -> None:
    """SIGTERM to each daemon (it unmounts and exits 0), all at once; SIGKILL and a
    lazy unmount for one that will not."""
    for run in runs:
        _signal(run, "daemon", signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for run in runs:
        if not _reap(run, "daemon", timeout=max(0.0, deadline - time.monotonic())):
            _signal(run, "daemon", signal.SIGKILL)
            _reap(run, "daemon")
        # a daemon killed while it started leaves a dead mount, which ismount()
        # cannot see (stat fails with ENOTCONN): the mount table can
        if run.mount in cgroupfs_mounts():
            subprocess.run(["fusermount3", "-u", "-z", run.mount], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run.times["stopped"] = time.monotonic()


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="backslashreplace")
    except OSError:
        return ""


def execute(profiles: list[str], command: list[str], keep: bool = False,
            slots: int | None = None) -> list[Run]:
    """Run *command* on every profile; the runs, with what each one captured."""
    # CMD's processes orphaned by a runner that had to be killed come to us
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    runs = [Run(p, tempfile.mkdtemp(prefix=f"cgemu-diff-{p}-")) for p in profiles]
    finished = False
    try:
        for run in runs:
            _start_daemon(run)
        _wait_ready(runs)
        _run_all(runs, command, slots or os.cpu_count() or 1)
        for run in runs:
            run.stdout = _read(run.path("stdout"))
            run.stderr = _read(run.path("stderr"))
        finished = True
    finally:
        # a second Ctrl-C must not cut the teardown short
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _stop_runners(runs)
            _kill_orphans(runs)
            kept = [r for r in runs if keep and finished and not r.error]
            _stop_daemons([r for r in runs if r not in kept])
            for run in runs:
                if run.notify is not None:
                    run.notify.close()
                if run not in kept:
                    shutil.rmtree(run.tmp, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)
    return runs


def cmd_diff(args) -> int:
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    try:
        if not command:
            raise UsageError("no command given: cgemu diff [OPTIONS] -- CMD [ARGS...]")
        profiles, base = resolve_profiles(args.profiles, args.base)
    except UsageError as e:
        print(f"cgemu diff: {e}", file=sys.stderr)
        return EXIT_USAGE
    runs = execute(profiles, command, keep=args.keep)
    failed = [r for r in runs if r.error]
    for run in failed:
        print(f"cgemu diff: {run.profile}: {run.error}", file=sys.stderr)
    if any(r.profile == base for r in failed):
        raise CgemuError(f"the base profile {base} could not run")
    from . import diff_report  # the report and its rules: only when cgemu diff runs
    report = diff_report.compare(
        base, {r.profile: diff_report.Capture(r.stdout, r.stderr, r.status, r.baseline,
                                              r.final, r.tmp)
               for r in runs if not r.error})
    if args.json:
        print(diff_report.to_json(report, command))
    else:
        print(diff_report.to_text(report, command), end="")
    if args.keep:
        for run in runs:
            if not run.error:
                print(f"cgemu diff: kept {run.profile} at {run.mount} (daemon pid "
                      f"{run.daemon}; fusermount3 -u {run.mount} ends it)",
                      file=sys.stderr)
    return 1 if report.differs or failed else 0


__all__ = ["register", "execute", "resolve_profiles", "DEFAULT_PROFILES"]
