#!/bin/sh
# How tests/data/kernfs_order.linux-6.18.txt was recorded (run once, by hand, as root, on a
# real Linux 6.18 x86_64 machine; the tests never run this script).
#
# It mounts a private, named cgroup v1 hierarchy ("none,name=...") in a new mount
# namespace, so the host's own cgroup mounts are never touched. A named hierarchy has only
# the cgroup core files; to learn where the kernel puts the memory controller's file names,
# the script creates child groups *named* like those files: kernfs orders siblings by
# kernfs_name_hash(name) then name, whatever their type, so a directory called
# "memory.stat" sits exactly where the file would.
#
# Output: one block per directory, each line "<d_off> <name>" as getdents64 returned them
# (d_off of an entry is the position of the next one: kernfs's hash, INT_MAX at the end).
# Needs tests/helpers/getdents.c compiled to $GETDENTS.
set -eu
GETDENTS=${GETDENTS:?path to the compiled tests/helpers/getdents.c}
MEMORY_NAMES="$(cd "$(dirname "$0")" && pwd)/memory_controller_names.linux-6.18.txt"
MNT=$(mktemp -d)
unshare -m sh -eu -c '
    mount --make-rprivate /
    mount -t cgroup -o none,name=cgemu_order_probe cgroup "$1"
    cd "$1"
    # a hierarchy that still has groups outlives its mount: always remove them
    trap "cd \"\$1\"; for d in G/* M/*; do [ -d \"\$d\" ] && rmdir \"\$d\"; done; rmdir G M 2>/dev/null; cd /; umount \"\$1\"" EXIT
    echo "# root"; "$2" .
    mkdir G
    for n in child1 zeta a tasks2 x9; do mkdir "G/$n"; done
    echo "# G (child groups among the files)"; "$2" G
    mkdir M
    while read -r n; do mkdir "M/$n"; done < "$3"
    echo "# M (groups named like the memory controller files)"; "$2" M
' sh "$MNT" "$GETDENTS" "$MEMORY_NAMES"
rmdir "$MNT"
