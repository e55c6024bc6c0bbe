"""Unmodified programs from the distribution, run inside `cgemu run`, find
the emulator as their system's cgroup v1 memory hierarchy. Every value they report is
checked against the emulator's own files, read from outside the view."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from conftest import group, needs_fuse, read, readable_copy, started, write

pytestmark = [pytest.mark.mount, needs_fuse]

CGEMU = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu"]
TIMEOUT = 60


def cgemu(*args: str, env: dict | None = None, input: str | None = None,
          timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(CGEMU + list(args), capture_output=True, text=True, env=env,
                          input=input, timeout=timeout)


def run_in(m, grp: str, script: str, *extra: str) -> str:
    """stdout of `sh -c script` inside `cgemu run -g grp`; fails on a non-zero exit."""
    r = cgemu("run", "-m", m.path, "-g", grp, *extra, "--", "sh", "-c", script)
    assert r.returncode == 0, r.stderr + r.stdout
    return r.stdout


def needs(program: str, package: str):
    return pytest.mark.skipif(shutil.which(program) is None,
                              reason=f"{program} missing (install the {package} package)")


def hierarchy_id() -> int:
    """Memory's hierarchy in the view: the host's, where memory is on a v1 hierarchy;
    on a cgroup2 host each enabled controller gets a new id past the largest in use."""
    rows = [line.split() for line in read("/proc/cgroups").splitlines()[1:]]
    ids = {name: int(h) for name, h, _, _ in rows}
    if ids.get("memory"):
        return ids["memory"]
    last = max([*ids.values(), *(int(line.split(":")[0])
                                 for line in read("/proc/self/cgroup").splitlines())])
    for name, h, _, enabled in rows:
        if int(h) == 0 and (enabled == "1" or name == "memory"):
            last += 1
            if name == "memory":
                return last
    return last + 1


def host_mounts(own) -> list[str]:
    """The host's /proc/self/mountinfo without other tests' emulator mounts (tests of
    other sessions mount and unmount in parallel); ours and everything else stay."""
    others = os.path.join(tempfile.gettempdir(), "cgemu-")
    return [line for line in read("/proc/self/mountinfo").splitlines()
            if not (" - fuse.cgroupfs_emu " in line and line.split()[4].startswith(others)
                    and line.split()[4] != own.path)]


# ---------------------------------------------------------------- the view


def test_a_script_that_hard_codes_sys_fs_cgroup_reads_and_writes_its_group(mnt):
    group(mnt, "jobs/a", limit_in_bytes="48M")
    out = run_in(mnt, "jobs/a", """
        g=$(grep ':memory:' /proc/self/cgroup | cut -d: -f3)
        echo "$g"
        cat /sys/fs/cgroup/memory/$g/memory.limit_in_bytes
        echo 20M > /sys/fs/cgroup/memory/$g/memory.soft_limit_in_bytes
    """)
    assert out.split() == ["/jobs/a", read(mnt.p("jobs/a/memory.limit_in_bytes")).strip()]
    assert read(mnt.p("jobs/a/memory.soft_limit_in_bytes")).strip() == str(20 << 20)


def test_the_command_joins_its_group_and_children_are_reported_there(mnt):
    group(mnt, "g")
    out = run_in(mnt, "g", "grep -qx $$ /sys/fs/cgroup/memory/g/cgroup.procs || echo NOT JOINED;"
                           " cat /proc/self/cgroup; sleep 5 & cat /proc/$!/cgroup; kill $!")
    lines = out.splitlines()
    mine = f"{hierarchy_id()}:memory:/g"
    # /proc/self/cgroup of cat (a child the daemon may not have polled yet) and of sleep
    assert lines.count(mine) == 2, out
    # every other hierarchy of the host is kept, ids descending as the kernel prints
    ids = [int(line.split(":")[0]) for line in lines[:len(lines) // 2]]
    assert ids == sorted(ids, reverse=True)
    assert not [line for line in lines if ":memory:" in line and line != mine]


THREAD_READS = (
    "import threading, os; out = [];"
    "t = threading.Thread(target=lambda: out.append(open('/proc/thread-self/cgroup').read()"
    " + open('/proc/%d/task/%d/cgroup' % (os.getpid(), threading.get_native_id())).read()));"
    "t.start(); t.join(); print(out[0], end='')")


def test_a_new_thread_is_in_its_process_group(mnt):
    """The command's process joined; its new thread is not listed until the daemon's
    next poll, and is shown where the kernel puts it: in its process's group."""
    group(mnt, "t")
    r = cgemu("run", "-m", mnt.path, "-g", "t", "--", sys.executable, "-c", THREAD_READS)
    assert r.returncode == 0, r.stderr
    mine = [line for line in r.stdout.splitlines() if ":memory:" in line]
    assert mine == [f"{hierarchy_id()}:memory:/t"] * 2


