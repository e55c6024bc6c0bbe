"""A detached daemon says nothing on its caller's terminal but a mount error, and its
end always leaves a trace: syslog where /dev/log is, else the default log file
(cli/logs.py, docs/logging.md). A daemon whose FUSE connection is aborted logs one
line, clears its dead mount and exits with status 3."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from cgroupfs_emu.cli import logs
from conftest import HAVE_FUSE, wait_until

pytestmark = pytest.mark.skipif(not HAVE_FUSE, reason="/dev/fuse or fusermount3 missing")
HELPER = os.path.join(os.path.dirname(__file__), "helpers", "abort_detached.py")
ABORTED = "FUSE connection of {} aborted: no request can be served any more; " \
          "unmounting it, exit status 3"


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def test_a_detached_daemon_prints_nothing_on_its_callers_terminal(tmp_path):
    mnt = tmp_path / "cg"
    mnt.mkdir()
    # the default log file of a user with this XDG_STATE_HOME, not the host's
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    r = subprocess.run(["cgroupfs_emu", "-o", "kernel=linux-6", "memory", str(mnt)],
                       capture_output=True, text=True, timeout=60, env=env)
    try:
        assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
        pid = int(os.getxattr(mnt, "user.cgroupfs_emu.pid"))
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    assert wait_until(lambda: _gone(pid), timeout=15)
    # a mount error still reaches the terminal, as one line
    r = subprocess.run(["cgroupfs_emu", "memory", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr == f"cgroupfs_emu: mountpoint {tmp_path / 'nope'} does not exist\n"


def test_the_default_log_file_follows_the_documented_rule(monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", "/state")
    assert logs.default_log_file() == "/state/cgroupfs_emu/daemon.log"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    expected = ("/var/log/cgroupfs_emu.log" if os.geteuid() == 0
                else "/home/u/.local/state/cgroupfs_emu/daemon.log")
    assert logs.default_log_file() == expected


def _abort_in_namespace(tmp_path, mode: str) -> dict:
    if os.geteuid() != 0:
        pytest.skip("a private mount namespace with its own /dev needs root")
    r = subprocess.run(["unshare", "-m", sys.executable, HELPER, str(tmp_path), mode],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.splitlines()[-1])
    assert (report["rc"], report["stdout"], report["stderr"]) == (0, "", ""), report
    assert report["exited"] and not report["left_mounted"], report
    return report


def test_an_aborted_daemon_leaves_its_trace_in_syslog(tmp_path):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "log.sock"))
    try:
        report = _abort_in_namespace(tmp_path, "syslog")
        receiver.settimeout(0)
        got = []
        try:
            while True:
                got.append(receiver.recv(65536).decode())
        except BlockingIOError:
            pass
    finally:
        receiver.close()
    ident = f"cgroupfs_emu[{report['pid']}]: "
    mnt = tmp_path / "m"
    # <facility daemon (3) * 8 + severity>: info 6, error 3; nothing but these three
    assert [m[:4] + m[4:].split(" ", 1)[0] for m in got] == [
        f"<30>{ident.strip()}", f"<27>{ident.strip()}", f"<27>{ident.strip()}"], got
    assert ": mounted " in got[0] and "log syslog" in got[0]
    assert got[1] == f"<27>{ident}cgroupfs_emu ERROR {ABORTED.format(mnt)}\0"
    assert got[2] == f"<27>{ident}cgroupfs_emu ERROR unmounted, exiting with status 3\0"


def test_an_aborted_daemon_leaves_its_trace_in_the_default_file(tmp_path):
    report = _abort_in_namespace(tmp_path, "file")
    # root's default, /var/log/cgroupfs_emu.log, which the namespace had on varlog/
    lines = (tmp_path / "varlog" / "cgroupfs_emu.log").read_text().splitlines()
    tag = f"cgroupfs_emu[{report['pid']}] cgroupfs_emu"
    assert len(lines) == 3, lines
    assert f"{tag} INFO " in lines[0] and "log /var/log/cgroupfs_emu.log" in lines[0]
    assert lines[1].endswith(f"{tag} ERROR {ABORTED.format(tmp_path / 'm')}")
    assert lines[2].endswith(f"{tag} ERROR unmounted, exiting with status 3")


def test_syslog_takes_names_that_are_not_utf8(tmp_path, monkeypatch):
    """Group names reach the daemon surrogate-escaped (os.fsdecode); syslog gets the
    record with the byte written as \\udcff instead of losing it."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "log.sock"))
    monkeypatch.setattr(logs, "SYSLOG_ADDRESS", str(tmp_path / "log.sock"))
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        assert logs.setup(None, debug=False, detached=True) == "syslog"
        logging.getLogger("cgroupfs_emu.test").info("not sent: only warnings and up")
        logging.getLogger("cgroupfs_emu.test").error("rmdir %s", "/jobs/\udcff")
        receiver.settimeout(5)
        got = receiver.recv(65536).decode()
    finally:
        root.handlers[0].close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        receiver.close()
    assert got == f"<27>cgroupfs_emu[{os.getpid()}]: cgroupfs_emu.test ERROR rmdir /jobs/\\udcff\0"
