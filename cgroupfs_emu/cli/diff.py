"""``cgemu diff``: run one command against several kernel profiles and show where
they disagree.

For each profile a private daemon is started on a temporary mount (all of them at
once: most of the cost is their start-up), a fresh group ``diff`` is made, and CMD runs
in that group inside the view of ``cgemu run`` (run.run(), in a forked child), so its
hard-coded /sys/fs/cgroup/memory paths work. At most one CMD per CPU runs at a time.
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

from . import diff_report
from .common import CgemuError

DEFAULT_PROFILES = ("linux-3.10", "linux-4.19", "linux-5.10", "linux-6.18")
#: what `--profiles all` adds: the default profile, then the five seed systems
#: (docs/seed-profiles.md)
SEED_PROFILES = ("seeds", "memctl-2007", "shrink-2008", "kmem-2011", "kmem-slab-2012",
                 "kmem-2012")
DEFAULT_BASE = "linux-6.18"
GROUP = "diff"
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

Exit status: 0 all profiles agree, 1 some differ, 2 usage error (or no run possible).

examples:
  cgemu diff -- sh -c 'cd /sys/fs/cgroup/memory/diff && mkdir box
      echo 4097 > box/memory.limit_in_bytes; cat box/memory.limit_in_bytes'
  cgemu diff --profiles all -- cgget -g memory /diff
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
    """One profile's daemon, mount and run of CMD."""

    profile: str
    tmp: str
    daemon: subprocess.Popen | None = None
    notify: socket.socket | None = None
    runner: int = 0
    runner_fd: int = -1
    status: int | None = None
    baseline: dict = attrs.field(factory=dict)
    final: dict = attrs.field(factory=dict)
    stdout: str = ""
    stderr: str = ""
    error: str = ""

    @property
    def mount(self) -> str:
        return os.path.join(self.tmp, "mnt")

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)


def _start_daemon(run: Run) -> None:
    """The daemon in the foreground, in a session of its own (the terminal's Ctrl-C is
    ours to handle); it says READY=1 on a notify socket of ours once it is mounted."""
    os.mkdir(run.mount)
    run.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    run.notify.bind(run.path("notify"))
    env = dict(os.environ, NOTIFY_SOCKET=run.path("notify"))
    options = f"kernel={run.profile},socket={run.path('sock')}"
    with open(run.path("daemon.log"), "wb") as log:
        run.daemon = subprocess.Popen(
            [sys.executable, "-m", "cgroupfs_emu", "-f", "-o", options, "memory", run.mount],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            start_new_session=True)


def _wait_ready(runs: list[Run]) -> None:
    """Wait for every daemon's READY=1 (or its exit), all at once."""
    waiting = {r.notify.fileno(): r for r in runs}
    deadline = time.monotonic() + READY_TIMEOUT
    while waiting:
        ready = select.select(list(waiting), [], [], 0.05)[0]
        for fd in ready:
            run = waiting[fd]
            if b"READY=1" in run.notify.recv(4096):
                del waiting[fd]
        for fd, run in list(waiting.items()):
            if run.daemon.poll() is not None or time.monotonic() > deadline:
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
    """mkdir /diff, take the baseline, fork the child that runs CMD in `cgemu run`'s
    view of the mount (run.run builds it in the child's own mount namespace)."""
    os.mkdir(os.path.join(run.mount, GROUP))
    run.baseline = diff_report.capture(run.mount)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.setsid()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            null = os.open(os.devnull, os.O_RDONLY)
            out = os.open(run.path("stdout"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err = os.open(run.path("stderr"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            for fd, std in ((null, 0), (out, 1), (err, 2)):
                os.dup2(fd, std)
            os.environ.pop("NOTIFY_SOCKET", None)
            from . import run as run_cmd
            status = run_cmd.run(run.mount, "/" + GROUP, run_cmd.DEFAULT_AT, command,
                                 lambda: run.mount)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)
    run.runner = pid
    run.runner_fd = os.pidfd_open(pid)


def _reap_runner(run: Run, wait: bool = True) -> bool:
    """Collect the runner's status; False if it is still running (wait=False)."""
    if not run.runner:
        return True
    got, status = os.waitpid(run.runner, 0 if wait else os.WNOHANG)
    if got == 0:
        return False
    run.status = os.waitstatus_to_exitcode(status)
    if run.status < 0:
        run.status = 128 - run.status
    run.runner = 0
    os.close(run.runner_fd)
    run.runner_fd = -1
    return True


def _run_all(runs: list[Run], command: list[str], slots: int) -> None:
    """CMD on every mounted profile, at most *slots* at a time; each finished run's
    final state is captured at once (its daemon stops later, with the others)."""
    queue = [r for r in runs if not r.error]
    active: list[Run] = []
    while queue or active:
        while queue and len(active) < slots:
            run = queue.pop(0)
            try:
                _start_runner(run, command)
                active.append(run)
            except OSError as e:
                run.error = f"cannot start: {e}"
        if not active:
            continue
        select.select([r.runner_fd for r in active], [], [])
        for run in list(active):
            if _reap_runner(run, wait=False):
                active.remove(run)
                run.final = diff_report.capture(run.mount)


def _signal_pid(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)  # a runner we forked and have not reaped: its pid is ours
    except ProcessLookupError:
        pass


def _stop_runners(runs: list[Run]) -> None:
    """SIGTERM (forwarded to CMD; the runner then kills what CMD left in its
    namespace), SIGKILL after a grace period."""
    live = [r for r in runs if r.runner]
    for run in live:
        _signal_pid(run.runner, signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    for run in live:
        while not _reap_runner(run, wait=False):
            if time.monotonic() > deadline:
                _signal_pid(run.runner, signal.SIGKILL)
                _reap_runner(run)
                break
            time.sleep(0.01)


def _stop_daemon(run: Run) -> None:
    """SIGTERM to our daemon (it unmounts and exits 0); SIGKILL and a lazy unmount if
    it will not."""
    p = run.daemon
    if p is not None and p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if os.path.ismount(run.mount):
        subprocess.run(["fusermount3", "-u", "-z", run.mount], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if run.notify is not None:
        run.notify.close()


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="backslashreplace")
    except OSError:
        return ""


def execute(profiles: list[str], command: list[str], keep: bool = False,
            slots: int | None = None) -> list[Run]:
    """Run *command* on every profile; the runs, with what each one captured."""
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
        # Ctrl-C once more must not cut the teardown short
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _stop_runners(runs)
            for run in runs:
                if not (keep and finished and not run.error):
                    _stop_daemon(run)
                    shutil.rmtree(run.tmp, ignore_errors=True)
                elif run.notify is not None:
                    run.notify.close()
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
                      f"{run.daemon.pid}; fusermount3 -u {run.mount} ends it)",
                      file=sys.stderr)
    return 1 if report.differs or failed else 0


__all__ = ["register", "execute", "resolve_profiles", "DEFAULT_PROFILES"]