def test_a_task_moved_to_the_root_is_reported_there_once_past_the_fork_window(mnt):
    """Only a young unlisted task borrows its parent's group (the daemon adopts forks
    at its next poll); one the daemon adopted and that was then moved to the root is
    in the root, as the emulator's tasks files say."""
    group(mnt, "g")
    out = run_in(mnt, "g", """
        sleep 30 & child=$!
        for i in $(seq 100); do
            grep -qx $child /sys/fs/cgroup/memory/g/tasks && break; sleep 0.1
        done
        echo $child > /sys/fs/cgroup/memory/tasks
        sleep 6  # past the preload library's 5 s window
        grep :memory: /proc/$child/cgroup; grep -cx $child /sys/fs/cgroup/memory/tasks
        kill $child
    """)
    assert out.split() == [f"{hierarchy_id()}:memory:/", "1"]


def test_proc_files_describe_a_v1_memory_hierarchy(mnt):
    group(mnt, "a")
    group(mnt, "a/b")
    out = run_in(mnt, "a/b", """
        echo MOUNTS; grep cgroup /proc/mounts
        echo SELFMOUNTS; grep cgroup /proc/self/mounts
        echo MOUNTINFO; grep cgroup /proc/self/mountinfo
        echo CGROUPS; grep memory /proc/cgroups
    """)
    # the kernel's own table, seen past the preload library (no seccomp view then)
    out += "KERNEL\n" + run_in(mnt, "a/b", "env -u LD_PRELOAD cat /proc/self/mountinfo",
                               "--preload-only")
    sections = {}
    for line in out.splitlines():
        if line.isupper():
            key = line
            sections[key] = []
        else:
            sections[key].append(line)
    n = hierarchy_id()
    # libcgroup's test: type exactly "cgroup" and "memory" among the options
    for key in ("MOUNTS", "SELFMOUNTS"):
        cg = [line.split() for line in sections[key] if line.split()[2] == "cgroup"]
        assert len(cg) == 1 and cg[0][:3] == ["cgroup", "/sys/fs/cgroup/memory", "cgroup"], out
        assert "memory" in cg[0][3].split(",") and cg[0][4:] == ["0", "0"]
    info = [line for line in sections["MOUNTINFO"] if " - cgroup" in line]
    assert len(info) == 1, out
    fields = info[0].split()
    assert fields[3:5] == ["/", "/sys/fs/cgroup/memory"]
    assert info[0].split(" - ")[1].split() == ["cgroup", "cgroup", "rw,memory"]
    groups = sum(1 for _ in os.walk(mnt.path))
    assert sections["CGROUPS"] == [f"memory\t{n}\t{groups}\t1"]
    # What the kernel itself shows inside: the host's cgroup mounts are gone, a tmpfs
    # is at /sys/fs/cgroup and the emulator (a FUSE mount) is bound below it.
    kernel = [line.split(" - ") for line in sections["KERNEL"]]
    assert not [k for k in kernel if k[1].split()[0] in ("cgroup", "cgroup2")], out
    at = {k[0].split()[4]: k[1].split()[0] for k in kernel}
    assert at["/sys/fs/cgroup"] == "tmpfs"
    if os.geteuid() == 0:  # the host's own tmpfs there went with its hierarchies
        assert [k[0].split()[4] for k in kernel].count("/sys/fs/cgroup") == 1, out
    assert at["/sys/fs/cgroup/memory"] == "fuse.cgroupfs_emu"


MNTENT = """
import ctypes, sys
class Mntent(ctypes.Structure):
    _fields_ = [("fsname", ctypes.c_char_p), ("dir", ctypes.c_char_p),
                ("type", ctypes.c_char_p), ("opts", ctypes.c_char_p),
                ("freq", ctypes.c_int), ("passno", ctypes.c_int)]
libc = ctypes.CDLL(None)
libc.setmntent.restype = ctypes.c_void_p
libc.setmntent.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.getmntent.restype = ctypes.POINTER(Mntent)
libc.getmntent.argtypes = [ctypes.c_void_p]
libc.endmntent.argtypes = [ctypes.c_void_p]
for path in sys.argv[1:]:
    f = libc.setmntent(path.encode(), b"re")
    while True:
        e = libc.getmntent(f)
        if not e:
            break
        if e.contents.type in (b"cgroup", b"cgroup2"):
            print(path, e.contents.fsname.decode(), e.contents.dir.decode(),
                  e.contents.type.decode(), e.contents.opts.decode())
    libc.endmntent(f)
"""


