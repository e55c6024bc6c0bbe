"""A cgroupfs-emu daemon for one benchmark run: mounted in a temporary directory,
unmounted and waited for at the end, whatever happens."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def mounted_daemon(options: str):
    """Yield (mount point, work directory, daemon Popen); *options* may use {work}."""
    work = tempfile.mkdtemp(prefix="cgemu-bench-")
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    log = open(os.path.join(work, "daemon.log"), "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "cgroupfs_emu", "-f", "-o",
                               options.format(work=work), "memory", mnt],
                              stdout=log, stderr=log, cwd=os.path.dirname(HERE))
    try:
        deadline = time.monotonic() + 15
        while not os.path.ismount(mnt):
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("daemon did not start")
            time.sleep(0.05)
        yield mnt, work, daemon
    finally:
        subprocess.run(["fusermount3", "-u", mnt], check=False)
        try:
            daemon.wait(timeout=15)
        except subprocess.TimeoutExpired:
            daemon.kill()  # our own child
            daemon.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
