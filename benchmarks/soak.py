#!/usr/bin/env python3
"""Soak: many clients charging random kinds for minutes, with kills and reconnects.

    python3 benchmarks/soak.py [--clients N] [--minutes M] [--seed S]

Not part of the test suite. Mounts a real daemon (-o swap=32M), makes four
groups with limits (one with oom_kill_disable 1, one with a kmem.tcp limit), and keeps
N client processes running. Each client joins a random group, then charges and
uncharges random kinds (anon, file, shmem, kmem, tcp, slab objects), with or without
its stock, for a few seconds, then disconnects and reconnects, or just exits with
everything in flight. The soak itself SIGKILLs a random client of its own about twice
a second, and the daemon OOM-kills clients of the full groups.

Once a minute it prints the daemon's RSS and descriptor count (and how many of those
are pidfds and eventfds), plus the connections the daemon saw. Both must be flat: a
leak shows up as a steady climb. At the end it checks the daemon is alive, the mount
answers, and every group's usage returns to its page cache once all clients are gone.
Needs /dev/fuse and fusermount3.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time

from _daemon import HERE, mounted_daemon

sys.path.insert(0, os.path.dirname(HERE))

GROUPS = {"a": {"limit_in_bytes": "64M"},
          "b": {"limit_in_bytes": "16M"},
          "c": {"limit_in_bytes": "24M", "oom_control": "1"},
          "d": {"kmem.tcp.limit_in_bytes": "2M"}}
KINDS = ("anon", "file", "shmem", "kmem", "tcp")


def client_main(mnt: str, seed: int) -> None:
    """One client process: sessions of random charging until killed."""
    from cgroupfs_emu.client import ChargeRefused, Client
    rng = random.Random(seed)
    while True:
        group = rng.choice(sorted(GROUPS))
        with open(os.path.join(mnt, group, "tasks"), "w") as f:
            f.write(str(os.getpid()))
        try:
            client = Client.connect(mnt, use_stock=rng.random() < 0.5)
        except OSError:
            time.sleep(0.2)
            continue
        held = dict.fromkeys(KINDS, 0)
        slabs = 0
        end = time.monotonic() + rng.uniform(0.5, 4)
        try:
            while time.monotonic() < end:
                kind = rng.choice(KINDS)
                if rng.random() < 0.6 or not held[kind]:
                    n = rng.choice((4096, 16384, 65536, 1 << 20))
                    try:
                        client.charge(n, kind)
                        held[kind] += n
                    except ChargeRefused:
                        pass
                else:
                    n = min(held[kind], rng.choice((4096, 65536, 1 << 20)))
                    client.uncharge(n, kind)
                    held[kind] -= n
                if rng.random() < 0.05:
                    if slabs and rng.random() < 0.5:
                        client.slab_free("soak", 256, slabs)
                        slabs = 0
                    else:
                        try:
                            client.slab_alloc("soak", 256, 64)
                            slabs += 64
                        except ChargeRefused:
                            pass
                if rng.random() < 0.02:
                    client.poll_events(0)
        except (ConnectionError, OSError):
            pass  # OOM-killed is the usual end; the process itself is then dead
        if rng.random() < 0.2:
            os._exit(0)  # leave with everything in flight
        client.close()


def daemon_figures(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    fds = pidfds = eventfds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        fds += 1
        pidfds += target == "anon_inode:[pidfd]"
        eventfds += target == "anon_inode:[eventfd]"
    return {"rss_kib": rss, "fds": fds, "pidfds": pidfds, "eventfds": eventfds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with mounted_daemon("swap=32M") as (mnt, work, daemon):
        for name, settings in GROUPS.items():
            os.mkdir(os.path.join(mnt, name))
            for key, value in settings.items():
                with open(os.path.join(mnt, name, f"memory.{key}"), "w") as f:
                    f.write(value)
        env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
        procs: list[subprocess.Popen] = []
        started = killed = 0

        def spawn() -> None:
            nonlocal started
            started += 1
            procs.append(subprocess.Popen(
                [sys.executable, __file__, "--client", mnt, str(rng.getrandbits(32))],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))

        print(f"soak: {args.clients} clients for {args.minutes} min, daemon pid {daemon.pid}")
        print(f"{'min':>4} {'rss KiB':>8} {'fds':>5} {'pidfds':>6} {'eventfds':>8} "
              f"{'clients started':>15} {'killed by soak':>14} {'OOM kills':>9}")
        start = time.monotonic()
        next_report = 0.0
        rows = []
        try:
            while True:
                now = time.monotonic() - start
                procs = [p for p in procs if p.poll() is None]
                while len(procs) < args.clients:
                    spawn()
                if now >= next_report:
                    fig = daemon_figures(daemon.pid)
                    ooms = 0
                    for name in GROUPS:
                        with open(os.path.join(mnt, name, "memory.oom_control")) as f:
                            ooms += int(f.read().split()[-1])
                    rows.append(fig)
                    print(f"{now / 60:4.0f} {fig['rss_kib']:8d} {fig['fds']:5d} "
                          f"{fig['pidfds']:6d} {fig['eventfds']:8d} {started:15d} "
                          f"{killed:14d} {ooms:9d}", flush=True)
                    next_report += 60
                    if now >= args.minutes * 60:
                        break
                if daemon.poll() is not None:
                    print("the daemon died")
                    return 1
                if procs and rng.random() < 0.5:
                    victim = rng.choice(procs)
                    victim.send_signal(signal.SIGKILL)  # our own child, by its pid
                    killed += 1
                time.sleep(0.5)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
        # all clients gone: only page cache (and kernel data of nothing) may remain
        time.sleep(1.5)
        end = daemon_figures(daemon.pid)
        usage = {}
        for name in GROUPS:
            with open(os.path.join(mnt, name, "memory.stat")) as f:
                stat = dict(line.split() for line in f)
            with open(os.path.join(mnt, name, "memory.usage_in_bytes")) as f:
                usage[name] = (int(f.read()), int(stat["cache"]), int(stat["rss"]))
        print(f"after the clients: fds {end['fds']} pidfds {end['pidfds']} "
              f"rss {end['rss_kib']} KiB; (usage, cache, rss) per group: {usage}")
        warm = rows[1:] or rows
        print(f"fds over minutes 1..: min {min(r['fds'] for r in warm)} "
              f"max {max(r['fds'] for r in warm)}; rss KiB min "
              f"{min(r['rss_kib'] for r in warm)} max {max(r['rss_kib'] for r in warm)}")
        ok = (daemon.poll() is None and end["pidfds"] == 0
              and all(u == c and r == 0 for u, c, r in usage.values()))
        print("soak:", "ok" if ok else "NOT OK")
        return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
