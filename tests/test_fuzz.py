"""The fuzz tier (issue 16): arbitrary bytes written at arbitrary offsets to every
control file of every group, for every profile, through a real mount with real
clients holding charges.

After every example: no write or read answered EIO (an unhandled exception inside),
the daemon is alive, every readable file still parses, and the invariants hold:
usage <= limit, memory limit <= memsw limit, kmem usage <= kmem limit, no counter
below zero, and usage equal to the sum of the live charges (the clients' own view,
through the socket's status request).

Writes that could reach outside the test are tamed: pids written to tasks or
cgroup.procs lose their digits (a fuzzer must not move or follow real processes),
and release_agent paths live under /nonexistent. Runtime: about a minute in all.
"""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import P, Charger, Mount, group, needs_fuse

pytestmark = [pytest.mark.mount, needs_fuse]

EXAMPLES = int(os.environ.get("CGEMU_FUZZ_EXAMPLES", "100"))
TOKENS = [b"-1", b"0", b"1", b"2", b"3", b"4096", b"64K", b"1M", b"2M", b"4m", b"1G",
          b"18446744073709551615", b"18446744073709551616", b"9223372036854775807",
          b"0x", b"0x1000", b"010", b"k", b"e", b"+", b"-", b" ", b"\n", b"\t", b"\x00",
          b"\xa0", b"\xff", b"low", b"medium", b"critical,hierarchy", b",", b"99" * 12]
data = st.one_of(
    st.binary(max_size=48),
    st.lists(st.sampled_from(TOKENS), max_size=5).map(b"".join),
    st.binary(min_size=4090, max_size=4100),  # around the one-page limit
)
offsets = st.one_of(st.just(0), st.integers(0, 1 << 20), st.integers(0, (1 << 62)))
#: the leaf's name is not UTF-8 (and has a blank), as the kernel allows
LEAF = "a/\udcff b"
GROUPS = ("", "a", LEAF)


def tame(name: str, buf: bytes) -> bytes:
    if name in ("tasks", "cgroup.procs"):
        return bytes(c for c in buf if not 0x30 <= c <= 0x39)
    if name == "release_agent":
        return b"/nonexistent/" + buf.replace(b"\x00", b"")
    return buf


# ---------------------------------------------------------------------- reading


def parse(name: str, text: bytes) -> dict[str, int] | int | list | None:
    """Parse one file as its format says; AssertionError if it does not."""
    if name == "release_agent":  # any bytes but NUL (strstrip keeps inner blanks)
        assert text.endswith(b"\n") and b"\0" not in text
        return None
    s = text.decode("ascii")
    if name in ("memory.stat",):
        out = {}
        for line in s.splitlines():
            key, value = line.split(" ")
            out[key] = int(value)
        return out
    if name == "memory.oom_control":
        lines = [line.split(" ") for line in s.splitlines()]
        assert [k for k, _ in lines] == ["oom_kill_disable", "under_oom", "oom_kill"]
        return {k: int(v) for k, v in lines}
    if name == "memory.numa_stat":
        for line in s.splitlines():
            head, _, rest = line.partition(" ")
            assert int(head.split("=")[1]) == int(rest.split("=")[1]) >= 0
        return None
    if name in ("tasks", "cgroup.procs"):
        return [int(x) for x in s.split()]
    if name == "memory.kmem.slabinfo":
        return None
    if name == "cgroup.sane_behavior":
        assert s.endswith("\n")
        return None
    assert s.endswith("\n") and s.count("\n") == 1, s
    return int(s)


def snapshot(m: Mount) -> dict[str, dict[str, object]]:
    """Every readable file of every group, parsed."""
    out = {}
    for g in GROUPS:
        d = m.p(g) if g else m.path
        files = {}
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if os.path.isdir(path) or not os.stat(path).st_mode & 0o444:
                continue
            try:
                with open(path, "rb") as f:
                    text = f.read()
            except OSError as e:
                assert e.errno != errno.EIO, f"read {g}/{name}: EIO"
                assert name == "memory.pressure_level" and e.errno == errno.EINVAL, (name, e)
                continue
            files[name] = parse(name, text)
        out[g] = files
    return out


def held(c: Charger) -> dict[str, int]:
    reply = c.do("status")
    assert reply.startswith("ok "), reply
    words = (w.partition("=") for w in reply.split()[1:])
    return {k: int(v) for k, eq, v in words if eq and v.lstrip("-").isdigit()}


