#!/usr/bin/env python3
"""Send one request through a proxy in pieces, so the proxy reads it in several reads.

  slowpost.py HOST PORT URL [--chunked] [--header 'Name: value'] [--delay S] PIECE...
Each PIECE (backslash escapes decoded) is the next piece of the body: with --chunked each is
one HTTP chunk, else the body is their concatenation with a Content-Length; the pieces are
written separately, --delay seconds apart (default 0.05). Prints the response (latin-1)."""
import socket
import sys
import time


def main():
    args = sys.argv[1:]
    host, port, url = args[0], int(args[1]), args[2]
    args = args[3:]
    chunked, delay, headers, pieces = False, 0.05, [], []
    while args:
        a = args.pop(0)
        if a == "--chunked":
            chunked = True
        elif a == "--delay":
            delay = float(args.pop(0))
        elif a == "--header":
            headers.append(args.pop(0))
        else:
            pieces.append(a.encode("latin-1").decode("unicode_escape").encode("latin-1"))
    hostport = url.split("/")[2]
    head = f"POST {url} HTTP/1.1\r\nHost: {hostport}\r\n"
    for h in headers:
        head += h + "\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
    else:
        head += f"Content-Length: {sum(len(p) for p in pieces)}\r\n"
    head += "Connection: close\r\n\r\n"
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(head.encode())
    try:
        for p in pieces:
            time.sleep(delay)
            s.sendall(b"%x\r\n" % len(p) + p + b"\r\n" if chunked else p)
        if chunked:
            time.sleep(delay)
            s.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the proxy refused and closed mid-body
    out = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except OSError:
        pass
    sys.stdout.write(out.decode("latin-1"))


main()
