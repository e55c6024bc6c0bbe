#!/bin/sh
# How tests/data/cgroup_statfs.linux-6.18.txt was recorded (run once, by hand, as root, on
# a real Linux 6.18 x86_64 machine; the tests never run this script).
#
# It mounts a private, named cgroup v1 hierarchy ("none,name=...") in a new mount
# namespace, so the host's own cgroup mounts are never touched, and prints what statfs(2)
# says of its root and of a child group: f_type from coreutils (`stat -f %t`; Python's
# statvfs has no f_type), the rest from statvfs(3) as Python reads it. kernfs_statfs()
# is simple_statfs() (PAGE_SIZE blocks, NAME_MAX, no block or inode counts) plus an
# f_fsid taken from the superblock's random s_uuid, so f_fsid differs at every mount.
# f_flag is the mount's own flags (ST_VALID and, here, relatime).
set -eu
MNT=$(mktemp -d)
unshare -m --propagation private sh -eu -c '
    mount -t cgroup -o none,name=cgemu_statfs_probe cgroup "$1"
    trap "rmdir \"\$1/child\" 2>/dev/null; umount \"\$1\"" EXIT
    mkdir "$1/child"
    for d in "$1" "$1/child"; do
        echo "# ${d#$1}/"
        echo "f_type=0x$(stat -f -c %t "$d")"
        python3 -c "
import os, sys
s = os.statvfs(sys.argv[1])
for k in (\"f_bsize\", \"f_frsize\", \"f_blocks\", \"f_bfree\", \"f_bavail\", \"f_files\",
          \"f_ffree\", \"f_favail\", \"f_namemax\"):
    print(f\"{k}={getattr(s, k)}\")
print(f\"f_flag=0x{s.f_flag:x}\")
print(f\"f_fsid=0x{s.f_fsid:x}\")" "$d"
    done
' sh "$MNT"
rmdir "$MNT"
