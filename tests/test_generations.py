"""Each mainline profile answers as its kernel did: one table of behaviours per profile,
played through a real mount (``-o kernel=NAME,ncpus=2``).

Every row is (what, step, expected). The expectations come from the kernel sources
cited in docs/kernel-generations.md, not from the emulator's own tables; the README's
"Profiles" table lists the same behaviours.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from conftest import errno_of, read, write

P = 4096
MAX_PAGE_COUNTER = 9223372036854771712
LLONG_MAX = 9223372036854775807
OK = 0
PROFILES = ("linux-3.10", "linux-4.19", "linux-5.10", "linux-6.18")
NCPUS = 2


def by(**values):
    """Expected value per profile; keyword names use _ for . and -: l3_10 ... l6_18."""
    table = {f"linux-{k[1:].replace('_', '.')}": v for k, v in values.items()}
    assert set(table) == set(PROFILES), table
    return table


def same(v):
    return {p: v for p in PROFILES}


# ---------------------------------------------------------------------- the steps
# A step takes the mount and returns an observable (an errno, a string, a mode).


def w(path, data):
    return lambda m: errno_of(write, m.p(path), data)


def wr(path, data):
    """Write, then read back (the errno if the write failed)."""
    def step(m):
        e = errno_of(write, m.p(path), data)
        return e if e else read(m.p(path))
    return step


def r(path):
    def step(m):
        try:
            return read(m.p(path))
        except OSError as e:
            return e.errno
    return step


def mode(path):
    return lambda m: stat.S_IMODE(os.stat(m.p(path)).st_mode)


def mkdir(path):
    return lambda m: errno_of(os.mkdir, m.p(path))


def stat_keys(path):
    return lambda m: [line.split()[0] for line in read(m.p(path)).splitlines()]


def seq(*steps):
    """Run several steps, observe the last."""
    def step(m):
        for s in steps[:-1]:
            s(m)
        return steps[-1](m)
    return step


# ---------------------------------------------------------------------- the table

SLABINFO_HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor>"
    " : slabdata <active_slabs> <num_slabs> <sharedavail>\n")
STAT_3_10 = ["cache", "rss", "rss_huge", "mapped_file", "swap", "pgpgin", "pgpgout",
             "pgfault", "pgmajfault", "inactive_anon", "active_anon", "inactive_file",
             "active_file", "unevictable"]
STAT_4_19 = ["cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
             "swap", "pgpgin", "pgpgout", "pgfault", "pgmajfault", "inactive_anon",
             "active_anon", "inactive_file", "active_file", "unevictable"]
STAT_6_18 = ["cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
             "workingset_refault_anon", "workingset_refault_file", "swap", "swapcached",
             "pgpgin", "pgpgout", "pgfault", "pgmajfault", "inactive_anon",
             "active_anon", "inactive_file", "active_file", "unevictable"]


def _stat_layout(keys):
    return keys + ["hierarchical_memory_limit", "hierarchical_memsw_limit"] + [
        f"total_{k}" for k in keys]


ROWS = [
    # --- counters and limit parsing
    ("limit of 1 byte reads back", wr("G/memory.limit_in_bytes", "1"),
     by(l3_10="4096\n", l4_19="0\n", l5_10="0\n", l6_18="0\n")),
    ("limit of 4097 bytes reads back", wr("G/memory.limit_in_bytes", "4097"),
     by(l3_10="8192\n", l4_19="4096\n", l5_10="4096\n", l6_18="4096\n")),
    ("unlimited reads", r("G/memory.limit_in_bytes"),
     by(l3_10=f"{LLONG_MAX}\n", l4_19=f"{MAX_PAGE_COUNTER}\n",
        l5_10=f"{MAX_PAGE_COUNTER}\n", l6_18=f"{MAX_PAGE_COUNTER}\n")),
    ("soft limit starts unlimited", r("G/memory.soft_limit_in_bytes"),
     by(l3_10=f"{LLONG_MAX}\n", l4_19=f"{MAX_PAGE_COUNTER}\n",
        l5_10=f"{MAX_PAGE_COUNTER}\n", l6_18=f"{MAX_PAGE_COUNTER}\n")),
    ("'-01' is unlimited only for res_counter", w("G/memory.limit_in_bytes", "-01"),
     by(l3_10=OK, l4_19=errno.EINVAL, l5_10=errno.EINVAL, l6_18=errno.EINVAL)),
    ("LLONG_MAX bytes: above the memsw limit once page aligned (3.10)",
     w("G/memory.limit_in_bytes", str(LLONG_MAX)),
     by(l3_10=errno.EINVAL, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("limit suffix", wr("G/memory.limit_in_bytes", "1M"), same(f"{1 << 20}\n")),
    ("limit suffix T (3.10's memparse stops at G)", wr("G/memory.limit_in_bytes", "1T"),
     by(l3_10=errno.EINVAL, l4_19=f"{1 << 40}\n", l5_10=f"{1 << 40}\n",
        l6_18=f"{1 << 40}\n")),
    ("limit on the root", w("memory.limit_in_bytes", "1M"), same(errno.EINVAL)),
    ("memsw below limit", seq(w("G/memory.limit_in_bytes", "8M"),
                              w("G/memory.memsw.limit_in_bytes", "4M")),
     same(errno.EINVAL)),
    # --- write mechanics
    ("u64 with blanks around it", w("G/memory.swappiness", " 5 "),
     by(l3_10=OK, l4_19=errno.EINVAL, l5_10=errno.EINVAL, l6_18=errno.EINVAL)),
    ("u64 with a plus sign", w("G/memory.swappiness", "+5"),
     by(l3_10=errno.EINVAL, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("u64 write of 64 bytes", w("G/memory.swappiness", "0" * 63 + "5"),
     by(l3_10=errno.E2BIG, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("limit write of 63 bytes", w("G/memory.limit_in_bytes", "4096" + " " * 59),
     by(l3_10=errno.E2BIG, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("write of 4097 bytes", w("G/memory.limit_in_bytes", "1" + " " * 4096),
     same(errno.E2BIG)),
    # --- file set and modes
    ("cgroup.event_control mode", mode("G/cgroup.event_control"),
     by(l3_10=0o222, l4_19=0o222, l5_10=0o222, l6_18=0o200)),
    ("memory.pressure_level mode", mode("G/memory.pressure_level"),
     by(l3_10=0, l4_19=0, l5_10=0, l6_18=0o444)),
    ("memory.pressure_level read", r("G/memory.pressure_level"), same(errno.EINVAL)),
    ("memory.kmem.tcp.limit_in_bytes mode", mode("G/memory.kmem.tcp.limit_in_bytes"),
     same(0o644)),
    # 3.x mem_cgroup_slabinfo_read(): EIO until kmem accounting is active
    ("memory.kmem.slabinfo of a fresh group", r("G/memory.kmem.slabinfo"),
     by(l3_10=errno.EIO, l4_19="", l5_10="", l6_18="")),
    ("memory.kmem.slabinfo once a kmem limit is set",
     seq(w("G/memory.kmem.limit_in_bytes", "8M"), r("G/memory.kmem.slabinfo")),
     by(l3_10=SLABINFO_HEADER, l4_19="", l5_10="", l6_18="")),
    ("memory.stat keys", stat_keys("G/memory.stat"),
     by(l3_10=_stat_layout(STAT_3_10), l4_19=_stat_layout(STAT_4_19),
        l5_10=_stat_layout(STAT_4_19), l6_18=_stat_layout(STAT_6_18))),
    ("oom_control", r("G/memory.oom_control"),
     by(l3_10="oom_kill_disable 0\nunder_oom 0\n",
        l4_19="oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        l5_10="oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        l6_18="oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")),
    # --- swappiness
    ("swappiness 101", w("G/memory.swappiness", "101"),
     by(l3_10=errno.EINVAL, l4_19=errno.EINVAL, l5_10=OK, l6_18=OK)),
    ("swappiness 201", w("G/memory.swappiness", "201"), same(errno.EINVAL)),
    ("swappiness on the root", w("memory.swappiness", "60"),
     by(l3_10=errno.EINVAL, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("swappiness under a hierarchical parent",
     seq(w("H/memory.use_hierarchy", "1"), mkdir("H/c"), w("H/c/memory.swappiness", "10")),
     by(l3_10=errno.EINVAL, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("swappiness of a hierarchical group with children",
     seq(w("H/memory.use_hierarchy", "1"), mkdir("H/c"), w("H/memory.swappiness", "10")),
     by(l3_10=errno.EINVAL, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("oom_control under a hierarchical parent",
     seq(w("H/memory.use_hierarchy", "1"), mkdir("H/c"), w("H/c/memory.oom_control", "1")),
     by(l3_10=errno.EINVAL, l4_19=OK, l5_10=OK, l6_18=OK)),
    # --- use_hierarchy
    ("root use_hierarchy", r("memory.use_hierarchy"),
     by(l3_10="0\n", l4_19="0\n", l5_10="0\n", l6_18="1\n")),
    ("use_hierarchy 0 on a group", w("G/memory.use_hierarchy", "0"),
     by(l3_10=OK, l4_19=OK, l5_10=OK, l6_18=errno.EINVAL)),
    ("use_hierarchy 1 on a group", wr("G/memory.use_hierarchy", "1"), same("1\n")),
    ("use_hierarchy 2", w("G/memory.use_hierarchy", "2"), same(errno.EINVAL)),
    ("use_hierarchy change with children",
     seq(mkdir("H/c"), w("H/memory.use_hierarchy", "1")),
     by(l3_10=errno.EBUSY, l4_19=errno.EBUSY, l5_10=errno.EBUSY, l6_18=OK)),
    ("use_hierarchy inherited", seq(w("H/memory.use_hierarchy", "1"), mkdir("H/c"),
                                    r("H/c/memory.use_hierarchy")), same("1\n")),
    ("root use_hierarchy 1 while groups exist", w("memory.use_hierarchy", "1"),
     by(l3_10=errno.EBUSY, l4_19=errno.EBUSY, l5_10=errno.EBUSY, l6_18=OK)),
    # --- kmem limit
    ("kmem limit reads back", wr("G/memory.kmem.limit_in_bytes", "8M"),
     by(l3_10=f"{8 << 20}\n", l4_19=f"{8 << 20}\n", l5_10=f"{8 << 20}\n",
        l6_18=f"{MAX_PAGE_COUNTER}\n")),
    ("kmem limit on a hierarchical group with children",
     seq(w("H/memory.use_hierarchy", "1"), mkdir("H/c"),
         w("H/memory.kmem.limit_in_bytes", "8M")),
     by(l3_10=errno.EBUSY, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("kmem limit -1 on a group with children (no activation)",
     seq(w("H/memory.use_hierarchy", "1"), mkdir("H/c"),
         w("H/memory.kmem.limit_in_bytes", "-1")), same(OK)),
    ("kmem.tcp limit reads back", wr("G/memory.kmem.tcp.limit_in_bytes", "1M"),
     same(f"{1 << 20}\n")),
    # --- move_charge, force_empty
    ("move_charge_at_immigrate 3", wr("G/memory.move_charge_at_immigrate", "3"),
     by(l3_10="3\n", l4_19="3\n", l5_10="3\n", l6_18=errno.EINVAL)),
    ("move_charge_at_immigrate 4", w("G/memory.move_charge_at_immigrate", "4"),
     same(errno.EINVAL)),
    ("force_empty with a child group", seq(mkdir("H/c"), w("H/memory.force_empty", "0")),
     by(l3_10=errno.EBUSY, l4_19=OK, l5_10=OK, l6_18=OK)),
    ("force_empty of an empty group", w("G/memory.force_empty", "0"), same(OK)),
    ("force_empty on the root", w("memory.force_empty", "0"), same(errno.EINVAL)),
    # --- names
    ("group name with a newline", mkdir("G/a\nb"),
     by(l3_10=OK, l4_19=errno.EINVAL, l5_10=errno.EINVAL, l6_18=errno.EINVAL)),
    ("group name of 256 bytes", mkdir("G/" + "n" * 256),
     by(l3_10=errno.ENAMETOOLONG, l4_19=OK, l5_10=OK, l6_18=OK)),
    # --- the mkdir charge (ncpus=2)
    ("parent usage after one mkdir", seq(mkdir("H/c"), r("H/memory.usage_in_bytes")),
     by(l3_10="0\n", l4_19="0\n", l5_10=f"{(1 + NCPUS) * P}\n",
        l6_18=f"{(2 + NCPUS) * P}\n")),
    ("parent kmem usage after one mkdir",
     seq(mkdir("H/c"), r("H/memory.kmem.usage_in_bytes")),
     by(l3_10="0\n", l4_19="0\n", l5_10=f"{(1 + NCPUS) * P}\n",
        l6_18=f"{(2 + NCPUS) * P}\n")),
    ("mkdir under a parent limited to PAGE_SIZE * (5 + ncpus)",
     seq(w("H/memory.limit_in_bytes", str(P * (5 + NCPUS))), mkdir("H/c")), same(OK)),
    ("mkdir under a parent limited to 0",
     seq(w("H/memory.limit_in_bytes", "0"), mkdir("H/c")),
     by(l3_10=OK, l4_19=OK, l5_10=errno.ENOMEM, l6_18=errno.ENOMEM)),
    ("mkdir under a parent whose kmem limit is 0",
     seq(w("H/memory.kmem.limit_in_bytes", "0"), mkdir("H/c")),
     by(l3_10=OK, l4_19=OK, l5_10=errno.ENOMEM, l6_18=OK)),
]


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_behaviours(mount_with, profile):
    """One mount per profile; each row runs on fresh groups G and H."""
    m = mount_with(f"kernel={profile},ncpus={NCPUS}")
    failures = []
    for i, (what, step, expected) in enumerate(ROWS):
        g, h = f"G{i}", f"H{i}"
        os.mkdir(m.p(g))
        os.mkdir(m.p(h))

        class Scoped:
            """The mount seen with G and H renamed to this row's groups."""
            @staticmethod
            def p(path):
                head, _, tail = path.partition("/")
                head = {"G": g, "H": h}.get(head, head) if tail else path
                return m.p(head, tail) if tail else m.p(head)

        got = step(Scoped)
        if got != expected[profile]:
            failures.append(f"{what}: expected {expected[profile]!r}, got {got!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("profile", PROFILES)
def test_root_use_hierarchy_before_any_group(mount_with, profile):
    """Before 5.11 the root's flag may change while it has no children
    (mem_cgroup_hierarchy_write(): "we allow value to be set if there are no
    children"); 5.11+ takes only 1."""
    m = mount_with(f"kernel={profile}")
    got = [errno_of(write, m.p("memory.use_hierarchy"), v) for v in ("1", "0", "1")]
    expected = [OK, errno.EINVAL, OK] if profile == "linux-6.18" else [OK, OK, OK]
    assert got == expected
    assert read(m.p("memory.use_hierarchy")) == "1\n"


@pytest.mark.parametrize("option, fragment", [
    ("kernel=linux-4.9", "unknown kernel profile"),
    ("ncpus=0", "ncpus='0'"),
    ("ncpus=two", "ncpus='two'"),
])
def test_profile_options_mistakes_are_one_line(tmp_path, option, fragment):
    import subprocess
    r = subprocess.run(["cgroupfs_emu", "-o", option, "memory", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.ismount(tmp_path)


def test_linux_6_is_an_alias_of_linux_6_18(mount_with):
    m = mount_with("kernel=linux-6,ncpus=3")
    os.mkdir(m.p("p"))
    os.mkdir(m.p("p", "c"))
    assert read(m.p("p", "memory.usage_in_bytes")) == f"{(2 + 3) * P}\n"
    assert read(m.p("p", "memory.oom_control")).endswith("oom_kill 0\n")
