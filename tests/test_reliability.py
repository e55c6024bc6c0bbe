"""No input, client or load crashes the daemon, leaks, breaks a limit or
crosses a privilege line. Each test rebuilds one reproduction of the issue through a
real mount, real client processes and the real socket."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import (P, Helper, Mount, errno_of, group, needs_fuse, num, read,
                      readable_copy, stat_of, wait_until, write)

pytestmark = [pytest.mark.mount, needs_fuse]


def socket_of(m: Mount) -> str:
    return os.getxattr(m.path, "user.cgroupfs_emu.socket").decode()


def fds_of(pid: int, kind: str) -> int:
    """Descriptors of process *pid* whose link reads *kind* (e.g. anon_inode:[pidfd])."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}") == kind
        except FileNotFoundError:
            pass
    return n


class RawClient(Helper):
    """helpers/rawclient.py: a bare protocol client in its own process."""

    def __init__(self, sock_path: str):
        super().__init__("rawclient.py", sock_path)
        assert self.first.startswith("ready"), self.first + self.proc.stderr.read()

    def request(self, line: str) -> str:
        assert self.do(f"send {line}") == "ok"
        return self.do("recv")


@pytest.fixture
def raw_clients():
    started: list[RawClient] = []

    def start(sock_path: str) -> RawClient:
        started.append(RawClient(sock_path))
        return started[-1]

    try:
        yield start
    finally:
        for c in started:
            if c.proc.poll() is None:
                c.proc.kill()  # our own child, by its pid
                c.proc.wait()
            c.stop()


