"""Two minutes of a fuzzed mount next to mounts that come and go (``slow``).

One mount is fuzzed: random limits (memory, memsw, oom_kill_disable), memory hogs that
its OOM killer kills, release agents, groups made and removed, and written into its
``tasks``: its hogs, a child subreaper of ours standing in for pid 1, and the daemon's
own threads and children. Meanwhile other mounts are mounted (detached, by a process
forked outside every group, so their daemons are orphans the subreaper collects, as
pid 1 collects a daemon), used through ``cgemu exec`` and ``cat``, and unmounted.

Checked all along: no process outside a group is ever stopped, listed in a group, or
killed; at the end every daemon has exited 0 (the fuzzed one too).
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import HELPERS, Mount, compiled_helper, needs_fuse, ppid_of, wait_until

pytestmark = [pytest.mark.slow, needs_fuse]

#: how long the fuzzing runs (about two minutes with setup and teardown)
FUZZ_SECONDS = 110
#: hogs alive at once, and the most pages each holds: 4 * 16 MiB at most
HOGS, HOG_PAGES = 4, 4096
LIMITS = ["4M", "8M", "16M", "32M", "64M", "-1", "1G", "0", "abc", "9999999999999999999999"]
GROUPS = ["g/d0", "g/d1", "g/d2", "sub"]


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def _try_write(path: str, value: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
        return True
    except OSError:
        return False


def _listed(mount: str) -> dict[int, str]:
    """pid -> group of every task listed in a group below the root."""
    found = {}
    for dirpath, _, files in os.walk(mount):
        if "tasks" not in files or dirpath == mount:
            continue
        try:
            with open(os.path.join(dirpath, "tasks")) as f:
                for pid in f.read().split():
                    found[int(pid)] = dirpath[len(mount):] or "/"
        except OSError:
            pass
    return found


class Launcher:
    """tests/helpers/subreaper.py: our subreaper and the launcher it forked first."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HELPERS, "subreaper.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        word, subreaper, launcher = self.proc.stdout.readline().split()
        assert word == "ready"
        self.subreaper, self.pid = int(subreaper), int(launcher)
        self.lock = threading.Lock()

    def run(self, *argv: str) -> dict:
        with self.lock:
            self.proc.stdin.write(json.dumps(list(argv)) + "\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()  # the launcher exits; the subreaper once it reaped all
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


class Watch:
    """Processes that live outside every group of the fuzzed mount: none may ever be
    stopped, listed in a group, or die before the test ends it."""

    def __init__(self, mount: str):
        self.mount = mount
        self.pids: dict[int, str] = {}
        self.violations: list[str] = []
        self.lock = threading.Lock()

    def add(self, pid: int, what: str) -> None:
        with self.lock:
            self.pids[pid] = what

    def remove(self, pid: int) -> None:
        with self.lock:
            self.pids.pop(pid, None)

    def check(self) -> None:
        with self.lock:
            pids = dict(self.pids)
        listed = _listed(self.mount)
        for pid, what in pids.items():
            state = _state(pid)
            with self.lock:
                if pid not in self.pids:
                    continue  # ended on purpose (a mount's daemon once it is unmounted)
                if state is None or state == "Z":
                    self.violations.append(f"{what} (pid {pid}) died")
                    del self.pids[pid]
                elif state in "Tt":
                    self.violations.append(f"{what} (pid {pid}) was stopped ({state})")
                if pid in listed:
                    self.violations.append(f"{what} (pid {pid}) was listed in {listed[pid]}")


class Hogs:
    """Memory hogs in signal mode (tests/helpers/memhog.c): each SIGUSR1 allocates
    HOG_PAGES / 4 pages or frees them again. Started outside, then written into a
    group, where the OOM killer may kill them."""

    def __init__(self, exe: str):
        self.exe = exe
        self.procs: list[subprocess.Popen] = []
        self.killed = 0

    def start(self) -> subprocess.Popen:
        p = subprocess.Popen([self.exe, "a", str(HOG_PAGES // 4)], stdout=subprocess.PIPE)
        assert p.stdout.readline() == b"ready\n"
        self.procs.append(p)
        return p

    def alive(self) -> list[subprocess.Popen]:
        for p in [p for p in self.procs if p.poll() is not None]:
            self.killed += p.returncode == -signal.SIGKILL
            p.stdout.close()
            self.procs.remove(p)
        return self.procs

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)  # our own children
                p.kill()
            p.wait()
            p.stdout.close()


def _fuzz(m: Mount, hogs: Hogs, launcher: Launcher, agent: str, stop: threading.Event,
          rng: random.Random) -> None:
    daemon = m.proc.pid
    for g in GROUPS:
        os.makedirs(m.p(g), exist_ok=True)
    _try_write(m.p("release_agent"), agent)
    while not stop.is_set():
        g = m.p(rng.choice(GROUPS))
        action = rng.randrange(10)
        if action == 0:
            _try_write(os.path.join(g, "memory.limit_in_bytes"), rng.choice(LIMITS))
        elif action == 1:
            _try_write(os.path.join(g, "memory.memsw.limit_in_bytes"), rng.choice(LIMITS))
        elif action == 2:
            _try_write(os.path.join(g, "memory.oom_control"), rng.choice("01"))
        elif action == 3:
            _try_write(os.path.join(g, "notify_on_release"), rng.choice("01"))
        elif action == 4:  # the subreaper, standing in for pid 1
            _try_write(os.path.join(g, "tasks"), str(launcher.subreaper))
        elif action == 5:  # the daemon itself, its threads and its children
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{daemon}/task")]
                kids = [int(c) for t in tids
                        for c in open(f"/proc/{daemon}/task/{t}/children").read().split()]
            except OSError:
                tids, kids = [daemon], []
            _try_write(os.path.join(g, rng.choice(["tasks", "cgroup.procs"])),
                       str(rng.choice([daemon, *tids, *kids])))
        elif action in (6, 7):
            alive = hogs.alive()
            if len(alive) < HOGS:
                _try_write(os.path.join(g, "tasks"), str(hogs.start().pid))
            elif alive:
                hog = rng.choice(alive)
                if _state(hog.pid) not in (None, "T", "t"):
                    hog.send_signal(signal.SIGUSR1)  # our own child: allocate or free
        elif action == 8:  # an empty group comes and goes: release agents run
            child = os.path.join(g, f"e{rng.randrange(4)}")
            try:
                os.mkdir(child)
                _try_write(os.path.join(child, "notify_on_release"), "1")
                os.rmdir(child)
            except OSError:
                pass
        else:  # move a hog; a group that empties calls its release agent
            alive = hogs.alive()
            if alive:
                _try_write(os.path.join(g, "tasks"), str(rng.choice(alive).pid))
        time.sleep(rng.uniform(0, 0.05))
    for g in GROUPS:  # lift the limits so nothing stays stopped at the end
        _try_write(m.p(g, "memory.oom_control"), "0")
        _try_write(m.p(g, "memory.memsw.limit_in_bytes"), "-1")
        _try_write(m.p(g, "memory.limit_in_bytes"), "-1")


def _cycle(launcher: Launcher, watch: Watch, record: list[str]) -> None:
    """One other mount: mounted detached by the launcher (forked outside every group),
    used through cgemu exec and cat, unmounted; its daemon must exit 0."""
    d = tempfile.mkdtemp(prefix="cgemu-stress-")
    mnt, log = os.path.join(d, "mnt"), os.path.join(d, "daemon.log")
    os.mkdir(mnt)
    pid = None
    try:
        r = launcher.run("cgroupfs_emu", "-o", f"kernel=linux-6,log={log}", "memory", mnt)
        assert (r["rc"], r["out"], r["err"]) == (0, "", ""), r
        pid = int(os.getxattr(mnt, "user.cgroupfs_emu.pid"))
        watch.add(pid, f"the daemon of {mnt}")
        os.mkdir(os.path.join(mnt, "job"))
        assert _try_write(os.path.join(mnt, "job", "memory.limit_in_bytes"), "64M")
        r = launcher.run("cgemu", "exec", "-m", mnt, "-g", "job", "--",
                         "cat", os.path.join(mnt, "job", "tasks"))
        assert r["rc"] == 0 and len(r["out"].split()) == 1, r
        r = launcher.run("cat", os.path.join(mnt, "memory.usage_in_bytes"))
        assert r["rc"] == 0 and int(r["out"]) >= 0, r
        assert wait_until(lambda: _try_rmdir(os.path.join(mnt, "job")), timeout=10)
        watch.remove(pid)
        assert launcher.run("fusermount3", "-u", mnt)["rc"] == 0
        assert wait_until(lambda: _state(pid) in (None, "Z"), timeout=20), pid
        with open(log) as f:
            text = f.read()
        assert "exiting with status 0" in text and "Traceback" not in text, text
        record.append(mnt)
    except Exception as e:
        try:
            with open(log, errors="replace") as f:
                text = f.read()[-3000:]
        except OSError:
            text = "(none)"
        raise AssertionError(f"{mnt}: {e!r}\nits log:\n{text}") from e
    finally:
        if os.path.ismount(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt], check=False)
        subprocess.run(["rm", "-rf", d], check=False)


def _try_rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
        return True
    except OSError:
        return False


def test_a_fuzzed_mount_never_harms_a_process_outside_its_groups(tmp_path):
    record = tmp_path / "released"
    agent = tmp_path / "agent.sh"
    agent.write_text(f'#!/bin/sh\necho "$1" >> {record}\n')
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    m = Mount("kernel=linux-6")
    launcher = Launcher()
    watch = Watch(m.path)
    stop = threading.Event()
    errors: list[BaseException] = []
    cycled: list[str] = []
    orphan = None
    with compiled_helper("memhog", "-O1") as exe:
        hogs = Hogs(exe)
        try:
            for pid, what in ((os.getpid(), "the test"), (launcher.pid, "the launcher")):
                watch.add(pid, what)
            # The orphan of the kernel's rule: forked outside (by the launcher's sh),
            # reparented to the subreaper once sh exits. It stays in the root group.
            r = launcher.run("sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!")
            orphan = int(r["out"])
            assert wait_until(lambda: ppid_of(orphan) == launcher.subreaper)
            watch.add(orphan, "an orphan the subreaper collected")

            def guarded(fn, *args):
                try:
                    fn(*args)
                except BaseException as e:  # reported by the main thread
                    errors.append(e)
                    stop.set()

            def mounts():
                while not stop.is_set():
                    _cycle(launcher, watch, cycled)

            threads = [threading.Thread(target=guarded, args=(_fuzz, m, hogs, launcher,
                                                              str(agent), stop,
                                                              random.Random(21))),
                       threading.Thread(target=guarded, args=(mounts,))]
            for t in threads:
                t.start()
            deadline = time.monotonic() + FUZZ_SECONDS
            while time.monotonic() < deadline and not stop.is_set():
                watch.check()
                time.sleep(0.1)
            stop.set()
            for t in threads:
                t.join(timeout=90)
            watch.check()
            # A process reparented to a subreaper in a group keeps the group it was
            # forked in (a kernel never moves a task at reparenting). Checked first:
            # an orphan adopted into a group is how the OOM killer of one mount comes
            # to kill the daemons of others (their cgemu exec then fails with
            # ECONNABORTED, below). This fails on a follower that adopts orphans into
            # their reaper's group (the follower's one door for forks keeps the rule).
            assert not watch.violations, (watch.violations[:20], errors)
            assert not errors, errors
            assert all(not t.is_alive() for t in threads)
            assert m.proc.poll() is None, "the fuzzed daemon died"
            assert len(cycled) >= 5, cycled
            assert hogs.killed >= 1  # the OOM killer did run
            assert record.exists()  # and so did release agents
        finally:
            stop.set()
            hogs.stop()
            if orphan is not None and _state(orphan) not in (None, "Z"):
                os.kill(orphan, signal.SIGKILL)  # the sleep our launcher started
            _try_write(m.p("tasks"), str(launcher.subreaper))  # back to the root
            launcher.close()
            rc = m.stop(check=False)
    assert rc == 0 and "Traceback" not in m.final_log, \
        f"the fuzzed daemon exited {rc}: {m.final_log[-3000:]}"

