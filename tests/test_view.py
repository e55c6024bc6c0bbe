"""The seccomp view of `cgemu run`: a statically linked program that makes raw system
calls (as Go does) sees the emulator as a cgroup v1 memory hierarchy, and nothing
outside the view sees any of it. Values are checked against the emulator's own files,
read from outside the view, and statfs against a real v1 mount's (tests/data)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import group, needs_fuse, read
from test_run import (TIMEOUT, as_nobody, cgemu, host_mounts, needs,  # noqa: F401
                      nobody_mount, nobody_tree)

pytestmark = [pytest.mark.mount, needs_fuse]

DATA = os.path.join(os.path.dirname(__file__), "data", "cgroup_statfs.linux-6.18.txt")

# Raw syscalls only: what the preload library can never see. Each line of output is
# "KEY value...", one per fact.
PROBE_SRC = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/openat2.h>

static void show_statfs(const char *key, long rc, struct statfs *s)
{
    printf("%s %ld 0x%lx %ld %ld %lu %lu %lu %lu %lu %ld 0x%lx\n", key, rc, (long)s->f_type,
           (long)s->f_bsize, (long)s->f_frsize, s->f_blocks, s->f_bfree, s->f_bavail,
           s->f_files, s->f_ffree, (long)s->f_namelen, (long)s->f_flags);
}

static char text[1 << 16];

static const char *slurp(int fd)
{
    ssize_t n, t = 0;
    text[0] = 0;
    if (fd < 0)
        return NULL;
    while ((n = syscall(SYS_read, fd, text + t, sizeof text - 1 - t)) > 0)
        t += n;
    text[t] = 0;
    syscall(SYS_close, fd);
    return text;
}

static void show_lines(const char *key, int fd)
{
    if (!slurp(fd)) {
        printf("%s ERR %d\n", key, errno);
        return;
    }
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"))
        printf("%s %s\n", key, l);
}

int main(void)
{
    struct statfs s;
    long rc = syscall(SYS_statfs, "/sys/fs/cgroup/memory", &s);
    show_statfs("STATFS_MEMORY", rc, &s);
    rc = syscall(SYS_statfs, "/sys/fs/cgroup", &s);
    show_statfs("STATFS_ROOT", rc, &s);
    show_lines("MOUNTINFO", syscall(SYS_openat, AT_FDCWD, "/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
    show_lines("CGROUP", syscall(SYS_openat, AT_FDCWD, "/proc/self/cgroup", O_RDONLY | O_CLOEXEC));
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
    int fd = syscall(SYS_openat2, AT_FDCWD, "/proc/thread-self/cgroup", &how, sizeof how);
    if (fd < 0 && errno == ENOSYS)
        printf("OPENAT2 ENOSYS\n");
    else
        show_lines("OPENAT2", fd);
    int dir = syscall(SYS_openat, AT_FDCWD, "/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC);
    show_lines("DIRFD", syscall(SYS_openat, dir, "mountinfo", O_RDONLY | O_CLOEXEC));
    if (syscall(SYS_chdir, "/proc/self") == 0)
        show_lines("CWD", syscall(SYS_openat, AT_FDCWD, "./cgroup", O_RDONLY | O_CLOEXEC));
    /* discovery as runc does it: the memory line of /proc/self/cgroup, then the file */
    slurp(syscall(SYS_openat, AT_FDCWD, "/proc/self/cgroup", O_RDONLY | O_CLOEXEC));
    char *m = strstr(text, ":memory:"), path[4096];
    if (!m)
        return 2;
    snprintf(path, sizeof path, "/sys/fs/cgroup/memory%.*s/memory.limit_in_bytes",
             (int)strcspn(m + 8, "\n"), m + 8);
    fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    rc = syscall(SYS_fstatfs, fd, &s);
    show_statfs("FSTATFS_LIMIT", rc, &s);
    printf("LIMIT %s", slurp(fd));
    return 0;
}
"""


# Where the supervisor reads the caller's memory: an openat2 whose struct open_how
# straddles a page boundary (its flags' first half holds a 0 byte, where a string reader
# stops), a path that ends just before an unreadable page, and a path longer than the
# supervisor's first read of it. Each must open the view's mountinfo.
EDGES_SRC = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/openat2.h>

static char text[1 << 16];

static void show_lines(const char *key, int fd)
{
    ssize_t n, t = 0;
    if (fd < 0) {
        printf("%s ERR %d\n", key, errno);
        return;
    }
    while ((n = syscall(SYS_read, fd, text + t, sizeof text - 1 - t)) > 0)
        t += n;
    text[t] = 0;
    syscall(SYS_close, fd);
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"))
        printf("%s %s\n", key, l);
}

