"""Run inside a private mount namespace (unshare -m) by tests/test_daemon_log.py.

    abort_detached.py WORKDIR MODE       MODE: syslog (WORKDIR/log.sock is /dev/log)
                                               file   (no /dev/log; WORKDIR/varlog is
                                                       /var/log)

Gives the namespace a /dev of its own (the host's devices the daemon needs, plus
/dev/log or not), starts a detached daemon on WORKDIR/m without -o log=, aborts its
FUSE connection through fusectl and waits for the daemon to end. Prints one JSON
object: the daemon's pid, what its caller saw on stdout and stderr, and whether the
mount was left behind. Whatever happens, the daemon (started here) is gone at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

work, mode = sys.argv[1], sys.argv[2]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


sh("mount", "--make-rprivate", "/")
dev = os.path.join(work, "dev")
os.mkdir(dev)
sh("mount", "-t", "tmpfs", "tmpfs", dev)
for node in ("null", "zero", "full", "random", "urandom", "fuse", "tty"):
    if os.path.exists(f"/dev/{node}"):
        open(os.path.join(dev, node), "w").close()
        sh("mount", "--bind", f"/dev/{node}", os.path.join(dev, node))
os.symlink("/proc/self/fd", os.path.join(dev, "fd"))
if mode == "syslog":
    open(os.path.join(dev, "log"), "w").close()
    sh("mount", "--bind", os.path.join(work, "log.sock"), os.path.join(dev, "log"))
else:
    varlog = os.path.join(work, "varlog")
    os.mkdir(varlog)
    sh("mount", "--bind", varlog, "/var/log")
sh("mount", "--rbind", dev, "/dev")
conns = "/sys/fs/fuse/connections"
if not os.listdir(conns):  # fusectl is not mounted on every host
    sh("mount", "-t", "fusectl", "fusectl", conns)

mnt = os.path.join(work, "m")
os.mkdir(mnt)
env = {k: v for k, v in os.environ.items() if k != "XDG_STATE_HOME"}
r = subprocess.run(["cgroupfs_emu", "memory", mnt], capture_output=True, text=True,
                   timeout=60, env=env)
report = {"rc": r.returncode, "stdout": r.stdout, "stderr": r.stderr}
pid = None
try:
    pid = int(os.getxattr(mnt, "user.cgroupfs_emu.pid"))
    report["pid"] = pid
    st_dev = os.stat(mnt).st_dev
    with open(os.path.join(conns, str(os.minor(st_dev)), "abort"), "w") as f:
        f.write("1")
    report["exited"] = wait(lambda: not os.path.exists(f"/proc/{pid}"))
    report["left_mounted"] = mounted(mnt)
finally:
    if pid is not None and os.path.exists(f"/proc/{pid}"):
        os.kill(pid, 9)  # the daemon this script started
    if mounted(mnt):
        subprocess.run(["umount", "-l", mnt], check=False)
print(json.dumps(report))
