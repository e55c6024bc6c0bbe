"""A task the daemon stops is stopped where job control cannot see it, as a kernel
task over its limit sleeps in its page fault (service/stopper.py): an interactive
shell keeps listing the job as Running. Tested in a real ``bash -i`` on a pty.

Every process signalled here is one the test started (the shell, and the job it
started)."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from conftest import HAVE_FUSE, Mount, group, needs_fuse, read, wait_until, write

pytestmark = [pytest.mark.mount, needs_fuse]


class Shell:
    """``bash -i`` on a pty: commands in, everything it prints out."""

    def __init__(self):
        env = dict(os.environ, PS1="$ ", TERM="dumb", HISTFILE="/dev/null")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
        self.out = ""

    def run(self, command: str, timeout: float = 10.0) -> str:
        """Type *command*; what the shell printed until it is done (a marker the
        typed text does not contain)."""
        self.marker = getattr(self, "marker", 0) + 1
        os.write(self.fd, f"{command}; echo @@$((1000+{self.marker}))@@\n".encode())
        end = f"@@{1000 + self.marker}@@"
        start = len(self.out)
        deadline = time.monotonic() + timeout
        while end not in self.out[start:].replace(f"$((1000+{self.marker}))", ""):
            left = deadline - time.monotonic()
            assert left > 0, f"shell did not finish {command!r}: {self.out[start:]!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.out += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:
                    break
        return self.out[start:]

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)  # our own child
        except ProcessLookupError:
            pass
        os.waitpid(self.pid, 0)
        os.close(self.fd)


def state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_a_job_stopped_at_its_limit_stays_running_for_an_interactive_shell(mnt):
    g = group(mnt, "job", limit_in_bytes="64M", oom_control="1")
    sh = Shell()
    try:
        out = sh.run("python3 -c 'import time; time.sleep(0.5); x = bytearray(200 << 20); "
                     f"time.sleep(60)' & echo $! > {g}/tasks; echo PID=$!")
        pid = int(re.search(r"PID=(\d+)", out).group(1))
        # under oom_kill_disable the job sleeps at its limit: the daemon stops it
        assert wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"),
                          timeout=10)
        assert wait_until(lambda: state(pid) == "t", timeout=5), state(pid)  # ptrace-stop
        time.sleep(0.3)  # the shell has had its SIGCHLD, if there was one
        out = sh.run("jobs")
        assert re.search(r"\[1\]\+\s+Running", out), out
        assert "Stopped" not in sh.out, sh.out
        # a signal that would end it ends it, as it ends a kernel task's killable
        # sleep in its page fault; the shell hears of the exit
        out = sh.run("kill %1; wait %1; echo RC=$?")
        assert "RC=143" in out, out
        assert "Stopped" not in sh.out, sh.out
        assert wait_until(lambda: "under_oom 0" in read(f"{g}/memory.oom_control"),
                          timeout=5)
    finally:
        sh.close()
    assert "stopped pid" in mnt.log() and "(ptrace)" in mnt.log()


#: prints its pid, waits for a line, then allocates 200M (past the groups' 64M)
HOG = ("import os, sys, threading, time\n"
       "ts = [threading.Thread(target=lambda: [time.sleep(0.001) for _ in range(20000)],"
       " daemon=True) for _ in range(int(sys.argv[1]))]\n"
       "[t.start() for t in ts]\n"
       "print(os.getpid(), flush=True); sys.stdin.readline()\n"
       "x = bytearray(200 << 20); print('done', flush=True)\n")


@contextlib.contextmanager
def hog_in(g: str, threads: int = 0, prefix: tuple = ()):
    """HOG (with *threads* more threads, under *prefix*) joined to *g* and allocating;
    yields (process, pid); killed at the end if it has not finished."""
    with subprocess.Popen([*prefix, sys.executable, "-c", HOG, str(threads)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        try:
            pid = int(p.stdout.readline())
            write(f"{g}/tasks", str(pid))
            p.stdin.write("go\n")
            p.stdin.flush()
            yield p, pid
        finally:
            if p.poll() is None:
                p.kill()  # our own child (with strace: its tracee goes with it)
                p.wait()


def under_oom(g: str) -> bool:
    return wait_until(lambda: "under_oom 1" in read(f"{g}/memory.oom_control"), timeout=10)


def finishes(p) -> bool:
    return p.stdout.readline() == "done\n" and p.wait(timeout=10) == 0


def test_a_task_ptrace_cannot_take_is_stopped_with_sigstop_and_the_log_says_so_once(mnt):
    """A task already traced (here by strace) cannot be seized: it is stopped with
    SIGSTOP, continued with SIGCONT when its group recovers, and the log says once
    that job control will see such stops."""
    g = group(mnt, "traced", limit_in_bytes="64M", oom_control="1")
    with hog_in(g, prefix=("strace", "-f", "-o", "/dev/null")) as (p, pid):
        assert under_oom(g)
        write(f"{g}/memory.limit_in_bytes", "400M")
        assert finishes(p)
    log = mnt.log()
    assert log.count("ptrace refused") == 1, log
    assert f"sent SIGSTOP to pid {pid}" in log and f"sent SIGCONT to pid {pid}" in log, log


def test_a_task_stopped_at_its_limit_goes_on_when_the_daemon_unmounts():
    if not HAVE_FUSE:
        pytest.skip("/dev/fuse or fusermount3 missing")
    m = Mount("")
    try:
        g = group(m, "u", limit_in_bytes="64M", oom_control="1")
        with hog_in(g) as (p, pid):
            assert wait_until(lambda: state(pid) == "t", timeout=10), state(pid)
            rc = m.stop(check=False)
            assert rc == 0, rc  # the daemon let the stopped task go and exited cleanly
            assert finishes(p)
    finally:
        if m.proc.poll() is None:  # not stopped above
            m.stop(check=False)


def test_every_thread_of_a_stopped_process_is_stopped_and_goes_on_after(mnt):
    """A SIGSTOP stops a whole thread group; a ptrace-stop is per thread, so every
    thread is seized, and one created while the process is being stopped too."""
    g = group(mnt, "mt", limit_in_bytes="64M", oom_control="1")
    with hog_in(g, threads=3) as (p, pid):
        assert under_oom(g)

        def states():
            return {state(int(t)) for t in os.listdir(f"/proc/{pid}/task")}
        assert wait_until(lambda: states() == {"t"}, timeout=5), states()
        assert len(os.listdir(f"/proc/{pid}/task")) == 4
        write(f"{g}/memory.limit_in_bytes", "400M")
        assert finishes(p)
