"""Real mounts: the CLI lifecycle, directory semantics, write/read mechanics, tasks,
event_control validation and the profile differences."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys

import pytest

from conftest import errno_of, needs_fuse, read, wait_until, write

pytestmark = [pytest.mark.mount, needs_fuse]
MAX = "9223372036854771712\n"


# ---------------------------------------------------------------- the command


def _daemon_pids(mountpoint: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if mountpoint.encode() in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


def test_background_mount_is_live_on_return_and_unmount_ends_the_daemon(tmp_path):
    mnt = tmp_path / "cg"
    mnt.mkdir()
    logf = tmp_path / "log"
    r = subprocess.run(["cgroupfs_emu", "-o", f"log={logf}", "memory", str(mnt)],
                       capture_output=True, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        # no race: the mount is usable the moment the command returns
        os.mkdir(mnt / "box")
        write(mnt / "box" / "memory.limit_in_bytes", "64M\n")
        assert read(mnt / "box" / "memory.limit_in_bytes") == "67108864\n"
        assert errno_of(write, mnt / "box" / "memory.limit_in_bytes", "abc\n") == errno.EINVAL
        os.rmdir(mnt / "box")
        with open("/proc/mounts") as f:
            line = next(l for l in f if f" {mnt} " in l)
        assert line.split()[0] == "memory" and line.split()[2] == "fuse.cgroupfs_emu"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
    assert wait_until(lambda: not _daemon_pids(str(mnt)), timeout=10)
    assert not os.path.ismount(mnt)
    assert "exiting with status 0" in logf.read_text()


def test_sigterm_unmounts_and_exits_zero(mount_with):
    m = mount_with()
    m.proc.send_signal(signal.SIGTERM)  # our own child
    assert m.proc.wait(timeout=15) == 0
    assert not os.path.ismount(m.path)


@pytest.mark.parametrize("args,fragment", [
    (["-o", "bogus_option"], "unknown mount option 'bogus_option'"),
    (["-o", "kernel=linux-2"], "unknown kernel profile"),
    (["--frobnicate"], "unknown flag"),
])
def test_command_line_mistakes_are_one_line(tmp_path, args, fragment):
    r = subprocess.run(["cgroupfs_emu", *args, "memory", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.ismount(tmp_path)


def test_mount_errors_reach_the_terminal(tmp_path):
    r = subprocess.run(["cgroupfs_emu", "memory", str(tmp_path / "missing")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_generic_mount_options_are_accepted(mount_with):
    m = mount_with("rw,nosuid,nodev,defaults,nofail,relatime,kernel=linux-6")
    with open("/proc/mounts") as f:
        opts = next(l for l in f if f" {m.path} " in l).split()[3].split(",")
    assert "nosuid" in opts and "nodev" in opts


@pytest.mark.skipif(os.geteuid() != 0, reason="mount(8) of a FUSE type needs root")
def test_mount_dash_t_through_mount_fuse3(tmp_path):
    mnt = tmp_path / "cg"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "fuse.cgroupfs_emu", "-o", "kernel=linux-6",
                        "memory", str(mnt)], capture_output=True, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        assert read(mnt / "memory.use_hierarchy") == "1\n"
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    assert wait_until(lambda: not _daemon_pids(str(mnt)), timeout=10)


# ---------------------------------------------------------------- directories


def test_directory_semantics(mnt):
    g = mnt.p("g")
    os.mkdir(g)
    st = os.stat(g)
    assert stat.S_ISDIR(st.st_mode) and st.st_nlink == 2 and st.st_uid == os.getuid()
    os.mkdir(mnt.p("g", "c1"))
    assert os.stat(g).st_nlink == 3
    os.mkdir(mnt.p("g", "private"), 0o700)
    assert stat.S_IMODE(os.stat(mnt.p("g", "private")).st_mode) == 0o700
    f = os.stat(mnt.p("g", "memory.limit_in_bytes"))
    assert stat.S_ISREG(f.st_mode) and f.st_size == 0 and f.st_nlink == 1
    assert errno_of(os.mkdir, mnt.p("g", "tasks")) == errno.EEXIST
    assert errno_of(os.mkdir, mnt.p("g", "bad\nname")) == errno.EINVAL
    long = "x" * 300  # no NAME_MAX check in cgroupfs
    os.mkdir(mnt.p(long))
    os.rmdir(mnt.p(long))
    assert errno_of(os.open, mnt.p("g", "new"), os.O_CREAT | os.O_WRONLY) == errno.EACCES
    assert errno_of(os.unlink, mnt.p("g", "tasks")) == errno.EPERM
    assert errno_of(os.symlink, "tasks", mnt.p("g", "l")) == errno.EPERM
    assert errno_of(os.mkfifo, mnt.p("g", "fifo")) == errno.EPERM
    assert errno_of(os.link, mnt.p("g", "tasks"), mnt.p("g", "l2")) == errno.EPERM
    assert errno_of(os.rmdir, mnt.p("g", "tasks")) == errno.ENOTDIR
    assert errno_of(os.rmdir, g) == errno.EBUSY
    # rename: same parent keeps settings, other parent EIO, files ENOTDIR
    write(mnt.p("g", "c1", "memory.limit_in_bytes"), "8M")
    os.rename(mnt.p("g", "c1"), mnt.p("g", "c2"))
    assert read(mnt.p("g", "c2", "memory.limit_in_bytes")) == "8388608\n"
    assert errno_of(os.rename, mnt.p("g", "c2"), mnt.p("g", "private", "c2")) == errno.EIO
    assert errno_of(os.rename, mnt.p("g", "c2"), mnt.p("g", "private")) == errno.EEXIST
    assert errno_of(os.rename, mnt.p("g", "tasks"), mnt.p("g", "t2")) == errno.ENOTDIR
    for d in ("c2", "private"):
        os.rmdir(mnt.p("g", d))
    os.rmdir(g)
    assert errno_of(os.rmdir, g) == errno.ENOENT


def test_a_recreated_group_starts_from_defaults(mnt):
    os.mkdir(mnt.p("g"))
    write(mnt.p("g", "memory.limit_in_bytes"), "64M")
    write(mnt.p("g", "memory.swappiness"), "10")
    os.rmdir(mnt.p("g"))
    os.mkdir(mnt.p("g"))
    assert read(mnt.p("g", "memory.limit_in_bytes")) == MAX
    assert read(mnt.p("g", "memory.swappiness")) == "60\n"


def test_stale_descriptors_fail_with_enodev(mnt):
    os.mkdir(mnt.p("g"))
    rfd = os.open(mnt.p("g", "memory.limit_in_bytes"), os.O_RDONLY)
    wfd = os.open(mnt.p("g", "memory.limit_in_bytes"), os.O_WRONLY)
    try:
        os.rmdir(mnt.p("g"))
        assert errno_of(os.read, rfd, 100) == errno.ENODEV
        assert errno_of(os.write, wfd, b"4096") == errno.ENODEV
    finally:
        os.close(rfd)
        os.close(wfd)


def test_chown_delegates_a_group_to_an_ordinary_user(mount_with):
    if os.geteuid() != 0:
        pytest.skip("needs root to act as another user")
    m = mount_with("allow_other")
    os.mkdir(m.p("d"))
    for name in [""] + [n for n in os.listdir(m.p("d"))]:
        os.chown(m.p("d", name) if name else m.p("d"), 65534, 65534)
    os.chmod(m.p("d", "memory.swappiness"), 0o600)
    assert stat.S_IMODE(os.stat(m.p("d", "memory.swappiness")).st_mode) == 0o600
    script = ('echo 4M > "$1/memory.limit_in_bytes" && mkdir "$1/sub" && '
              '{ (echo 1 > "$1/../memory.swappiness") 2>/dev/null || echo root-denied; }')
    r = subprocess.run(["/bin/sh", "-c", script, "sh", m.p("d")], user=65534, group=65534,
                       capture_output=True, text=True, timeout=30, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "root-denied"
    assert read(m.p("d", "memory.limit_in_bytes")) == "4194304\n"
    assert os.stat(m.p("d", "sub")).st_uid == 65534
    os.rmdir(m.p("d", "sub"))
    os.rmdir(m.p("d"))


# ---------------------------------------------------------------- read/write mechanics


def test_every_write_is_one_command_and_the_offset_is_ignored(mnt):
    os.mkdir(mnt.p("g"))
    path = mnt.p("g", "memory.limit_in_bytes")
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"8192", 100000)
        assert read(path) == "8192\n"
        os.write(fd, b"12288\0junk")  # a C string: bytes after NUL are ignored
        assert read(path) == "12288\n"
        assert errno_of(os.write, fd, b"4096\n8192\n") == errno.EINVAL
        assert errno_of(os.write, fd, b" " * 4093 + b"4096") == errno.E2BIG
        os.write(fd, b" " * 4092 + b"4096")
        assert read(path) == "4096\n"
    finally:
        os.close(fd)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"1M")
    os.close(fd)
    assert read(path) == "1048576\n"


def test_reads_follow_seq_file(mnt):
    os.mkdir(mnt.p("g"))
    path = mnt.p("g", "memory.oom_control")
    text = read(path).encode()
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, 5) == text[:5]
        assert os.read(fd, 1000) == text[5:]
        assert os.read(fd, 1000) == b""  # EOF, and a second cat on the fd sees nothing
        assert os.pread(fd, 7, 3) == text[3:10]
        write(mnt.p("g", "memory.oom_control"), "1")
        # a read from offset 0 renders the file afresh
        assert os.pread(fd, 1000, 0).startswith(b"oom_kill_disable 1")
    finally:
        os.close(fd)


def test_unreadable_and_unwritable_files_are_einval_for_root(mnt):
    if os.geteuid() != 0:
        pytest.skip("root bypasses the mode bits; others see EACCES")
    os.mkdir(mnt.p("g"))
    assert errno_of(read, mnt.p("g", "memory.force_empty")) == errno.EINVAL
    assert errno_of(write, mnt.p("g", "memory.usage_in_bytes"), "1") == errno.EINVAL
    os.chmod(mnt.p("g", "memory.stat"), 0o666)  # mode bits never add a handler
    assert errno_of(write, mnt.p("g", "memory.stat"), "1") == errno.EINVAL


def test_kernel_data_of_a_child_is_charged_to_its_parent(mnt):
    os.mkdir(mnt.p("p"))
    os.mkdir(mnt.p("p", "c"))
    used = int(read(mnt.p("p", "memory.usage_in_bytes")))
    assert used > 0 and used == int(read(mnt.p("p", "memory.kmem.usage_in_bytes")))
    assert errno_of(write, mnt.p("p", "memory.limit_in_bytes"), str(used - 4096)) == errno.EBUSY
    write(mnt.p("p", "memory.limit_in_bytes"), str(used))
    assert errno_of(os.mkdir, mnt.p("p", "d")) == errno.ENOMEM
    assert read(mnt.p("p", "memory.failcnt")) == "1\n"
    write(mnt.p("p", "memory.max_usage_in_bytes"), "x")
    assert read(mnt.p("p", "memory.max_usage_in_bytes")) == f"{used}\n"  # reset to usage
    os.rmdir(mnt.p("p", "c"))
    assert read(mnt.p("p", "memory.usage_in_bytes")) == "0\n"


# ---------------------------------------------------------------- tasks


def test_tasks_and_procs(mnt):
    os.mkdir(mnt.p("g"))
    child = subprocess.Popen(["sleep", "60"])
    try:
        write(mnt.p("g", "cgroup.procs"), f"{child.pid}\0padding")
        assert read(mnt.p("g", "tasks")) == f"{child.pid}\n"
        assert read(mnt.p("g", "cgroup.procs")) == f"{child.pid}\n"
        assert str(child.pid) not in read(mnt.p("tasks")).split()
        root_procs = [int(p) for p in read(mnt.p("cgroup.procs")).split()]
        assert os.getpid() in root_procs and root_procs == sorted(root_procs)
        assert errno_of(os.rmdir, mnt.p("g")) == errno.EBUSY
    finally:
        child.kill()  # the process this test started
        child.wait()
    os.rmdir(mnt.p("g"))  # an exited task never keeps a group busy


def test_writing_zero_moves_the_writer(mnt):
    os.mkdir(mnt.p("g"))
    code = ("import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); os.write(fd, b'0'); "
            "print(os.getpid()); sys.stdout.flush(); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code, mnt.p("g", "tasks")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline())
        assert read(mnt.p("g", "tasks")).split() == [str(pid)]
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    assert wait_until(lambda: read(mnt.p("g", "tasks")) == "")
    os.rmdir(mnt.p("g"))


# ---------------------------------------------------------------- event_control

_REGISTER = """
import os, sys
efd = os.eventfd(0)
group, control, args = sys.argv[1], sys.argv[2], sys.argv[3]
cfd = os.open(control, os.O_RDONLY)
ec = os.open(group + "/cgroup.event_control", os.O_WRONLY)
try:
    os.write(ec, f"{efd} {cfd} {args}".encode())
    print("ok")
