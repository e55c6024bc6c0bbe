"""A bare protocol client for the reliability tests, driven line by line on stdin.

Commands, each answered with one line on stdout:
  join PATH        write our pid into PATH (a tasks file)     -> ok
  send TEXT        send TEXT and a newline on the socket      -> ok
  recv             one reply line from the socket             -> the line | eof
  close            close the socket, keep running             -> ok
  exit             leave at once, whatever is in flight       (no answer)
Usage: rawclient.py SOCKET
"""

import os
import socket
import sys


def main():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sys.argv[1])
    f = sock.makefile("rb")
    print("ready", os.getpid(), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.rstrip("\n").partition(" ")
        if cmd == "join":
            with open(arg, "w") as t:
                t.write(str(os.getpid()))
            out = "ok"
        elif cmd == "send":
            sock.sendall(arg.encode("utf-8", "surrogateescape").replace(b"\\n", b"\n") + b"\n")
            out = "ok"
        elif cmd == "recv":
            reply = f.readline()
            out = reply.decode("ascii", "backslashreplace").rstrip("\n") if reply else "eof"
        elif cmd == "close":
            f.close()
            sock.close()
            out = "ok"
        elif cmd == "exit":
            os._exit(0)
        else:
            out = f"error bad command {cmd}"
        print(out, flush=True)


if __name__ == "__main__":
    main()
