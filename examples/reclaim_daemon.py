#!/usr/bin/env python3
"""A user-space reclaim daemon for one memory cgroup: the program seed 004 was for.

KAMEZAWA's 2008 patch ("memcg shrinking usage") added memory.shrink_in_bytes so that
background reclaim could live in user space: "echo 400M > memory.shrink_in_bytes"
makes the kernel reclaim the group's usage below 400M, or fail with EBUSY. Its TODO
asked for "a notifier interface to trigger daemon's action"; the usage thresholds of
cgroup.event_control (2.6.34) are that interface. This daemon

  1. registers an eventfd on memory.usage_in_bytes at the HIGH mark
     (write "<eventfd> <fd of memory.usage_in_bytes> HIGH" to cgroup.event_control),
  2. sleeps in read(eventfd) until usage crosses HIGH (in either direction),
  3. if usage is at or above HIGH, writes LOW to memory.shrink_in_bytes,
  4. goes back to sleep.

Where cgroup.event_control does not exist (the 2008 kernel the seed was written for),
it polls memory.usage_in_bytes every --poll seconds instead.

It uses only the kernel interface (no cgroupfs_emu import), so the same program runs
against cgroupfs-emu (`-o kernel=seeds` or `kernel=shrink-2008`) and against a kernel
carrying the patch.

    reclaim_daemon.py GROUP_DIR --high 64M --low 48M [--poll 0.5]

One line per action on stdout:
    watching GROUP mode=eventfd|poll high=BYTES low=BYTES
    shrunk BEFORE -> AFTER            (usage in bytes)
    busy BEFORE -> AFTER              (shrink_in_bytes said EBUSY: not enough to reclaim)
    gone                              (the group was removed; the daemon exits 0)
SIGTERM or SIGINT stops it (exit 0).
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import sys

_SUFFIX = {"k": 10, "m": 20, "g": 30, "t": 40}


def size(text: str) -> int:
    """A byte count with an optional K/M/G/T suffix, as memparse() reads it."""
    text = text.strip()
    shift = _SUFFIX.get(text[-1:].lower(), 0)
    digits = text[:-1] if shift else text
    if not digits.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(digits) << shift


def read_usage(group: str) -> int:
    with open(os.path.join(group, "memory.usage_in_bytes")) as f:
        return int(f.read())


def shrink(group: str, target: int) -> bool:
    """One write(2) of the target to memory.shrink_in_bytes. False on EBUSY."""
    fd = os.open(os.path.join(group, "memory.shrink_in_bytes"), os.O_WRONLY)
    try:
        os.write(fd, b"%d" % target)
    except OSError as e:
        if e.errno == errno.EBUSY:
            return False
        raise
    finally:
        os.close(fd)
    return True


def register_threshold(group: str, threshold: int) -> int | None:
    """An eventfd signalled whenever usage crosses *threshold*; None without
    cgroup.event_control."""
    control = os.path.join(group, "cgroup.event_control")
    if not os.path.exists(control):
        return None
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    ufd = os.open(os.path.join(group, "memory.usage_in_bytes"), os.O_RDONLY)
    try:
        cfd = os.open(control, os.O_WRONLY)
        try:
            os.write(cfd, f"{efd} {ufd} {threshold}".encode())
        finally:
            os.close(cfd)
    except BaseException:
        os.close(efd)
        raise
    finally:
        # The registration holds its own reference to the file; ours can go.
        os.close(ufd)
    return efd


def say(line: str) -> None:
    print(line, flush=True)


def reclaim_once(group: str, high: int, low: int) -> None:
    before = read_usage(group)
    if before < high:
        return  # the crossing was downwards (our own shrink, or memory freed)
    ok = shrink(group, low)
    say(f"{'shrunk' if ok else 'busy'} {before} -> {read_usage(group)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("group", help="the group's directory")
    ap.add_argument("--high", type=size, required=True, help="start reclaiming at this usage")
    ap.add_argument("--low", type=size, required=True, help="reclaim down to this usage")
    ap.add_argument("--poll", type=float, default=0.5,
                    help="seconds between usage reads without cgroup.event_control")
    args = ap.parse_args(argv)
    if args.low > args.high:
        ap.error("--low must not exceed --high")

    stop_r, stop_w = os.pipe()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os.write(stop_w, b"x"))

    efd = register_threshold(args.group, args.high)
    say(f"watching {args.group} mode={'poll' if efd is None else 'eventfd'} "
        f"high={args.high} low={args.low}")
    try:
        ready = [None]  # look once at start: usage may already be above HIGH
        while True:
            if efd is not None and efd in ready:
                os.eventfd_read(efd)
            try:
                reclaim_once(args.group, args.high, args.low)
            except OSError as e:
                # rmdir signals every registration once; afterwards the files are
                # gone (ENOENT) or stale (ENODEV)
                if e.errno in (errno.ENOENT, errno.ENODEV):
                    say("gone")
                    return 0
                raise
            watch = [stop_r] + ([efd] if efd is not None else [])
            ready = select.select(watch, [], [], None if efd is not None else args.poll)[0]
            if stop_r in ready:
                return 0
    finally:
        if efd is not None:
            os.close(efd)  # unregisters


if __name__ == "__main__":
    sys.exit(main())
