"""CgroupFS: one emulated hierarchy mounted by the real daemon, for a test.

The daemon runs in the foreground in a subprocess (``python -m cgroupfs_emu -f`` of
the interpreter running the tests, so the package found is the one installed next to
this module, whatever PATH says), its log in a file beside the mount point. start()
returns once the mount is live and says what it is waiting for when that takes more
than a second; stop() unmounts with ``fusermount3 -u``, waits for the daemon and
reports whether it exited 0 without a logged traceback. A daemon that will not exit
gets SIGABRT first (``-X faulthandler`` then writes every thread's stack into the log).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from .group import Group, _kill_group, console_script, python

HAVE_FUSE = os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
#: silence allowed while waiting for a mount, then how often the wait is repeated
QUIET_S = 1.0
REPEAT_S = 10.0


class DaemonFailed(AssertionError):
    """The daemon exited non-zero, did not mount, or logged a traceback."""


def option_string(*flags: str, **options) -> str:
    """``-o`` text from marker-style arguments: ``("allow_other", kernel="linux-6",
    swap="64M", thread_stacks=True)`` -> "allow_other,kernel=linux-6,swap=64M,
    thread_stacks=1". A False or None value leaves the option out; True gives a bare
    flag, except where the option takes 0|1."""
    parts = [f for f in flags if f]
    for key, value in options.items():
        if value is None or value is False:
            continue
        if value is True:
            parts.append(f"{key}=1" if key == "thread_stacks" else key)
        else:
            parts.append(f"{key}={value}")
    return ",".join(parts)


class CgroupFS(Group):
    """A live mount: the root group, plus mount-wide things (view, log, stop)."""

    def __init__(self, directory: str, options: str = "", *, source: str = "memory",
                 prefix: Sequence[str] = (), flags: Sequence[str] = (),
                 remove_dir: bool = False):
        """*directory* holds the mount point ``mnt`` and the log ``daemon.log``;
        *prefix*: a command the daemon runs under (e.g. prlimit); *flags*: more daemon
        flags (e.g. -d); *remove_dir*: stop() removes *directory*."""
        self.dir = str(directory)
        super().__init__(self, os.path.join(self.dir, "mnt"))
        self.options = options
        self.source = source
        self.prefix = tuple(prefix)
        self.flags = tuple(flags)
        self.remove_dir = remove_dir
        self.stderr_path = os.path.join(self.dir, "daemon.log")
        self.proc: subprocess.Popen | None = None
        #: processes started by popen()/run() of any group; killed at stop()
        self.started: list[subprocess.Popen] = []
        self._log_seen = 0

    def __repr__(self) -> str:
        return f"<CgroupFS {self.path} -o {self.options or '(defaults)'}>"

    # ----------------------------------------------------------------- lifetime

    def start(self, timeout: float = 60.0, say: Callable[[str], None] | None = None) -> CgroupFS:
        """Mount; returns once the mount is live. *say* (default: print to stderr)
        hears what the wait is for whenever it lasts more than QUIET_S seconds."""
        os.makedirs(self.path, exist_ok=True)
        cmd = [*self.prefix, *python(), "-X", "faulthandler", "-m", "cgroupfs_emu", "-f",
               *self.flags]
        if self.options:
            cmd += ["-o", self.options]
        cmd += [self.source, self.path]
        with open(self.stderr_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            self._wait_mounted(timeout, say or _say_stderr)
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _wait_mounted(self, timeout: float, say: Callable[[str], None]) -> None:
        t0 = time.monotonic()
        next_say = t0 + QUIET_S
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise DaemonFailed(f"cgroupfs_emu exited {self.proc.returncode} before "
                                   f"mounting {self.path}:\n{self.log()}")
            now = time.monotonic()
            if now - t0 > timeout:
                raise DaemonFailed(f"cgroupfs_emu did not mount {self.path} within "
                                   f"{timeout:.0f}s:\n{self.log()}")
            if now >= next_say:
                last = self.log().strip().splitlines()[-1:] or ["(nothing logged yet)"]
                say(f"cgroupfs: waiting {now - t0:.0f}s for cgroupfs_emu (pid "
                    f"{self.proc.pid}) to mount {self.path} -o {self.options or '(defaults)'}"
                    f"; its log {self.stderr_path} says: {last[0]}")
                next_say = now + REPEAT_S
            time.sleep(0.02)

    def stop(self, check: bool = True) -> int | None:
        """Kill what popen() started, unmount, wait for the daemon; returns its exit
        status. With *check*, raise DaemonFailed unless it exited 0 and logged no
        traceback."""
        for p in self.started:
            _kill_group(p)
        self.started.clear()
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", self.path], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # our own child, by its pid: SIGABRT first for the stacks in the log
                self.proc.send_signal(signal.SIGABRT)
                try:
                    rc = self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    rc = self.proc.wait()
        if os.path.ismount(self.path):
            subprocess.run(["fusermount3", "-u", "-z", self.path], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        #: the whole log, kept: stop() may remove the directory it was in
        log = self.final_log = self.log()
        if self.remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if check and self.proc is not None:
            if rc != 0:
                raise DaemonFailed(f"cgroupfs_emu exited {rc}:\n{log}")
            self.check_log(log)
        return rc

    # ------------------------------------------------------------------ the log

    def log(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def check_log(self, log: str | None = None) -> None:
        """DaemonFailed if the daemon logged a traceback since the last check."""
        log = self.log() if log is None else log
        new, self._log_seen = log[self._log_seen:], len(log)
        if "Traceback" in new:
            raise DaemonFailed(f"cgroupfs_emu logged a traceback:\n{new}")

    # ---------------------------------------------------------- mount-wide tools

    @property
    def root(self) -> Group:
        return Group(self, self.path)

    def group(self, name: str) -> Group:
        """The existing group *name* ("/a/b" or "a/b")."""
        path = os.path.join(self.path, name.strip("/"))
        if not os.path.isdir(path):
            raise FileNotFoundError(f"no group {name} in {self.path}")
        return Group(self, path)

    @property
    def socket(self) -> str:
        """The client socket (docs/protocol.md)."""
        return os.getxattr(self.path, "user.cgroupfs_emu.socket").decode()

    def cgemu(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """``cgemu ARGS`` with $CGROUPFS_EMU_MOUNT naming this mount (so -m may be left
        out); output captured as text unless said otherwise."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        env = dict(kwargs.pop("env", None) or os.environ, CGROUPFS_EMU_MOUNT=self.path)
        return subprocess.run(console_script("cgemu") + list(args), env=env, **kwargs)

    def view(self, argv: Sequence[str], group: str = "/", **kwargs) -> subprocess.CompletedProcess:
        """Run *argv* inside the ``cgemu run`` view (the mount at
        /sys/fs/cgroup/memory, the command in *group*): code with hard-coded cgroup
        paths, tested unmodified. Needs root or unprivileged user namespaces."""
        return self.cgemu("run", "-m", self.path, "-g", group, "--", *argv, **kwargs)


def _say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
