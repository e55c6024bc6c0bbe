"""The pytest plugin (entry point ``pytest11``: cgroupfs_emu): real cgroupfs_emu
mounts as fixtures. docs/testing.md is the user's guide.

* ``cgroupfs``: a fresh mount per test in the test's tmp dir, options from
  ``@pytest.mark.cgroupfs(kernel="linux-3.10", swap="64M", ...)``;
* ``cgroupfs_session``: one mount for the session, options from the ini setting
  ``cgroupfs_session_options``;
* ``cgroupfs_factory``: ``cgroupfs_factory("kernel=linux-6", directory=...)`` for more
  mounts in one test.

A test fails when a daemon it used logged a traceback while it ran; the daemon's exit
status (and a traceback logged on the way down) is checked when the fixture is torn
down, so that is reported as an error of the test's teardown. Without /dev/fuse or
fusermount3 the fixtures skip, saying so.
"""

from __future__ import annotations

import contextlib
import tempfile

import pytest

from .mount import HAVE_FUSE, CgroupFS, option_string

MARKER = "cgroupfs"
SESSION_INI = "cgroupfs_session_options"
_USED = pytest.StashKey[list]()


def pytest_addoption(parser) -> None:
    parser.addini(SESSION_INI, "-o options of the cgroupfs_session mount "
                  "(e.g. kernel=linux-6,swap=64M)", default="")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(*flags, **options): -o options of the "
                            "test's cgroupfs mount, e.g. kernel=\"linux-3.10\", swap=\"64M\"")


def _sayer(config):
    """Print a line to the terminal while pytest captures output (a session fixture
    that waits must say so)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")

    def say(message: str) -> None:
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            if reporter is not None:
                reporter.write_line(message)
            else:
                print(message, flush=True)
    return say


def _need_fuse() -> None:
    if not HAVE_FUSE:
        pytest.skip("cgroupfs: /dev/fuse or fusermount3 missing")


def _track(request, fs: CgroupFS) -> None:
    """Remember that the running test uses *fs*: its log is checked after the call."""
    node = request.node
    if isinstance(node, pytest.Item):
        node.stash.setdefault(_USED, []).append(fs)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "call" and report.passed:
        for fs in item.stash.get(_USED, []):
            try:
                fs.check_log()
            except AssertionError as e:
                report.outcome = "failed"
                report.longrepr = str(e)
                break


@pytest.fixture
def cgroupfs_factory(request, tmp_path):
    """``make(options="", *, directory=None, **start_args)``: a mount started now and
    stopped (and checked) at the end of the test. *directory* defaults to a fresh
    directory in the test's tmp dir."""
    _need_fuse()
    mounts: list[CgroupFS] = []
    say = _sayer(request.config)

    def make(options: str = "", *, directory: str | None = None, source: str = "memory",
             prefix=(), flags=(), remove_dir: bool = False) -> CgroupFS:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="cgroupfs-", dir=tmp_path)
        fs = CgroupFS(directory, options, source=source, prefix=prefix, flags=flags,
                      remove_dir=remove_dir)
        fs.start(say=say)  # a mount that fails to start is stopped and raises here
        mounts.append(fs)
        _track(request, fs)
        return fs

    try:
        yield make
    finally:
        failures = []
        for fs in mounts:
            try:
                fs.stop()
            except AssertionError as e:
                failures.append(str(e))
        if failures:
            pytest.fail("\n".join(failures), pytrace=False)


@pytest.fixture
def cgroupfs(request, cgroupfs_factory):
    """A fresh mount for this test; -o options from @pytest.mark.cgroupfs(...)."""
    flags: list[str] = []
    options: dict = {}
    for mark in reversed(list(request.node.iter_markers(MARKER))):  # nearest wins
        flags.extend(mark.args)
        options.update(mark.kwargs)
    return cgroupfs_factory(option_string(*flags, **options))


@pytest.fixture(scope="session")
def cgroupfs_session(request, tmp_path_factory):
    """One mount for the whole session (-o from the ini setting
    cgroupfs_session_options). Groups made by one test stay for the next: give each
    test its own group."""
    _need_fuse()
    fs = CgroupFS(str(tmp_path_factory.mktemp("cgroupfs-session")),
                  request.config.getini(SESSION_INI))
    fs.start(say=_sayer(request.config))
    try:
        yield fs
    finally:
        fs.stop()


@pytest.fixture(autouse=True)
def _cgroupfs_session_in_use(request):
    """Tie the session mount to each test that uses it, for the traceback check."""
    if "cgroupfs_session" in request.fixturenames:
        fs = request.getfixturevalue("cgroupfs_session")
        fs.check_log()  # a traceback before this test belongs to an earlier one
        _track(request, fs)
    yield


__all__ = ["cgroupfs", "cgroupfs_factory", "cgroupfs_session"]
