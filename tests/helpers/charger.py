"""A real client process for the tests, driven line by line on stdin.

Commands (one per line), each answered with one line on stdout:
  join PATH                   write our pid into PATH (a tasks file)  -> ok
  charge KIND BYTES           -> ok PAGES | refused MESSAGE
  uncharge KIND BYTES         -> ok PAGES | error ERRNO MESSAGE
  slab_alloc CACHE SIZE N     -> ok SLAB_PAGES | refused MESSAGE
  slab_free CACHE SIZE N      -> ok SLAB_PAGES
  flush                       -> ok            (settle the stock)
  events                      -> ok EVICTED_BYTES NAMES...
  status                      -> ok key=value ...
  raw LINE                    send a protocol line as is -> ok REPLY
Usage: charger.py SOCKET_OR_MOUNT [--no-stock]
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from cgroupfs_emu.client import ChargeRefused, Client  # noqa: E402


def main():
    where = sys.argv[1]
    use_stock = "--no-stock" not in sys.argv
    if os.path.isdir(where):
        client = Client.connect(where, use_stock=use_stock)
    else:
        client = Client.connect(socket_path=where, use_stock=use_stock)
    print("ready", os.getpid(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        try:
            if cmd == "join":
                with open(args[0], "w") as f:
                    f.write(str(os.getpid()))
                out = "ok"
            elif cmd == "charge":
                out = f"ok {client.charge(int(args[1]), args[0])}"
            elif cmd == "uncharge":
                out = f"ok {client.uncharge(int(args[1]), args[0])}"
            elif cmd == "slab_alloc":
                out = f"ok {client.slab_alloc(args[0], int(args[1]), int(args[2]))['slab_pages']}"
            elif cmd == "slab_free":
                out = f"ok {client.slab_free(args[0], int(args[1]), int(args[2]))['slab_pages']}"
            elif cmd == "flush":
                client.flush()
                out = "ok"
            elif cmd == "events":
                client.poll_events(0.2)
                out = f"ok {client.evicted_bytes} " + " ".join(e["event"] for e in client.events)
            elif cmd == "status":
                out = "ok " + " ".join(f"{k}={v}" for k, v in client.status().items())
            elif cmd == "raw":
                client.sock.sendall(line[4:].encode())
                out = "ok " + client._read_line()
            else:
                out = f"error bad command {cmd}"
        except ChargeRefused as e:
            out = f"refused {e.strerror}"
        except OSError as e:
            out = f"error {e.errno} {e.strerror}"
        # a group name need not be UTF-8: keep our stdout decodable
        print(out.encode("utf-8", "backslashreplace").decode(), flush=True)
    client.close()


if __name__ == "__main__":
    main()
