"""A child subreaper standing in for pid 1 (tests/test_stress.py).

It makes itself a subreaper (PR_SET_CHILD_SUBREAPER) and forks a *launcher* at once,
so the launcher and everything it starts are forked outside any group the subreaper
is later written into. The launcher answers the test on stdin/stdout, one JSON line
each way:

    ["argv", ...]   -> {"rc": N, "out": "...", "err": "..."}   run, wait, report

Whatever the launcher starts that outlives its parent (a detached daemon, a
background ``sleep``) is reparented to the subreaper, as orphans are to pid 1, and
reaped there. The first line is "ready SUBREAPER LAUNCHER". When the launcher's stdin
closes it exits; the subreaper exits once it has no children left.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36

if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl: {os.strerror(ctypes.get_errno())}")
launcher = os.fork()
if launcher == 0:
    print(f"ready {os.getppid()} {os.getpid()}", flush=True)
    for line in sys.stdin:
        try:
            r = subprocess.run(json.loads(line), stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
            answer = {"rc": r.returncode, "out": r.stdout, "err": r.stderr}
        except (OSError, subprocess.SubprocessError) as e:
            answer = {"rc": -1000, "out": "", "err": str(e)}
        print(json.dumps(answer), flush=True)
    os._exit(0)

# the subreaper itself holds neither end the test talks through
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1):
    os.dup2(null, fd)
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
    except InterruptedError:
        continue
