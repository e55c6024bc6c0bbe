"""The fuzz tier: arbitrary bytes written at arbitrary offsets to every
control file of every group, for **every profile of the catalog** (a profile added
later is fuzzed too), through a real mount with real clients holding charges.

Each profile is fuzzed with its own files: whatever its groups list (seed 002's
``mem_usage``/``mem_limit``, 2.6.26's ``memory.shrink_in_bytes``, 3.x's kmem files...),
not a fixed list. After every write and every example:

* no write or read answered EIO (an unhandled exception inside), except where the
  kernel itself answers EIO (seed 002's ``tasks`` with no number, [M12]); the daemon
  is alive and its log has no traceback;
* every readable file still parses, and the files a profile cannot read stay the same;
* a rejected write left every file of every group as it was (a write refused after
  it reclaimed, EBUSY from a lower limit or a shrink, may have reclaimed: then only
  the limits and settings must be unchanged);
* the counters hold: no counter below zero; usage <= limit wherever the profile
  enforces a limit when it is written (seed 002 stores a limit below usage [M7]);
  usage <= its watermark; memory limit <= memsw limit; kmem usage <= kmem limit;
  memory.stat agrees with the clients' own view (rss = their anon pages, cache =
  their page cache and shmem); usage equals the sum of the live charges, and in a
  hierarchical parent the sum of its own, its child's and the child's data charged
  at mkdir; memsw usage adds the swapped-out pages.

Writes that could reach outside the test are tamed: pids written to tasks or
cgroup.procs lose their digits and never read as 0, the writer (a fuzzer must not
move or follow real processes),
and release_agent paths live under /nonexistent.

Each profile runs a fixed, per-profile hypothesis seed (failures reproduce) and
``CGEMU_FUZZ_EXAMPLES`` examples (default 25; about 10-15 s a profile). To explore,
raise it, set ``CGEMU_FUZZ_SEED`` to another number, and ``CGEMU_FUZZ_FLAT=1`` for a
non-hierarchical parent.
"""

from __future__ import annotations

import errno
import os
import zlib

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from conftest import P, Charger, Mount, needs_fuse
from cgroupfs_emu.core.catalog import PROFILES, get_profile
from cgroupfs_emu.core.profiles import Feature, KmemDesign

pytestmark = [pytest.mark.mount, needs_fuse]