def test_the_mntent_functions_read_the_same_table(mnt):
    """setmntent()/getmntent(), as libcgroup-style C code reads mounts."""
    r = cgemu("run", "-m", mnt.path, "--", sys.executable, "-c", MNTENT,
              "/proc/mounts", "/proc/self/mounts")
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert [row[:4] for row in rows] == [
        [path, "cgroup", "/sys/fs/cgroup/memory", "cgroup"]
        for path in ("/proc/mounts", "/proc/self/mounts")]
    assert all("memory" in row[4].split(",") for row in rows)


def test_the_host_namespace_is_untouched_and_nothing_outlives_the_command(mnt):
    before = host_mounts(mnt)
    host_cgroup = read("/proc/self/cgroup")
    out = run_in(mnt, "/", "readlink /proc/self/ns/mnt;"
                           " grep -c ' - cgroup cgroup rw,memory' /proc/self/mountinfo")
    ns, count = out.split()
    assert count == "1"
    assert ns != os.readlink("/proc/self/ns/mnt")
    assert host_mounts(mnt) == before
    assert read("/proc/self/cgroup") == host_cgroup
    # the namespace went with the command: no process is left in it
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == ns:
                left.append(pid)
        except OSError:
            pass
    assert not left


def start_time(pid: int) -> int | None:
    try:
        stat = read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def test_what_the_command_leaves_behind_is_killed_with_it(mnt):
    """A background process would keep the view, and the emulator's bind mount in it,
    alive after the command; cgemu kills it once the command exits."""
    r = cgemu("run", "-m", mnt.path, "--", "sh", "-c",
              "sleep 300 </dev/null >/dev/null 2>&1 & echo $!; "
              "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!")
    assert r.returncode == 0, r.stderr
    for pid in map(int, r.stdout.split()):
        # gone, or a pid reused by a process started later than the run
        assert start_time(pid) is None or read(f"/proc/{pid}/comm").strip() != "sleep"


def test_signals_and_sigpipe_reach_the_command_as_they_would_unwrapped(mnt):
    # Python ignores SIGPIPE; the command must not inherit that
    r = cgemu("run", "-m", mnt.path, "--", "sh", "-c", "yes | head -c 4")
    assert (r.returncode, r.stdout, r.stderr) == (0, "y\ny\n", "")
    with started(CGEMU + ["run", "-m", mnt.path, "--", "sh", "-c", "echo up; exec sleep 300"],
                 stdout=subprocess.PIPE, text=True) as p:
        assert p.stdout.readline() == "up\n"
        p.send_signal(signal.SIGTERM)  # to cgemu, which forwards it to sleep
        assert p.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM


def test_cgemu_inside_the_view_finds_the_emulator(mnt):
    out = run_in(mnt, "/", 'echo "$CGROUPFS_EMU_MOUNT";'
                           ' grep -c " $CGROUPFS_EMU_MOUNT fuse.cgroupfs_emu " /proc/mounts;'
                           ' test -S "$CGROUPFS_EMU_SOCKET" && echo socket')
    assert out.split() == [os.path.realpath(mnt.path), "1", "socket"]


def test_at_puts_the_hierarchy_elsewhere(mnt, tmp_path):
    group(mnt, "x", limit_in_bytes="8M")
    at = tmp_path / "cgroup"
    at.mkdir()
    out = run_in(mnt, "x", f"cat {at}/memory/x/memory.limit_in_bytes; grep ' cgroup ' /proc/mounts",
                 "--at", str(at))
    limit, mount = out.splitlines()
    assert limit == read(mnt.p("x/memory.limit_in_bytes")).strip()
    assert mount.split()[1] == f"{at}/memory"
    assert os.listdir(at) == []  # the host's directory was never written


