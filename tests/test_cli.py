"""The commands as people use them, through real processes: the mount helper's
conventions (help, version, mount-point checks, detaching, pidfile, start line,
sd_notify, the systemd unit), and cgemu (finding the mount, exec in place, closed
pipes, ps, top, stat)."""

from __future__ import annotations

import errno
import fcntl
import importlib.metadata
import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

import cgroupfs_emu
from conftest import Mount, P, group, needs_fuse, num, read, started, wait_until

pytestmark = [pytest.mark.mount, needs_fuse]
REPO = Path(__file__).resolve().parents[1]
SOCKET_XATTR = "user.cgroupfs_emu.socket"
SUBCOMMANDS = ["alloc", "socket", "exec", "ps", "top", "stat"]


def run(*argv, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 30)
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


# ---------------------------------------------------------------- help and version


def test_help_and_version_exit_zero_and_agree_with_the_package():
    # pyproject.toml is the one place; the package and both commands read it back
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"$', pyproject, re.M).group(1)
    assert importlib.metadata.version("cgroupfs_emu") == version == cgroupfs_emu.__version__
    assert version not in (REPO / "cgroupfs_emu" / "__init__.py").read_text()
    for flag in ("-h", "--help"):
        r = run("cgroupfs_emu", flag)
        assert r.returncode == 0 and r.stdout.startswith("usage: cgroupfs_emu"), r
        assert "example" in r.stdout and r.stderr == ""
    for flag in ("-V", "--version"):
        assert run("cgroupfs_emu", flag).stdout == f"cgroupfs_emu {version}\n"
        assert run("cgemu", flag).stdout == f"cgemu {version}\n"
    r = run("cgemu", "-h")
    assert r.returncode == 0 and all(sub in r.stdout for sub in SUBCOMMANDS)
    for sub in SUBCOMMANDS:
        r = run("cgemu", sub, "-h")
        assert r.returncode == 0, r
        assert "example" in r.stdout and f"cgemu {sub}" in r.stdout


@pytest.mark.parametrize("option,message", [
    ("oom_kill=maybe", "oom_kill must be kill or none"),
    ("oom_kill", "oom_kill must be kill or none"),
    ("swap=lots", "swap='lots' is not a size"),
    ("poll_ms=5", "poll_ms='5': a number of milliseconds, 10..60000"),
    ("kernel=linux-2", "unknown kernel profile 'linux-2' (choose from kmem-2011, "),
    ("pidfile=", "pidfile needs a path"),
    ("socket_mode=999", "is not an octal mode"),
])
def test_a_bad_value_says_what_is_allowed(tmp_path, option, message):
    r = run("cgroupfs_emu", "-o", option, "memory", str(tmp_path))
    assert r.returncode == 2
    assert message in one_line(r.stderr) and "Traceback" not in r.stderr
    assert not os.path.ismount(tmp_path)


def test_cgemu_mistakes_are_one_line():
    r = run("cgemu", "exec", "--", "true")
    assert r.returncode == 2
    assert one_line(r.stderr) == ("cgemu exec: the following arguments are required: "
                                  "-g/--group (see 'cgemu exec -h')")
    r = run("cgemu", "top", "-d", "soon")
    assert r.returncode == 2 and "is not a delay in seconds" in one_line(r.stderr)


# ---------------------------------------------------------------- mount points


def test_mounting_on_a_live_mount_names_its_daemon(mnt):
    r = run("cgroupfs_emu", "memory", mnt.path)
    assert r.returncode != 0
    assert one_line(r.stderr) == (f"cgroupfs_emu: {mnt.path} is already mounted "
                                  f"(cgroupfs_emu, pid {mnt.proc.pid})")
    assert read(mnt.p("memory.use_hierarchy")) == "1\n"  # the first mount is untouched


