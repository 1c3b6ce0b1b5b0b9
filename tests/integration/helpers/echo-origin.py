#!/usr/bin/env python3
"""An honest origin that reflects the request's X-Api-Key back, in the ways real servers do
(test-redteam2.sh; loopback only). Raw sockets, so the framing is exactly what is written.

  echo-origin.py --port PORT --ready FILE

  GET /stream?split=N   200 Content-Length, body "key=VALUE\n", written in two parts: the first
                        N bytes of the body, a 0.5 s pause (a server that streams), the rest
  GET /gzip             200 "key=VALUE\n", gzip-encoded when the request accepts gzip
  GET /hints            103 Early Hints with "Link: </k?VALUE>", then 200 "ok\n"
  GET /range            "key=VALUE\n", honouring "Range: bytes=A-B" with 206
  GET /record           remembers the request's X-Api-Key; GET /last returns it (any request)
  GET /sse              no reflection: chunked events with pauses, the last one unterminated
  GET /always-gzip      no reflection, gzip-encoded whatever the request accepts
"""
import argparse
import gzip
import socket
import threading
import time


def read_head(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            return None, {}
        if line in (b"\r\n", b"\n"):
            break
        lines.append(line.decode("latin-1").rstrip("\r\n"))
    if not lines:
        return None, {}
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return lines[0], hdrs


LAST = {"key": ""}


def serve(conn):
    f = conn.makefile("rb")
    while True:
        reqline, h = read_head(f)
        if reqline is None:
            break
        path = reqline.split(" ")[1]
        body = ("key=" + h.get("x-api-key", "") + "\n").encode()
        if path.startswith("/stream"):
            split = int(path.split("split=")[1]) if "split=" in path else len(body) // 2
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:split])
            time.sleep(0.5)
            conn.sendall(body[split:])
        elif path.startswith("/record"):
            LAST["key"] = h.get("x-api-key", "")
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif path.startswith("/last"):
            last = ("last=" + LAST["key"] + "\n").encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(last) + last)
        elif path.startswith("/sse"):
            # no reflection: events in small chunks with pauses, the last without a newline
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for part in (b"data: one\n\n", b"data: two", b"\n\n", b"tail-without-newline"):
                conn.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                time.sleep(0.2)
            conn.sendall(b"0\r\n\r\n")
        elif path.startswith("/always-gzip"):
            z = gzip.compress(b"nothing secret\n")
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d"
                         b"\r\n\r\n" % len(z) + z)
        elif path.startswith("/gzip"):
            if "gzip" in h.get("accept-encoding", ""):
                z = gzip.compress(body)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d"
                             b"\r\n\r\n" % len(z) + z)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        elif path.startswith("/hints"):
            link = "Link: </k?" + h.get("x-api-key", "") + ">\r\n"
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\n" + link.encode() + b"\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        elif path.startswith("/range"):
            r = h.get("range", "")
            if r.startswith("bytes="):
                a, _, b = r[6:].partition("-")
                part = body[int(a):int(b) + 1]
                conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/%d\r\n"
                             b"Content-Length: %d\r\n\r\n" % (int(a), int(a) + len(part) - 1,
                                                           len(body), len(part)) + part)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", a.port))
    s.listen(64)
    if a.ready:
        with open(a.ready, "w") as fh:
            fh.write("ready\n")
    while True:
        c, _ = s.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    main()