def test_shell_and_exec_system_are_run(mnt):
    group(mnt, "s")
    env = dict(os.environ, SHELL="/bin/sh")
    r = cgemu("shell", "-m", mnt.path, "-g", "s", env=env,
              input="grep :memory: /proc/self/cgroup\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{hierarchy_id()}:memory:/s"
    r = cgemu("exec", "--system", "-m", mnt.path, "-g", "s", "--", "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    assert f"{hierarchy_id()}:memory:/s" in r.stdout.splitlines()


def test_exit_status_and_setup_errors(mnt, tmp_path):
    assert cgemu("run", "-m", mnt.path, "--", "sh", "-c", "exit 7").returncode == 7
    r = cgemu("run", "-m", mnt.path, "-g", "nope", "--", "true")
    assert r.returncode == 1
    assert r.stderr.strip() == f"cgemu run: no group nope in {os.path.realpath(mnt.path)}"
    r = cgemu("run", "-m", mnt.path, "--", "no-such-program-cgemu")
    assert r.returncode == 127 and "no-such-program-cgemu" in r.stderr
    r = cgemu("run", "-m", mnt.path, "--at", str(tmp_path / "missing"), "--", "true")
    assert r.returncode == 1 and "not a directory" in r.stderr


def test_a_missing_preload_library_is_a_clear_error(mnt, tmp_path):
    """A package installed without its built library (copied here without the .so)."""
    import cgroupfs_emu
    pkg = os.path.dirname(cgroupfs_emu.__file__)
    shutil.copytree(pkg, tmp_path / "cgroupfs_emu", ignore=shutil.ignore_patterns("*.so"))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "run", "-m", mnt.path,
                        "--", "true"], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=TIMEOUT)
    assert r.returncode == 1
    assert "preload library" in r.stderr and "python3 -m cgroupfs_emu.preload build" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------- programs it cannot serve


STATIC_SRC = r"""
#include <unistd.h>
int main(void) { execlp("sh", "sh", "-c", "echo ${LD_PRELOAD:-none}", (char *)0); return 127; }
"""


@pytest.fixture(scope="module")
def exec_probe():
    """The same program twice: statically and dynamically linked. It execs a shell that
    prints LD_PRELOAD, i.e. the environment it was given."""
    d = tempfile.mkdtemp(prefix="cgemu-probe-")
    src = os.path.join(d, "probe.c")
    with open(src, "w") as f:
        f.write(STATIC_SRC)
    try:
        for name, flags in (("static", ["-static"]), ("dynamic", [])):
            subprocess.run(["cc", "-O1", *flags, "-o", os.path.join(d, name), src], check=True)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_the_library_leaves_static_programs_environment(mnt, exec_probe):
    out = run_in(mnt, "/", f"{exec_probe}/dynamic; {exec_probe}/static", "--preload-only")
    dynamic, static = out.split()
    assert dynamic.endswith("libcgemu_preload.so")
    assert static == "none"


def test_a_static_command_is_started_without_the_library_and_told_so(mnt, exec_probe):
    r = cgemu("run", "-m", mnt.path, "--preload-only", "--", f"{exec_probe}/static")
    assert r.returncode == 0
    assert r.stdout.strip() == "none"
    assert "statically linked" in r.stderr


# ------------------------------------------------------------- real programs


@needs("cgget", "cgroup-tools")
def test_cgroup_tools_manage_the_emulator(mnt):
    group(mnt, "G", limit_in_bytes="40M")
    out = run_in(mnt, "G", """
        cgget -n -v -r memory.limit_in_bytes /G
        cgcreate -g memory:/N
        cgset -r memory.limit_in_bytes=24M /N
        cgget -n -v -r memory.limit_in_bytes /N
        lscgroup memory:/
        cgexec -g memory:/N sh -c 'grep :memory: /proc/self/cgroup'
    """)
    lines = out.splitlines()
    assert lines[0] == read(mnt.p("G/memory.limit_in_bytes")).strip()
    assert os.path.isdir(mnt.p("N"))  # cgcreate made it in the emulator
    assert read(mnt.p("N/memory.limit_in_bytes")).strip() == str(24 << 20) == lines[1]
    assert {"memory:/", "memory:/G", "memory:/N"} <= set(lines[2:5])
    assert lines[-1] == f"{hierarchy_id()}:memory:/N"
    run_in(mnt, "/", "cgdelete memory:/N")
    assert not os.path.exists(mnt.p("N"))


@needs("cgget", "cgroup-tools")
def test_cgget_prints_a_groups_values(mnt):
    group(mnt, "G", limit_in_bytes="40M")
    r = cgemu("run", "-m", mnt.path, "-g", "G", "--", "cgget", "-g", "memory", "/G")
    assert r.returncode == 0, r.stderr
    values = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    assert values["memory.limit_in_bytes"] == read(mnt.p("G/memory.limit_in_bytes")).strip()


