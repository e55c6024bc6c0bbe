"""``cgroupfs_emu``: mount the emulated hierarchy and serve it.

Without -f the command mounts first, in the foreground, so that mount errors reach the
terminal with a non-zero exit; only then does the daemon detach. ``cgroupfs_emu x /mnt
&& echo 4M > /mnt/...`` therefore never races the mount. fusermount3 -u, SIGTERM and
SIGINT all unmount and exit 0.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys

import pyfuse3
import trio

from ..core import PAGE_SIZE, Hierarchy, get_profile
from ..files import ControlTree
from ..fs import CgroupFS
from ..service.protocol import SOCKET_XATTR, default_socket_path
from ..service.follower import Follower
from ..service.server import ChargeServer, bind_socket
from ..service.signals import Signaller
from ..service.tracker import ProcessTracker
from ..service.watcher import Watcher
from .options import MountConfig, UsageError, parse_args

log = logging.getLogger("cgroupfs_emu")


class Daemon:
    """Everything one mount serves, wired layer on layer: core hierarchy -> control-file
    tree -> FUSE operations, and the client socket beside them."""

    def __init__(self, cfg: MountConfig):
        self.cfg = cfg
        self.hierarchy = Hierarchy(get_profile(cfg.profile), release_agent=cfg.release_agent,
                                   owner_uid=os.getuid(), swap_pages=cfg.swap // PAGE_SIZE,
                                   oom_kill=cfg.oom_kill)
        self.socket_path = cfg.socket or default_socket_path(cfg.mountpoint)
        self.ops = CgroupFS(ControlTree(self.hierarchy), cfg.mountpoint,
                            root_xattrs={SOCKET_XATTR: self.socket_path})
        self.listener = None
        self.signals = Signaller()
        host = self.ops.tree.host
        self.hierarchy.charges.oom_score_adj = host.oom_score_adj
        self.tracker = ProcessTracker(self.hierarchy, host, self.signals)
        self.follower = Follower(self.tracker, self.signals, fast_ms=cfg.fast_ms,
                                 events=cfg.events, stacks=cfg.thread_stacks)
        self.watcher = Watcher(self.hierarchy, host, cfg.poll_ms, self.tracker)

    def open_socket(self) -> None:
        try:
            self.listener = bind_socket(self.socket_path, self.cfg.socket_mode)
        except OSError as e:
            raise UsageError(f"cannot create socket {self.socket_path}: {e.strerror or e}") from None

    def close_socket(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass


def fuse_options(cfg: MountConfig) -> set[str]:
    opts = {"default_permissions", f"fsname={cfg.source}", "subtype=cgroupfs_emu"}
    opts |= cfg.fuse_options
    if cfg.allow_other:
        opts.add("allow_other")
    if cfg.debug:
        opts.add("debug")
    return opts


async def serve(daemon: Daemon) -> int:
    """Run the FUSE loop and the client socket until unmounted (fusermount3 -u) or
    signalled."""
    # Everything built so far lives as long as the daemon: keep it out of the
    # collector's scans, which otherwise cost every request a little.
    gc.freeze()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ChargeServer(daemon.hierarchy, daemon.listener,
                                        signals=daemon.signals,
                                        on_hello=daemon.tracker.stop_following,
                                        follower=daemon.follower).serve)
        nursery.start_soon(daemon.watcher.run)
        nursery.start_soon(daemon.follower.run)
        async def on_signal():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %d: unmounting", signum)
                    pyfuse3.terminate()
                    return
        nursery.start_soon(on_signal)
        await pyfuse3.main(min_tasks=1, max_tasks=1)
        nursery.cancel_scope.cancel()
    return 0


def _check_mountpoint(path: str) -> None:
    if not os.path.isdir(path):
        raise UsageError(f"mountpoint {path!r} is not a directory")


def _setup_logging(cfg: MountConfig) -> None:
    level = logging.DEBUG if cfg.debug else logging.INFO
    handler = (logging.FileHandler(cfg.log_file) if cfg.log_file
               else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _mount(cfg: MountConfig) -> Daemon:
    """Socket first, then the mount: both exist before anyone hears "mounted"."""
    daemon = Daemon(cfg)
    daemon.open_socket()
    try:
        pyfuse3.init(daemon.ops, cfg.mountpoint, fuse_options(cfg))
    except RuntimeError as e:
        daemon.close_socket()
        raise UsageError(f"cannot mount on {cfg.mountpoint}: {e}") from None
    return daemon


def _finish(daemon: Daemon) -> None:
    try:
        pyfuse3.close(unmount=True)
    finally:
        daemon.close_socket()
        daemon.follower.close()
        daemon.watcher.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_args(argv)
        cfg.mountpoint = os.path.abspath(cfg.mountpoint)
        _check_mountpoint(cfg.mountpoint)
    except UsageError as e:
        print(f"cgroupfs_emu: {e}" if not str(e).startswith("usage:") else e, file=sys.stderr)
        return 2
    _setup_logging(cfg)

    if cfg.foreground:
        try:
            daemon = _mount(cfg)
        except UsageError as e:
            print(f"cgroupfs_emu: {e}", file=sys.stderr)
            return 1
        try:
            return trio.run(serve, daemon)
        finally:
            _finish(daemon)

    # Background: the child mounts and reports over a pipe before it detaches, so
    # the parent's exit status says whether the mount is live.
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid:
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            report = r.read()
        if report == b"ok":
            return 0
        msg = report.decode(errors="replace") or "daemon died before mounting"
        print(f"cgroupfs_emu: {msg}", file=sys.stderr)
        os.waitpid(pid, 0)
        return 1

    os.close(rfd)
    os.setsid()
    try:
        daemon = _mount(cfg)
    except BaseException as e:  # report every failure to the waiting parent
        os.write(wfd, str(e).encode() or b"mount failed")
        os._exit(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.write(wfd, b"ok")
    os.close(wfd)
    status = 1
    try:
        status = trio.run(serve, daemon)
    except BaseException:
        log.exception("daemon failed")
    finally:
        _finish(daemon)
    log.info("unmounted, exiting with status %d", status)
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