def hello(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Say hello on a raw connection; the reply line, or b"" if the daemon closed it."""
    sock.settimeout(timeout)
    try:
        sock.sendall(b"hello 1\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                return b""
            data += chunk
        return data
    except (ConnectionResetError, BrokenPipeError):
        return b""


# ------------------------------------------------------------------ descriptor budget


def test_daemon_survives_more_clients_than_descriptors_and_serves_the_mount():
    """ulimit -n 64 and 100 clients: connections beyond the budget are refused with a
    logged warning and a closed socket; the mount serves throughout."""
    m = Mount(prefix=("prlimit", "--nofile=64:64"))
    held: list[socket.socket] = []
    try:
        path = socket_of(m)
        g = group(m, "g")
        answered = refused = 0
        for i in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            held.append(s)
            if hello(s).startswith(b"ok "):
                answered += 1
            else:
                refused += 1
            if i % 10 == 9:  # the mount keeps serving: /proc reads, writes, mkdir
                assert m.proc.poll() is None, m.log()
                assert int(read(m.p("memory.usage_in_bytes"))) >= 0
                write(f"{g}/tasks", str(os.getpid()))
                assert str(os.getpid()) in read(f"{g}/tasks").split()
                write(m.p("tasks"), str(os.getpid()))
                os.mkdir(m.p(f"d{i}"))
        assert answered >= 5, (answered, refused)
        assert refused > 0
        assert m.proc.poll() is None, m.log()
        assert "descriptor budget" in m.log()
        for s in held:
            s.close()
        held.clear()
        # once they are gone, new clients are served again

        def served() -> bool:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(path)
                return hello(s).startswith(b"ok ")
        assert wait_until(served, 10, 0.2), m.log()
    finally:
        for s in held:
            s.close()
        m.stop()


def test_soft_descriptor_limit_is_raised_to_the_hard_limit():
    m = Mount(prefix=("prlimit", "--nofile=100:300"))
    try:
        with open(f"/proc/{m.proc.pid}/limits") as f:
            line = next(x for x in f if x.startswith("Max open files"))
        assert line.split()[3:5] == ["300", "300"], line
    finally:
        m.stop()


# ----------------------------------------------------------------------------- pidfds


def test_no_pidfd_leaks_when_clients_are_oom_killed_with_a_request_in_flight(
        mnt, raw_clients):
    g = group(mnt, "g", limit_in_bytes="1M")
    path = socket_of(mnt)
    daemon = mnt.proc.pid
    before = fds_of(daemon, "anon_inode:[pidfd]")
    for _ in range(8):
        c = raw_clients(path)
        assert c.request("hello 1").startswith("ok ")
        assert c.do(f"join {g}/tasks") == "ok"
        # two requests in one write: the second reaches the daemon after the OOM kill
        c.send("send charge anon 2M\\ncharge anon 4096")
        c.proc.wait(timeout=10)
    assert wait_until(lambda: fds_of(daemon, "anon_inode:[pidfd]") == before), (
        before, fds_of(daemon, "anon_inode:[pidfd]"))
    assert num(f"{g}/memory.oom_control".replace("oom_control", "usage_in_bytes")) == 0
    assert stat_of(f"{g}/memory.oom_control")["oom_kill"] == 8


# ---------------------------------------------------------------- a hang-up under OOM


def test_a_connection_closed_while_its_charge_waits_under_oom_is_an_exit(
        mnt, raw_clients):
    g = group(mnt, "g", limit_in_bytes="1M", oom_control="1")
    c = raw_clients(socket_of(mnt))
    assert c.request("hello 1").startswith("ok ")
    assert c.do(f"join {g}/tasks") == "ok"
    assert c.request("charge anon 512K").startswith("ok ")
    assert c.do("send charge anon 1M") == "ok"  # sleeps on the group's OOM queue
    assert wait_until(lambda: stat_of(f"{g}/memory.oom_control")["under_oom"] == 1)
    assert c.do("close") == "ok"  # the process lives on, its connection is gone
    assert wait_until(lambda: stat_of(f"{g}/memory.oom_control")["under_oom"] == 0, 5)
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 0, 5)
    assert c.proc.poll() is None


# ------------------------------------------------------------------ replies in flight


def test_clients_exiting_with_replies_in_flight_log_no_error(mnt, raw_clients):
    g = group(mnt, "g")
    path = socket_of(mnt)
    for _ in range(20):
        c = raw_clients(path)
        assert c.request("hello 1").startswith("ok ")
        c.do(f"join {g}/tasks")
        c.send("send " + "\\n".join(["charge anon 4096", "uncharge anon 4096"] * 400))
        c.send("exit")
        c.proc.wait(timeout=10)
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 0)
    assert mnt.proc.poll() is None
    log = mnt.log()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


# ----------------------------------------------------------- mkdir and the kmem limit


def test_mkdir_honours_an_enforced_kmem_limit(mnt):
    """seeds: the kernel data of a new child is kmem of its parent; with the parent's
    independent kmem limit too low, mkdir is ENOMEM and nothing is charged."""
    p = group(mnt, "p", **{"kmem.independent_kmem_limit": "1", "kmem.limit_in_bytes": "0"})
    assert errno_of(os.mkdir, f"{p}/c") == errno.ENOMEM
    assert not os.path.exists(f"{p}/c")
    assert num(f"{p}/memory.kmem.usage_in_bytes") == 0
    assert num(f"{p}/memory.usage_in_bytes") == 0
    write(f"{p}/memory.kmem.limit_in_bytes", "32K")  # exactly one child's data
    os.mkdir(f"{p}/c")
    assert errno_of(os.mkdir, f"{p}/d") == errno.ENOMEM
    assert num(f"{p}/memory.kmem.usage_in_bytes") == 32768
    assert num(f"{p}/memory.kmem.failcnt") == 2


# ---------------------------------------------------------- rmdir under a flat parent


def test_rmdir_under_a_non_hierarchical_parent_keeps_its_limit(mnt, chargers):
    """use_hierarchy 0: the child's page cache never counted against the parent, so at
    rmdir it goes to the root (mem_cgroup_move_parent()), never over the parent's
    limit."""
    write(mnt.p("memory.use_hierarchy"), "0")
    p = group(mnt, "p", limit_in_bytes="4M")
    c = group(mnt, "p/c")
    assert read(f"{c}/memory.use_hierarchy").strip() == "0"
    before = num(f"{p}/memory.usage_in_bytes")  # the child's kernel data
    client = chargers(mnt.path, "--no-stock")
    assert client.do(f"join {c}/tasks") == "ok"
    assert client.do("charge file 8388608") == "ok 2048"
    assert client.do(f"join {mnt.p('tasks')}") == "ok"
    root_before = num(mnt.p("memory.usage_in_bytes"))
    os.rmdir(c)
    assert num(f"{p}/memory.usage_in_bytes") <= num(f"{p}/memory.limit_in_bytes")
    assert num(f"{p}/memory.usage_in_bytes") == before - 32768  # its data went with it
    assert stat_of(f"{p}/memory.stat")["cache"] == 0
    assert num(mnt.p("memory.usage_in_bytes")) == root_before  # still charged, at the root
    assert stat_of(mnt.p("memory.stat"))["cache"] == 8388608


# ----------------------------------------------------------- names that are not UTF-8


def test_a_group_named_with_bytes_that_are_not_utf8(mount_with, raw_clients, tmp_path):
    """mkdir $'\\xff' is legal on the kernel. Its clients get replies and events (the
    name escaped as \\377), reclaim of their page cache does not fail the write that
    caused it, and log lines naming it or a non-UTF-8 release_agent are written."""
    log_file = tmp_path / "daemon.log"
    mnt = mount_with(f"log={log_file}")
    g = os.fsencode(mnt.path) + b"/\xff"
    os.mkdir(g)
    c = raw_clients(socket_of(mnt))
    assert c.request("hello 1").startswith("ok ")
    write(g + b"/tasks", str(c.pid))
    for _ in range(2):  # the second time from the daemon's cache of parsed lines
        reply = c.request("charge anon 4096")
        assert reply.startswith("ok pages=1 group=/\\377 "), reply
    assert c.request("charge file 1M").startswith("ok pages=256 group=/\\377 ")
    assert c.request("status").split()[2] == "group=/\\377"
    # reclaim evicts the client's page cache and tells it, naming the group
    assert errno_of(write, g + b"/memory.limit_in_bytes", "512K") == 0
    assert c.do("recv") == f"event evicted kind=file bytes={130 * P} group=/\\377 pid={c.pid}"
    assert errno_of(write, g + b"/memory.force_empty", "0") == 0
    assert c.do("recv") == f"event evicted kind=file bytes={126 * P} group=/\\377 pid={c.pid}"
    assert errno_of(write, g + b"/memory.shrink_in_bytes", "8K") == 0
    assert num(g + b"/memory.usage_in_bytes") == 8192
    # a failing release agent, named in the log with the group
    write(mnt.p("release_agent"), b"/nonexistent/agent-\xfe")
    write(g + b"/notify_on_release", "1")
    write(mnt.p("tasks"), str(c.pid))  # the group empties: the agent runs, and fails
    assert wait_until(lambda: b"release agent" in log_file.read_bytes(), 5), mnt.log()
    log = log_file.read_bytes()
    assert b"/nonexistent/agent-\\udcfe for /\\udcff failed" in log, log[-3000:]
    assert "Logging error" not in mnt.log()


# ------------------------------------------------------------ the default socket path

NOBODY = 65534
#: uids of no account on the machine, for the socket directory tests
VICTIM, OTHER = 54321, 54322

_CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("error", e.errno)
else:
    s.sendall(b"hello 1\\n")
    print(s.makefile().readline().split()[0])
"""


def as_user(uid: int, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=30, **kw)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switches users (CI runs as root)")


@needs_root
def test_socket_mode_0666_works_on_the_default_socket_path(mount_with):
    m = mount_with("socket_mode=0666")
    path = socket_of(m)
    assert path.startswith("/run/cgroupfs_emu/")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    out = as_user(NOBODY, ["/usr/bin/python3", "-c", _CONNECT, path])
    assert out.stdout.split() == ["ok"], out
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) & 0o022 == 0


