"""The one place that wires the daemon.

Every collaborator is built once, here, in dependency order, and handed to the
constructors that need it; no constructor sets anything on another object:

    Host, Signaller                      host facts, the signal guard
    Clients, OomWaitQueue, ReleaseAgents  where effects go
    ServiceEffects                       the core's effects port
    MemoryController                     the memory subsystem (effects, task facts)
    OomExecutor, ProcessTracker          act on verdicts; follow real processes
    Hierarchy                            the cgroup core: tracker, then memory
    Follower                             process events, fast sampling, fork guard
    ControlTree, CgroupFS                control files; the FUSE adapter
    Watcher                              closed eventfd registrations
    ChargeServer                         the client socket (serves once it is bound)

:meth:`Daemon.start` makes the two things the outside sees, socket first, then the
mount, each registering its undoing on an exit stack; :meth:`Daemon.serve` runs the
FUSE loop, the socket server, the watcher and the release agents in one nursery.
Teardown is the exit stack unwinding: unmount, close the socket, resume stopped tasks
and close eventfds, whether serving ended normally or with an error.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import subprocess

import pyfuse3
import trio

from ..core.cgroup import Hierarchy
from ..core.memcg import MemoryController
from ..core.catalog import get_profile
from ..host.cpus import possible_cpus
from ..files import ControlTree
from ..fs import CgroupFS
from ..fs.session import WaitCounts, fuse_fds, install_fast_wait
from ..host.procfs import Host
from ..protocol import SOCKET_XATTR, default_socket_path
from ..service.effects import Clients, HostFacts, ReleaseAgents, ServiceEffects
from ..service.follower import Follower
from ..service.fdbudget import raise_nofile_limit
from ..service.oom import OomExecutor, OomWaitQueue
from ..service.server import ChargeServer, bind_socket
from ..service.signals import Signaller
from ..service.tracker import ProcessTracker
from ..service.verbs import Context
from ..service.watcher import Watcher
from ..units import PAGE_SIZE
from . import helper
from .helper import PID_XATTR
from .options import MountConfig, UsageError

log = logging.getLogger("cgroupfs_emu")

#: the exit status of a daemon whose FUSE connection was aborted (1: any other failure)
EXIT_ABORTED = 3
#: the signals that unmount and stop the daemon
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def fuse_options(cfg: MountConfig) -> set[str]:
    opts = {"default_permissions", f"fsname={cfg.source}", "subtype=cgroupfs_emu"}
    opts |= cfg.fuse_options
    if cfg.allow_other:
        opts.add("allow_other")
    if cfg.debug:
        opts.add("debug")
    return opts


class Daemon:
    """Everything one mount serves."""

    def __init__(self, cfg: MountConfig):
        self.cfg = cfg
        self.host = Host()
        self.signals = Signaller()
        self.clients = Clients()
        self.oom_queue = OomWaitQueue()
        self.agents = ReleaseAgents()
        self.effects = ServiceEffects(self.clients, self.oom_queue, self.agents)
        profile = get_profile(cfg.profile)
        self.memory = MemoryController(profile, self.effects,
                                       HostFacts(self.signals, self.host),
                                       swap_pages=cfg.swap // PAGE_SIZE, oom_kill=cfg.oom_kill,
                                       ncpus=cfg.ncpus or possible_cpus())
        self.executor = OomExecutor(self.memory, self.signals, self.oom_queue)
        self.tracker = ProcessTracker(self.memory, self.host, self.executor)
        # the scheduler of following: events, sampling, the stop-first thread, stacks
        self.follower = Follower(self.tracker, self.signals, fast_ms=cfg.fast_ms,
                                 events=cfg.events, stacks=cfg.thread_stacks,
                                 poll_ms=cfg.poll_ms)
        # The tracker's can_attach settles a moving leader before memory moves its
        # charges; the follower's attach guards it in its new group after.
        self.hierarchy = Hierarchy((self.tracker, self.memory, self.follower), self.effects,
                                   release_agent=cfg.release_agent, owner_uid=os.getuid(),
                                   names=profile.name_rules())
        self.tree = ControlTree(self.hierarchy, self.memory, self.host, cfg.mountpoint)
        self.socket_path = cfg.socket or default_socket_path(cfg.mountpoint)
        self.ops = CgroupFS(self.tree, root_xattrs={SOCKET_XATTR: self.socket_path,
                                                  PID_XATTR: str(os.getpid())})
        self.watcher = Watcher(self.memory, cfg.poll_ms)
        self.server = ChargeServer(Context(self.memory, self.executor, self.clients,
                                           tracker=self.tracker, follower=self.follower))
        self.listener = None
        #: the mount's device ("major:minor") in the mount table
        self.device: str | None = None
        self.aborted = False
        self._signalled = False
        #: how the FUSE loop's waits for a request ended (fs/session.py), or None
        self.waits: WaitCounts | None = None

    def start(self, stack: contextlib.ExitStack) -> None:
        """Socket first, then the mount: both exist before anyone hears "mounted".
        Each pushes its undoing on *stack*."""
        stack.callback(self.signals.close)  # unwound last: lets go of ptrace-stopped tasks
        stack.callback(self.watcher.close)
        stack.callback(self.follower.close)  # unwound first (LIFO): continue what its thread stopped
        # the descriptor budget (service/fdbudget.py) counts on it, and every followed
        # process holds a pidfd and a perf counter
        raise_nofile_limit()
        self.follower.start()
        try:
            listener = bind_socket(self.socket_path, self.cfg.socket_mode,
                                   default_dir=self.cfg.socket is None)
        except OSError as e:
            raise UsageError(f"cannot create socket {self.socket_path}: "
                             f"{e.strerror or e}") from None
        stack.callback(self._close_socket, listener)
        self.listener = listener
        before = fuse_fds()
        try:
            pyfuse3.init(self.ops, self.cfg.mountpoint, fuse_options(self.cfg))
        except RuntimeError as e:
            raise UsageError(f"cannot mount on {self.cfg.mountpoint}: {e}") from None
        session = fuse_fds() - before
        if len(session) == 1:  # the session's /dev/fuse descriptor
            self.waits = install_fast_wait(session.pop())
            if self.waits is not None:
                stack.callback(self._log_waits)
        # read from the mount table, not stat(): nobody serves the mount yet
        self.device = helper.mount_device(self.cfg.mountpoint)
        # Unmount on the error path too: a daemon that dies must not leave a mount
        # whose every access fails with ENOTCONN.
        stack.callback(self._clear_dead_mount)
        stack.callback(pyfuse3.close, unmount=True)

    def _log_waits(self) -> None:
        log.debug("FUSE request waits: %s", self.waits)

    def _close_socket(self, listener) -> None:
        listener.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass

    async def serve(self) -> int:
        """Run the FUSE loop, the client socket, the watcher and the release agents
        until unmounted (fusermount3 -u) or signalled."""
        # Everything built so far lives as long as the daemon: keep it out of the
        # collector's scans, which otherwise cost every request a little.
        gc.freeze()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.agents.serve)
            await nursery.start(self.server.serve, self.listener)
            await nursery.start(self.watcher.run)
            await nursery.start(self.follower.serve)
            nursery.start_soon(self._on_signal)
            try:
                await pyfuse3.main(min_tasks=1, max_tasks=1)
            except BaseException as e:
                if not _connection_aborted(e):
                    raise
                self.aborted = True
            # A read of /dev/fuse fails once the connection is gone: ENODEV after an
            # unmount, which libfuse takes as a clean exit, and also after a write to
            # /sys/fs/fuse/connections/N/abort unless the session asked for
            # ECONNABORTED (fuse_conn_abort_write(), fuse_dev_do_read()). Only an
            # abort leaves the mount in the table.
            if not self.aborted and not self._signalled and self.device is not None:
                self.aborted = helper.mount_device(self.cfg.mountpoint) == self.device
            nursery.cancel_scope.cancel()
        if self.aborted:
            log.error("FUSE connection of %s aborted: no request can be served any "
                      "more; unmounting it, exit status %d", self.cfg.mountpoint,
                      EXIT_ABORTED)
            return EXIT_ABORTED
        return 0

    def _clear_dead_mount(self) -> None:
        """libfuse leaves an aborted connection's mount alone (fuse_kern_unmount()
        skips a device that polls POLLERR); every access to it would fail with
        ENOTCONN until someone unmounted it, so the daemon does."""
        if self.aborted:
            subprocess.run(["fusermount3", "-u", "-z", self.cfg.mountpoint],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)

    async def _on_signal(self) -> None:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            # held since the mount was announced (cli/mount.py): delivered now, here
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            async for signum in signals:
                log.info("signal %d: unmounting", signum)
                self._signalled = True
                pyfuse3.terminate()
                return


def _connection_aborted(e: BaseException) -> bool:
    """ECONNABORTED from the FUSE loop, alone or as the one error of a trio group."""
    while isinstance(getattr(e, "exceptions", None), tuple) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return isinstance(e, ConnectionAbortedError)
