"""Taking a guarded fork's notification off the kernel's queue at once.

A task whose clone the fork guard (fork_guard.py) turned into a user notification
sleeps in ``seccomp_do_user_notification()`` until the daemon answers. How a signal
meets that sleep (kernel/seccomp.c, 5.19 to 6.18):

* **before the daemon received the notification** (state INIT) the sleep is
  interruptible: the notification is dropped and the clone returns -ERESTARTSYS.
  The task restarts it (a new notification) when the signal has no handler or one
  installed with SA_RESTART; a handler without SA_RESTART sees fork fail with EINTR.
* **after it received it** (state SENT), with ``SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV``
  the sleep is killable only (``should_sleep_killable()``): no other signal ends it,
  as none ends the kernel's own fork halfway. Without the flag (before 5.19) the
  same -ERESTARTSYS as before receiving.

So the window that is not like the kernel (whose ``copy_process()`` answers a
pending signal with -ERESTARTNOINTR, a restart whatever the handler) is the time
between the clone and the daemon's receive. This module keeps it short: a thread of
its own, at a raised priority where allowed, waits in poll(2) on the listener and
receives each notification the moment it is queued (with
``SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP``, 6.6+, the waiting task hands its CPU to
this thread). The decision and the answer are taken by the trio loop afterwards,
when the caller can no longer be interrupted.

Not like the kernel: a signal whose handler was installed without SA_RESTART and
that arrives in those few microseconds makes fork fail with EINTR; with a handler
installed with SA_RESTART (``signal(3)``'s default, bash) or no handler, never.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import struct
import threading

import trio

from . import fork_guard

log = logging.getLogger("cgroupfs_emu.guard_recv")

#: _IOW('!', 4, __u64) and its one flag (<linux/seccomp.h>, 6.6+)
SECCOMP_IOCTL_NOTIF_SET_FLAGS = (1 << 30) | (8 << 16) | (ord("!") << 8) | 4
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1
#: the receiving thread's niceness where allowed (the stop-first thread's too)
RECV_NICE = -10


class GuardReceiver:
    """Receives the notifications of one listener in a thread; ``serve`` answers them
    with ``decide(tid)`` (0: proceed, else the errno) until no guarded task is left."""

    def __init__(self, fd: int, decide):
        self.fd = fd
        self.decide = decide

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            fcntl.ioctl(self.fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS,
                        SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
        except OSError:
            pass  # before 6.6: an ordinary wake-up
        send, received = trio.open_memory_channel(float("inf"))
        token = trio.lowlevel.current_trio_token()
        stop_r, stop_w = os.pipe()
        thread = threading.Thread(target=self._receive, args=(send, token, stop_r),
                                  name=f"guard-recv-{self.fd}", daemon=True)
        thread.start()
        task_status.started()
        try:
            async with received:
                async for nid, tid in received:
                    try:
                        err = self.decide(tid)
                    except Exception:
                        log.exception("fork guard decision failed")
                        err = 0
                    fork_guard.respond(self.fd, nid, err)
        finally:
            os.write(stop_w, b"x")
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(thread.join)
            os.close(stop_r)
            os.close(stop_w)

    def _receive(self, send, token, stop_r: int) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RECV_NICE)
        except OSError:
            pass
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(stop_r, select.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if stop_r in ready:
                    return
                events = ready.get(self.fd, 0)
                if events & select.POLLIN:
                    try:
                        got = fork_guard.receive(self.fd)
                    except OSError as e:
                        log.warning("fork guard: receive failed: %s", os.strerror(e.errno))
                        got = None
                        if e.errno not in (errno.EFAULT, errno.EINVAL):
                            return
                    if got is not None:
                        try:
                            token.run_sync_soon(_hand, send, got[:2])
                        except trio.RunFinishedError:
                            return
                elif events & (select.POLLHUP | select.POLLERR):
                    return  # every guarded task is gone
        finally:
            try:
                token.run_sync_soon(send.close)
            except trio.RunFinishedError:
                pass


def _hand(send, item) -> None:
    # runs in the trio loop, where an exception would end the run: a receiver that
    # stopped listening just drops the notification (the listener's close answers it)
    try:
        send.send_nowait(item)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