int main(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *two = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED)
        return 2;
    /* the third page unreadable: nothing may be read past what the caller names */
    mprotect(two + 2 * page, page, PROT_NONE);

    /* struct open_how 4 bytes before the end of the first page: its u64 flags straddle
     * the boundary, and their first half is 00 00 08 00 (O_RDONLY|O_CLOEXEC on x86_64) */
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
    char *at = two + page - 4;
    memcpy(at, &how, sizeof how);
    int fd = syscall(SYS_openat2, AT_FDCWD, "/proc/self/mountinfo", at, sizeof how);
    if (fd < 0 && errno == ENOSYS)
        printf("STRADDLE ENOSYS\n");
    else
        show_lines("STRADDLE", fd);

    /* a path that ends on the last byte of the second page, before the unreadable one */
    const char *name = "/proc/self/mountinfo";
    char *edge = two + 2 * page - strlen(name) - 1;
    strcpy(edge, name);
    show_lines("EDGE", syscall(SYS_openat, AT_FDCWD, edge, O_RDONLY | O_CLOEXEC));

    /* a path far longer than a short first read of it */
    char longpath[1024] = "/proc/self";
    for (int i = 0; i < 120; i++)
        strcat(longpath, "/.");
    strcat(longpath, "/../self/mountinfo");
    printf("LONGPATH_LENGTH %zu\n", strlen(longpath));
    show_lines("LONGPATH", syscall(SYS_openat, AT_FDCWD, longpath, O_RDONLY | O_CLOEXEC));
    return 0;
}
"""


def static_program(name: str, source: str):
    """*source* linked statically, in a directory any user may read; yields its path."""
    d = tempfile.mkdtemp(prefix="cgemu-view-")
    try:
        os.chmod(d, 0o755)
        with open(os.path.join(d, f"{name}.c"), "w") as f:
            f.write(source)
        subprocess.run(["cc", "-O1", "-static", "-o", os.path.join(d, name),
                        os.path.join(d, f"{name}.c")], check=True)
        yield os.path.join(d, name)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def probe():
    """The probe, linked statically, where any user may run it."""
    yield from static_program("probe", PROBE_SRC)


@pytest.fixture(scope="module")
def edges():
    yield from static_program("edges", EDGES_SRC)


def facts(out: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, rest = line.partition(" ")
        found.setdefault(key, []).append(rest)
    return found


def recorded_statfs() -> dict[str, str]:
    """The root block of what a real v1 mount said (tests/data/record_cgroup_statfs.sh)."""
    with open(DATA) as f:
        block = f.read().split("# /child/")[0]
    return dict(line.split("=", 1) for line in block.splitlines() if "=" in line)


def check_mountinfo(lines: list[str], what: str = "") -> None:
    """The view's mountinfo: one cgroup line, v1 memory, under the tmpfs."""
    cg = [line for line in lines if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")]
    assert len(cg) == 1, (what, lines)
    assert cg[0].split()[4] == "/sys/fs/cgroup/memory"
    assert cg[0].split(" - ")[1].split() == ["cgroup", "cgroup", "rw,memory"]
    tmpfs = [line for line in lines if line.split()[4] == "/sys/fs/cgroup"]
    assert tmpfs and tmpfs[-1].split(" - ")[1].split()[0] == "tmpfs"


def check_view(f: dict[str, list[str]], grp: str, limit: str) -> None:
    """What the probe saw, against a v1 host's answers."""
    rec = recorded_statfs()
    rc, ftype, bsize, frsize, blocks, bfree, bavail, files, ffree, namelen, _ = \
        f["STATFS_MEMORY"][0].split()
    assert rc == "0" and int(ftype, 16) == int(rec["f_type"], 16) == 0x27E0EB
    assert [bsize, frsize, blocks, bfree, bavail, files, ffree, namelen] == [
        rec[k] for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                         "f_ffree", "f_namemax")]
    assert f["FSTATFS_LIMIT"][0].split()[:2] == ["0", "0x27e0eb"]
    assert f["STATFS_ROOT"][0].split()[:2] == ["0", "0x1021994"]  # TMPFS_MAGIC
    for key in ("MOUNTINFO", "DIRFD"):
        check_mountinfo(f[key])
    for key in ("CGROUP", "CWD") + (() if f.get("OPENAT2") == ["ENOSYS"] else ("OPENAT2",)):
        memory = [line for line in f[key] if "memory" in line.split(":")[1].split(",")]
        assert [line.split(":", 2)[2] for line in memory] == [grp], f[key]
    assert f["LIMIT"] == [limit]