def test_a_dead_mount_is_named_with_the_command_that_clears_it():
    m = Mount()
    try:
        read(m.p("memory.limit_in_bytes"))  # the kernel now caches the root's attributes
        m.proc.kill()  # our own daemon dies: the kernel keeps a dead mount
        m.proc.wait()
        r = run("cgroupfs_emu", "memory", m.path)
        assert r.returncode != 0
        line = one_line(r.stderr)
        assert f"{m.path} is a dead FUSE mount" in line and "Traceback" not in line
        fix = line.split("clear it with: ", 1)[1]
        assert fix == f"fusermount3 -u {m.path}"
        assert subprocess.run(shlex.split(fix)).returncode == 0
        assert not os.path.ismount(m.path)
        # ... after which the mount point takes a new mount
        r = run("cgroupfs_emu", "memory", m.path)
        assert r.returncode == 0, r.stderr
        assert read(m.p("memory.use_hierarchy")) == "1\n"
    finally:
        m.stop(check=False)


def errno_of_stat(path: str) -> int:
    try:
        os.statvfs(path)
    except OSError as e:
        return e.errno
    return 0


def test_missing_mount_point(tmp_path):
    r = run("cgroupfs_emu", "memory", str(tmp_path / "missing"))
    assert r.returncode != 0
    assert one_line(r.stderr) == f"cgroupfs_emu: mountpoint {tmp_path}/missing does not exist"


# ---------------------------------------------------------------- the detached daemon


