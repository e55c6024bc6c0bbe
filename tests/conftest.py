"""Shared fixtures: a real FUSE mount served by the real daemon in a subprocess, by the
project's own pytest plugin (cgroupfs_emu.testing, docs/testing.md): ``mnt``,
``linux6`` and ``mount_with`` are its ``cgroupfs_factory`` with fixed options, and
``Mount`` is its CgroupFS started at once."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from cgroupfs_emu.testing import HAVE_FUSE, CgroupFS

needs_fuse = pytest.mark.skipif(not HAVE_FUSE, reason="/dev/fuse or fusermount3 missing")


def wait_until(predicate, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def asleep(proc, comm: str) -> bool:
    """Has *proc* (our own child) exec'd *comm* and gone to sleep? Join a process to a
    group only then when a test counts pages: what it touches while starting up after
    joining (the exec, the loader's work) is charged to the group, as on a kernel."""
    try:
        with open(f"/proc/{proc.pid}/comm") as f:
            name = f.read().strip()
        with open(f"/proc/{proc.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return name == comm and state == "S"


def ppid_of(pid: int) -> int | None:
    """The current parent of *pid* (/proc/PID/stat), None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


@contextlib.contextmanager
def compiled_helper(name: str, optimize: str = "-O2"):
    """tests/helpers/NAME.c built into a temporary directory, removed afterwards."""
    d = tempfile.mkdtemp(prefix=f"cgemu-{name}-")
    exe = os.path.join(d, name)
    src = os.path.join(os.path.dirname(__file__), "helpers", f"{name}.c")
    subprocess.run(["cc", optimize, "-Wall", "-o", exe, src], check=True)
    try:
        yield exe
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def started(argv: list[str], **popen_args):
    """A process this test starts; whatever happens it is gone at the end (killed by
    its pid if still running) and its pipes are closed."""
    p = subprocess.Popen(argv, **popen_args)
    try:
        yield p
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout, p.stderr):
            if f is not None:
                f.close()


def _mount_dir() -> str:
    """A directory of its own for a mount, outside the test's tmp dir: mode 0755, so
    other users reach allow_other mounts through it."""
    d = tempfile.mkdtemp(prefix="cgemu-")
    os.chmod(d, 0o755)
    return d


class Mount(CgroupFS):
    """One foreground daemon and its mount point, started at once, by the pytest
    plugin's machinery (cgroupfs_emu.testing). Always call stop()."""

    def __init__(self, options: str = "", source: str = "memory", prefix: tuple = (),
                 flags: tuple = ()):
        """*prefix*: a command the daemon runs under (e.g. prlimit); *flags*: more
        daemon flags (e.g. -d)."""
        super().__init__(_mount_dir(), options, source=source, prefix=prefix, flags=flags,
                         remove_dir=True)
        self.start()


def _mount_fixture(options: str):
    @pytest.fixture
    def fixture(cgroupfs_factory):
        return cgroupfs_factory(options, directory=_mount_dir(), remove_dir=True)
    return fixture


#: the default profile (seeds). ncpus=6 makes a child's kernel data 2 + 6 = 8 pages,
#: what the tests that count a parent's usage after mkdir expect.
mnt = _mount_fixture("ncpus=6")
linux6 = _mount_fixture("kernel=linux-6")


@pytest.fixture
def mount_with(cgroupfs_factory):
    """A factory for mounts with particular options; every one is stopped (and its
    daemon checked) at the end, by the plugin's cgroupfs_factory."""
    def make(options: str = "") -> CgroupFS:
        return cgroupfs_factory(options, directory=_mount_dir(), remove_dir=True)
    return make


def write(path: str, data: bytes | str) -> None:
    """Exactly one write(2) of *data* (O_WRONLY|O_TRUNC, like a shell redirection)."""
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


# ---------------------------------------------------------------------- workloads

HELPERS = os.path.join(os.path.dirname(__file__), "helpers")
P = 4096


class Helper:
    """A helper process (tests/helpers/*.py) we started, driven by lines on stdin and
    answering lines on stdout; stopped by closing its stdin, or killed by its pid."""

    def __init__(self, script: str, *args: str):
        """*script*: a Python file in tests/helpers, or the path of an executable."""
        argv = ([sys.executable, os.path.join(HELPERS, script)] if script.endswith(".py")
                else [script])
        self.proc = subprocess.Popen(argv + list(args),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self._out = b""  # read with os.read: select() must see everything unread
        self.first = self.line()

    def _fill(self, timeout: float) -> bool:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            return False
        data = os.read(self.proc.stdout.fileno(), 65536)
        if not data:
            return False
        self._out += data
        return True

    def line(self, timeout: float = 10.0) -> str:
        while b"\n" not in self._out:
            assert self._fill(timeout), "helper did not answer: " + self._out.decode()
        line, _, self._out = self._out.partition(b"\n")
        return line.decode().strip()

    def quiet(self, seconds: float = 0.3) -> bool:
        """Nothing more to say for *seconds*."""
        return b"\n" not in self._out and not self._fill(seconds)

    def send(self, cmd: str) -> None:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def do(self, cmd: str, timeout: float = 10.0) -> str:
        self.send(cmd)
        return self.line(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


class Charger(Helper):
    """A socket client (helpers/charger.py): ``do("charge anon 4096")`` -> "ok 1"."""

    def __init__(self, where: str, *extra: str):
        super().__init__("charger.py", where, *extra)
        assert self.first.startswith("ready"), self.first + self.proc.stderr.read()


class Listener(Helper):
    """An eventfd listener (helpers/listener.py) registered on one control file."""

    def __init__(self, group_dir: str, control: str, args: str = ""):
        super().__init__("listener.py", group_dir, control, args)

    def events(self, seconds: float = 1.0) -> int:
        """Eventfd reads that arrive within *seconds* (summing their counts)."""
        total = 0
        while not self.quiet(seconds):
            line = self.line()
            assert line.startswith("event "), line
            total += int(line.split()[1])
            seconds = 0.2
        return total


def _starter(cls):
    @pytest.fixture
    def fixture():
        started: list[Helper] = []

        def start(*args: str) -> Helper:
            started.append(cls(*args))
            return started[-1]

        try:
            yield start
        finally:
            for helper in started:
                helper.stop()
    fixture.__doc__ = f"Start {cls.__name__} processes; all are stopped at the end."
    return fixture


chargers = _starter(Charger)
listeners = _starter(Listener)


def num(path: str) -> int:
    return int(read(path))


def stat_of(path: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in read(path).splitlines())}


def group(m: Mount, name: str, **settings: str) -> str:
    os.makedirs(m.p(name))
    for key, value in settings.items():
        write(m.p(name, f"memory.{key}"), value)
    return m.p(name)


_IMPORTS = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
found = {}
for name, module in list(sys.modules.items()):
    top = name.partition(".")[0]
    spec = getattr(module, "__spec__", None)
    if ("." in name or top in sys.stdlib_module_names or top in ("__main__", "sitecustomize")
            or spec is None or spec.origin in (None, "built-in", "frozen")):
        continue
    found[top] = (list(spec.submodule_search_locations or []) or [spec.origin])[0]
print(json.dumps(found))
"""


@contextlib.contextmanager
def readable_copy(module: str):
    """What importing *module* takes beyond the standard library (the package, pyfuse3,
    trio, ...), copied into a temporary directory every user can read. Another user
    runs it from there with the distribution's python, ``os.path.realpath(sys.executable)``
    and PYTHONPATH set to the directory: the checkout and its .venv may sit where only
    their owner can look (a 0700 clone under /root)."""
    import json
    out = subprocess.run([sys.executable, "-c", _IMPORTS, module], capture_output=True,
                         text=True, check=True, cwd="/")
    d = tempfile.mkdtemp(prefix="cgemu-readable-")
    try:
        for name, path in json.loads(out.stdout).items():
            target = os.path.join(d, os.path.basename(path))
            if os.path.isdir(path):
                shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(path, target)
        for dirpath, _, filenames in os.walk(d):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
