"""A monitoring agent as runtimes write one, against the real kernel API:
eventfd() + open(control file) + write "<efd> <cfd> <args>" to cgroup.event_control,
then block in read(eventfd).

Usage: listener.py GROUP_DIR CONTROL_FILE [ARGS]
Prints "registered" (or "error ERRNO" and exits 1), then "event N" each time the
eventfd fires. On "close" from stdin it closes the eventfd and prints "closed".
"""

import os
import select
import sys


def main():
    group, control = sys.argv[1], sys.argv[2]
    args = sys.argv[3] if len(sys.argv) > 3 else ""
    efd = os.eventfd(0)
    cfd = os.open(os.path.join(group, control), os.O_RDONLY)
    line = f"{efd} {cfd} {args}".rstrip()
    try:
        ec = os.open(os.path.join(group, "cgroup.event_control"), os.O_WRONLY)
        os.write(ec, line.encode())
        os.close(ec)
    except OSError as e:
        print(f"error {e.errno}", flush=True)
        sys.exit(1)
    print("registered", flush=True)
    while True:
        watch = [sys.stdin] + ([efd] if efd is not None else [])
        ready = select.select(watch, [], [])[0]
        if efd is not None and efd in ready:
            print(f"event {os.eventfd_read(efd)}", flush=True)
        if sys.stdin in ready:
            cmd = sys.stdin.readline()
            if not cmd:
                return
            if cmd.strip() == "close":
                os.close(efd)
                efd = None
                print("closed", flush=True)


if __name__ == "__main__":
    main()