def test_a_static_program_sees_a_v1_memory_hierarchy_through_raw_syscalls(mnt, probe):
    group(mnt, "box", limit_in_bytes="64M")
    r = cgemu("run", "-m", mnt.path, "-g", "box", "--", probe)
    assert r.returncode == 0, r.stderr + r.stdout
    assert r.stderr == ""  # no fallback line, no note
    check_view(facts(r.stdout), "/box", read(mnt.p("box/memory.limit_in_bytes")).strip())


def test_the_supervisor_reads_what_the_caller_names_wherever_it_lies(mnt, edges):
    r = cgemu("run", "-m", mnt.path, "--", edges)
    assert r.returncode == 0, r.stderr + r.stdout
    f = facts(r.stdout)
    assert int(f["LONGPATH_LENGTH"][0]) > 256  # longer than the supervisor's first read
    for key in ("EDGE", "LONGPATH") + (() if f.get("STRADDLE") == ["ENOSYS"] else ("STRADDLE",)):
        check_mountinfo(f[key], key)


def test_a_user_gets_the_same_view_of_a_static_program(nobody_mount, nobody_tree, probe):
    m = nobody_mount
    before = host_mounts(m)
    r = as_nobody(nobody_tree, ["-m", "cgroupfs_emu.cli.cgemu", "run", "-m", m.path, "-g", "u",
                                "--", probe])
    if r.returncode == 1 and "cannot create a user namespace" in r.stderr:
        pytest.skip("this kernel refuses unprivileged user namespaces: " + r.stderr.strip())
    assert r.returncode == 0, r.stderr + r.stdout
    check_view(facts(r.stdout), "/u", read(m.p("u/memory.limit_in_bytes")).strip())
    assert host_mounts(m) == before
    # the filter went in with CAP_SYS_ADMIN in the user namespace: no no_new_privs
    r = as_nobody(nobody_tree, ["-m", "cgroupfs_emu.cli.cgemu", "run", "-m", m.path, "-g", "u",
                                "--", "grep", "NoNewPrivs", "/proc/self/status"])
    assert r.stdout.split() == ["NoNewPrivs:", "0"], r.stderr


def test_stat_f_says_cgroupfs_and_tmpfs(mnt):
    r = cgemu("run", "-m", mnt.path, "--", "stat", "-f", "-c", "%T",
              "/sys/fs/cgroup/memory", "/sys/fs/cgroup", f"/sys/fs/cgroup/memory/tasks")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["cgroupfs", "tmpfs", "cgroupfs"]


def test_nothing_outside_the_view_sees_it(mnt, probe):
    """While a command runs in the view, the host's table, the emulator's statfs and
    the command's own /proc files read from outside are the kernel's; afterwards the
    view's namespace has no process left."""
    group(mnt, "box")
    before = host_mounts(mnt)
    kernel_cgroup = read("/proc/self/cgroup")
    p = subprocess.Popen([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "run", "-m", mnt.path,
                          "-g", "box", "--", "sh", "-c", "echo ready; exec sleep 60"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        shell = [int(x) for x in read(f"/proc/{p.pid}/task/{p.pid}/children").split()]
        assert len(shell) == 1
        ns = os.readlink(f"/proc/{shell[0]}/ns/mnt")
        assert host_mounts(mnt) == before
        out = subprocess.run(["stat", "-f", "-c", "%T", mnt.path], capture_output=True,
                             text=True).stdout.split()
        assert out and out[0].startswith("fuse")
        theirs = read(f"/proc/{shell[0]}/cgroup")
        assert ":/box" not in theirs and theirs.splitlines()[-1] == kernel_cgroup.splitlines()[-1]
    finally:
        p.terminate()
        p.wait(TIMEOUT)
    assert host_mounts(mnt) == before
    left = []
    for x in os.listdir("/proc"):
        try:
            left += [x] if x.isdigit() and os.readlink(f"/proc/{x}/ns/mnt") == ns else []
        except OSError:
            pass
    assert left == []


def test_cgemu_exec_inside_the_view_says_its_forks_are_not_guarded(mnt, probe):
    group(mnt, "box")
    group(mnt, "box/inner")
    r = cgemu("run", "-m", mnt.path, "-g", "box", "--", sys.executable, "-m",
              "cgroupfs_emu.cli.cgemu", "exec", "-g", "box/inner", "--", probe)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "cgemu exec: no fork guard inside cgemu run's view (it has the one seccomp listener "
        "a process may have): forks are not limited"]
    cg = facts(r.stdout)["CGROUP"]
    assert [line.split(":", 2)[2] for line in cg if ":memory:" in line] == ["/box/inner"]


def test_cgemu_run_inside_cgemu_exec_falls_back_to_the_preload_library(mnt):
    """The fork guard holds the one listener: one line says so, and dynamically
    linked programs still see the view."""
    group(mnt, "box", limit_in_bytes="40M")
    r = cgemu("exec", "-m", mnt.path, "-g", "box", "--", sys.executable, "-m",
              "cgroupfs_emu.cli.cgemu", "run", "-m", mnt.path, "-g", "box", "--",
              "sh", "-c", "grep :memory: /proc/self/cgroup; stat -f -c %T /sys/fs/cgroup/memory")
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if not x.startswith("cgemu exec:")]
    assert len(lines) == 1 and lines[0].startswith("cgemu run: no seccomp view (this process "
                                                   "tree already has a seccomp listener"), r.stderr
    cgroup, fstype = r.stdout.splitlines()
    assert cgroup.endswith(":memory:/box") and fstype.startswith("fuse")


