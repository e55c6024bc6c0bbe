"""No logging call of the package can fail on a surrogate-escaped name.

Group names and release_agent paths need not be UTF-8; they reach the daemon as
surrogate-escaped str (os.fsdecode). Every logging call site of the package is found
in the source, and its format string is emitted with such a name in every %s/%r slot
through the handlers the daemon really installs (``-o log=FILE`` and stderr). A record
lost to "--- Logging error ---" fails the test; so does a logger the scan cannot see.
"""

from __future__ import annotations

import ast
import io
import logging
import pathlib
import re
import sys

import pytest

import cgroupfs_emu
from cgroupfs_emu.cli.mount import _setup_logging
from cgroupfs_emu.cli.options import MountConfig

PACKAGE = pathlib.Path(cgroupfs_emu.__file__).parent
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "exception": logging.ERROR, "critical": logging.CRITICAL}
NAME = "/jobs/\udcff\udcfe-\udc80"  # mkdir $'/jobs/\xff\xfe-\x80'
_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.\d+)?([diouxXeEfFgGcrsa%])")


def call_sites() -> list[tuple[str, int, str, str]]:
    """(file, line, level, format string) of every logging call in the package."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS and isinstance(node.func.value, ast.Name)
                    and node.args):
                continue
            owner = node.func.value.id
            msg = node.args[0]
            if isinstance(msg, ast.Constant) and isinstance(msg.value, str):
                fmt = msg.value
            elif isinstance(msg, ast.JoinedStr):
                fmt = "f-string %s"  # its values end up in the message itself
            else:
                continue
            if owner not in ("log", "logging"):
                pytest.fail(f"{path}:{node.lineno}: logging through {owner!r}, which this "
                            "scan does not know; name module loggers 'log'")
            sites.append((str(path.relative_to(PACKAGE)), node.lineno, node.func.attr, fmt))
    return sites


def args_for(fmt: str) -> tuple:
    args = []
    for conv in _SPEC.findall(fmt):
        if conv == "%":
            continue
        args.append(NAME if conv in "rsa" else 1.5 if conv in "eEfFgG" else 7)
    return tuple(args)


def test_the_scan_finds_the_logging_calls():
    sites = call_sites()
    files = {s[0] for s in sites}
    assert len(sites) >= 10 and any(f.startswith("service/") for f in files), sites


@pytest.mark.parametrize("where", ["file", "stderr"])
def test_no_logging_call_fails_on_surrogate_escaped_names(tmp_path, monkeypatch, where):
    errors = io.StringIO()
    monkeypatch.setattr(logging, "raiseExceptions", True)
    cfg = MountConfig(mountpoint=str(tmp_path))
    raw = io.BytesIO()
    if where == "file":
        cfg.log_file = str(tmp_path / "daemon.log")
    else:  # a strict UTF-8 stderr, as a daemon started without a locale may get
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, "utf-8", "strict"))
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        _setup_logging(cfg)
        handler = root.handlers[0]
        monkeypatch.setattr(handler, "handleError",
                            lambda record: errors.write(f"lost: {record.msg}\n"))
        log = logging.getLogger("cgroupfs_emu.test_log_surrogates")
        sites = call_sites()
        for file, line, level, fmt in sites:
            try:
                raise OSError(2, f"No such file: {NAME}")
            except OSError:  # log.exception() prints the traceback too
                log.log(LEVELS[level], fmt, *args_for(fmt), exc_info=level == "exception")
        handler.flush()
        handler.close()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    assert errors.getvalue() == ""
    text = ((tmp_path / "daemon.log").read_bytes() if where == "file" else raw.getvalue())
    assert text.count(b"\\udcff\\udcfe-\\udc80") >= len(sites)
