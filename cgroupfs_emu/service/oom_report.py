"""The kernel's OOM report for a memory cgroup, written to the daemon log.

What ``mem_cgroup_out_of_memory()`` prints on a v1 kernel, in the same order and
format (``mem_cgroup_print_oom_meminfo()``, then ``oom_kill_process()`` /
``__oom_kill_process()`` in mm/oom_kill.c)::

    memory: usage 102400kB, limit 102400kB, failcnt 3
    memory+swap: usage 102400kB, limit 9007199254740988kB, failcnt 0
    kmem: usage 0kB, limit 9007199254740988kB, failcnt 0
    oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),oom_memcg=/r,task_memcg=/r,task=python3,pid=4242,uid=0
    Memory cgroup out of memory: Killed process 4242 (python3) total-vm:215000kB, anon-rss:102000kB, file-rss:5000kB, shmem-rss:0kB, UID:0 pgtables:400kB oom_score_adj:0

The victim's numbers are its real ones, read from /proc/PID/status before the kill.
Not printed: the task dump (``oom_kill_allocating_task``/``dump_tasks``) and the
memory.stat dump that follow the meminfo lines on a real kernel.
"""

from __future__ import annotations

from ..units import PAGE_SIZE

_K = PAGE_SIZE // 1024


def task_numbers(proc: str, pid: int) -> dict[str, int | str]:
    """comm, VmSize, RssAnon, RssFile, RssShmem, VmPTE (kB) and the real uid of *pid*."""
    out: dict[str, int | str] = {"comm": "?", "VmSize": 0, "RssAnon": 0, "RssFile": 0,
                                 "RssShmem": 0, "VmPTE": 0, "uid": 0, "oom_score_adj": 0}
    try:
        with open(f"{proc}/{pid}/status", "rb") as f:
            status = f.read().decode(errors="replace")
    except OSError:
        return out
    for line in status.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "Name":
            out["comm"] = value
        elif key == "Uid":
            out["uid"] = int(value.split()[0])
        elif key in out and value.endswith("kB"):
            out[key] = int(value.split()[0])
    try:
        with open(f"{proc}/{pid}/oom_score_adj", "rb") as f:
            out["oom_score_adj"] = int(f.read())
    except (OSError, ValueError):
        pass
    return out


def _counter_line(name: str, c) -> str:
    return f"{name}: usage {c.usage * _K}kB, limit {c.max * _K}kB, failcnt {c.failcnt}"


def report(group, victim_group, pid: int, numbers: dict) -> list[str]:
    """The lines the kernel logs when *group*'s OOM kills *pid* (in *victim_group*)."""
    lines = [_counter_line("memory", group.memory),
             _counter_line("memory+swap", group.memsw),
             _counter_line("kmem", group.kmem)]
    lines.append(f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
                 f"oom_memcg={group.path()},task_memcg={victim_group.path()},"
                 f"task={numbers['comm']},pid={pid},uid={numbers['uid']}")
    lines.append(f"Memory cgroup out of memory: Killed process {pid} ({numbers['comm']}) "
                 f"total-vm:{numbers['VmSize']}kB, anon-rss:{numbers['RssAnon']}kB, "
                 f"file-rss:{numbers['RssFile']}kB, shmem-rss:{numbers['RssShmem']}kB, "
                 f"UID:{numbers['uid']} pgtables:{numbers['VmPTE']}kB "
                 f"oom_score_adj:{numbers['oom_score_adj']}")
    return lines
