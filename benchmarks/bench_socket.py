#!/usr/bin/env python3
"""Client-socket throughput of cgroupfs-emu against a bare trio echo server, same run.

    python3 benchmarks/bench_socket.py [--seconds S] [--repeat R] [--cpu K [--client-cpu J]]

1. Round trips: 1 and 8 client processes send ``charge anon 4096`` / ``uncharge anon
   4096`` requests one at a time (each waits for its reply) to the daemon's socket, and
   the same lines to a minimal trio server that answers every line with one line, on
   the same socket kind. Prints requests/s for both and the ratio (target >= 0.9x).
2. Stock: 8 client processes charge one page at a time through the Python client with
   its stock on, for S seconds; prints pages/s across all of them (target >= 1M/s).

Each figure is the median of R runs, and the two servers are measured alternately so
machine noise hits both; a ratio is the median of the R pairs' ratios, printed with
their range. With --cpu K the round trips are pinned to CPU K, both servers and the
clients (as bench_files.py pins): one client and its server then take turns on one
CPU, so the ratio is their cost per request, not where the scheduler happened to put
them. --client-cpu J puts the clients on CPU J instead, each round trip then crossing
CPUs, as on an idle machine. The stock run is never pinned. Needs /dev/fuse and
fusermount3 (it mounts a real daemon).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time

from _daemon import HERE, mounted_daemon

sys.path.insert(0, os.path.dirname(HERE))

REQUESTS = (b"charge anon 4096\n", b"uncharge anon 4096\n")


# ---------------------------------------------------------------------- echo server


def echo_server(path: str) -> None:
    """The baseline: one line in, one line out, nothing else (trio, like the daemon)."""
    import trio

    async def handle(stream):
        buf = b""
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    await stream.send_all(b"ok " + line + b"\n")

    async def main():
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(128)
        listener = trio.SocketListener(sock)
        await trio.serve_listeners(handle, [listener])

    trio.run(main)


# ---------------------------------------------------------------------- clients


def _round_trips(path: str, seconds: float, start, out) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rb")
    s.sendall(b"hello 1\n")
    f.readline()
    start.wait()
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for req in REQUESTS:
            s.sendall(req)
            if not f.readline().startswith(b"ok"):
                raise SystemExit("request failed")
        n += 2
    out.put(n)
    s.close()


def _stock_charges(path: str, seconds: float, start, out) -> None:
    from cgroupfs_emu.client import Client
    c = Client.connect(socket_path=path)
    charge = c.charge
    start.wait()
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            charge(4096)
        n += 1000
    c.flush()
    out.put(n)
    c.close()


def run_clients(target, path: str, clients: int, seconds: float,
                cpus: set[int] | None = None) -> float:
    """Start *clients* processes (on *cpus*), release them together, return
    operations/s."""
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(path, seconds, start, out)) for _ in range(clients)]
    for p in procs:
        p.start()
        if cpus is not None:
            os.sched_setaffinity(p.pid, cpus)
    time.sleep(0.3)  # all connected
    t0 = time.perf_counter()
    start.set()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    return total / elapsed


# ---------------------------------------------------------------------- main


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Every thread of our child *pid* runs on *cpus* from now on."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpu", type=int, default=None,
                    help="pin the round trips (servers and clients) to this CPU")
    ap.add_argument("--client-cpu", type=int, default=None,
                    help="with --cpu: the round-trip clients on this CPU instead")
    args = ap.parse_args()
    pin = None if args.cpu is None else {args.cpu}
    client_pin = pin if args.client_cpu is None or pin is None else {args.client_cpu}
    everywhere = os.sched_getaffinity(0)

    with mounted_daemon("socket={work}/daemon.sock") as (_, work, daemon):
        daemon_sock, echo_sock = os.path.join(work, "daemon.sock"), os.path.join(work, "echo.sock")
        echo = mp.get_context("fork").Process(target=echo_server, args=(echo_sock,))
        echo.start()
        try:
            deadline = time.monotonic() + 15
            while not os.path.exists(echo_sock):
                if time.monotonic() > deadline:
                    raise SystemExit("echo server did not start")
                time.sleep(0.05)
            if pin is not None:
                set_affinity(daemon.pid, pin)
                set_affinity(echo.pid, pin)
            results = {}
            for clients in (1, 8):
                d, e = [], []
                for _ in range(args.repeat):
                    e.append(run_clients(_round_trips, echo_sock, clients, args.seconds,
                                         client_pin))
                    d.append(run_clients(_round_trips, daemon_sock, clients, args.seconds,
                                         client_pin))
                results[clients] = (d, e)
            set_affinity(daemon.pid, everywhere)
            stock = statistics.median(run_clients(_stock_charges, daemon_sock, 8, args.seconds)
                                      for _ in range(args.repeat))
        finally:
            echo.terminate()  # our own child
            echo.join()
    where = ("not pinned" if pin is None else f"round trips pinned to CPU {args.cpu}"
             if client_pin == pin else f"round trips: servers on CPU {args.cpu}, "
             f"clients on CPU {args.client_cpu}")
    print(f"cpus: {os.cpu_count()}, {where}, {args.seconds}s per run, median of {args.repeat}")
    for clients, (d, e) in results.items():
        ratios = sorted(x / y for x, y in zip(d, e))
        print(f"round trips, {clients} client(s): daemon {statistics.median(d):,.0f}/s, "
              f"trio echo {statistics.median(e):,.0f}/s, ratio {statistics.median(ratios):.2f}x "
              f"(runs {ratios[0]:.2f}-{ratios[-1]:.2f}; target >= 0.9x)")
    print(f"stock charges, 8 clients: {stock:,.0f} pages/s (target >= 1,000,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
