"""The /proc look's rule (service/births.py) on a procfs of our own making: a new
child of a followed process is taken as forked in its group only while nothing
outside the group below that process changed; else it may be an orphan collected
there, and it stays where it is."""

from __future__ import annotations

import os

import pytest

from cgroupfs_emu.service import births
from cgroupfs_emu.service.births import BirthScan

G = object()  # a group


class FakeProc:
    def __init__(self, root: str, children_files: bool = True):
        self.root = root
        self.children_files = children_files
        self.procs: dict[int, dict] = {}

    def add(self, pid: int, ppid: int, minflt: int = 0) -> None:
        self.procs[pid] = {"ppid": ppid, "minflt": minflt}
        self.sync()

    def remove(self, pid: int) -> None:
        del self.procs[pid]
        for p in self.procs.values():  # re-parented, as to a subreaper
            if p["ppid"] == pid:
                p["ppid"] = 1
        self.sync()

    def sync(self) -> None:
        import shutil
        for e in os.listdir(self.root):
            shutil.rmtree(os.path.join(self.root, e))
        for pid, p in self.procs.items():
            os.makedirs(f"{self.root}/{pid}/task/{pid}")
            fields = ["S", str(p["ppid"])] + ["0"] * 48
            fields[7] = str(p["minflt"])
            fields[17] = "1"                     # threads
            fields[19] = str(1000 + pid)         # start time
            with open(f"{self.root}/{pid}/stat", "w") as f:
                f.write(f"{pid} (x) " + " ".join(fields) + "\n")
            if self.children_files:
                kids = [str(k) for k, q in self.procs.items() if q["ppid"] == pid]
                with open(f"{self.root}/{pid}/task/{pid}/children", "w") as f:
                    f.write(" ".join(kids) + (" " if kids else ""))


@pytest.fixture(params=[True, False], ids=["children-files", "stat-scan"])
def proc(tmp_path, request):
    p = FakeProc(str(tmp_path), children_files=request.param)
    p.add(os.getpid(), 1)  # the probe for children files looks at the daemon itself
    p.add(1, 0)
    p.add(10, 1)  # P, a subreaper
    p.add(11, 10)  # A, forked before P joined
    return p


def _joined(proc):
    scan = BirthScan(proc.root)
    followed = {10: object()}
    groups = {10: G}
    scan.joined(10, followed, groups.get)
    return scan, followed, groups


def test_a_child_forked_while_the_outside_is_quiet_is_the_groups(proc):
    scan, followed, groups = _joined(proc)
    assert scan.look(followed, groups.get, 0) == []
    proc.add(12, 10)
    assert scan.look(followed, groups.get, 0) == [(12, 10)]


def test_an_orphan_is_never_the_collectors(proc):
    scan, followed, groups = _joined(proc)
    proc.add(13, 11)   # A forks B ...
    proc.remove(11)    # ... and exits: B is P's now
    proc.procs[13]["ppid"] = 10
    proc.sync()
    assert scan.look(followed, groups.get, 0) == []
    assert scan.look(followed, groups.get, 0) == []  # not new any more


def test_an_outside_process_that_ran_makes_a_new_child_uncertain(proc):
    scan, followed, groups = _joined(proc)
    proc.procs[11]["minflt"] = 5  # A ran (it may have forked and reaped)
    proc.add(12, 10)
    assert scan.look(followed, groups.get, 0) == []


def test_a_task_moved_out_of_a_group_makes_a_look_uncertain(proc):
    scan, followed, groups = _joined(proc)
    proc.add(12, 10)
    assert scan.look(followed, groups.get, 1) == []


def test_a_reap_between_two_reads_of_one_look_is_seen(proc, monkeypatch):
    # A (11, outside, forked before P joined) starts C (13) without running itself (a
    # vfork spawn faults nothing in A); C forks D (14) and exits: D is P's now. A reaps
    # C just after the look read A's stat and before it read A's children: A's
    # counters were read unchanged, C is gone from both lists, and D looked like a
    # child P forked in its group. The kernel accounts the reap first
    # (wait_task_zombie(): cmin_flt) and unlinks the child after (release_task()).
    scan, followed, groups = _joined(proc)
    assert scan.look(followed, groups.get, 0) == []
    proc.add(13, 11)
    proc.add(14, 10)  # C exited (a zombie till A reaps it): D went to the subreaper
    real = births.read_stat
    armed = [True]

    def read_stat(root, pid):
        fields = real(root, pid)
        if pid == 11 and armed:
            armed.clear()  # A reaps C now
            proc.procs[11]["minflt"] = 5
            proc.remove(13)
        return fields

    monkeypatch.setattr(births, "read_stat", read_stat)
    assert scan.look(followed, groups.get, 0) == []
    assert not armed