@needs("java", "openjdk-17-jre-headless")
def test_the_jvm_reports_the_groups_limit(mnt):
    group(mnt, "J", limit_in_bytes="96M")
    r = cgemu("run", "-m", mnt.path, "-g", "J", "--", "java", "-XshowSettings:system", "-version",
              timeout=120)
    assert r.returncode == 0, r.stderr
    report = dict(line.strip().split(": ", 1) for line in r.stderr.splitlines() if ": " in line)
    assert report["Provider"] == "cgroupv1"
    limit = int(read(mnt.p("J/memory.limit_in_bytes")))
    assert report["Memory Limit"] == f"{limit / (1 << 20):.2f}M"


PY_ONE_LINER = (
    "g = [l.split(':')[2] for l in open('/proc/self/cgroup').read().splitlines()"
    " if 'memory' in l.split(':')[1].split(',')][0];"
    "m = [l.split()[4] for l in open('/proc/self/mountinfo')"
    " for t, s, o in [l.split(' - ')[1].split()]"
    " if t == 'cgroup' and 'memory' in o.split(',')][0];"
    "print(g, m, open(m + g + '/memory.limit_in_bytes').read().strip())")


def test_a_python_one_liner_finds_its_group_mount_and_limit(mnt):
    group(mnt, "py", limit_in_bytes="12M")
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    r = cgemu("run", "-m", mnt.path, "-g", "py", "--", python, "-c", PY_ONE_LINER)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["/py", "/sys/fs/cgroup/memory",
                                read(mnt.p("py/memory.limit_in_bytes")).strip()]


# ---------------------------------------------------------------- non-root

NOBODY = 65534

USERNS_CHILD = r"""
import ctypes, os, sys
if sys.argv[1] == "deny":  # a user namespace whose root allows no further ones
    assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0
    print("unshared", flush=True)
    sys.stdin.readline()  # the parent maps root and nobody meanwhile
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
os.execv(sys.executable, [sys.executable] + sys.argv[2:])
"""


@pytest.fixture(scope="module")
def nobody_tree():
    """The package and what cgemu imports beyond the standard library, copied where
    nobody can read them: the checkout and its virtual environment may sit in root's
    home."""
    with readable_copy("cgroupfs_emu.cli.cgemu") as d:
        yield d


def as_nobody(tree: str, argv: list[str], deny_userns: bool = False) -> subprocess.CompletedProcess:
    python = os.path.realpath(sys.executable)  # the distribution's, not root's venv
    env = dict(os.environ, PYTHONPATH=tree, PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    p = subprocess.Popen([python, "-c", USERNS_CHILD, "deny" if deny_userns else "allow",
                          *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=tree)
    try:
        if deny_userns:
            assert p.stdout.readline() == "unshared\n"
            for name in ("uid_map", "gid_map"):
                with open(f"/proc/{p.pid}/{name}", "w") as f:
                    f.write(f"0 0 1\n{NOBODY} {NOBODY} 1\n")
            out, err = p.communicate("go\n", timeout=TIMEOUT)
        else:
            out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


@pytest.fixture
def nobody_mount(mount_with):
    if os.geteuid() != 0:
        pytest.skip("switching to nobody needs root")
    m = mount_with("allow_other")
    os.mkdir(m.p("u"))
    write(m.p("u/memory.limit_in_bytes"), "28M")
    for name in os.listdir(m.p("u")) + [""]:
        os.chown(m.p("u", name), NOBODY, NOBODY)  # delegated to nobody, as chown -R does
    return m


def test_a_user_gets_the_view_through_a_user_namespace(nobody_mount, nobody_tree):
    m = nobody_mount
    before = host_mounts(m)
    r = as_nobody(nobody_tree, ["-m", "cgroupfs_emu.cli.cgemu", "run", "-m", m.path, "-g", "u",
                                "--", "sh", "-c",
                                "id -u; g=$(grep :memory: /proc/self/cgroup | cut -d: -f3);"
                                " cat /sys/fs/cgroup/memory/$g/memory.limit_in_bytes"])
    if r.returncode == 1 and "cannot create a user namespace" in r.stderr:
        pytest.skip("this kernel refuses unprivileged user namespaces: " + r.stderr.strip())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(NOBODY), read(m.p("u/memory.limit_in_bytes")).strip()]
    assert host_mounts(m) == before


def test_a_user_without_user_namespaces_gets_a_clear_error(nobody_mount, nobody_tree):
    r = as_nobody(nobody_tree, ["-m", "cgroupfs_emu.cli.cgemu", "run", "-m", nobody_mount.path,
                                "-g", "u", "--", "true"], deny_userns=True)
    assert r.returncode == 1
    assert r.stderr.startswith("cgemu run: cannot create a user namespace as uid 65534")
    assert "run cgemu run as root" in r.stderr and "Traceback" not in r.stderr
