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
import sys

import trio

from . import helper
from .daemon import Daemon, fuse_options
from .options import MountConfig, ShowAndExit, UsageError, parse_args

log = logging.getLogger("cgroupfs_emu")

__all__ = ["main", "fuse_options", "Daemon"]


def _setup_logging(cfg: MountConfig) -> None:
    level = logging.DEBUG if cfg.debug else logging.INFO
    # Group names and release_agent paths need not be UTF-8 (they reach us
    # surrogate-escaped): a strict stream would lose the whole record to a
    # "--- Logging error ---"; backslashreplace writes \udcff for the byte.
    if cfg.log_file:
        handler = logging.FileHandler(cfg.log_file, errors="backslashreplace")
    else:
        if hasattr(sys.stderr, "reconfigure"):
            sys.stderr.reconfigure(errors="backslashreplace")
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _start(cfg: MountConfig, stack: contextlib.ExitStack) -> Daemon:
    """The daemon, its socket bound and its mount made (cli/daemon.py wires it)."""
    daemon = Daemon(cfg)
    daemon.start(stack)
    return daemon


def _announce(daemon: Daemon, stack: contextlib.ExitStack) -> None:
    """The mount is live: say so in the log, the pidfile and to systemd; unsay it
    (first thing on the way down) through *stack*."""
    helper.log_start(daemon.cfg, daemon.socket_path)
    helper.write_pidfile(daemon.cfg.pidfile)
    stack.callback(helper.remove_pidfile, daemon.cfg.pidfile)
    helper.notify_ready()
    stack.callback(helper.notify_stopping)


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
        _setup_logging(cfg)
        with contextlib.ExitStack() as stack:
            try:
                daemon = _start(cfg, stack)
            except UsageError as e:
                print(f"cgroupfs_emu: {e}", file=sys.stderr)
                return 1
            _announce(daemon, stack)
            return trio.run(daemon.serve)

    # Background: the child mounts and reports over a pipe before it detaches, so
    # the parent's exit status says whether the mount is live.
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            report = r.read()
        if report == b"ok":
            return 0
        msg = report.decode(errors="replace") or "daemon died before mounting"
        print(f"cgroupfs_emu: {msg}", file=sys.stderr)
        os.waitpid(pid, 0)
        return 1

    os.close(rfd)
    stack = contextlib.ExitStack()
    try:
        helper.detach()
        helper.close_inherited_fds(keep={wfd})
        _setup_logging(cfg)
        # before the daemon is built: what it logs while starting (the follower says
        # how it follows processes) goes to the log, never to the caller's terminal;
        # a failure still reaches the terminal, through the pipe
        helper.redirect_stdio(cfg.log_file)
        daemon = _start(cfg, stack)
        _announce(daemon, stack)
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
    log.info("unmounted, exiting with status %d", status)
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
