#!/usr/bin/env python3
"""Send raw bytes to HOST:PORT and print what comes back (tests of malformed input).

  rawreq.py HOST PORT [--timeout S] [--hold S]   request bytes on stdin, backslash escapes
                                                 (\\r \\n \\x00 ...) are decoded
Prints the response bytes (decoded latin-1) to stdout; exits 0 when the peer answered or
closed, 3 on timeout with no answer.
"""
import socket
import sys
import time


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    timeout = 5.0
    hold = 0.0
    args = sys.argv[3:]
    while args:
        if args[0] == "--timeout":
            timeout = float(args[1])
            args = args[2:]
        elif args[0] == "--hold":
            hold = float(args[1])
            args = args[2:]
        else:
            sys.exit("bad argument " + args[0])
    data = sys.stdin.buffer.read().decode("latin-1").encode("latin-1").decode("unicode_escape").encode("latin-1")
    s = socket.create_connection((host, port), timeout=timeout)
    s.sendall(data)
    if hold:
        time.sleep(hold)
    out = b""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        if not out:
            sys.stdout.write("(timeout)\n")
            sys.exit(3)
    except ConnectionResetError:
        pass
    sys.stdout.write(out.decode("latin-1"))


if __name__ == "__main__":
    main()
