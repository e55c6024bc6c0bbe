#!/bin/sh
# A cgroup v1 check written the old way, with /sys/fs/cgroup/memory hard-coded: the
# kind of shell test a project keeps next to its Go tests. Run it inside
# `cgemu run -g GROUP`; it makes a child of its own group, sets a limit, moves a
# process in, reads it all back and removes the child.
set -eu
cg=/sys/fs/cgroup/memory
[ "$(stat -f -c %T "$cg")" = cgroupfs ] || { echo "check-paths: $cg is not a cgroup v1 mount" >&2; exit 1; }
own=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
[ -n "$own" ] && [ "$own" != / ] || { echo "check-paths: not in a memory group ($own)" >&2; exit 1; }
grep -qx "$$" "$cg$own/cgroup.procs"
child=$cg$own/check-paths-$$
mkdir "$child"
echo 32M > "$child/memory.limit_in_bytes"
[ "$(cat "$child/memory.limit_in_bytes")" = 33554432 ]
# a process of its own in the child: it joins, then proves it is listed there
sh -c 'echo 0 > "$1/cgroup.procs" && grep -qx "$$" "$1/tasks" && grep -q ":memory:${1#/sys/fs/cgroup/memory}\$" /proc/self/cgroup' _ "$child"
for _ in 1 2 3 4 5 6 7 8 9 10; do  # the emulator learns of the exit just after it
    rmdir "$child" 2>/dev/null && break
    sleep 0.2
done
[ ! -d "$child" ]
echo "check-paths: ok in $own"