EXAMPLES = int(os.environ.get("CGEMU_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("CGEMU_FUZZ_SEED", "0"))
#: 1: leave a non-hierarchical (where the profile allows), to explore that layout
FLAT = os.environ.get("CGEMU_FUZZ_FLAT") == "1"
TOKENS = [b"-1", b"0", b"1", b"2", b"3", b"4096", b"64K", b"1M", b"2M", b"4m", b"1G",
          b"18446744073709551615", b"18446744073709551616", b"9223372036854775807",
          b"0x", b"0x1000", b"010", b"k", b"e", b"+", b"-", b" ", b"\n", b"\t", b"\x00",
          b"\xa0", b"\xff", b"low", b"medium", b"critical,hierarchy", b",", b"99" * 12,
          b"-01", b"1T", b"0x7fffffffffffffff", b"4294967296", b"640", b"256K"]
data = st.one_of(
    st.binary(max_size=48),
    st.lists(st.sampled_from(TOKENS), max_size=5).map(b"".join),
    st.binary(min_size=4090, max_size=4100),  # around the one-page limit
)
offsets = st.one_of(st.just(0), st.integers(0, 1 << 20), st.integers(0, (1 << 62)))
#: the leaf's name is not UTF-8 (and has a blank), as the kernel allows
LEAF = "a/\udcff b"
GROUPS = ("", "a", LEAF)
#: what each client holds at the start (bytes)
CHARGES = (("anon", 256 * P), ("file", 256 * P), ("shmem", 16 * P), ("kmem", 8 * P))
#: files whose write may reclaim before it is refused (EBUSY): the kernel's
#: mem_cgroup_resize_limit() and seed 004's shrink reclaim first, then give up
RECLAIMING = ("limit_in_bytes", "memsw.limit_in_bytes", "shrink_in_bytes", "mem_limit",
              "force_empty")
#: values that reclaim changes, and so may differ after such a refused write
RECLAIMED = ("usage_in_bytes", "memsw.usage_in_bytes", "stat", "numa_stat", "mem_usage",
             "kmem.usage_in_bytes")


def tame(name: str, buf: bytes) -> bytes:
    if name in ("tasks", "cgroup.procs"):
        buf = bytes(c for c in buf if not 0x30 <= c <= 0x39)
        # What is left must not read as 0 ("the writer": the test itself would join
        # the group and be followed): the older parsers take an empty value (after
        # the kernel's isspace(), which includes 0xa0, and up to a NUL) as 0
        if not buf.split(b"\0")[0].strip(b" \t\n\v\f\r\xa0"):
            buf = b"x" + buf
        return buf
    if name == "release_agent":
        return b"/nonexistent/" + buf.replace(b"\x00", b"")
    return buf


def kernel_eio(profile, name: str, op: str) -> bool:
    """Where EIO is the kernel's own answer: the 2007 framework's tasks write with no
    number in it (``sscanf("%d")`` fails, attach_task_by_pid() returns -EIO) [M12];
    3.8-4.5's memory.kmem.slabinfo read in a group whose kmem accounting is not active
    (mem_cgroup_slabinfo_read(): ``if (!memcg_can_account_kmem(memcg)) return -EIO``).
    An EIO of the emulator's own (an unexpected exception) also logs a traceback,
    which check_invariants() looks for."""
    if op == "write":
        return profile.has(Feature.CONTAINERS_2007) and name == "tasks"
    return profile.kmem is KmemDesign.ACTIVATED_BY_LIMIT and name == "memory.kmem.slabinfo"


# ---------------------------------------------------------------------- reading


def parse(name: str, text: bytes):
    """Parse one file as its format says; AssertionError if it does not."""
    if name == "release_agent":  # any bytes but NUL (strstrip keeps inner blanks)
        assert text.endswith(b"\n") and b"\0" not in text
        return text
    s = text.decode("ascii")
    if name == "memory.stat":
        out = {}
        for line in s.splitlines():
            key, value = line.split(" ")
            out[key] = int(value)
        return out
    if name == "memory.oom_control":
        lines = [line.split(" ") for line in s.splitlines()]
        keys = [k for k, _ in lines]
        # 3.x prints two lines; 4.13+ adds oom_kill
        assert keys in (["oom_kill_disable", "under_oom"],
                        ["oom_kill_disable", "under_oom", "oom_kill"]), keys
        return {k: int(v) for k, v in lines}
    if name == "memory.numa_stat":
        for line in s.splitlines():
            head, _, rest = line.partition(" ")
            assert int(head.split("=")[1]) == int(rest.split("=")[1]) >= 0
        return s
    if name in ("tasks", "cgroup.procs"):
        return [int(x) for x in s.split()]
    if name in ("memory.kmem.slabinfo", "cgroup.sane_behavior"):
        assert s == "" or s.endswith("\n")
        return s
    assert s.endswith("\n") and s.count("\n") == 1, (name, s)
    return int(s)


def gdir(m: Mount, g: str) -> str:
    return m.p(g) if g else m.path


def snapshot(m: Mount, profile) -> dict[str, dict[str, object]]:
    """Every readable file of every group, parsed; a file the profile cannot read
    (no read handler: EINVAL) is recorded as its errno."""
    out = {}
    for g in GROUPS:
        d = gdir(m, g)
        files = {}
        for name in sorted(os.listdir(d)):
            if not g and name in ("tasks", "cgroup.procs"):
                continue  # the root lists the machine's processes, which come and go
            path = os.path.join(d, name)
            if os.path.isdir(path) or not os.stat(path).st_mode & 0o444:
                continue
            try:
                with open(path, "rb") as f:
                    text = f.read()
            except OSError as e:
                if not kernel_eio(profile, name, "read"):
                    assert e.errno != errno.EIO, f"read {g}/{name}: EIO"
                files[name] = ("errno", e.errno)
                continue
            files[name] = parse(name, text)
        out[g] = files
    return out


def held(c: Charger) -> dict[str, int]:
    reply = c.do("status")
    assert reply.startswith("ok "), reply
    words = (w.partition("=") for w in reply.split()[1:])
    return {k: int(v) for k, eq, v in words if eq and v.lstrip("-").isdigit()}


class Fuzzed:
    """One profile's mount, its two groups with a client each, and what the test
    measured at setup."""

    def __init__(self, m: Mount, profile, clients, mkdir_bytes: int, first):
        self.m, self.profile, self.clients = m, profile, clients
        #: bytes charged to a when its child was made (the child's kernel data)
        self.mkdir_bytes = mkdir_bytes
        #: (group, file) pairs the profile cannot read (no read handler)
        self.unreadable = {(g, n) for g, f in first.items() for n, v in f.items()
                           if isinstance(v, tuple)}
        self.last = first

    def name(self, role: str) -> str:
        """The usage or limit file; seed 002 has its own names [M4]."""
        if self.profile.has(Feature.CONTAINERS_2007):
            return {"usage": "mem_usage", "limit": "mem_limit"}[role]
        return {"usage": "memory.usage_in_bytes", "limit": "memory.limit_in_bytes"}[role]

    @property
    def unit(self) -> int:
        """Bytes per unit in the usage/limit files (seed 002 prints pages)."""
        return 1 if not self.profile.has(Feature.CONTAINERS_2007) else P


def kmem_terms(profile, own_kmem: int) -> tuple[int, int]:
    """(bytes of this group's own kmem in its memory counter, in its kmem counter)
    for the clients' kmem charges, by the kernel design the profile follows
    (kinds.py states the same table for the product; here it is restated from the
    kernels): 6.6+ memory then kmem; 4.6-5.15 memory and kmem; 3.8-4.5 nothing until
    activated (the groups here have tasks, so a fuzzed limit write cannot activate
    them); seed 001 memory unless independent at the charge (the charges are made at
    setup, flag 0), seed 000 the kmem counter alone."""
    design = profile.kmem
    if design is KmemDesign.ACTIVATED_BY_LIMIT:
        return 0, 0
    if design is KmemDesign.REPORTED:
        return 0, own_kmem
    return own_kmem, own_kmem


def check_invariants(fz: Fuzzed, snap=None) -> None:
    m, profile = fz.m, fz.profile
    assert m.proc.poll() is None, m.log()[-3000:]
    assert "Traceback" not in m.log(), m.log()[-3000:]
    snap = snap if snap is not None else snapshot(m, fz.profile)
    unreadable = {(g, n) for g, f in snap.items() for n, v in f.items() if isinstance(v, tuple)}
    assert unreadable == fz.unreadable, unreadable ^ fz.unreadable
    for g, f in snap.items():
        for name, value in f.items():
            if isinstance(value, int):
                assert value >= 0, (g, name, value)
        for key, value in f.get("memory.stat", {}).items():
            assert value >= 0, (g, key, value)
    usage_f, limit_f = fz.name("usage"), fz.name("limit")
    # the clients' own view: what each group holds for them
    own = {}
    for g, c in fz.clients.items():
        h = held(c)
        user = h["anon"] + h["file"] + h["shmem"]
        k_mem, k_kmem = kmem_terms(profile, h["kmem"])
        own[g] = {"mem": user + k_mem, "swap": h["swap"], "kmem": k_kmem}
        stat = snap[g].get("memory.stat")
        if stat is not None:
            assert stat["rss"] == h["anon"], (g, h, stat)
            assert stat["cache"] == h["file"] + h["shmem"], (g, h, stat)
    hierarchical = snap["a"].get("memory.use_hierarchy") == 1
    expect = {LEAF: dict(own[LEAF])}
    expect["a"] = {k: own["a"][k] + (own[LEAF][k] if hierarchical else 0) for k in own["a"]}
    expect["a"]["mem"] += fz.mkdir_bytes
    for g in ("a", LEAF):
        f = snap[g]
        reported = f[usage_f] * fz.unit
        user = reported
        if profile.kmem is KmemDesign.REPORTED:
            # seed 000 [K4]: usage_in_bytes adds the kmem counter while the group's
            # memory.independent_kmem_limit is 0; the limit sees the user counter only
            kmem = f["memory.kmem.usage_in_bytes"]
            assert kmem == expect[g]["kmem"], (g, kmem, expect)
            if f["memory.independent_kmem_limit"] == 0:
                user -= kmem
        assert user == expect[g]["mem"], (g, reported, expect, own)
        if "memory.memsw.usage_in_bytes" in f:
            memsw = f["memory.memsw.usage_in_bytes"] - (reported - user)
            assert memsw == expect[g]["mem"] + expect[g]["swap"], (g, memsw, expect)
        if "memory.kmem.usage_in_bytes" in f:
            # the child's data charged at mkdir is kernel memory of a
            kmem = expect[g]["kmem"] + (fz.mkdir_bytes if g == "a" else 0)
            assert f["memory.kmem.usage_in_bytes"] == kmem, (g, f, expect)
        # limits
        if profile.limit_write_reclaims:
            assert user <= f[limit_f] * fz.unit, (g, user, f[limit_f])
        if "memory.max_usage_in_bytes" in f:
            assert user <= f["memory.max_usage_in_bytes"], g
        for prefix in ("memory.memsw.", "memory.kmem.", "memory.kmem.tcp."):
            u, lim = f.get(prefix + "usage_in_bytes"), f.get(prefix + "limit_in_bytes")
            if prefix == "memory.memsw." and u is not None:
                u -= reported - user
            if u is not None and isinstance(lim, int):
                assert u <= lim, (g, prefix, u, lim)
            mx = f.get(prefix + "max_usage_in_bytes")
            if u is not None and isinstance(mx, int):
                assert u <= mx, (g, prefix, u, mx)
        if "memory.memsw.limit_in_bytes" in f:
            assert f[limit_f] <= f["memory.memsw.limit_in_bytes"], g
    # memory.stat's total_* keys: the group's own plus, below a hierarchical
    # group, its child's (for_each_mem_cgroup_tree() follows use_hierarchy)
    a, leaf = snap["a"].get("memory.stat"), snap[LEAF].get("memory.stat")
    if a is not None and "total_rss" in a:
        for key in ("rss", "cache", "swap"):
            if key in a:
                assert leaf["total_" + key] == leaf[key], (key, leaf)
                assert a["total_" + key] == a[key] + (leaf[key] if hierarchical else 0), (key, a)
    fz.last = snap


def client_op(fz: Fuzzed, op: str, g: str, kind: str, pages: int) -> None:
    """A client charges or frees user pages between the writes, so fuzzed limits
    meet real charges: reclaim, failcnt, refusals. The mount runs with oom_kill=none
    (a refusal is ENOMEM, never a SIGKILL of the test's own client); a group with
    oom_kill_disable 1 would make the charge wait, so none is sent then."""
    c = fz.clients[g]
    if op == "uncharge":
        pages = min(pages, held(c)[kind] // P)
        if not pages:
            return
    elif any(f.get("memory.oom_control", {}).get("oom_kill_disable") for f in fz.last.values()):
        return
    reply = c.do(f"{op} {kind} {pages * P}")
    assert reply.startswith("ok") or (op == "charge" and reply.startswith("refused")), reply
    fz.last = snapshot(fz.m, fz.profile)


def diff(a: dict, b: dict) -> list:
    """(group, file, before, after) of the files that read differently."""
    return [(g, n, a[g].get(n), b[g].get(n)) for g in a
            for n in sorted(set(a[g]) | set(b[g])) if a[g].get(n) != b[g].get(n)]


def settings_of(snap: dict) -> dict:
    """The values a reclaim cannot change: everything but usage and statistics."""
    return {g: {n: v for n, v in f.items()
                if not any(n.endswith(r) for r in RECLAIMED)}
            for g, f in snap.items()}


def fuzz_write(fz: Fuzzed, g: str, name: str, buf: bytes, off: int) -> None:
    """One write(2); if refused, every file must read as before (the snapshot taken
    before it)."""
    m = fz.m
    path = os.path.join(gdir(m, g), name)
    before = fz.last
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, tame(name, buf), off)
    except OSError as e:
        if not kernel_eio(fz.profile, name, "write"):
            assert e.errno != errno.EIO, (g, name, buf, off, m.log()[-2000:])
        after = snapshot(m, fz.profile)
        if e.errno == errno.EBUSY and any(name.endswith(r) for r in RECLAIMING):
            changed = diff(settings_of(before), settings_of(after))
        else:
            changed = diff(before, after)
        assert not changed, (g, name, buf, off, e, changed)
        fz.last = after
    else:
        fz.last = snapshot(m, fz.profile)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- the tier


@pytest.fixture(params=sorted(PROFILES))
def fuzzed(request, mount_with):
    profile = get_profile(request.param)
    # ncpus=6: the mkdir charge is deterministic; swap=8M: reclaim can swap anon out
    # oom_kill=none: a charge the fuzzed limits refuse is ENOMEM, not a SIGKILL
    m = mount_with(f"kernel={profile.name},swap=8M,ncpus=6,oom_kill=none")
    clients = {}
    try:
        os.mkdir(m.p("a"))
        uh = m.p("a", "memory.use_hierarchy")
        if os.path.exists(uh) and not FLAT:
            # a hierarchical parent makes the sums meaningful (pre-5.11 kernels
            # start non-hierarchical; this is allowed while a has no child)
            with open(uh, "w") as f:
                f.write("1")
        fz = None
        usage = lambda: int(open(m.p("a", "mem_usage" if profile.has(  # noqa: E731
            Feature.CONTAINERS_2007) else "memory.usage_in_bytes")).read())
        before = usage()
        os.mkdir(m.p(LEAF))
        mkdir_bytes = usage() - before
        for g in ("a", LEAF):
            c = Charger(m.path, "--no-stock")
            clients[g] = c
            with open(m.p(g, "tasks"), "w") as f:
                f.write(str(c.pid))
            for kind, size in CHARGES:
                assert c.do(f"charge {kind} {size}").startswith("ok"), kind
        fz = Fuzzed(m, profile, clients, mkdir_bytes, snapshot(m, profile))
        yield fz
    finally:
        for c in clients.values():
            c.stop()


def test_fuzz_every_control_file(fuzzed):
    fz = fuzzed
    m = fz.m
    files = sorted({(g, name) for g in GROUPS for name in os.listdir(gdir(m, g))
                    if not os.path.isdir(os.path.join(gdir(m, g), name))})
    writable = [(g, n) for g, n in files
                if os.stat(os.path.join(gdir(m, g), n)).st_mode & 0o200]
    assert writable
    check_invariants(fz)

    writes_ = st.tuples(st.just("write"), st.sampled_from(writable), data, offsets)
    charges = st.tuples(st.sampled_from(["charge", "uncharge"]), st.sampled_from(["a", LEAF]),
                        st.sampled_from(["anon", "file", "shmem"]), st.integers(1, 512))

    @seed(zlib.crc32(fz.profile.name.encode()) + SEED)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(writes_, writes_, writes_, charges), min_size=1, max_size=6))
    def writes(batch):
        for op in batch:
            if op[0] == "write":
                _, (g, name), buf, off = op
                fuzz_write(fz, g, name, buf, off)
            else:
                client_op(fz, *op)
        check_invariants(fz, fz.last)

    writes()
    # every file was written at least once, whatever hypothesis chose
    for g, name in writable:
        for buf in (b"18446744073709551616", b"6\x002M", b"-1", b"\xff" * 64):
            fuzz_write(fz, g, name, buf, 0)
        check_invariants(fz, fz.last)
    # and the groups go away in whatever state the fuzzing left: the clients exit
    # (their charges are freed; page cache stays), then rmdir reparents the rest
    for c in fz.clients.values():
        c.stop()
    for g in (LEAF, "a"):
        try:
            os.rmdir(m.p(g))
        except OSError as e:
            # seed 002 [M13]: every charged page pins its container
            assert e.errno == errno.EBUSY and fz.profile.rmdir_busy_while_charged, (g, e)
    assert m.proc.poll() is None and "Traceback" not in m.log(), m.log()[-3000:]