def test_a_view_inside_a_view_is_served_by_the_outer_one(mnt, probe):
    group(mnt, "box", limit_in_bytes="40M")
    r = cgemu("run", "-m", mnt.path, "--", sys.executable, "-m", "cgroupfs_emu.cli.cgemu",
              "run", "-m", mnt.path, "-g", "box", "--", probe)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "cgemu run: inside another view; its supervisor answers\n"
    check_view(facts(r.stdout), "/box", read(mnt.p("box/memory.limit_in_bytes")).strip())


def test_preload_only_is_today_s_view(mnt, probe):
    r = cgemu("run", "-m", mnt.path, "--preload-only", "--", probe)
    assert r.returncode == 0
    assert "statically linked" in r.stderr
    assert facts(r.stdout)["STATFS_MEMORY"][0].split()[1] == "0x65735546"  # FUSE_SUPER_MAGIC


@needs("node", "nodejs")
def test_node_reports_the_groups_limit(mnt):
    group(mnt, "n", limit_in_bytes="72M")
    r = cgemu("run", "-m", mnt.path, "-g", "n", "--", "node", "-e",
              "console.log(process.constrainedMemory())", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == read(mnt.p("n/memory.limit_in_bytes")).strip()


def test_a_kernel_without_addfd_send_is_named(monkeypatch):
    """Before 5.14 the view cannot hand a descriptor back as the result of open."""
    from cgroupfs_emu.cli import view
    monkeypatch.setattr(view.platform, "release", lambda: "5.10.0-28-amd64")
    assert view.unavailable() == ("kernel 5.10.0-28-amd64 has no SECCOMP_ADDFD_FLAG_SEND "
                                  "(5.14+)")
    monkeypatch.setattr(view.platform, "release", lambda: "5.14.0")
    assert view.unavailable() is None


def test_view_argv_runs_a_command_in_the_view(mnt, probe):
    from cgroupfs_emu.cli.view import view_argv
    group(mnt, "box")
    r = subprocess.run(view_argv([probe], mount=mnt.path, group="box"), capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert facts(r.stdout)["STATFS_MEMORY"][0].split()[1] == "0x27e0eb"


OLD_KERNEL = """
import platform, sys
platform.release = lambda: "5.10.0-28-amd64"  # what uname says on a kernel before 5.14
from cgroupfs_emu.cli.cgemu import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_kernel_without_the_seccomp_view_falls_back_in_one_line(mnt, probe):
    group(mnt, "box")
    r = subprocess.run([sys.executable, "-c", OLD_KERNEL, "run", "-m", mnt.path, "-g", "box",
                        "--", "sh", "-c", f"grep :memory: /proc/self/cgroup; {probe}"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "cgemu run: no seccomp view (kernel 5.10.0-28-amd64 has no SECCOMP_ADDFD_FLAG_SEND "
        "(5.14+)): only dynamically linked programs see the emulated /proc files (through "
        "the preload library), and statfs says fuse"]
    assert r.stdout.splitlines()[0].endswith(":memory:/box")  # sh, through the library
    assert facts(r.stdout)["STATFS_MEMORY"][0].split()[1] == "0x65735546"  # the static one


def test_a_refused_sync_wakeup_is_reported_by_the_library_and_named_on_6_6(monkeypatch):
    import ctypes
    import errno
    from cgroupfs_emu.cli import view
    from cgroupfs_emu.preload import library_path
    lib = ctypes.CDLL(library_path())
    r, w = os.pipe()
    try:  # not a listener: the kernel refuses SET_FLAGS as it would refuse the flag
        assert lib.cgemu_view_sync_wakeup(r) < 0
    finally:
        os.close(r)
        os.close(w)
    monkeypatch.setattr(view.platform, "release", lambda: "6.6.0-1-amd64")
    assert view.sync_wakeup_line("cgemu run", 0) is None
    line = view.sync_wakeup_line("cgemu run", -errno.EINVAL)
    assert line.startswith("cgemu run: kernel 6.6.0-1-amd64 refused "
                           "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Invalid argument)")
    monkeypatch.setattr(view.platform, "release", lambda: "6.5.0")  # before the flag
    assert view.sync_wakeup_line("cgemu run", -errno.EINVAL) is None


REFUSING_KERNEL = """
import ctypes, errno, platform, sys, types
platform.release = lambda: "6.6.0-test"  # a kernel that has the flag, and refuses it
from cgroupfs_emu.cli import view
class Refusing(ctypes.CDLL):
    def __init__(self, name):
        super().__init__(name)
        self.cgemu_view_sync_wakeup = lambda listener: -errno.EINVAL
view.ctypes = types.SimpleNamespace(CDLL=Refusing, c_int=ctypes.c_int, c_char_p=ctypes.c_char_p)
from cgroupfs_emu.cli.cgemu import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_refused_sync_wakeup_is_one_line_and_the_view_still_works(mnt, probe):
    group(mnt, "box", limit_in_bytes="48M")
    r = subprocess.run([sys.executable, "-c", REFUSING_KERNEL, "run", "-m", mnt.path, "-g", "box",
                        "--", probe], capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "cgemu run: kernel 6.6.0-test refused SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Invalid "
        "argument): the view's opens and statfs wait for ordinary wakeups (slower)"]
    check_view(facts(r.stdout), "/box", read(mnt.p("box/memory.limit_in_bytes")).strip())


def run_filter(prog, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """What classic BPF *prog* returns for seccomp_data (arch, nr, args), little-endian."""
    import struct
    data = struct.pack("<iIQ6Q", nr, arch, 0, *(list(args) + [0] * 6)[:6])
    from cgroupfs_emu.service import fork_guard as fg
    pc, a = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        if code == fg.BPF_LD_W_ABS:
            a = struct.unpack_from("<I", data, k)[0]
        elif code == fg.BPF_JEQ_K:
            pc += jt if a == k else jf
        elif code == fg.BPF_JSET_K:
            pc += jt if a & k else jf
        elif code == fg.BPF_RET_K:
            return k
        pc += 1


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_view_filter_notifies_only_what_can_be_a_view_file(machine):
    from cgroupfs_emu.service import fork_guard as fg
    prog = fg.program(machine, fg.VIEW_CALLS[machine], fg.VIEW_PASSED[machine])
    arch = fg.ARCHES[machine][0]
    calls = fg.VIEW_CALLS[machine]
    o_wronly, o_cloexec = 1, 0o2000000
    o_directory = 0o200000 if machine == "x86_64" else 0o40000
    allow, notify = fg.SECCOMP_RET_ALLOW, fg.SECCOMP_RET_USER_NOTIF
    openat = calls["openat"]
    assert run_filter(prog, arch, openat, (0, 0, o_cloexec)) == notify
    assert run_filter(prog, arch, openat, (0, 0, o_wronly | o_cloexec)) == allow
    assert run_filter(prog, arch, openat, (0, 0, o_directory)) == allow
    for name in ("statfs", "fstatfs", "openat2"):
        assert run_filter(prog, arch, calls[name], (0, 0, o_wronly)) == notify
    if "open" in calls:
        assert run_filter(prog, arch, calls["open"], (0, 0)) == notify
        assert run_filter(prog, arch, calls["open"], (0, 2)) == allow  # O_RDWR
    assert run_filter(prog, arch, 0, ()) == allow  # any other call
    assert run_filter(prog, 0x40000003, openat, ()) == allow  # another ABI
    # the fork guard's filter, built by the same code, is what it was
    guard = fg.program(machine)
    assert run_filter(guard, arch, fg.ARCHES[machine][2]["clone"]) == notify
    assert run_filter(guard, arch, openat) == allow
