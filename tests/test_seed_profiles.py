"""Each seed system as its own profile, checked through real mounts.

One table per profile, every row tagged with the rule of docs/seed-profiles.md it
checks ([M4], [S5], [K2], ...; the tags trace to spec section 5 and the seed patches).
Tables: the file set and modes of the root and of a child; each parser with its errno
for each bad input; counter arithmetic (units, rounding, unlimited); the profile's
charging rules, driven by socket clients (tests/helpers/charger.py).

Each profile is mounted once for the whole module (a mount per parser row would cost
more than the rows); rows work in groups of their own.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat

import pytest

from conftest import (HAVE_FUSE, P, Charger, Mount, errno_of, needs_fuse, num, read,
                      wait_until, write)

pytestmark = [pytest.mark.mount, needs_fuse]

PROFILES = ("memctl-2007", "shrink-2008", "kmem-2011", "kmem-slab-2012", "kmem-2012")
LLONG_MAX = 9223372036854775807
OK = 0


@pytest.fixture(scope="module")
def mounts():
    """profile -> a live Mount with ``oom_kill=none`` (refusals stay ENOMEM so tables
    can check them); every mount is stopped when the module ends."""
    if not HAVE_FUSE:
        pytest.skip("/dev/fuse or fusermount3 missing")
    live: dict[str, Mount] = {}

    def get(profile: str) -> Mount:
        if profile not in live:
            live[profile] = Mount(f"kernel={profile},oom_kill=none")
        return live[profile]

    try:
        yield get
    finally:
        for m in live.values():
            m.stop()


_names = itertools.count()


def fresh(m: Mount, parent: str = "") -> str:
    """A new group directory for one table row."""
    path = m.p(parent, f"row{next(_names)}")
    os.mkdir(path)
    return path


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ======================================================================= file sets

_FRAMEWORK_2007 = {"tasks": 0o644, "notify_on_release": 0o644}
_CGROUP_2008 = {"tasks": 0o644, "notify_on_release": 0o644}
_CGROUP_3X = {"tasks": 0o644, "cgroup.procs": 0o644, "notify_on_release": 0o644,
              "cgroup.clone_children": 0o644, "cgroup.event_control": 0o222}
_MEMCG_3X = {
    "memory.usage_in_bytes": 0o444, "memory.max_usage_in_bytes": 0o644,
    "memory.limit_in_bytes": 0o644, "memory.soft_limit_in_bytes": 0o644,
    "memory.failcnt": 0o644, "memory.stat": 0o444, "memory.force_empty": 0o200,
    "memory.use_hierarchy": 0o644, "memory.swappiness": 0o644,
    "memory.move_charge_at_immigrate": 0o644, "memory.oom_control": 0o644,
    "memory.numa_stat": 0o444,
    "memory.memsw.usage_in_bytes": 0o444, "memory.memsw.max_usage_in_bytes": 0o644,
    "memory.memsw.limit_in_bytes": 0o644, "memory.memsw.failcnt": 0o644,
}
_TCP_33 = {"memory.kmem.tcp.limit_in_bytes": 0o644, "memory.kmem.tcp.usage_in_bytes": 0o444,
           "memory.kmem.tcp.failcnt": 0o644, "memory.kmem.tcp.max_usage_in_bytes": 0o644}

CHILD_FILES = {
    # [M4] the seed's cftype names as the framework created them (no prefix), 0644
    "memctl-2007": {"mem_usage": 0o644, "mem_limit": 0o644, "mem_failcnt": 0o644,
                    **_FRAMEWORK_2007},
    # [S1] 2.6.26's memcg files plus the seed's, all 0644
    "shrink-2008": {f"memory.{n}": 0o644 for n in (
        "usage_in_bytes", "max_usage_in_bytes", "limit_in_bytes", "failcnt",
        "force_empty", "stat", "shrink_in_bytes")} | _CGROUP_2008,
    # [K1] 3.2 plus seed 000's three files; kmem.limit_in_bytes read-only
    "kmem-2011": _MEMCG_3X | _CGROUP_3X | {
        "memory.independent_kmem_limit": 0o644, "memory.kmem.usage_in_bytes": 0o444,
        "memory.kmem.limit_in_bytes": 0o444},
    # [L1] 3.3 (tcp files) plus seed 001's four; no kmem.failcnt / max_usage
    "kmem-slab-2012": _MEMCG_3X | _CGROUP_3X | _TCP_33 | {
        "memory.kmem.independent_kmem_limit": 0o644, "memory.kmem.limit_in_bytes": 0o644,
        "memory.kmem.usage_in_bytes": 0o444, "memory.kmem.slabinfo": 0o444},
    # [G1] 3.8: the kmem quartet, no independence switch, no slabinfo
    "kmem-2012": _MEMCG_3X | _CGROUP_3X | _TCP_33 | {
        "memory.kmem.limit_in_bytes": 0o644, "memory.kmem.usage_in_bytes": 0o444,
        "memory.kmem.max_usage_in_bytes": 0o644, "memory.kmem.failcnt": 0o644},
}
ROOT_ONLY = {"release_agent": 0o644}
FILESET_TAG = {"memctl-2007": "M4", "shrink-2008": "S1", "kmem-2011": "K1",
               "kmem-slab-2012": "L1", "kmem-2012": "G1"}


@pytest.mark.parametrize("profile", [pytest.param(p, id=f"{FILESET_TAG[p]}-{p}")
                                     for p in PROFILES])
def test_file_set_and_modes_of_root_and_child(mounts, profile):
    m = mounts(profile)
    g = fresh(m)
    want_child = CHILD_FILES[profile]
    assert {n: mode_of(os.path.join(g, n)) for n in os.listdir(g)} == want_child
    want_root = want_child | ROOT_ONLY
    got_root = {n: mode_of(m.p(n)) for n in os.listdir(m.path)
                if os.path.isfile(m.p(n))}
    assert got_root == want_root


# ======================================================================= parsers
#
# Rows: (tag, profile, file, where, bytes written, errno, expected read-back or None).
# where: "child" (a fresh group) or "root". The read-back is the file's text after the
# write (for write-only files, None).

U = f"{LLONG_MAX}\n"
PARSER_ROWS = [
    # ---- memctl-2007 [M5] mem_limit: simple_strtoul(buf, &end, 10), *end must be NUL
    ("M1-unlimited-at-start", "memctl-2007", "mem_limit", "child", None, OK, U),
    ("M5-bare-number", "memctl-2007", "mem_limit", "child", b"100", OK, "100\n"),
    ("M5-newline-EINVAL", "memctl-2007", "mem_limit", "child", b"100\n", errno.EINVAL, U),
    ("M5-leading-blank-EINVAL", "memctl-2007", "mem_limit", "child", b" 100", errno.EINVAL, U),
    ("M5-minus-one-EINVAL", "memctl-2007", "mem_limit", "child", b"-1", errno.EINVAL, U),
    ("M5-plus-EINVAL", "memctl-2007", "mem_limit", "child", b"+5", errno.EINVAL, U),
    ("M5-suffix-EINVAL", "memctl-2007", "mem_limit", "child", b"1K", errno.EINVAL, U),
    ("M5-hex-EINVAL", "memctl-2007", "mem_limit", "child", b"0x10", errno.EINVAL, U),
    ("M5-octal-is-decimal", "memctl-2007", "mem_limit", "child", b"010", OK, "10\n"),
    ("M5-nul-ends-the-string", "memctl-2007", "mem_limit", "child", b"7\0junk", OK, "7\n"),
    ("M5-empty-is-0", "memctl-2007", "mem_limit", "child", b"\0", OK, "0\n"),
    ("M5-wraps-mod-2^64", "memctl-2007", "mem_limit", "child",
     b"18446744073709551617", OK, "1\n"),
    ("M5-root-limit-allowed", "memctl-2007", "mem_limit", "root", b"123456", OK, "123456\n"),
    ("M6-usage-not-writable", "memctl-2007", "mem_usage", "child", b"0", errno.EINVAL, "0\n"),
    ("M6-failcnt-not-writable", "memctl-2007", "mem_failcnt", "child", b"0", errno.EINVAL, "0\n"),
    ("M12-tasks-not-a-number-EIO", "memctl-2007", "tasks", "child", b"abc", errno.EIO, ""),
    ("M12-tasks-no-such-pid-ESRCH", "memctl-2007", "tasks", "child", b"999999999",
     errno.ESRCH, ""),
    ("M12-notify-garbage-is-0", "memctl-2007", "notify_on_release", "child", b"abc", OK, "0\n"),
    ("M12-notify-nonzero-is-1", "memctl-2007", "notify_on_release", "child", b"7\n", OK, "1\n"),

    # ---- shrink-2008 [S3] res_counter_memparse_write_strategy on a stripped string
    ("S2-unlimited-at-start", "shrink-2008", "memory.limit_in_bytes", "child", None, OK, U),
    ("S3-rounds-up", "shrink-2008", "memory.limit_in_bytes", "child", b"1", OK, "4096\n"),
    ("S3-strip-and-round", "shrink-2008", "memory.limit_in_bytes", "child", b" 4097\n", OK,
     "8192\n"),
    ("S3-k-suffix", "shrink-2008", "memory.limit_in_bytes", "child", b"3k", OK, "4096\n"),
    ("S3-G-suffix", "shrink-2008", "memory.limit_in_bytes", "child", b"2G", OK, f"{2 << 30}\n"),
    ("S3-T-is-leftover-EINVAL", "shrink-2008", "memory.limit_in_bytes", "child", b"1T",
     errno.EINVAL, U),
    ("S3-minus-one-EINVAL", "shrink-2008", "memory.limit_in_bytes", "child", b"-1",
     errno.EINVAL, U),
    ("S3-hex", "shrink-2008", "memory.limit_in_bytes", "child", b"0x2000", OK, "8192\n"),
    ("S3-octal-8-EINVAL", "shrink-2008", "memory.limit_in_bytes", "child", b"08",
     errno.EINVAL, U),
    ("S3-empty-is-0", "shrink-2008", "memory.limit_in_bytes", "child", b"\n", OK, "0\n"),
    ("S3-top-rounds-to-unlimited", "shrink-2008", "memory.limit_in_bytes", "child",
     b"18446744073709551615", OK, U),
    ("S3-llong-max-rounds-past-it", "shrink-2008", "memory.limit_in_bytes", "child",
     b"9223372036854775807", OK, "9223372036854775808\n"),
    ("S3-62-bytes-ok", "shrink-2008", "memory.limit_in_bytes", "child",
     b"0" * 61 + b"1", OK, "4096\n"),
    ("S3-63-bytes-E2BIG", "shrink-2008", "memory.limit_in_bytes", "child",
     b"0" * 62 + b"1", errno.E2BIG, U),
    ("S1-root-limit-allowed", "shrink-2008", "memory.limit_in_bytes", "root", b"1G", OK,
     f"{1 << 30}\n"),
    ("S5-shrink-minus-one-EINVAL", "shrink-2008", "memory.shrink_in_bytes", "child", b"-1",
     errno.EINVAL, None),
    ("S5-shrink-garbage-EINVAL", "shrink-2008", "memory.shrink_in_bytes", "child", b"4x",
     errno.EINVAL, None),
    ("S5-shrink-63-bytes-E2BIG", "shrink-2008", "memory.shrink_in_bytes", "child",
     b"1" * 63, errno.E2BIG, None),
    ("S5-shrink-empty-group-ok", "shrink-2008", "memory.shrink_in_bytes", "child", b"0", OK,
     None),
    ("S1-shrink-on-the-root", "shrink-2008", "memory.shrink_in_bytes", "root", b"1G", OK,
     None),
    ("S6-failcnt-trigger", "shrink-2008", "memory.failcnt", "child", b"anything", OK, "0\n"),
    ("S6-max-usage-trigger", "shrink-2008", "memory.max_usage_in_bytes", "child",
     b"x" * 5000, OK, "0\n"),
    ("S9-notify-plus-EINVAL", "shrink-2008", "notify_on_release", "child", b"+1",
     errno.EINVAL, "0\n"),
    ("S9-notify-stripped", "shrink-2008", "notify_on_release", "child", b" 0x10 \n", OK, "1\n"),
    ("S9-notify-64-bytes-E2BIG", "shrink-2008", "notify_on_release", "child", b"0" * 64,
     errno.E2BIG, "0\n"),
    ("S9-notify-empty-is-0", "shrink-2008", "notify_on_release", "child", b"\n", OK, "0\n"),
    ("S9-tasks-garbage-EINVAL", "shrink-2008", "tasks", "child", b"12abc", errno.EINVAL, ""),
    ("S9-tasks-negative-EINVAL", "shrink-2008", "tasks", "child", b"-1", errno.EINVAL, ""),

    # ---- kmem-2011 (3.2 mechanics) [K2] [K3] [K6]
    ("K6-unlimited-at-start", "kmem-2011", "memory.limit_in_bytes", "child", None, OK, U),
    ("K6-rounds-up", "kmem-2011", "memory.limit_in_bytes", "child", b"1", OK, "4096\n"),
    ("K6-minus-one-unlimited", "kmem-2011", "memory.limit_in_bytes", "child", b"-1\n", OK, U),
    ("K6-minus-01-unlimited", "kmem-2011", "memory.limit_in_bytes", "child", b"-01", OK, U),
    ("K6-minus-0-EINVAL", "kmem-2011", "memory.limit_in_bytes", "child", b"-0", errno.EINVAL, U),
    ("K6-T-EINVAL", "kmem-2011", "memory.limit_in_bytes", "child", b"1T", errno.EINVAL, U),
    ("K6-llong-max-above-memsw-EINVAL", "kmem-2011", "memory.limit_in_bytes", "child",
     b"9223372036854775807", errno.EINVAL, U),
    ("K6-root-limit-EINVAL", "kmem-2011", "memory.limit_in_bytes", "root", b"4096",
     errno.EINVAL, U),
    ("K6-root-garbage-EINVAL", "kmem-2011", "memory.limit_in_bytes", "root", b"abc",
     errno.EINVAL, U),
    ("K6-swappiness-101-EINVAL", "kmem-2011", "memory.swappiness", "child", b"101",
     errno.EINVAL, "60\n"),
    ("K6-swappiness-100", "kmem-2011", "memory.swappiness", "child", b"100", OK, "100\n"),
    ("K6-swappiness-root-EINVAL", "kmem-2011", "memory.swappiness", "root", b"10",
     errno.EINVAL, "60\n"),
    ("K6-use-hierarchy-root-default-0", "kmem-2011", "memory.use_hierarchy", "root", None,
     OK, "0\n"),
    ("K6-use-hierarchy-2-EINVAL", "kmem-2011", "memory.use_hierarchy", "child", b"2",
     errno.EINVAL, "0\n"),
    ("K6-move-charge-3", "kmem-2011", "memory.move_charge_at_immigrate", "child", b"3", OK, "3\n"),
    ("K2-independent-nonzero-is-1", "kmem-2011", "memory.independent_kmem_limit", "child",
     b" 5 ", OK, "1\n"),
    ("K2-independent-plus-EINVAL", "kmem-2011", "memory.independent_kmem_limit", "child",
     b"+1", errno.EINVAL, "0\n"),
    ("K2-independent-64-bytes-E2BIG", "kmem-2011", "memory.independent_kmem_limit", "child",
     b"0" * 64, errno.E2BIG, "0\n"),
    ("K3-kmem-limit-read-only", "kmem-2011", "memory.kmem.limit_in_bytes", "child", b"4096",
     errno.EINVAL, U),
    ("K3-kmem-limit-read-only-root", "kmem-2011", "memory.kmem.limit_in_bytes", "root",
     b"4096", errno.EINVAL, U),

    # ---- kmem-slab-2012 (3.3 mechanics) [L2] [L3]
    ("L3-kmem-limit-needs-independent", "kmem-slab-2012", "memory.kmem.limit_in_bytes",
     "child", b"1M", errno.EINVAL, U),
    ("L3-kmem-limit-root-EINVAL", "kmem-slab-2012", "memory.kmem.limit_in_bytes", "root",
     b"1M", errno.EINVAL, U),
    ("L3-kmem-limit-garbage-EINVAL", "kmem-slab-2012", "memory.kmem.limit_in_bytes", "child",
     b"1Q", errno.EINVAL, U),
    ("L2-independent-nonzero-is-1", "kmem-slab-2012", "memory.kmem.independent_kmem_limit",
     "child", b"2", OK, "1\n"),
    ("L9-oom-control-root-EINVAL", "kmem-slab-2012", "memory.oom_control", "root", b"1",
     errno.EINVAL, "oom_kill_disable 0\nunder_oom 0\n"),
    ("L9-oom-control-2-EINVAL", "kmem-slab-2012", "memory.oom_control", "child", b"2",
     errno.EINVAL, "oom_kill_disable 0\nunder_oom 0\n"),
    ("L9-oom-control-1", "kmem-slab-2012", "memory.oom_control", "child", b"1", OK,
     "oom_kill_disable 1\nunder_oom 0\n"),

    # ---- kmem-2012 (3.8 mechanics) [G2]
    ("G2-kmem-unlimited-at-start", "kmem-2012", "memory.kmem.limit_in_bytes", "child", None,
     OK, U),
    ("G2-kmem-limit-first-write", "kmem-2012", "memory.kmem.limit_in_bytes", "child", b"1",
     OK, "4096\n"),
    ("G2-kmem-limit-root-EINVAL", "kmem-2012", "memory.kmem.limit_in_bytes", "root", b"1M",
     errno.EINVAL, U),
    ("G2-kmem-limit-garbage-EINVAL", "kmem-2012", "memory.kmem.limit_in_bytes", "child",
     b"abc", errno.EINVAL, U),
]


@pytest.mark.parametrize("tag,profile,name,where,data,err,after",
                         [pytest.param(*row, id=row[0]) for row in PARSER_ROWS])
def test_parser(mounts, tag, profile, name, where, data, err, after):
    m = mounts(profile)
    d = m.path if where == "root" else fresh(m)
    path = os.path.join(d, name)
    try:
        if data is not None:
            assert errno_of(write, path, data) == err
        if after is not None:
            assert read(path) == after
        else:  # [S10] a file without read handler: EINVAL
            assert errno_of(read, path) == errno.EINVAL
    finally:
        if where == "root" and err == OK and "limit" in name:
            write(path, str(LLONG_MAX).encode())  # leave the shared root unlimited


# ======================================================================= charging
#
# Socket clients (tests/helpers/charger.py) in groups of the profile's mount.


def client(m: Mount, g: str) -> Charger:
    c = Charger(m.path, "--no-stock")
    assert c.do(f"join {g}/tasks") == "ok"
    return c


@pytest.fixture
def clients():
    started: list[Charger] = []

    def start(m: Mount, g: str) -> Charger:
        started.append(client(m, g))
        return started[-1]

    try:
        yield start
    finally:
        for c in started:
            c.stop()


# ---------------------------------------------------------------- memctl-2007


def test_M1_M2_pages_and_the_unsigned_compare(mounts, clients):
    m = mounts("memctl-2007")
    g = fresh(m)
    c = clients(m, g)
    assert c.do(f"charge anon {3 * P}") == "ok 3"
    assert read(f"{g}/mem_usage") == "3\n"  # pages, not bytes
    write(f"{g}/mem_limit", b"0")  # 0 - 1 wraps: never blocks
    assert c.do(f"charge anon {2 * P}") == "ok 2"
    assert read(f"{g}/mem_usage") == "5\n"
    assert read(f"{g}/mem_failcnt") == "0\n"
    write(f"{g}/mem_limit", b"6")
    assert c.do(f"charge anon {P}") == "ok 1"  # 5 <= 6 - 1
    assert c.do(f"charge anon {P}").startswith("refused")  # 6 <= 6 - 1 is false
    assert read(f"{g}/mem_failcnt") == "1\n"
    assert read(f"{g}/mem_usage") == "6\n"


def test_M7_limit_below_usage_is_stored_without_reclaim(mounts, clients):
    m = mounts("memctl-2007")
    g = fresh(m)
    c = clients(m, g)
    assert c.do(f"charge file {8 * P}") == "ok 8"
    write(f"{g}/mem_limit", b"2")
    assert read(f"{g}/mem_limit") == "2\n" and read(f"{g}/mem_usage") == "8\n"
    # [M9] the next charge reclaims the page cache and then fits
    assert c.do(f"charge anon {P}") == "ok 1"
    assert num(f"{g}/mem_usage") <= 2
    assert read(f"{g}/mem_failcnt") == "1\n"


def test_M1_no_hierarchy_and_M11_only_future_charges_move(mounts, clients):
    m = mounts("memctl-2007")
    a = fresh(m)
    b = fresh(m)
    child = fresh(m, os.path.basename(a))
    c = clients(m, child)
    c.do(f"charge anon {4 * P}")
    assert read(f"{child}/mem_usage") == "4\n" and read(f"{a}/mem_usage") == "0\n"
    assert c.do(f"join {b}/tasks") == "ok"  # the leader moves: its mm follows
    c.do(f"charge anon {P}")
    assert read(f"{child}/mem_usage") == "4\n" and read(f"{b}/mem_usage") == "1\n"


def test_M8_first_toucher_owns_a_shared_page(mounts, clients):
    m = mounts("memctl-2007")
    a, b = fresh(m), fresh(m)
    first, second = clients(m, a), clients(m, b)
    assert first.do(f"raw charge shmem {2 * P} share=seg") .startswith("ok ok")
    assert second.do(f"raw charge shmem {2 * P} share=seg").startswith("ok ok")
    assert read(f"{a}/mem_usage") == "2\n" and read(f"{b}/mem_usage") == "0\n"
    first.stop()  # the owner leaves; the page is still mapped by the second
    assert read(f"{a}/mem_usage") == "2\n"
    second.do(f"raw uncharge shmem {2 * P} share=seg")  # last reference
    assert read(f"{a}/mem_usage") == "0\n"


def test_M13_rmdir_busy_while_pages_are_charged(mounts, clients):
    m = mounts("memctl-2007")
    g = fresh(m)
    c = clients(m, g)
    c.do(f"charge file {P}")
    c.do(f"join {m.path}/tasks")
    assert errno_of(os.rmdir, g) == errno.EBUSY
    c.stop()  # page cache stays: still busy
    assert errno_of(os.rmdir, g) == errno.EBUSY


# ---------------------------------------------------------------- shrink-2008


def test_S2_bytes_and_no_hierarchy(mounts, clients):
    m = mounts("shrink-2008")
    p = fresh(m)
    child = fresh(m, os.path.basename(p))
    c = clients(m, child)
    c.do(f"charge anon {3 * P}")
    assert num(f"{child}/memory.usage_in_bytes") == 3 * P
    assert num(f"{p}/memory.usage_in_bytes") == 0  # 2.6.26: no use_hierarchy
    assert read(f"{p}/memory.stat").splitlines()[:2] == ["cache 0", "rss 0"]


def test_S4_S5_lower_limit_and_shrink_reclaim_or_ebusy(mounts, clients):
    m = mounts("shrink-2008")
    g = fresh(m)
    c = clients(m, g)
    c.do(f"charge file {64 * P}")
    c.do(f"charge anon {16 * P}")
    # 40k is 10 pages: the page cache goes, the anon pages cannot
    assert errno_of(write, f"{g}/memory.shrink_in_bytes", b"40k") == errno.EBUSY
    assert num(f"{g}/memory.usage_in_bytes") == 16 * P  # page cache gone, anon stays
    assert read(f"{g}/memory.limit_in_bytes") == U  # the limit never moved
    c.do(f"charge file {8 * P}")
    write(f"{g}/memory.shrink_in_bytes", f"{20 * P}\n".encode())
    assert num(f"{g}/memory.usage_in_bytes") <= 20 * P
    assert errno_of(write, f"{g}/memory.limit_in_bytes", b"8k") == errno.EBUSY
    assert read(f"{g}/memory.limit_in_bytes") == U


def test_S8_stat_keys(mounts, clients):
    m = mounts("shrink-2008")
    g = fresh(m)
    c = clients(m, g)
    c.do(f"charge anon {2 * P}")
    c.do(f"charge file {P}")
    lines = read(f"{g}/memory.stat").splitlines()
    assert [l.split()[0] for l in lines] == [
        "cache", "rss", "pgpgin", "pgpgout", "active", "inactive"]
    stat_ = dict(l.split() for l in lines)
    assert (stat_["cache"], stat_["rss"], stat_["pgpgin"]) == (str(P), str(2 * P), "3")


def test_S7_force_empty_busy_with_tasks_and_usage(mounts, clients):
    m = mounts("shrink-2008")
    g = fresh(m)
    assert errno_of(read, f"{g}/memory.force_empty") == errno.EINVAL  # [S10]
    write(f"{g}/memory.force_empty", b"1")  # empty: fine even with tasks
    c = clients(m, g)
    c.do(f"charge file {P}")
    assert errno_of(write, f"{g}/memory.force_empty", b"1") == errno.EBUSY
    c.do(f"join {m.path}/tasks")
    write(f"{g}/memory.force_empty", b"1")
    assert num(f"{g}/memory.usage_in_bytes") == 0


# ---------------------------------------------------------------- kmem-2011


def test_K2_independent_flag_parent_rule_and_no_copy_at_mkdir(mounts):
    m = mounts("kmem-2011")
    p = fresh(m)
    write(f"{p}/memory.use_hierarchy", b"1")
    c = fresh(m, os.path.basename(p))
    write(f"{c}/memory.independent_kmem_limit", b"0")  # equals the parent's 0
    assert errno_of(write, f"{c}/memory.independent_kmem_limit", b"1") == errno.EINVAL
    write(f"{p}/memory.independent_kmem_limit", b"1")  # root is not hierarchical
    assert read(f"{c}/memory.independent_kmem_limit") == "0\n"  # not propagated
    d = fresh(m, os.path.basename(p))
    assert read(f"{d}/memory.independent_kmem_limit") == "0\n"  # not copied
    assert errno_of(write, f"{d}/memory.independent_kmem_limit", b"0") == errno.EINVAL
    write(f"{d}/memory.independent_kmem_limit", b"9")
    assert read(f"{d}/memory.independent_kmem_limit") == "1\n"


def test_K4_K5_usage_includes_kmem_unless_independent(mounts, clients):
    m = mounts("kmem-2011")
    g = fresh(m)
    write(f"{g}/memory.limit_in_bytes", f"{4 * P}".encode())
    cl = clients(m, g)
    cl.do(f"charge anon {2 * P}")
    assert cl.do(f"charge kmem {8 * P}") == "ok 8"  # kmem is never limited
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 8 * P
    assert num(f"{g}/memory.usage_in_bytes") == 10 * P  # user + kmem
    assert num(f"{g}/memory.memsw.usage_in_bytes") == 10 * P
    assert num(f"{g}/memory.max_usage_in_bytes") == 2 * P  # the user counter only
    write(f"{g}/memory.independent_kmem_limit", b"1")
    assert num(f"{g}/memory.usage_in_bytes") == 2 * P


# ---------------------------------------------------------------- kmem-slab-2012


def test_L2_L3_L4_independent_kmem_limit_is_enforced(mounts, clients):
    m = mounts("kmem-slab-2012")
    g = fresh(m)
    cl = clients(m, g)
    write(f"{g}/memory.kmem.independent_kmem_limit", b"1")
    write(f"{g}/memory.kmem.limit_in_bytes", b"16k")
    assert read(f"{g}/memory.kmem.limit_in_bytes") == f"{4 * P}\n"
    assert cl.do(f"charge kmem {4 * P}") == "ok 4"
    assert cl.do(f"charge kmem {P}").startswith("refused")
    assert num(f"{g}/memory.usage_in_bytes") == 0  # independent: not in the user counter
    assert errno_of(write, f"{g}/memory.kmem.limit_in_bytes", b"4k") == errno.EBUSY
    write(f"{g}/memory.kmem.independent_kmem_limit", b"0")  # resets the limit
    assert read(f"{g}/memory.kmem.limit_in_bytes") == U


def test_L8_slabinfo_lists_the_groups_caches(mounts, clients):
    m = mounts("kmem-slab-2012")
    g = fresh(m)
    cl = clients(m, g)
    cl.do("slab_alloc dentry 192 30")
    lines = read(f"{g}/memory.kmem.slabinfo").splitlines()
    assert lines[0] == "# name          <active_objs> <num_objs> <objsize>"
    name, active, num_objs, size = lines[1].split()
    assert name.startswith("dentry(") and name.endswith(f":{os.path.basename(g)})")
    assert (int(active), int(num_objs), int(size)) == (30, 42, 192)


def test_L6_rmdir_uncharges_remaining_kmem(mounts, clients):
    m = mounts("kmem-slab-2012")
    p = fresh(m)
    write(f"{p}/memory.use_hierarchy", b"1")
    g = fresh(m, os.path.basename(p))
    cl = clients(m, g)
    cl.do(f"charge kmem {3 * P}")
    assert num(f"{p}/memory.usage_in_bytes") == 3 * P
    cl.do(f"join {m.path}/tasks")
    os.rmdir(g)
    assert num(f"{p}/memory.usage_in_bytes") == 0


# ---------------------------------------------------------------- kmem-2012


def test_G2_activation_ebusy_with_tasks_or_hierarchical_children(mounts, clients):
    m = mounts("kmem-2012")
    g = fresh(m)
    clients(m, g)
    assert errno_of(write, f"{g}/memory.kmem.limit_in_bytes", b"1M") == errno.EBUSY
    write(f"{g}/memory.kmem.limit_in_bytes", b"-1")  # unlimited: no activation, fine
    h = fresh(m)
    write(f"{h}/memory.use_hierarchy", b"1")
    fresh(m, os.path.basename(h))
    assert errno_of(write, f"{h}/memory.kmem.limit_in_bytes", b"1M") == errno.EBUSY
    flat = fresh(m)  # children of a non-hierarchical group do not count
    fresh(m, os.path.basename(flat))
    write(f"{flat}/memory.kmem.limit_in_bytes", b"1M")
    write(f"{flat}/memory.kmem.limit_in_bytes", b"2M")  # later writes just set it


def test_G3_G5_cap_below_the_user_limit_tracking_at_or_above(mounts, clients):
    m = mounts("kmem-2012")
    inactive = fresh(m)
    c0 = clients(m, inactive)
    c0.do(f"charge kmem {4 * P}")
    assert num(f"{inactive}/memory.kmem.usage_in_bytes") == 0  # [G5]
    assert num(f"{inactive}/memory.usage_in_bytes") == 0
    cap = fresh(m)
    write(f"{cap}/memory.limit_in_bytes", f"{64 * P}".encode())
    write(f"{cap}/memory.kmem.limit_in_bytes", f"{8 * P}".encode())  # below: a cap
    c1 = clients(m, cap)
    assert c1.do(f"charge kmem {8 * P}") == "ok 8"
    assert num(f"{cap}/memory.usage_in_bytes") == 8 * P  # counted in both
    assert c1.do(f"charge kmem {P}").startswith("refused")
    assert read(f"{cap}/memory.kmem.failcnt") == "1\n"
    assert read(f"{cap}/memory.failcnt") == "0\n"
    assert c1.do(f"charge anon {32 * P}") == "ok 32"  # user memory still has room
    track = fresh(m)
    write(f"{track}/memory.limit_in_bytes", f"{8 * P}".encode())
    write(f"{track}/memory.kmem.limit_in_bytes", f"{64 * P}".encode())  # above: tracking
    c2 = clients(m, track)
    assert c2.do(f"charge kmem {8 * P}") == "ok 8"
    assert c2.do(f"charge kmem {P}").startswith("refused")
    assert read(f"{track}/memory.failcnt") != "0\n"  # the user limit refused
    assert read(f"{track}/memory.kmem.failcnt") == "0\n"


def test_G4_limits_propagate_to_children(mounts, clients):
    m = mounts("kmem-2012")
    p = fresh(m)
    write(f"{p}/memory.use_hierarchy", b"1")
    write(f"{p}/memory.kmem.limit_in_bytes", f"{8 * P}".encode())
    child = fresh(m, os.path.basename(p))
    assert read(f"{child}/memory.kmem.limit_in_bytes") == U
    c = clients(m, child)
    assert c.do(f"charge kmem {8 * P}") == "ok 8"  # accounted: active by inheritance
    assert num(f"{p}/memory.kmem.usage_in_bytes") == 8 * P
    assert c.do(f"charge kmem {P}").startswith("refused")  # the parent's limit


def test_G7_fork_charges_a_thread_stack_and_stops_at_the_kmem_limit(mounts, clients):
    m = mounts("kmem-2012")
    g = fresh(m)
    write(f"{g}/memory.kmem.limit_in_bytes", f"{10 * P}".encode())  # 2.5 stacks
    c = clients(m, g)
    assert c.do("raw fork").startswith("ok ok")
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 4 * P  # THREAD_SIZE, 16 KiB
    assert num(f"{g}/memory.usage_in_bytes") == 4 * P
    assert c.do("raw fork").startswith("ok ok")  # 8 pages of 10
    reply = c.do("raw fork")
    assert reply.startswith("ok err ENOMEM"), reply
    assert read(f"{g}/memory.kmem.failcnt") != "0\n"
    assert c.do("raw exit").startswith("ok ok")  # a task ends: its stack is freed
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 4 * P
    assert c.do("raw fork").startswith("ok ok")


def test_G6_rmdir_with_kmem_charges_keeps_them_in_the_parent(mounts, clients):
    m = mounts("kmem-2012")
    p = fresh(m)
    write(f"{p}/memory.use_hierarchy", b"1")
    write(f"{p}/memory.kmem.limit_in_bytes", b"1M")
    g = fresh(m, os.path.basename(p))
    c = clients(m, g)
    c.do(f"charge kmem {2 * P}")
    c.do(f"join {m.path}/tasks")
    os.rmdir(g)  # allowed with kmem charges
    assert num(f"{p}/memory.kmem.usage_in_bytes") == 2 * P
    c.do(f"uncharge kmem {2 * P}")
    assert num(f"{p}/memory.kmem.usage_in_bytes") == 0


# ---------------------------------------------------------------- more rules, own mounts


def test_M10_the_oom_kill_does_not_save_the_charge(mount_with, chargers):
    """Seed 002 patch 7: mem_cont_out_of_memory() kills the worst task of the
    container, and the charge that needed the room still fails."""
    m = mount_with("kernel=memctl-2007")
    g = m.p("box")
    os.mkdir(g)
    write(f"{g}/mem_limit", b"8")
    victim = chargers(m.path, "--no-stock")
    victim.do(f"join {g}/tasks")
    assert victim.do(f"charge anon {6 * P}") == "ok 6"
    c = chargers(m.path, "--no-stock")
    c.do(f"join {g}/tasks")
    assert c.do(f"charge anon {4 * P}").startswith("refused")
    victim.proc.wait(timeout=10)  # killed: the biggest task of the container
    assert victim.proc.returncode == -9
    assert read(f"{g}/mem_usage") == "0\n"
    assert c.do(f"charge anon {4 * P}") == "ok 4"  # now it fits


def test_M9_a_charge_reclaims_page_by_page(mounts, clients):
    """Seed 002 charges one page per fault: a 4-page read under a 2-page limit
    reclaims its own earlier pages and succeeds; every failed attempt counts."""
    m = mounts("memctl-2007")
    g = fresh(m)
    write(f"{g}/mem_limit", b"2")
    c = clients(m, g)
    assert c.do(f"charge file {4 * P}") == "ok 4"
    assert read(f"{g}/mem_usage") == "2\n"
    assert read(f"{g}/mem_failcnt") == "2\n"
    # two pages evicted (the notices may trail the reply: ask until both are in)
    assert wait_until(lambda: int(c.do("events").split()[1]) == 2 * P, timeout=5)


def test_M1_no_charge_batching(mounts):
    """2007 had no per-CPU stock: a client asking for one is granted none, so usage
    is exact after every charge."""
    m = mounts("memctl-2007")
    g = fresh(m)
    c = Charger(m.path)  # with a stock, as clients normally ask
    try:
        assert c.do(f"join {g}/tasks") == "ok"
        assert c.do(f"charge anon {P}") == "ok 1"
        assert read(f"{g}/mem_usage") == "1\n"
    finally:
        c.stop()


def test_S11_rmdir_drops_what_is_left(mounts, clients):
    """2.6.26 runs force_empty at rmdir: the group's charges are dropped, not moved."""
    m = mounts("shrink-2008")
    g = fresh(m)
    c = clients(m, g)
    c.do(f"charge file {3 * P}")
    c.do(f"join {m.path}/tasks")
    root_before = num(m.p("memory.usage_in_bytes"))
    os.rmdir(g)
    assert num(m.p("memory.usage_in_bytes")) == root_before  # nothing reparented


