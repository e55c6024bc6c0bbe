#!/bin/sh
# How tests/data/tasks_threads.linux-6.18.txt was recorded (run once, by hand, as root, on
# a real Linux 6.18 x86_64 machine; the tests never run this script).
#
# A private, named cgroup v1 hierarchy ("none,name=...") is mounted in a new mount
# namespace, so the host's own cgroup mounts are never touched. One multi-threaded
# process started here (a leader L and threads T1..T3) is moved about through `tasks`
# and `cgroup.procs`; after each step the lines of both files of both groups that name
# the probe are printed, with its ids replaced by their labels in the order the kernel
# listed them (the root lists every task of the host, so only the probe's are kept).
# The probe is the only process written anywhere; it is killed and the child group
# removed before the hierarchy is unmounted.
set -eu
MNT=$(mktemp -d)
unshare -m sh -eu -c '
    mount --make-rprivate /
    mount -t cgroup -o none,name=cgemu_tasks_probe cgroup "$1"
    cd "$1"
    mkfifo /tmp/cgemu_tasks_probe.in
    python3 -u -c "
import sys, threading
cmds = {}
def worker(name):
    ev = threading.Event(); cmds[name] = ev; ev.wait()
    t = threading.Thread(target=worker, args=(name + \"+\",), daemon=True); t.start()
    while (name + \"+\") not in cmds: pass
    print(name + \"+\", t.native_id, flush=True)
    threading.Event().wait()
import os
print(\"L\", os.getpid(), flush=True)
for n in (\"T1\", \"T2\", \"T3\"):
    t = threading.Thread(target=worker, args=(n,), daemon=True); t.start()
    while n not in cmds: pass
    print(n, t.native_id, flush=True)
for line in open(\"/tmp/cgemu_tasks_probe.in\"):
    cmds[line.strip()].set()
" > /tmp/cgemu_tasks_probe.ids &
    PROBE=$!
    exec 9>/tmp/cgemu_tasks_probe.in
    trap "kill \$PROBE 2>/dev/null; wait \$PROBE 2>/dev/null; cd \"\$1\"; rmdir child 2>/dev/null; cd /; umount \"\$1\"; rm -f /tmp/cgemu_tasks_probe.in /tmp/cgemu_tasks_probe.ids" EXIT
    while [ "$(wc -l < /tmp/cgemu_tasks_probe.ids)" -lt 4 ]; do sleep 0.1; done
    id() { awk -v n="$1" "\$1 == n { print \$2 }" /tmp/cgemu_tasks_probe.ids; }
    show() {
        echo "## $1"
        for f in root/tasks root/cgroup.procs child/tasks child/cgroup.procs; do
            d=${f%%/*}; [ "$d" = root ] && p=. || p=child
            printf "%s:" "$f"
            while read -r x; do
                label=$(awk -v x="$x" "\$2 == x { print \$1 }" /tmp/cgemu_tasks_probe.ids)
                [ -n "$label" ] && printf " %s" "$label"
            done < "$p/${f#*/}"
            echo
        done
    }
    mkdir child
    echo "# labels: L is the thread-group leader, T1..T3 its threads, X+ a thread X created"
    show "start: all in root"
    echo "$(id T1)" > child/tasks
    show "echo T1 > child/tasks"
    echo T1 >&9
    while ! grep -q "^T1+ " /tmp/cgemu_tasks_probe.ids; do sleep 0.1; done
    show "T1 creates a thread T1+"
    echo T2 >&9
    while ! grep -q "^T2+ " /tmp/cgemu_tasks_probe.ids; do sleep 0.1; done
    show "T2 (in root) creates a thread T2+"
    echo "$(id L)" > child/tasks
    show "echo L > child/tasks"
    echo "$(id L)" > tasks
    echo "$(id T1)" > tasks
    echo "$(id T1+)" > tasks
    show "L, T1 and T1+ written back to root/tasks"
    echo "$(id T2)" > child/cgroup.procs
    show "echo T2 > child/cgroup.procs (a thread id, not the leader)"
    echo "$(id L)" > cgroup.procs
    show "echo L > root/cgroup.procs"
' sh "$MNT"
rmdir "$MNT"
