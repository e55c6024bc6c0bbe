"""Where a daemon's log goes (docs/logging.md).

* ``-f``: stderr, from INFO (DEBUG with ``-d``);
* ``-o log=FILE``: appended to FILE, the same records;
* detached without ``log=``: warnings, errors, and the start and exit lines to syslog
  (``/dev/log``, facility daemon, ident ``cgroupfs_emu[PID]``); where /dev/log is
  missing or refuses, appended to default_log_file(). A detached daemon thus always
  leaves a trace of why it ended, and nothing but a mount error reaches its caller's
  terminal.

Not done: a syslog daemon that goes away later is not reconnected to (records are
lost, as with syslog(3) without LOG_CONS); a default file that cannot be opened leaves
the daemon without a log rather than failing the mount.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import socket
import sys

SYSLOG_ADDRESS = "/dev/log"
#: records carrying ``extra=ALWAYS`` pass the warnings-only filter: the start and
#: exit lines, which say which daemon ran and how it ended
ALWAYS = {"always": True}
_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def default_log_file() -> str:
    """$XDG_STATE_HOME/cgroupfs_emu/daemon.log where XDG_STATE_HOME is set; else
    /var/log/cgroupfs_emu.log for root and ~/.local/state/cgroupfs_emu/daemon.log
    (the XDG base directory default) for everyone else."""
    state = os.environ.get("XDG_STATE_HOME")
    if not state and os.geteuid() == 0:
        return "/var/log/cgroupfs_emu.log"
    state = state or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "cgroupfs_emu", "daemon.log")


class _Escaped(logging.Formatter):
    """Group names and release_agent paths need not be UTF-8 (they arrive
    surrogate-escaped); a handler that encodes strictly would lose the whole record,
    so the text is made encodable first (\\udcff for the byte)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _warnings_and_always(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or getattr(record, "always", False)


def _listening(address: str) -> bool:
    """Does a syslog daemon take messages at *address*? (SysLogHandler itself hides a
    failed connect, as openlog(3) does.)"""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, kind) as s:
            try:
                s.connect(address)
                return True
            except OSError:
                pass
    return False


def _syslog() -> logging.Handler | None:
    if not _listening(SYSLOG_ADDRESS):  # no /dev/log, or nobody behind it
        return None
    handler = logging.handlers.SysLogHandler(
        SYSLOG_ADDRESS, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    # syslog(3)'s "ident[pid]: message"; the pid is taken once detached
    handler.ident = f"cgroupfs_emu[{os.getpid()}]: "
    handler.setFormatter(_Escaped("%(name)s %(levelname)s %(message)s"))
    return handler


def _file(path: str) -> logging.Handler:
    return logging.FileHandler(path, errors="backslashreplace")


def setup(log_file: str | None, debug: bool, detached: bool) -> str:
    """Install the daemon's one handler; returns where the log goes ("stderr",
    "syslog" or a file), which the start line names."""
    level = logging.DEBUG if debug else logging.INFO
    where = log_file
    if log_file:
        handler = _file(log_file)
    elif detached:
        handler = _syslog()
        where = "syslog"
        if handler is None:
            where = default_log_file()
            try:
                os.makedirs(os.path.dirname(where), mode=0o700, exist_ok=True)
                handler = _file(where)
            except OSError:
                handler, where = logging.NullHandler(), "nowhere"
            handler.setFormatter(logging.Formatter(
                "%(asctime)s cgroupfs_emu[%(process)d] %(name)s %(levelname)s %(message)s"))
        handler.addFilter(_warnings_and_always)
    else:
        if hasattr(sys.stderr, "reconfigure"):
            sys.stderr.reconfigure(errors="backslashreplace")
        handler = logging.StreamHandler(sys.stderr)
        where = "stderr"
    if handler.formatter is None:
        handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return where