except OSError as e:
    print(e.errno)
"""


def _register(group, control, args=""):
    r = subprocess.run([sys.executable, "-c", _REGISTER, group, control, args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_event_control_validates_like_the_kernel(mnt):
    os.mkdir(mnt.p("a"))
    os.mkdir(mnt.p("b"))
    assert _register(mnt.p("a"), mnt.p("a", "memory.usage_in_bytes"), "4M") == "ok"
    assert _register(mnt.p("a"), mnt.p("a", "memory.oom_control")) == "ok"
    assert _register(mnt.p("a"), mnt.p("a", "memory.pressure_level"), "medium,local") == "ok"
    inval = str(errno.EINVAL)
    assert _register(mnt.p("a"), mnt.p("a", "memory.pressure_level"), "severe") == inval
    assert _register(mnt.p("a"), mnt.p("a", "memory.pressure_level"), "low,everywhere") == inval
    assert _register(mnt.p("a"), mnt.p("a", "memory.usage_in_bytes"), "junk") == inval
    assert _register(mnt.p("a"), mnt.p("b", "memory.usage_in_bytes"), "4M") == inval
    assert _register(mnt.p("a"), mnt.p("a", "memory.stat"), "4M") == inval
    assert _register(mnt.p("a"), "/proc/self/status", "4M") == inval


# ---------------------------------------------------------------- profiles


def test_seeds_profile_files(mnt):
    os.mkdir(mnt.p("g"))
    g = lambda name: mnt.p("g", name)
    # kmem limit: EINVAL until independent; 0 to independent resets it
    assert errno_of(write, g("memory.kmem.limit_in_bytes"), "1M") == errno.EINVAL
    write(g("memory.kmem.independent_kmem_limit"), "5")
    assert read(g("memory.kmem.independent_kmem_limit")) == "1\n"
    write(g("memory.kmem.limit_in_bytes"), "1M")
    assert read(g("memory.kmem.limit_in_bytes")) == "1048576\n"
    write(g("memory.kmem.independent_kmem_limit"), "0")
    assert read(g("memory.kmem.limit_in_bytes")) == MAX
    assert errno_of(write, mnt.p("memory.kmem.limit_in_bytes"), "1M") == errno.EINVAL
    # shrink_in_bytes: write-only, not on the root; nothing to reclaim in an empty group
    assert stat.S_IMODE(os.stat(g("memory.shrink_in_bytes")).st_mode) == 0o200
    assert not os.path.exists(mnt.p("memory.shrink_in_bytes"))
    write(g("memory.shrink_in_bytes"), "400M")
    assert errno_of(write, g("memory.shrink_in_bytes"), "-1") == errno.EINVAL
    assert errno_of(write, g("memory.shrink_in_bytes"), "abc") == errno.EINVAL
    # slabinfo in seed 001's format
    assert read(g("memory.kmem.slabinfo")) == "# name          <active_objs> <num_objs> <objsize>\n"
    # move_charge 0..3
    write(g("memory.move_charge_at_immigrate"), "3")
    assert read(g("memory.move_charge_at_immigrate")) == "3\n"
    assert errno_of(write, g("memory.move_charge_at_immigrate"), "4") == errno.EINVAL
    # use_hierarchy: a real flag; under a hierarchical parent it cannot change
    assert read(g("memory.use_hierarchy")) == "1\n"
    write(g("memory.use_hierarchy"), "1")
    assert errno_of(write, g("memory.use_hierarchy"), "0") == errno.EINVAL


def test_seeds_use_hierarchy_zero_cuts_the_hierarchy(mount_with):
    m = mount_with()
    write(m.p("memory.use_hierarchy"), "0")  # the root has no children yet
    assert read(m.p("memory.use_hierarchy")) == "0\n"
    os.mkdir(m.p("a"))
    assert read(m.p("a", "memory.use_hierarchy")) == "0\n"  # copied at mkdir
    assert errno_of(write, m.p("memory.use_hierarchy"), "1") == errno.EBUSY
    write(m.p("a", "memory.limit_in_bytes"), "1M")
    os.mkdir(m.p("a", "b"))  # a is not hierarchical: b's limits stop at b
    stat_b = read(m.p("a", "b", "memory.stat"))
    assert "hierarchical_memory_limit 9223372036854771712\n" in stat_b
    write(m.p("a", "memory.use_hierarchy"), "0")
    os.rmdir(m.p("a", "b"))
    write(m.p("a", "memory.use_hierarchy"), "1")
    os.mkdir(m.p("a", "b"))
    assert "hierarchical_memory_limit 1048576\n" in read(m.p("a", "b", "memory.stat"))
    os.rmdir(m.p("a", "b"))
    os.rmdir(m.p("a"))


def test_linux6_profile_differences(linux6):
    os.mkdir(linux6.p("g"))
    g = lambda name: linux6.p("g", name)
    assert not os.path.exists(g("memory.shrink_in_bytes"))
    assert not os.path.exists(g("memory.kmem.independent_kmem_limit"))
    assert read(g("memory.kmem.slabinfo")) == ""
    write(g("memory.kmem.limit_in_bytes"), "1M")
    assert read(g("memory.kmem.limit_in_bytes")) == MAX
    assert errno_of(write, g("memory.move_charge_at_immigrate"), "1") == errno.EINVAL


def test_release_agent_option_and_file(mount_with):
    m = mount_with("release_agent=/sbin/agent")
    assert read(m.p("release_agent")) == "/sbin/agent\n"
    write(m.p("release_agent"), "  /usr/bin/other \n")
    assert read(m.p("release_agent")) == "/usr/bin/other\n"
    assert not os.path.exists(m.p("x", "release_agent"))
