"""A group of a test mount: its control files, real processes started inside it
through ``cgemu exec``, and eventfd notifications registered through
``cgroup.event_control``.

Every call is the kernel's interface used the way a tool would use it: one write(2)
per value (the errno of a refused write surfaces as OSError), reads of whole files,
and ``cgemu exec`` (cgexec's shape) to start a process whose first page is charged
to the group.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points

#: the group's memory limits that mkdir() sets, in the order that always works when
#: raising them from unlimited (memory first: memsw may never be below it)
LIMITS = (("limit", "memory.limit_in_bytes"), ("memsw", "memory.memsw.limit_in_bytes"),
          ("kmem", "memory.kmem.limit_in_bytes"))


def python() -> list[str]:
    """This interpreter, made to import the package it runs from: -P (3.11) keeps the
    working directory off sys.path, so a checkout there cannot shadow what is installed."""
    return [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else [])]


def console_script(name: str) -> list[str]:
    """argv that runs the package's console script *name* (cgroupfs_emu, cgemu) with
    this interpreter, found from the installed entry point rather than from PATH."""
    target = {"cgroupfs_emu": "cgroupfs_emu.cli.mount:main",
              "cgemu": "cgroupfs_emu.cli.cgemu:main"}[name]
    for ep in entry_points(group="console_scripts", name=name):
        if ep.value.startswith("cgroupfs_emu."):
            target = ep.value
    module, _, func = target.partition(":")
    return python() + ["-c", f"import sys; from {module} import {func} as main; "
                             f"sys.exit(main())"]


class Event:
    """An eventfd registered on a control file: wait(timeout) for it to fire."""

    def __init__(self, efd: int):
        self._efd = efd

    def fileno(self) -> int:
        return self._efd

    def wait(self, timeout: float | None = None) -> int:
        """The eventfd's count once it fired (it is reset), or 0 after *timeout*."""
        if not select.select([self._efd], [], [], timeout)[0]:
            return 0
        return os.eventfd_read(self._efd)

    def fired(self) -> int:
        """The count so far without waiting (0: not fired)."""
        return self.wait(0)


class Group:
    """One directory of the mount. *name* is the kernel's name for it ("/" or "/a/b")."""

    def __init__(self, fs, path: str):
        self.fs = fs  # the CgroupFS it belongs to
        self.path = path

    def __repr__(self) -> str:
        return f"<Group {self.name} of {self.fs.path}>"

    def __fspath__(self) -> str:
        return self.path

    @property
    def name(self) -> str:
        rel = os.path.relpath(self.path, self.fs.path)
        return "/" if rel == "." else "/" + rel

    def p(self, *parts: str) -> str:
        """The path of *parts* below the group ("memory.stat", "child", "tasks")."""
        return os.path.join(self.path, *parts)

    def file(self, name: str) -> str:
        """The path of control file *name*, whose "memory." prefix may be left out
        (read, write and events take names this way)."""
        path = self.p(name)
        if not os.path.lexists(path) and not name.startswith("memory."):
            prefixed = self.p("memory." + name)
            if os.path.lexists(prefixed):
                return prefixed
        return path

    # ------------------------------------------------------------ control files

    def read(self, name: str) -> str:
        with open(self.file(name)) as f:
            return f.read()

    def write(self, name: str, value) -> None:
        """One write(2) of *value* (str, int or bytes), as ``echo VALUE > FILE`` does."""
        data = value if isinstance(value, bytes) else str(value).encode()
        fd = os.open(self.file(name), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def mkdir(self, path: str, limit=None, memsw=None, kmem=None, **settings) -> Group:
        """A child group (parents made as needed), its limits set (bytes or "64M"),
        then each other setting written to memory.<key> (e.g. swappiness=0)."""
        child = Group(self.fs, os.path.join(self.path, path.strip("/")))
        os.makedirs(child.path, exist_ok=False)
        given = {"limit": limit, "memsw": memsw, "kmem": kmem}
        for key, name in LIMITS:
            if given[key] is not None:
                child.write(name, given[key])
        for key, value in settings.items():
            child.write(f"memory.{key}", value)
        return child

    def rmdir(self) -> None:
        os.rmdir(self.path)

    @property
    def usage(self) -> int:
        return int(self.read("memory.usage_in_bytes"))

    @property
    def stat(self) -> dict[str, int]:
        """memory.stat as a dict."""
        return {k: int(v) for k, v in (line.split() for line in
                                       self.read("memory.stat").splitlines())}

    @property
    def tasks(self) -> list[int]:
        return [int(pid) for pid in self.read("tasks").split()]

    @property
    def procs(self) -> list[int]:
        return [int(pid) for pid in self.read("cgroup.procs").split()]

    # ----------------------------------------------------------- notifications

    @contextlib.contextmanager
    def events(self, control: str = "memory.oom_control", args: str = "") -> Iterator[Event]:
        """Register an eventfd on *control* the way a monitoring agent does:
        ``events("usage_in_bytes", "4M")`` (a threshold), ``events("oom_control")``,
        ``events("pressure_level", "low")``. Closing it at the end unregisters."""
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            cfd = os.open(self.file(control), os.O_RDONLY | os.O_CLOEXEC)
            try:
                self.write("cgroup.event_control", f"{efd} {cfd} {args}".rstrip())
                yield Event(efd)
            finally:
                os.close(cfd)
        finally:
            os.close(efd)

    # ---------------------------------------------------------------- processes

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """``cgemu exec`` of *argv* in this group."""
        return console_script("cgemu") + ["exec", "-m", self.fs.path, "-g", self.name,
                                          "--", *argv]

    def popen(self, argv: Sequence[str], **kwargs) -> subprocess.Popen:
        """A real process started inside the group (subprocess.Popen's arguments).
        It has a process group of its own, killed with everything left in it when the
        mount is stopped."""
        kwargs.setdefault("start_new_session", True)
        p = subprocess.Popen(self.exec_argv(argv), **kwargs)
        self.fs.started.append(p)
        return p

    def run(self, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """subprocess.run of *argv* inside the group; output is captured as text
        unless stdout/stderr/capture_output say otherwise."""
        if not {"stdout", "stderr", "capture_output"} & kwargs.keys():
            kwargs["capture_output"] = True
        kwargs.setdefault("text", True)
        with self.popen(argv, **{k: v for k, v in kwargs.items()
                                 if k not in ("capture_output", "input", "timeout", "check")},
                        **_pipes(kwargs)) as p:
            try:
                out, err = p.communicate(kwargs.get("input"), timeout=kwargs.get("timeout"))
            except subprocess.TimeoutExpired:
                _kill_group(p)
                raise
        result = subprocess.CompletedProcess(p.args, p.returncode, out, err)
        if kwargs.get("check"):
            result.check_returncode()
        return result


def _pipes(kwargs: dict) -> dict:
    pipes = {}
    if kwargs.get("capture_output"):
        pipes.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kwargs.get("input") is not None:
        pipes["stdin"] = subprocess.PIPE
    return pipes


def _kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process group *p* leads, only while *p* is not yet reaped (so the
    group id cannot have been reused), then reap it."""
    if p.returncode is None:
        try:
            if os.getpgid(p.pid) == p.pid:
                os.killpg(p.pid, signal.SIGKILL)
            else:
                p.kill()
        except ProcessLookupError:
            pass
        p.wait()