def check_invariants(m: Mount, clients: dict[str, Charger]) -> None:
    assert m.proc.poll() is None, m.log()[-3000:]
    snap = snapshot(m)
    for g, f in snap.items():
        for name, value in f.items():
            if isinstance(value, int):
                assert value >= 0, (g, name, value)
        stat = f["memory.stat"]
        for key, value in stat.items():
            assert value >= 0, (g, key, value)
        if not g:
            continue  # the root has no limits and reports global usage
        for prefix in ("memory.", "memory.memsw.", "memory.kmem.", "memory.kmem.tcp."):
            assert f[prefix + "usage_in_bytes"] <= f[prefix + "limit_in_bytes"], (g, prefix)
            assert f[prefix + "usage_in_bytes"] <= f[prefix + "max_usage_in_bytes"], (g, prefix)
        assert f["memory.limit_in_bytes"] <= f["memory.memsw.limit_in_bytes"], g
    # usage = the live charges: b holds exactly its client's pages; a holds its own
    # client's, b's and b's kernel data (charged to a at mkdir)
    own = {}
    for g, c in clients.items():
        h = held(c)
        own[g] = (h["anon"] + h["file"] + h["shmem"] + h["kmem"],
                  h["anon"] + h["swap"] + h["file"] + h["shmem"] + h["kmem"])
        stat = snap[g]["memory.stat"]
        assert stat["rss"] == h["anon"] and stat["cache"] == h["file"] + h["shmem"], (g, h, stat)
    b, a = snap[LEAF], snap["a"]
    assert b["memory.usage_in_bytes"] == own[LEAF][0], (b["memory.usage_in_bytes"], own)
    assert b["memory.memsw.usage_in_bytes"] == own[LEAF][1]
    assert a["memory.usage_in_bytes"] == own["a"][0] + own[LEAF][0] + 8 * P
    assert a["memory.memsw.usage_in_bytes"] == own["a"][1] + own[LEAF][1] + 8 * P


# ---------------------------------------------------------------------- the tier


# ncpus=6: a child's data at mkdir is 2 + 6 = 8 pages (the 8 * P below)
@pytest.fixture(params=["kernel=seeds,swap=8M,ncpus=6", "kernel=linux-6,ncpus=6"])
def fuzzed(request, mount_with):
    m = mount_with(request.param)
    clients = {}
    for g in ("a", LEAF):
        group(m, g)
        c = Charger(m.path, "--no-stock")
        clients[g] = c
        with open(m.p(g, "tasks"), "w") as f:
            f.write(str(c.pid))
        for kind, size in (("anon", 256 * P), ("file", 256 * P), ("shmem", 16 * P),
                           ("kmem", 8 * P)):
            assert c.do(f"charge {kind} {size}").startswith("ok"), kind
    try:
        yield m, clients
    finally:
        for c in clients.values():
            c.stop()


def test_fuzz_every_control_file_of_every_profile(fuzzed):
    m, clients = fuzzed
    files = sorted({(g, name) for g in GROUPS
                    for name in os.listdir(m.p(g) if g else m.path)
                    if not os.path.isdir(os.path.join(m.p(g) if g else m.path, name))})
    writable = [(g, n) for g, n in files
                if os.stat(os.path.join(m.p(g) if g else m.path, n)).st_mode & 0o200]
    check_invariants(m, clients)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(st.sampled_from(writable), data, offsets), min_size=1,
                    max_size=6))
    def writes(batch):
        for (g, name), buf, off in batch:
            path = os.path.join(m.p(g) if g else m.path, name)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, tame(name, buf), off)
            except OSError as e:
                assert e.errno != errno.EIO, (g, name, buf, off, m.log()[-2000:])
            finally:
                os.close(fd)
        check_invariants(m, clients)

    writes()
    # every file was written at least once, whatever hypothesis chose
    for g, name in writable:
        path = os.path.join(m.p(g) if g else m.path, name)
        for buf in (b"18446744073709551616", b"6\x002M", b"-1", b"\xff" * 64):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, tame(name, buf))
            except OSError as e:
                assert e.errno != errno.EIO, (g, name, buf, m.log()[-2000:])
            finally:
                os.close(fd)
            check_invariants(m, clients)
