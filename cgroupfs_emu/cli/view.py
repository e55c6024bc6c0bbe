"""How the command of ``cgemu run`` is shown the view: a seccomp filter served by the
supervisor in cgemu (every program, static or not), else the preload library (dynamic
programs only).

The filter (service/fork_guard.py's builder, ``VIEW_CALLS``) is installed by the forked
command itself, after it joined its group and before it execs, so that nothing but the
command's tree is ever filtered. Its listener goes back to cgemu over a socket pair;
cgemu runs the supervisor loop of the C library (preload/supervise.c, the same shared
object as the preload library, so both print the one renderer's text) in a thread: the
loop runs in C with the GIL released, a round trip costs no Python. Why this design and
what it costs: docs/architecture.md, "The view of cgemu run".

Where seccomp cannot serve the view (an architecture without a filter, a kernel before
5.14's SECCOMP_ADDFD_FLAG_SEND, or a process tree that already has a listener: a kernel
allows one per filter chain), cgemu says so in one line and preloads the library as
before.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import logging
import os
import platform
import shutil
import signal
import socket
import struct
import sys
import threading

from ..protocol import default_socket_path
from ..service import fork_guard
from ..service.server import prepare_socket_dir

log = logging.getLogger("cgroupfs_emu")

#: the kernel that first hands a descriptor back as a call's result (ADDFD_FLAG_SEND)
ADDFD_SEND = (5, 14)
#: the kernel that first wakes the supervisor on the caller's CPU (FD_SYNC_WAKE_UP)
SYNC_WAKE_UP = (6, 6)


def unavailable() -> str | None:
    """Why this machine cannot serve the view through seccomp, or None."""
    machine = platform.machine()
    if machine not in fork_guard.VIEW_CALLS or not fork_guard.supported():
        return f"no seccomp filter for {machine}"
    try:
        release = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        return None
    if release < ADDFD_SEND:
        return (f"kernel {platform.release()} has no SECCOMP_ADDFD_FLAG_SEND "
                f"({ADDFD_SEND[0]}.{ADDFD_SEND[1]}+)")
    return None


def view_argv(argv: list[str], mount: str | None = None, group: str = "/",
              at: str | None = None) -> list[str]:
    """The command line that runs *argv* in the view: ``cgemu run [-m MOUNT] -g GROUP
    [--at DIR] -- ARGV`` (the stable entry point) through this interpreter, for
    subprocess (the pytest plugin, scripts)."""
    line = [sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "run", "-g", group]
    if mount:
        line += ["-m", mount]
    if at:
        line += ["--at", at]
    return [*line, "--", *argv]


def fallback_line(prog: str, reason: str) -> str:
    return (f"{prog}: no seccomp view ({reason}): only dynamically linked programs see the "
            "emulated /proc files (through the preload library), and statfs says fuse")


def sync_wakeup_line(prog: str, rc: int) -> str | None:
    """The line for cgemu_view_sync_wakeup()'s *rc*, or None: a kernel of 6.6 or later
    that refuses the flag makes every round trip slower, and that is said; before 6.6
    the refusal is expected (docs/architecture.md, "The view of cgemu run")."""
    try:
        release = tuple(int(x) for x in platform.release().split("-")[0].split(".")[:2])
    except ValueError:
        release = SYNC_WAKE_UP  # an odd release string: say it rather than hide it
    if rc >= 0 or release < SYNC_WAKE_UP:
        return None
    return (f"{prog}: kernel {platform.release()} refused SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP "
            f"({os.strerror(-rc)}): the view's opens and statfs wait for ordinary wakeups "
            "(slower)")


def preloadable(path: str) -> bool:
    """Whether the dynamic loader will preload into the program at *path*: an ELF file
    with a PT_INTERP whose set-user/group-ID bits do not change our ids. Scripts and
    unreadable files count as preloadable: their interpreter decides. Mirrors served()
    in cgview.c."""
    try:
        st = os.stat(path)
        # the loader's secure mode (AT_SECURE) ignores LD_PRELOAD when the exec changes ids
        if (st.st_mode & 0o4000 and st.st_uid != os.getuid()) or \
                (st.st_mode & 0o2000 and st.st_gid != os.getgid()):
            return False
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return True
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return True
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3  # PT_INTERP
               for i in range(len(table) // phentsize))


def loadable_path(library: str) -> str:
    """*library*, or a copy of it that ld.so can preload. ld.so splits LD_PRELOAD at
    spaces and colons and knows no escape, so a library under such a path (a clone in
    "/root/my work") is preloaded from a copy named by its content, in the private
    runtime directory the client sockets use (ours, writable by nobody else)."""
    if not any(c in library for c in " :"):
        return library
    with open(library, "rb") as f:
        data = f.read()
    runtime = os.path.dirname(default_socket_path("/"))
    prepare_socket_dir(runtime, 0o600)
    # the same file name in a directory named by the content: the library knows itself
    # in LD_PRELOAD by its name (cleaned() in cgview.c)
    directory = os.path.join(runtime, f"preload-{hashlib.sha256(data).hexdigest()[:16]}")
    os.makedirs(directory, mode=0o755, exist_ok=True)
    target = os.path.join(directory, os.path.basename(library))
    if not os.path.exists(target):
        partial = f"{target}.{os.getpid()}"
        with open(partial, "wb") as f:
            f.write(data)
        os.chmod(partial, 0o755)
        os.rename(partial, target)  # whole or not at all, for a concurrent cgemu run
    return target


def with_preload(env: dict[str, str], library: str) -> dict[str, str]:
    """*env* with *library* first in LD_PRELOAD (once)."""
    env = dict(env)
    library = loadable_path(library)
    others = [p for p in env.get("LD_PRELOAD", "").replace(" ", ":").split(":")
              if p and os.path.basename(p) != os.path.basename(library)]
    env["LD_PRELOAD"] = ":".join([library] + others)
    return env


def static_note(prog: str, command: list[str]) -> str | None:
    """The note for a command the preload library cannot serve, or None."""
    program = shutil.which(command[0]) if "/" not in command[0] else command[0]
    if program and not preloadable(program):
        return (f"{prog}: note: {program} is statically linked or set-ID; it reads the "
                "kernel's /proc files, not the emulated ones")
    return None


class Handoff:
    """The socket pair over which the forked command hands its listener to cgemu."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.busy = False  # the command already had a listener (another view, cgemu exec)

    def child(self) -> str | None:
        """In the command, after the join: install the filter and send its listener.
        Returns None, or why there is no seccomp view (then nothing was installed)."""
        self.ours.close()
        try:
            fd = fork_guard.install(fork_guard.VIEW_CALLS[platform.machine()],
                                    fork_guard.VIEW_PASSED.get(platform.machine()))
        except OSError as e:
            reason = e.strerror or str(e)
            if e.errno == errno.EBUSY:
                self.busy = True
                reason = ("this process tree already has a seccomp listener, e.g. "
                          "cgemu exec's fork guard")
            self.theirs.close()
            return reason
        # from here on every open waits for cgemu's answer: send before anything else
        socket.send_fds(self.theirs, [b"L"], [fd])
        os.close(fd)
        self.theirs.close()
        return None

    def parent(self) -> int | None:
        """In cgemu: the listener, or None when the command sent none."""
        self.theirs.close()
        try:
            _, fds, _, _ = socket.recv_fds(self.ours, 1, 1)
        except OSError:
            fds = []
        finally:
            self.ours.close()
        return fds[0] if fds else None