def test_K6_rmdir_busy_while_kmem_is_charged(mounts, clients):
    """Seed 000's caution: until the kmem resource is released the group cannot be
    destroyed."""
    m = mounts("kmem-2011")
    g = fresh(m)
    c = clients(m, g)
    c.do(f"charge kmem {P}")
    c.do(f"join {m.path}/tasks")
    assert errno_of(os.rmdir, g) == errno.EBUSY
    c.do(f"uncharge kmem {P}")
    os.rmdir(g)


def test_K4_K6_thresholds_see_kmem_and_round_up(mounts, clients, listeners):
    """Seed 000: thresholds on memory.usage_in_bytes follow the usage that includes
    kmem; 3.2 parses the threshold as a res_counter limit (1 byte: one page)."""
    m = mounts("kmem-2011")
    g = fresh(m)
    on_g = listeners(g, "memory.usage_in_bytes", "1")
    assert on_g.first == "registered"
    c = clients(m, g)
    assert c.do(f"charge kmem {P}") == "ok 1"
    assert on_g.events() == 1  # 0 -> 4096 crosses the 4096 threshold


def test_G7_the_readme_lines_cgemu_alloc_fork(mounts):
    """The README's four lines for kmem-2012: four 16K stacks fit a 64K kmem limit,
    the fifth fork is refused (cgemu alloc exits 3: a charge was refused)."""
    import subprocess
    import sys
    m = mounts("kmem-2012")
    g = fresh(m)
    write(f"{g}/memory.kmem.limit_in_bytes", b"64K")

    def alloc(n: int) -> int:
        return subprocess.run([sys.executable, "-m", "cgroupfs_emu.cli.cgemu", "alloc",
                               "-m", m.path, "-g", os.path.relpath(g, m.path),
                               "--fork", str(n)], capture_output=True, timeout=30).returncode

    assert alloc(4) == 0
    assert alloc(5) == 3
    assert num(f"{g}/memory.kmem.usage_in_bytes") == 0  # their stacks went with them
    assert read(f"{g}/memory.kmem.failcnt") == "1\n"
