"""``cgroupfs_emu``: mount the emulated hierarchy and serve it.

Without -f the command mounts first, in the foreground, so that mount errors reach the
terminal with a non-zero exit; only then does the daemon detach. ``cgroupfs_emu x /mnt
&& echo 4M > /mnt/...`` therefore never races the mount. fusermount3 -u, SIGTERM and
SIGINT all unmount and exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import time

import trio

from . import helper, logs
from .daemon import STOP_SIGNALS, Daemon, fuse_options
from .options import MountConfig, ShowAndExit, UsageError, parse_args

log = logging.getLogger("cgroupfs_emu")

__all__ = ["main", "fuse_options", "Daemon"]


def _setup_logging(cfg: MountConfig, detached: bool = False) -> str:
    """The daemon's log (cli/logs.py); returns where it goes, for the start line."""
    return logs.setup(cfg.log_file, cfg.debug, detached)


def _start(cfg: MountConfig, stack: contextlib.ExitStack) -> Daemon:
    """The daemon, its socket bound and its mount made (cli/daemon.py wires it)."""
    daemon = Daemon(cfg)
    daemon.start(stack)
    return daemon


def _announce(daemon: Daemon, stack: contextlib.ExitStack, where: str) -> None:
    """The mount is live: say so in the log (which names *where* it goes), the pidfile
    and to systemd; unsay it (first thing on the way down) through *stack*."""
    # Whoever learns that the mount is live may stop it at once: hold SIGTERM and SIGINT
    # until the daemon's receiver is open (Daemon._on_signal unblocks them), or the
    # default action would end the process with its mount still there.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    helper.log_start(daemon.cfg, daemon.socket_path, where)
    helper.write_pidfile(daemon.cfg.pidfile)
    stack.callback(helper.remove_pidfile, daemon.cfg.pidfile)
    helper.notify_ready()
    stack.callback(helper.notify_stopping)


def _log_exit(status: int) -> None:
    """The last line, where the start line went too (an error when it is not 0)."""
    log.log(logging.INFO if status == 0 else logging.ERROR,
            "unmounted, exiting with status %d", status, extra=logs.ALWAYS)


#: how long the caller of a background mount waits silently, then how often it repeats
#: what it is waiting for
QUIET_S = 1.0
REPEAT_S = 10.0


def _stage(wfd: int, what: str) -> None:
    """The detached half tells the waiting caller what it is doing now."""
    os.write(wfd, f"stage {what}\n".encode(errors="backslashreplace"))


def _await_report(rfd: int, pid: int) -> str:
    """Read the child's report ("ok" or the error) until it closes the pipe. Past
    QUIET_S seconds, say on stderr which step the wait is on (a step that has lasted
    half of that), again when the step changes and every REPEAT_S seconds."""
    start = since = time.monotonic()
    buf, stage, said, said_at = b"", "start", None, 0.0
    with os.fdopen(rfd, "rb", buffering=0) as r:
        while True:
            now = time.monotonic()
            due = max(start + QUIET_S, since + QUIET_S / 2) if stage != said else said_at + REPEAT_S
            if now >= due:
                print(f"cgroupfs_emu: waiting {now - start:.0f}s for the daemon (pid {pid}) "
                      f"to {stage}", file=sys.stderr, flush=True)
                said, said_at = stage, now
                continue
            if select.select([r], [], [], due - now)[0]:
                data = r.read(4096)
                if not data:
                    break
                buf += data
                while buf.startswith(b"stage ") and b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    stage, since = line[6:].decode(errors="replace"), time.monotonic()
    return buf.decode(errors="replace")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_args(argv)
        cfg.mountpoint = os.path.abspath(cfg.mountpoint)
        helper.check_mountpoint(cfg.mountpoint)
    except ShowAndExit as e:
        print(e)
        return 0
    except UsageError as e:
        print(f"cgroupfs_emu: {e}", file=sys.stderr)
        return 2

    if cfg.foreground:
        where = _setup_logging(cfg)
        with contextlib.ExitStack() as stack:
            try:
                daemon = _start(cfg, stack)
            except UsageError as e:
                print(f"cgroupfs_emu: {e}", file=sys.stderr)
                return 1
            _announce(daemon, stack, where)
            status = trio.run(daemon.serve)
        _log_exit(status)
        return status

    # Background: the child mounts and reports over a pipe before it detaches, so
    # the parent's exit status says whether the mount is live. Meanwhile it names
    # each step it takes ("stage ..." lines), and the parent, if the wait grows
    # longer than a second, says what it is waiting for.
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(wfd)
        report = _await_report(rfd, pid)
        if report == "ok":
            return 0
        print(f"cgroupfs_emu: {report or 'daemon died before mounting'}", file=sys.stderr)
        os.waitpid(pid, 0)
        return 1

    os.close(rfd)
    stack = contextlib.ExitStack()
    try:
        helper.detach()
        helper.close_inherited_fds(keep={wfd})
        # before anything can log: until it detaches, the daemon's stderr is its
        # caller's terminal, which hears of nothing but a mount error
        if cfg.log_file:
            _stage(wfd, f"open its log {cfg.log_file}")
        where = _setup_logging(cfg, detached=True)
        _stage(wfd, f"bind its socket and mount {cfg.mountpoint}")
        daemon = _start(cfg, stack)
        helper.redirect_stdio(where if where.startswith("/") else None)
        _announce(daemon, stack, where)
    except BaseException as e:  # report every failure to the waiting parent
        stack.close()
        os.write(wfd, str(e).encode() or b"mount failed")
        os._exit(1)
    os.write(wfd, b"ok")
    os.close(wfd)
    status = 1
    try:
        with stack:
            status = trio.run(daemon.serve)
    except BaseException:
        log.exception("daemon failed")
    _log_exit(status)
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