class Supervisor:
    """preload/supervise.c's loop, in a thread of its own.

    Built before the command is forked (the library loaded, its entry point looked up),
    started right after: from the moment the command has sent its listener, every open
    it makes waits for this thread, so nothing slow may stand between the two."""

    def __init__(self, library: str, view: str, prog: str) -> None:
        self.lib = ctypes.CDLL(library)  # RTLD_LOCAL: its interposers stay its own
        self.lib.cgemu_view_supervise.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.cgemu_view_sync_wakeup.argtypes = [ctypes.c_int]  # looked up before the fork
        self.view, self.prog = os.fsencode(view), prog
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread: threading.Thread | None = None

    def start(self, handoff: Handoff) -> None:
        """Serve the listener that the command sends through *handoff* (the thread
        waits for it itself; none comes when the command fell back to preloading)."""
        self.thread = threading.Thread(target=self._serve, args=(handoff,), name="cgemu-view",
                                       daemon=True)
        self.thread.start()

    def _serve(self, handoff: Handoff) -> None:
        # signals are the main thread's (it forwards them to the command)
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        _raise_priority()
        listener = handoff.parent()
        if listener is None:
            return
        # whatever happens here, the listener is closed at the end: the command's
        # trapped calls then fail (ENOSYS) rather than wait for an answer forever
        try:
            line = sync_wakeup_line(self.prog, self.lib.cgemu_view_sync_wakeup(listener))
            if line:
                print(line, file=sys.stderr)
            rc = self.lib.cgemu_view_supervise(listener, self.view, self.stop_r)
            if rc < 0:
                print(f"{self.prog}: the view's supervisor stopped: {os.strerror(-rc)}",
                      file=sys.stderr)
        except Exception as e:  # noqa: BLE001 - said in one line, never a hang
            print(f"{self.prog}: the view's supervisor failed: {e!r}", file=sys.stderr)
        finally:
            os.close(listener)

    def stop(self) -> None:
        """Once the command's tree is gone the loop ends by itself; on kernels before
        6.6 a waiting RECV is not woken then, and the thread is left to the exit."""
        os.write(self.stop_w, b"x")
        if self.thread is not None:
            self.thread.join(1)
            if self.thread.is_alive():
                return  # still in RECV: its descriptors go with the exit
        os.close(self.stop_r)
        os.close(self.stop_w)


#: the supervisor's nice value where it may have one: each notification holds a task
#: of the command inside a system call until this thread answers, so it must not wait
#: behind other work on a busy machine (the command's own threads included)
SUPERVISOR_NICE = -20


def _raise_priority() -> None:
    """Give the calling thread SUPERVISOR_NICE (setpriority(PRIO_PROCESS, tid): on Linux
    a thread's own nice value). Without CAP_SYS_NICE (RLIMIT_NICE) the kernel refuses,
    and the supervisor runs at cgemu's priority."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SUPERVISOR_NICE)
    except OSError as e:
        log.debug("the view's supervisor keeps its priority: %s", e.strerror)