def _fd_targets(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def test_the_detached_daemon_leaves_its_caller_alone(tmp_path):
    mnt, work, log = tmp_path / "cg", tmp_path / "work", tmp_path / "daemon.log"
    mnt.mkdir()
    work.mkdir()
    inherited = open(tmp_path / "inherited", "w")
    try:
        # capture_output: run() returns only once nobody holds our pipes any more
        r = subprocess.run(["cgroupfs_emu", "-o", f"kernel=linux-6,log={log},pidfile=d.pid",
                            "memory", str(mnt)], capture_output=True, text=True,
                           timeout=30, cwd=work, pass_fds=(inherited.fileno(),))
    finally:
        inherited.close()
    try:
        assert r.returncode == 0, r.stderr
        pid = int((work / "d.pid").read_text())  # relative to the caller's directory
        assert f"{mnt}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        fds = _fd_targets(pid)
        assert fds[0] == "/dev/null"
        assert fds[1] == fds[2] == str(log)
        assert str(tmp_path / "inherited") not in fds.values()
        assert not any(t.startswith("pipe:") for t in fds.values()), fds
        assert os.getsid(pid) == pid  # a session of its own, no controlling terminal
        sock = os.getxattr(mnt, SOCKET_XATTR).decode()
        start = [l for l in log.read_text().splitlines() if ": mounted " in l]
        assert len(start) == 1
        assert (f"cgroupfs_emu {cgroupfs_emu.__version__}: mounted {mnt} (source memory), "
                f"profile linux-6.18, socket {sock}, pid {pid}, options kernel=linux-6,"
                f"log={log},pidfile=d.pid") in start[0]
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    assert wait_until(lambda: gone(pid), timeout=15)
    assert not (work / "d.pid").exists()
    assert "exiting with status 0" in log.read_text()


def test_the_detached_daemon_without_a_log_prints_nothing(tmp_path):
    """Without log= the daemon's messages go nowhere once it detaches; none of them
    (the follower's start line was one) reaches the caller's terminal."""
    mnt = tmp_path / "cg"
    mnt.mkdir()
    r = subprocess.run(["cgroupfs_emu", "memory", str(mnt)], capture_output=True, text=True,
                       timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        os.mkdir(mnt / "g")
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    assert (r.stdout, r.stderr) == ("", "")


# ---------------------------------------------------------------- systemd


def _notify_socket(tmp_path, abstract: bool):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"cgemu-test-{os.getpid()}-{time.monotonic_ns()}"
        s.bind("\0" + name)
        return s, "@" + name
    path = str(tmp_path / "notify")
    s.bind(path)
    return s, path


def _messages(s: socket.socket, until: str, timeout: float = 20) -> list[str]:
    got = []
    deadline = time.monotonic() + timeout
    while not any(until in m for m in got):
        left = deadline - time.monotonic()
        assert left > 0, f"no {until} in {got}"
        s.settimeout(left)
        got.append(s.recv(4096).decode())
    return got


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_is_notified_once_the_mount_is_live(tmp_path, abstract):
    s, address = _notify_socket(tmp_path, abstract)
    mnt = tmp_path / "cg"
    mnt.mkdir()
    env = dict(os.environ, NOTIFY_SOCKET=address)
    with s, started(["cgroupfs_emu", "-f", "memory", str(mnt)], env=env,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
        try:
            ready = _messages(s, "READY=1")[-1].split("\n")
            # the daemon sent it: the mount answers at once
            assert os.path.ismount(mnt) and read(mnt / "memory.use_hierarchy") == "1\n"
            assert f"MAINPID={p.pid}" in ready
            p.send_signal(signal.SIGTERM)  # our own child
            assert "STOPPING=1" in _messages(s, "STOPPING=1")[-1]
            assert p.wait(timeout=15) == 0
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


def test_background_daemon_notifies_with_its_own_pid(tmp_path):
    s, address = _notify_socket(tmp_path, False)
    mnt = tmp_path / "cg"
    mnt.mkdir()
    env = dict(os.environ, NOTIFY_SOCKET=address)
    with s:
        r = run("cgroupfs_emu", "-o", f"pidfile={tmp_path}/pid", "memory", str(mnt), env=env)
        try:
            assert r.returncode == 0, r.stderr
            pid = int((tmp_path / "pid").read_text())
            assert f"MAINPID={pid}" in _messages(s, "READY=1")[-1].split("\n")
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        assert wait_until(lambda: gone(pid), timeout=15)


def _unit() -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for line in (REPO / "examples" / "cgroupfs-emu.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def _unit_command(value: str, mnt: Path) -> list[str]:
    argv = shlex.split(value.lstrip("-"))
    argv = [str(mnt) if a == "/run/cgroupfs-emu" else a for a in argv]
    if argv[0] == "/usr/local/bin/cgroupfs_emu":
        argv[0] = shutil.which("cgroupfs_emu")
    return argv


def test_the_example_unit_survives_a_crash_without_a_stale_mount(tmp_path):
    """Plays systemd's part for the example unit: start, a crash, ExecStopPost, the
    restart, on a scratch directory instead of /run/cgroupfs-emu."""
    unit = _unit()
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["OOMScoreAdjust"] == ["-1000"]
    mnt = tmp_path / "cg"
    s, address = _notify_socket(tmp_path, False)
    env = dict(os.environ, NOTIFY_SOCKET=address)
    with s:
        try:
            for round_ in range(2):
                for pre in unit.get("ExecStartPre", []):
                    subprocess.run(_unit_command(pre, mnt), capture_output=True)
                with started(_unit_command(unit["ExecStart"][0], mnt), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
                    _messages(s, "READY=1")
                    assert os.path.ismount(mnt)
                    os.mkdir(mnt / "survivor")
                    p.kill()  # the crash (our own child)
                    p.wait()
                assert errno_of_stat(str(mnt)) == errno.ENOTCONN  # the stale mount
                for post in unit["ExecStopPost"]:
                    subprocess.run(_unit_command(post, mnt), capture_output=True)
                assert not os.path.ismount(mnt)
        finally:
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


# ---------------------------------------------------------------- finding the mount


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs a private mount namespace (root, unshare)")
def test_every_subcommand_finds_the_mount_the_same_way(tmp_path):
    """In a private mount namespace (other tests' mounts detached there): none, one,
    two mounts, and -m / $CGROUPFS_EMU_MOUNT choosing."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    script = r"""
set -u
D=$1
cleanup() { fusermount3 -u -z $D/a 2>/dev/null; fusermount3 -u -z $D/b 2>/dev/null; }
trap cleanup EXIT
# copies of the mounts of the rest of the machine: detach them, in here only
grep -o '^[^ ]* [^ ]* fuse.cgroupfs_emu' /proc/mounts | while read -r _ m _; do
    umount -l "$(printf '%b' "$m")"; done
echo "none: $(cgemu socket 2>&1 | tr '\n' ' '; echo "rc=${PIPESTATUS[0]}")"
cgroupfs_emu -o pidfile=$D/a.pid memory $D/a || exit 9
echo "one-socket: $(cgemu socket)"
echo "one-alloc: $(cgemu alloc --anon 64K 2>&1 | tr '\n' '|')"
echo "one-ps: $(cgemu ps >/dev/null; echo rc=$?)"
echo "one-stat: $(cgemu stat --json | head -c 60)"
cgroupfs_emu -o pidfile=$D/b.pid memory $D/b || exit 9
for sub in socket ps stat top; do
    echo "two-$sub: $(cgemu $sub 2>&1 | tr '\n' ' '; echo "rc=${PIPESTATUS[0]}")"
done
echo "env: $(CGROUPFS_EMU_MOUNT=$D/b cgemu socket)"
echo "flag: $(CGROUPFS_EMU_MOUNT=$D/b cgemu socket -m $D/a)"
echo "bad: $(cgemu socket -m $D 2>&1 | tr '\n' ' '; echo "rc=${PIPESTATUS[0]}")"
"""
    r = run("unshare", "-m", "--propagation", "private", "bash", "-c", script, "sh",
            str(tmp_path), timeout=90)
    out = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        a, b = tmp_path / "a", tmp_path / "b"
        assert out["none"].startswith("cgemu socket: no cgroupfs_emu mount found"), out
        assert out["none"].endswith("rc=1")
        sock_a = out["one-socket"]
        assert sock_a.endswith(".sock")
        assert out["one-alloc"].startswith("charged anon 65536 bytes (16 pages)|holding")
        assert out["one-ps"] == "rc=0" and out["one-stat"].startswith('{"time"')
        for sub in ("socket", "ps", "stat", "top"):
            assert out[f"two-{sub}"] == (f"cgemu {sub}: several cgroupfs_emu mounts, "
                                         f"choose one with -m: {a} {b} rc=1"), out
        assert out["env"] != sock_a and out["env"].endswith(".sock")
        assert out["flag"] == sock_a
        assert out["bad"] == f"cgemu socket: {tmp_path} (-m) is not a cgroupfs_emu mount rc=1"
    finally:
        for name in ("a.pid", "b.pid"):
            try:
                pid = int((tmp_path / name).read_text())
            except (OSError, ValueError):
                continue
            if not wait_until(lambda: gone(pid), timeout=10):
                os.kill(pid, signal.SIGTERM)  # a daemon this test started


# ---------------------------------------------------------------- cgemu exec


def test_cgemu_exec_becomes_the_command(mnt):
    g = group(mnt, "g")
    with started(["cgemu", "exec", "-m", mnt.path, "-g", "g", "--",
                  "sh", "-c", "echo $$; exec sleep 60"], stdout=subprocess.PIPE, text=True) as p:
        assert int(p.stdout.readline()) == p.pid  # the command kept cgemu's pid
        assert read(f"{g}/cgroup.procs").split() == [str(p.pid)]
        assert wait_until(lambda: read(f"/proc/{p.pid}/comm").strip() == "sleep")
        p.send_signal(signal.SIGTERM)  # killing cgemu exec kills the command
        assert p.wait(timeout=10) == -signal.SIGTERM
    assert all(gone(int(pid)) for pid in read(f"{g}/cgroup.procs").split())


def test_cgemu_exec_statuses(mnt, tmp_path):
    g = group(mnt, "g")
    (tmp_path / "not-executable").write_text("echo hi\n")
    r = run("cgemu", "exec", "-m", mnt.path, "-g", "g", "--", "no-such-command-xyz", "a")
    assert (r.returncode, r.stderr) == (127, "cgemu exec: no-such-command-xyz: command not found\n")
    assert read(f"{g}/cgroup.procs") == ""  # a command that is not there never joined
    r = run("cgemu", "exec", "-m", mnt.path, "-g", "g", "--", str(tmp_path / "not-executable"))
    assert r.returncode == 126 and "Permission denied" in r.stderr
    assert run("cgemu", "exec", "-m", mnt.path, "-g", "g", "--", "sh", "-c", "exit 7"
               ).returncode == 7
    r = run("cgemu", "exec", "-m", mnt.path, "-g", "nope", "--", "true")
    assert r.returncode == 1
    assert one_line(r.stderr) == "cgemu exec: cannot join group nope: No such file or directory"
    # the command gets SIGPIPE back (Python ignores it, and exec would keep that)
    r = run("bash", "-c", f"cgemu exec -m {mnt.path} -g g -- yes | head -1; "
                          "echo ${PIPESTATUS[0]}")
    assert r.stdout == "y\n141\n" and r.stderr == ""


# ---------------------------------------------------------------- pipes, ps, stat, top


@pytest.mark.parametrize("command", [["ps", "--all"], ["stat"], ["top", "-b", "-n", "2",
                                                                  "-d", "0.1"],
                                     ["socket"]])
def test_output_to_a_closed_pipe_ends_quietly(mnt, command):
    group(mnt, "g")
    argv = shlex.join(["cgemu", *command, "-m", mnt.path])
    # the reader is gone before cgemu writes anything
    r = run("bash", "-c", f"(sleep 0.5; exec {argv}) | (exec 0<&-; sleep 3); "
                          "echo ${PIPESTATUS[0]}")
    assert r.stderr == "" and r.stdout == "141\n"


def test_cgemu_ps_shows_what_each_task_was_charged(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path, "--no-stock")
    assert c.do(f"join {g}/tasks") == "ok"
    for kind, size in (("anon", "64K"), ("shmem", "16K"), ("file", "1536K")):
        assert c.do(f"charge {kind} {int(size[:-1]) * 1024}").startswith("ok")
    idle = chargers(mnt.path, "--no-stock")
    assert idle.do(f"join {g}/tasks") == "ok"
    r = run("cgemu", "ps", "-m", mnt.path)
    assert r.returncode == 0
    rows = {int(l.split()[0]): l.split() for l in r.stdout.splitlines()[1:]}
    assert r.stdout.splitlines()[0].split() == ["PID", "GROUP", "ANON", "SHMEM", "FILE",
                                                "SAMPLED", "COMMAND"]
    assert rows[c.pid][1:5] == ["/g", "64K", "16K", "1.5M"]
    assert rows[idle.pid][1:5] == ["/g", "0", "0", "0"]


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_top_batch_json_shows_a_charging_client(mnt, chargers):
    g = group(mnt, "g", limit_in_bytes="64M")
    c = chargers(mnt.path, "--no-stock")
    assert c.do(f"join {g}/tasks") == "ok"
    assert c.do(f"charge anon {4 << 20}").startswith("ok")
    with started(["cgemu", "top", "-b", "-n", "2", "-d", "2", "--json", "-m", mnt.path],
                 stdout=subprocess.PIPE, text=True) as p:
        first = json.loads(p.stdout.readline())
        assert c.do(f"charge anon {1 << 20}").startswith("ok")  # between two refreshes
        second = json.loads(p.stdout.readline())
        assert p.wait(timeout=10) == 0 and p.stdout.read() == ""
    rows = [{r["group"]: r for r in snap["groups"]} for snap in (first, second)]
    assert rows[0]["/g"]["usage"] >= 4 << 20 and rows[0]["/g"]["delta"] is None
    assert rows[1]["/g"]["usage"] == num(f"{g}/memory.usage_in_bytes")
    assert rows[1]["/g"]["delta"] == 1 << 20
    assert rows[1]["/g"]["limit"] == 64 << 20 and rows[1]["/g"]["tasks"] == 1
    assert rows[1]["/"]["usage"] >= rows[1]["/g"]["usage"]
    assert second["mount"] == mnt.path and second["time"] >= first["time"] + 1.5


def _names(lines: list[str]) -> list[str]:
    return [l.split()[0] if l.startswith("/") else l.split()[1] for l in lines]


def test_top_batch_text_fits_80_columns_and_sorts(mnt, chargers):
    group(mnt, "a" * 50)
    big = group(mnt, "b", limit_in_bytes="1G")
    group(mnt, "b/child/grandchild")
    c = chargers(mnt.path, "--no-stock")
    assert c.do(f"join {big}/tasks") == "ok"
    assert c.do(f"charge anon {3 << 20}").startswith("ok")
    env = dict(os.environ, COLUMNS="80")
    r = run("cgemu", "top", "-b", "-n", "1", "-m", mnt.path, env=env)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and max(map(len, lines)) <= 80, r.stdout
    assert lines[0].startswith(f"cgemu top - {mnt.path} - ")
    assert lines[1].split() == ["GROUP", "USE/LIM", "USAGE", "LIMIT", "MEMSW", "KMEM",
                                "FAIL", "OOMK", "TASKS", "DELTA"]
    # a tree, siblings by name; long names cut to the column
    assert _names(lines[2:]) == ["/", "a" * 15 + "~", "b", "child", "grandchild"]
    b = lines[4].split()
    usage = num(f"{big}/memory.usage_in_bytes")  # 3M and the children's kernel data
    assert 3 << 20 < usage < 10 << 20
    assert b[-8:-6] == [f"{usage / (1 << 20):.1f}M", "1G"]
    assert b[-2] == "1" and b[-1] == "-"  # one task; no delta at the first refresh
    r = run("cgemu", "top", "-b", "-n", "1", "-s", "usage", "-m", mnt.path, env=env)
    # siblings by usage, largest first, each with its subtree under it
    assert _names(r.stdout.splitlines()[2:]) == ["/", "b", "child", "grandchild",
                                                 "a" * 15 + "~"]


def test_stat_json_is_one_snapshot_of_a_subtree(mnt, chargers):
    g = group(mnt, "jobs/a", limit_in_bytes="8M")
    c = chargers(mnt.path, "--no-stock")
    assert c.do(f"join {g}/tasks") == "ok"
    assert c.do(f"charge file {256 * P}").startswith("ok")
    r = run("cgemu", "stat", "--json", "-m", mnt.path, "jobs")
    snap = json.loads(one_line(r.stdout))
    assert [row["group"] for row in snap["groups"]] == ["/jobs", "/jobs/a"]
    a = snap["groups"][1]
    assert a["usage"] == num(f"{g}/memory.usage_in_bytes") >= 256 * P
    assert a["limit"] == 8 << 20 and a["stat"]["cache"] == 256 * P and a["tasks"] == 1
    r = run("cgemu", "stat", "-m", mnt.path)
    row = next(l.split() for l in r.stdout.splitlines() if l.split()[:2] == ["-", "a"])
    assert row[-7:-5] == ["1M", "8M"] and row[-1] == "1"
    r = run("cgemu", "stat", "-m", mnt.path, "nope")
    assert r.returncode == 1 and one_line(r.stderr) == f"cgemu stat: no group nope in {mnt.path}"


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _on_a_terminal(argv: list[str]):
    """Start argv on a new 80x24 pseudo-terminal as its controlling terminal."""
    master, slave = pty.openpty()
    _set_winsize(slave, 24, 80)

    def controlling_tty():
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = dict(os.environ, TERM="xterm-256color")
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                         preexec_fn=controlling_tty)
    os.close(slave)
    return p, master


def _screen_until(master: int, wanted: bytes, timeout: float = 15) -> bytes:
    """What the program draws until *wanted* shows. Plays a terminal's part: answers
    a cursor-position request (the query that ends blessed's probe) at once."""
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        left = deadline - time.monotonic()
        assert left > 0, seen[-500:]
        if select.select([master], [], [], left)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            seen += data
            for _ in range(data.count(b"\x1b[6n")):
                os.write(master, b"\x1b[1;1R")
    return seen


@pytest.mark.parametrize("quit_key", [b"q", b"\x03"])
def test_top_live_view_sorts_by_key_and_quits_cleanly(mnt, quit_key):
    group(mnt, "box")
    p, master = _on_a_terminal(["cgemu", "top", "-d", "0.2", "-m", mnt.path])
    try:
        screen = _screen_until(master, b"sort: path")
        assert b"\x1b[?1049h" in screen  # the alternate screen, not the scrollback
        assert b"\x1b[2J" not in screen  # redrawn in place, never cleared whole
        os.write(master, b"u")
        _screen_until(master, b"sort: usage")
        os.write(master, quit_key)
        assert p.wait(timeout=10) == 0
        tail = _screen_until(master, b"\x1b[?1049l", timeout=5)
        assert b"\x1b[?25h" in tail and b"Traceback" not in tail  # cursor back, no trace
    finally:
        if p.poll() is None:
            p.kill()  # our own child
            p.wait()
        os.close(master)


def test_env_mount_serves_socket_and_alloc(mnt):
    group(mnt, "g")
    env = dict(os.environ, CGROUPFS_EMU_MOUNT=mnt.path)
    env.pop("CGROUPFS_EMU_SOCKET", None)
    r = run("cgemu", "socket", env=env)
    assert r.stdout.strip() == os.getxattr(mnt.path, SOCKET_XATTR).decode()
    r = run("cgemu", "alloc", "-g", "g", "--anon", "64K", env=env)
    assert r.returncode == 0 and "charged anon 65536 bytes" in r.stdout, r.stderr
