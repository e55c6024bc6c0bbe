"""Real client processes charge a real mount through the real
socket, and everything is checked through the control files."""

from __future__ import annotations

import errno
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import (P, Mount, asleep, errno_of, group, needs_fuse, num, read, started, stat_of,
                      wait_until, write)

pytestmark = [pytest.mark.mount, needs_fuse]

# ---------------------------------------------------------------------- the socket


def test_socket_exists_before_ready_is_found_from_the_mount_and_removed_at_exit():
    m = Mount()
    try:
        path = os.getxattr(m.path, "user.cgroupfs_emu.socket").decode()
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert errno_of(os.getxattr, m.p("memory.stat"), "user.cgroupfs_emu.socket") == errno.ENODATA
        out = subprocess.run(["cgemu", "socket", "-m", m.path], capture_output=True, text=True)
        assert out.stdout.strip() == path
    finally:
        m.stop()
    assert not os.path.exists(path)


def test_socket_option_mode_and_environment(mount_with, chargers, tmp_path):
    sock = str(tmp_path / "emu.sock")
    m = mount_with(f"socket={sock},socket_mode=0666")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o666
    assert os.getxattr(m.path, "user.cgroupfs_emu.socket").decode() == sock
    env = dict(os.environ, CGROUPFS_EMU_SOCKET=sock)
    out = subprocess.run([sys.executable, "-c",
                          "from cgroupfs_emu.client import Client\n"
                          "with Client.connect() as c: print(c.charge(5000, 'anon'))"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "2", out.stderr
    c = chargers(sock)
    assert c.do("charge anon 4096") == "ok 1"


# ---------------------------------------------------------------------- charging


def test_charges_land_in_the_group_of_the_task_and_stay_when_it_moves(mnt, chargers):
    a, b = group(mnt, "a"), group(mnt, "b")
    c = chargers(mnt.path, "--no-stock")
    assert c.do(f"join {a}/tasks") == "ok"
    assert c.do("charge anon 5000") == "ok 2"  # rounded up to pages
    assert c.do(f"join {b}/tasks") == "ok"
    assert c.do("charge file 4096") == "ok 1"
    assert num(f"{a}/memory.usage_in_bytes") == 2 * P
    assert num(f"{b}/memory.usage_in_bytes") == P
    assert stat_of(f"{a}/memory.stat")["rss"] == 2 * P
    assert stat_of(f"{b}/memory.stat")["cache"] == P
    # freeing takes from the current group first, then from earlier ones
    assert c.do("uncharge anon 8192") == "ok 2"
    assert num(f"{a}/memory.usage_in_bytes") == 0
    assert c.do("uncharge anon 4096").startswith(f"error {errno.EINVAL}")
    root_stat = stat_of(mnt.p("memory.stat"))
    assert root_stat["total_cache"] == P
    assert num(mnt.p("memory.usage_in_bytes")) == P  # the root counts global pages


def test_usage_watermark_and_failcnt_per_level(mnt, chargers):
    parent = group(mnt, "p", limit_in_bytes="40K", oom_control="1")  # 10 pages
    child = group(mnt, "p/c", limit_in_bytes="1M")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {child}/tasks")
    # 8 pages of the child's kernel data are already charged to the parent at mkdir
    assert num(f"{parent}/memory.usage_in_bytes") == 8 * P
    assert c.do("charge anon 8192") == "ok 2"
    # kernel memory does not wait for an OOM'ing group with oom_kill_disable: ENOMEM
    assert c.do("charge kmem 4096").startswith("refused")
    assert num(f"{parent}/memory.failcnt") == 1
    assert num(f"{child}/memory.failcnt") == 0
    assert num(f"{child}/memory.usage_in_bytes") == 2 * P
    assert num(f"{parent}/memory.max_usage_in_bytes") == 10 * P
    # as in page_counter_try_charge(), the level charged before the refusal keeps
    # its raised watermark
    assert num(f"{child}/memory.max_usage_in_bytes") == 3 * P
    c.do("uncharge anon 8192")
    write(f"{child}/memory.max_usage_in_bytes", "0")
    assert num(f"{child}/memory.max_usage_in_bytes") == 0
    assert num(f"{child}/memory.memsw.usage_in_bytes") == 0


def test_memsw_counts_alongside_and_refuses_first(mnt, chargers):
    g = group(mnt, "g", limit_in_bytes="64K", **{"memsw.limit_in_bytes": "64K"})
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge shmem 65536") == "ok 16"
    assert num(f"{g}/memory.memsw.usage_in_bytes") == 64 * 1024
    s = stat_of(f"{g}/memory.stat")
    assert s["shmem"] == s["mapped_file"] == s["cache"] == 64 * 1024
    c.send("charge anon 1")  # the only task of the group is the OOM victim
    assert c.proc.wait(timeout=5) == -signal.SIGKILL
    assert num(f"{g}/memory.memsw.failcnt") == 1 and num(f"{g}/memory.failcnt") == 0
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 0)


def test_swap_device_takes_anon_pages(mount_with, chargers):
    m = mount_with("swap=1M")
    g = group(m, "g", limit_in_bytes="64K")
    c = chargers(m.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge anon 65536") == "ok 16"
    assert c.do("charge anon 16384") == "ok 4"  # 4 older pages go to swap
    s = stat_of(f"{g}/memory.stat")
    assert s["rss"] == 64 * 1024 and s["swap"] == 4 * P
    assert num(f"{g}/memory.usage_in_bytes") == 64 * 1024
    assert num(f"{g}/memory.memsw.usage_in_bytes") == 80 * 1024
    assert num(f"{g}/memory.failcnt") == 1


def test_kmem_independent_off_and_on_and_slabinfo(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge kmem 8192") == "ok 2"
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 2 * P
    assert num(f"{g}/memory.usage_in_bytes") == 2 * P
    assert c.do("slab_alloc dentry 192 22") == "ok 2"  # 21 per page
    lines = read(f"{g}/memory.kmem.slabinfo").splitlines()
    assert lines[0] == "# name          <active_objs> <num_objs> <objsize>"  # seed 001 patch 12
    name = lines[1].split()[0]
    assert name.startswith("dentry(") and name.endswith(":g)")
    assert lines[1] == "%-17s %6d %6d %6d" % (name, 22, 42, 192)
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 4 * P
    # independent: kmem kept out of the user counters and limited on its own
    write(f"{g}/memory.kmem.independent_kmem_limit", "1")
    write(f"{g}/memory.kmem.limit_in_bytes", "24K")
    assert c.do("charge kmem 8192") == "ok 2"
    assert num(f"{g}/memory.usage_in_bytes") == 4 * P
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 6 * P
    assert c.do("charge kmem 1").startswith("refused")
    assert num(f"{g}/memory.kmem.failcnt") == 1 and num(f"{g}/memory.failcnt") == 0
    c.do("slab_free dentry 192 22")
    assert len(read(f"{g}/memory.kmem.slabinfo").splitlines()) == 1


def test_tcp_is_accounted_once_its_limit_is_written(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge tcp 8192") == "ok 2"
    assert num(f"{g}/memory.kmem.tcp.usage_in_bytes") == 0
    write(f"{g}/memory.kmem.tcp.limit_in_bytes", "12K")
    assert c.do("charge tcp 8192") == "ok 2"
    assert c.do("charge tcp 8192").startswith("refused")
    assert num(f"{g}/memory.kmem.tcp.usage_in_bytes") == 2 * P
    assert num(f"{g}/memory.kmem.tcp.failcnt") == 1
    assert num(f"{g}/memory.usage_in_bytes") == 0


# ---------------------------------------------------------------------- reclaim


def test_limit_lowering_reclaims_page_cache_notifies_the_owner_or_is_ebusy(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    c.do("charge file 40960")
    c.do("charge anon 40960")
    write(f"{g}/memory.limit_in_bytes", "60K")  # 5 of 10 cache pages go
    assert num(f"{g}/memory.usage_in_bytes") == 15 * P
    assert stat_of(f"{g}/memory.stat")["cache"] == 5 * P
    assert c.do("events") == f"ok {5 * P} evicted"
    with pytest.raises(OSError) as e:
        write(f"{g}/memory.limit_in_bytes", "20K")  # anon cannot go without swap
    assert e.value.errno == errno.EBUSY
    assert num(f"{g}/memory.limit_in_bytes") == 60 * 1024
    assert num(f"{g}/memory.usage_in_bytes") == 10 * P  # the cache went anyway


def test_shrink_in_bytes_and_force_empty(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    c.do("charge file 40960")
    c.do("charge anon 8192")
    write(f"{g}/memory.shrink_in_bytes", "32K")
    assert num(f"{g}/memory.usage_in_bytes") == 8 * P
    assert num(f"{g}/memory.limit_in_bytes") == 9223372036854771712
    assert errno_of(write, f"{g}/memory.shrink_in_bytes", "4K") == errno.EBUSY
    assert num(f"{g}/memory.usage_in_bytes") == 2 * P
    c.do("charge file 8192")
    write(f"{g}/memory.force_empty", "0")
    assert num(f"{g}/memory.usage_in_bytes") == 2 * P  # anon stays; success anyway


# ---------------------------------------------------------------------- OOM


def test_oom_kills_the_biggest_client_and_counts_it(mnt, chargers):
    g = group(mnt, "g", limit_in_bytes="100K")  # 25 pages
    big, small = chargers(mnt.path, "--no-stock"), chargers(mnt.path, "--no-stock")
    big.do(f"join {g}/tasks")
    small.do(f"join {g}/tasks")
    assert big.do("charge anon 81920") == "ok 20"
    assert small.do("charge anon 8192") == "ok 2"
    assert small.do("charge anon 16384") == "ok 4"  # big is killed to make room
    assert big.proc.wait(timeout=5) == -signal.SIGKILL
    assert read(f"{g}/memory.oom_control") == "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 6 * P)
    assert read(f"{g}/tasks").split() == [str(small.pid)]


def test_oom_kill_none_refuses_instead(mount_with, chargers):
    m = mount_with("oom_kill=none")
    g = group(m, "g", limit_in_bytes="16K")
    c = chargers(m.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge anon 32768").startswith("refused")
    assert c.proc.poll() is None
    assert read(f"{g}/memory.oom_control").endswith("oom_kill 0\n")


def test_oom_kill_disable_blocks_until_the_limit_is_raised(mnt, chargers):
    g = group(mnt, "g")
    child = group(mnt, "g/c")  # 8 pages of kernel data charged to g
    write(f"{g}/memory.limit_in_bytes", "48K")
    write(f"{g}/memory.oom_control", "1")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do("charge anon 16384") == "ok 4"
    c.send("charge anon 8192")
    assert wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"))
    assert "under_oom 1" in read(f"{child}/memory.oom_control")
    assert not select.select([c.proc.stdout], [], [], 0.3)[0]  # still waiting
    write(f"{g}/memory.limit_in_bytes", "64K")
    assert c.line() == "ok 2"
    assert "under_oom 0" in read(f"{g}/memory.oom_control")
    # and again, woken by clearing oom_kill_disable (then killed: it is the biggest)
    write(f"{g}/memory.limit_in_bytes", "56K")  # exactly the usage
    c.send("charge anon 8192")
    assert wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"))
    write(f"{g}/memory.oom_control", "0")
    assert c.proc.wait(timeout=5) == -signal.SIGKILL
    assert wait_until(lambda: "under_oom 0\noom_kill 1" in read(f"{g}/memory.oom_control"))


def test_a_waiting_client_that_dies_leaves_no_under_oom(mnt, chargers):
    g = group(mnt, "g", limit_in_bytes="8K", oom_control="1")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {g}/tasks")
    c.send("charge anon 16384")
    assert wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"))
    c.proc.kill()  # our own child
    c.proc.wait()
    assert wait_until(lambda: "under_oom 0" in read(f"{g}/memory.oom_control"))
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 0)


# ---------------------------------------------------------------------- exit, stock


def test_disconnect_frees_all_but_page_cache(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path)
    c.do(f"join {g}/tasks")
    for kind in ("anon", "shmem", "kmem", "file"):
        c.do(f"charge {kind} 8192")
    c.do("slab_alloc kmalloc-64 64 1")
    c.stop()
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 2 * P)
    s = stat_of(f"{g}/memory.stat")
    assert (s["cache"], s["rss"], s["shmem"]) == (2 * P, 0, 0)
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 0
    write(f"{g}/memory.force_empty", "1")
    assert num(f"{g}/memory.usage_in_bytes") == 0
    os.rmdir(g)


def test_stock_runs_ahead_by_at_most_a_batch_and_is_exact_near_a_limit(mnt, chargers):
    g = group(mnt, "g")
    c = chargers(mnt.path)
    c.do(f"join {g}/tasks")
    for _ in range(10):
        assert c.do("charge anon 4096") == "ok 1"
    usage = num(f"{g}/memory.usage_in_bytes")
    assert 10 * P <= usage <= (10 + 64) * P
    assert stat_of(f"{g}/memory.stat")["rss"] == 0  # not settled yet
    c.do("flush")
    assert num(f"{g}/memory.usage_in_bytes") == 10 * P
    assert stat_of(f"{g}/memory.stat")["rss"] == 10 * P
    write(f"{g}/memory.limit_in_bytes", "1M")  # near: every charge exact
    for _ in range(5):
        c.do("charge anon 4096")
        assert num(f"{g}/memory.usage_in_bytes") % P == 0
    assert num(f"{g}/memory.usage_in_bytes") == 15 * P


def test_rmdir_uncharges_kmem_and_moves_the_rest_to_the_parent(mnt, chargers):
    p = group(mnt, "p")
    child = group(mnt, "p/c")
    c = chargers(mnt.path, "--no-stock")
    c.do(f"join {child}/tasks")
    c.do("charge anon 8192")
    c.do("charge kmem 8192")
    c.do(f"join {mnt.p('tasks')}")
    os.rmdir(child)
    assert num(f"{p}/memory.usage_in_bytes") == 2 * P
    assert num(f"{p}/memory.kmem.usage_in_bytes") == 0
    assert stat_of(f"{p}/memory.stat")["rss"] == 2 * P


# ---------------------------------------------------------------------- protocol


def _raw(sock_path: str, data: bytes, replies: int) -> list[str]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sock_path)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)  # as socat does at the end of its input
    buf = b""
    while buf.count(b"\n") < replies:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf.decode().splitlines()


def test_malformed_input_gets_error_replies_and_the_daemon_survives(mnt, chargers):
    path = os.getxattr(mnt.path, "user.cgroupfs_emu.socket").decode()
    assert _raw(path, b"charge anon 4096\n", 1)[0].startswith("err EPROTO ")
    assert _raw(path, b"hello 2\n", 1)[0].startswith("err EPROTONOSUPPORT ")
    bad = [b"", b"frobnicate", b"charge", b"charge anon", b"charge heap 4096",
           b"charge anon 12Q", b"charge anon -1", b"charge anon 99999999999999999999999",
           b"charge anon 4096 pid=abc", b"charge anon 4096 color=red",
           b"uncharge anon 4096", b"slab_alloc dentry 0 1", b"stock 1 anon=5",
           b"status extra", b"\xff\xfe", b"charge anon 18446744073709551621"]
    lines = _raw(path, b"hello 1\n" + b"\n".join(bad) + b"\n", len(bad) + 1)
    assert lines[0].startswith("ok version=1 ")
    assert len(lines) == len(bad) + 1
    assert all(line.startswith("err EINVAL ") for line in lines[1:]), lines
    big = _raw(path, b"hello 1\n" + b"x" * 100000 + b"\nstatus\n", 3)
    assert big[1].startswith("err E2BIG") and big[2].startswith("ok pid=")
    # a shell with CRLF and no final newline works too
    assert _raw(path, b"hello 1\r\nstatus", 2)[1].startswith("ok pid=")
    c = chargers(mnt.path)
    assert c.do("charge anon 4096") == "ok 1"


def test_only_root_charges_for_another_pid(mnt, chargers):
    g = group(mnt, "g")
    with started(["sleep", "30"]) as sleeper:
        assert wait_until(lambda: asleep(sleeper, "sleep"))  # nothing of its own to charge
        time.sleep(0.2)
        write(f"{g}/tasks", str(sleeper.pid))
        c = chargers(mnt.path)
        reply = c.do(f"raw charge anon 8192 pid={sleeper.pid}")
        if os.getuid() == 0:
            assert reply.startswith("ok ok pages=2 group=/g")
            assert num(f"{g}/memory.usage_in_bytes") == 2 * P
        else:
            assert reply.startswith("ok err EPERM")


# ---------------------------------------------------------------------- cgemu


def test_cgemu_alloc_holds_prints_and_reports_refusal(mnt):
    g = group(mnt, "g", limit_in_bytes="1M")
    cmd = ["cgemu", "alloc", "-m", mnt.path, "-g", "g", "--anon", "64K", "--file", "16K",
           "--hold"]
    with started(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline().strip() == "charged anon 65536 bytes (16 pages)"
        assert p.stdout.readline().strip() == "charged file 16384 bytes (4 pages)"
        assert "group=/g" in p.stdout.readline()
        assert num(f"{g}/memory.usage_in_bytes") == 20 * P
        write(f"{g}/memory.limit_in_bytes", "64K")  # evicts its page cache
        assert p.stdout.readline().strip() == "evicted file 16384 bytes in /g"
        p.send_signal(signal.SIGTERM)  # our own child
        assert p.wait(timeout=10) == 0
    assert num(f"{g}/memory.usage_in_bytes") == 0
    # with oom_kill_disable a kernel-memory charge fails instead of waiting: exit 3
    write(f"{g}/memory.oom_control", "1")
    refused = subprocess.run(["cgemu", "alloc", "-m", mnt.path, "-g", "/g", "--kmem", "1M"],
                             capture_output=True, text=True)
    assert refused.returncode == 3, refused.stderr
    assert "charge refused" in refused.stderr
    assert subprocess.run(["cgemu", "alloc", "--anon", "12Q"],
                          capture_output=True).returncode == 2


def test_cgemu_alloc_is_killed_by_the_oom_killer(mount_with):
    m = mount_with()
    g = group(m, "g", limit_in_bytes="64K")
    out = subprocess.run(["cgemu", "alloc", "-m", m.path, "-g", "g", "--anon", "128K"],
                         capture_output=True, text=True)
    assert out.returncode == -signal.SIGKILL
    assert read(f"{g}/memory.oom_control").endswith("oom_kill 1\n")


# ---------------------------------------------------------------------- C example


@pytest.fixture
def open_dir():
    """A temporary directory other users can traverse (pytest's tmp_path is 0700)."""
    d = tempfile.mkdtemp(prefix="cgemu-open-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_the_c_example_client_speaks_the_protocol(mount_with, open_dir):
    """examples/charge_client.c, built here, as root and as an unprivileged user."""
    exe = os.path.join(open_dir, "charge_client")
    src = os.path.join(os.path.dirname(__file__), "..", "examples", "charge_client.c")
    subprocess.run(["cc", "-Wall", "-Werror", "-o", exe, src], check=True)
    sock = os.path.join(open_dir, "s")
    m = mount_with(f"socket={sock},socket_mode=0666")
    # 1M, not less: until its hello the shell is a followed task, and the pages of
    # the exec'd image are charged to the group as a kernel would charge them
    g = group(m, "g", limit_in_bytes="1M")
    run = subprocess.run(["sh", "-c", f"echo $$ > {g}/tasks && exec {exe} {sock} anon 8K"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "ok pages=2 group=/g usage=8192\n"
    # 2 from the client's charge, plus whatever the follower charged of the exec'd
    # image before the hello (dropped at hello, as the protocol doc says)
    assert stat_of(f"{g}/memory.stat")["pgpgin"] >= 2
    assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") == 0)  # it exited
    run = subprocess.run([exe, sock, "anon", "zero"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stdout.startswith("err EINVAL ")
    if os.getuid() == 0:
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        run = subprocess.run(nobody + [exe, sock, "anon", "4K", "pid=1"],
                             capture_output=True, text=True)
        assert run.returncode == 1 and run.stdout.startswith("err EPERM "), run


def test_a_followed_process_that_says_hello_is_counted_once(mnt):
    """Joined first, followed from /proc; from its hello on only its charges count."""
    g = group(mnt, "g")
    script = f"""
import os, sys, time
with open({g!r} + "/tasks", "w") as f:
    f.write(str(os.getpid()))
hog = bytearray(8 << 20)  # touched after joining: followed from /proc
for i in range(0, len(hog), 4096):
    hog[i] = 1
print("grown", flush=True)
sys.stdin.readline()
from cgroupfs_emu.client import Client
with Client.connect({mnt.path!r}) as c:
    print("hello", flush=True)
    sys.stdin.readline()
"""
    with started([sys.executable, "-c", script], stdin=subprocess.PIPE,
                 stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline().strip() == "grown"
        assert wait_until(lambda: num(f"{g}/memory.usage_in_bytes") >= 8 << 20, timeout=5)
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "hello"
        assert num(f"{g}/memory.usage_in_bytes") == 0  # at once, not a poll later
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(timeout=10) == 0