@pytest.fixture(scope="module")
def daemon_tree():
    """The daemon and what it imports where another user can read them."""
    with readable_copy("cgroupfs_emu.cli.mount") as tree:
        yield tree


@needs_root
def test_default_socket_directory_of_another_user_is_refused(daemon_tree):
    """/tmp/cgroupfs_emu-UID made first by someone else (here: mode 0777, owned by
    another uid) must not receive the socket; nor one writable by others."""
    base = f"/tmp/cgroupfs_emu-{VICTIM}"
    work = tempfile.mkdtemp(prefix="cgemu-i11-")
    os.chmod(work, 0o755)
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    os.chown(mnt, VICTIM, VICTIM)
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["PYTHONPATH"] = daemon_tree
    python = os.path.realpath(sys.executable)  # the distribution's, not the checkout's venv

    def run_daemon() -> subprocess.CompletedProcess:
        out = as_user(VICTIM, [python, "-m", "cgroupfs_emu", mnt], env=env, cwd="/")
        if out.returncode == 0:  # it mounted (where users may use /dev/fuse): undo
            subprocess.run(["fusermount3", "-u", mnt], check=False)
        return out

    try:
        shutil.rmtree(base, ignore_errors=True)
        for owner, mode, why in ((OTHER, 0o777, f"belongs to uid {OTHER}"),
                                 (OTHER, 0o700, f"belongs to uid {OTHER}"),
                                 (VICTIM, 0o777, "writable by others")):
            os.mkdir(base)
            os.chown(base, owner, owner)
            os.chmod(base, mode)
            out = run_daemon()
            assert out.returncode != 0 and why in out.stderr, (owner, mode, out)
            assert os.listdir(base) == []
            os.rmdir(base)
        # absent: created, ours alone
        out = run_daemon()
        st = os.lstat(base)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (VICTIM, 0o700), out
        assert "cannot create socket" not in out.stderr, out
    finally:
        subprocess.run(["fusermount3", "-u", "-z", mnt], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


# -------------------------------------------------------- event_control's descriptors

_WRITE_GIVEN_FD = """
import os, sys
ec = int(sys.argv[1])
line = sys.argv[2]
if len(sys.argv) > 3:  # our own eventfd and control file, at the numbers in the line
    efd = os.eventfd(0)
    cfd = os.open(sys.argv[3], os.O_RDONLY)
    line = f"{efd} {cfd} 4096"
try:
    os.write(ec, line.encode())
except OSError as e:
    print("error", e.errno, flush=True)
    sys.exit(0)
print("registered", flush=True)
if len(sys.argv) > 3:
    sys.stdin.readline()  # charged: the eventfd has fired (non-blocking read)
    os.set_blocking(efd, False)
    try:
        print("event", os.eventfd_read(efd), flush=True)
    except BlockingIOError:
        print("no event", flush=True)
"""


@needs_root
def test_event_control_uses_the_writers_descriptors_not_the_openers(mount_with,
                                                                          chargers):
    """A root process opens cgroup.event_control and hands the descriptor to a child
    that drops to nobody and holds neither descriptor named in the line: the kernel
    answers EBADF (the writer's table); root's eventfd must never be taken."""
    mnt = mount_with("allow_other")  # nobody opens a control file of its own
    g = group(mnt, "g")
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    cfd = os.open(f"{g}/memory.usage_in_bytes", os.O_RDONLY)
    ec = os.open(f"{g}/cgroup.event_control", os.O_WRONLY)
    try:
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "/usr/bin/python3", "-c", _WRITE_GIVEN_FD, str(ec), f"{efd} {cfd} 4096"]
        out = subprocess.run(argv, pass_fds=(ec,), capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["error", str(errno.EBADF)], out
        # the child's own descriptors at whatever numbers it got are used instead
        argv[-1:] = ["-", f"{g}/memory.usage_in_bytes"]
        with subprocess.Popen(argv, pass_fds=(ec,), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) as child:
            try:
                assert child.stdout.readline().split() == ["registered"]
                c = chargers(mnt.path, "--no-stock")
                c.do(f"join {g}/tasks")
                assert c.do("charge anon 8192") == "ok 2"
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.stdout.readline().split() == ["event", "1"]
            finally:
                if child.poll() is None:
                    child.kill()
        with pytest.raises(BlockingIOError):  # root's eventfd never fired
            os.eventfd_read(efd)
    finally:
        for fd in (efd, cfd, ec):
            os.close(fd)


def test_the_opener_writing_itself_still_registers(mnt, listeners):
    """The ordinary case (listener.py opens and writes) keeps working."""
    g = group(mnt, "g")
    assert listeners(g, "memory.usage_in_bytes", "4K").first == "registered"


# -------------------------------------------------------------- answers that were EIO


@pytest.mark.parametrize("name", [b"g", b"\xff"])
@pytest.mark.parametrize("profile,file,value", [
    ("kernel=linux-6", "memory.limit_in_bytes", b"6\x002M"),       # "6": 0 pages
    ("kernel=seeds", "memory.shrink_in_bytes", b"18446744073709551616"),  # wraps to 0
])
def test_writes_that_answered_eio_get_the_kernels_answer(mount_with, chargers, name,
                                                              profile, file, value):
    """Both values mean 0 and make reclaim evict a client's page cache; they answered
    EIO when the client's group name was not UTF-8. The kernel reclaims everything
    and succeeds."""
    m = mount_with(profile)
    g = os.fsencode(m.path) + b"/" + name
    os.mkdir(g)
    c = chargers(m.path, "--no-stock")
    write(g + b"/tasks", str(c.pid))
    assert c.do("charge file 1048576") == "ok 256"
    assert errno_of(write, g + b"/" + file.encode(), value) == 0
    assert num(g + b"/memory.usage_in_bytes") == 0
    if file == "memory.limit_in_bytes":
        assert num(g + b"/memory.limit_in_bytes") == 0
    assert c.do("events").startswith("ok 1048576 evicted")
