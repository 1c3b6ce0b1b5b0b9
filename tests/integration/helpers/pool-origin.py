#!/usr/bin/env python3
"""A TLS origin for the upstream-pool tests (stdlib only, loopback only).

  pool-origin.py --port P --cert PEM --key PEM --log FILE [--ready FILE]

One thread per connection. Appends to FILE, one line each, flushed at once:
  accept C SNI          a TLS connection C (numbered from 1) was accepted, for the name SNI
  req C METHOD PATH HOST BODYLEN   a request read on C
  eof C                 C ended (the peer closed it, or we did)
Paths:
  /hello        200 "hello", keep-alive
  /close-keep   200 with "Connection: close", but the socket is left open (a proxy that pools
                it anyway would reuse it)
  /idle-close   200, keep-alive; then the connection is closed 0.3 s later, idle
  /die-next     200, keep-alive; the next request on the connection is read and logged, then
                the connection is closed without an answer (the race a pool must survive)
  /big          200 with a 4 MiB body (a client that stops reading leaves it unread)
  anything else 200 "ok"
"""
import argparse
import socket
import ssl
import threading
import time

LOCK = threading.Lock()
LOG = None
COUNT = [0]


def log(line):
    with LOCK:
        with open(LOG, "a") as f:
            f.write(line + "\n")


def read_head(sock, buf):
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None, buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def respond(sock, body, extra=""):
    sock.sendall(("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
                  % (len(body), extra)).encode() + body)


def serve(raw, ctx):
    with LOCK:
        COUNT[0] += 1
        cid = COUNT[0]
    names = {}

    def sni(sslobj, name, _ctx):
        names["sni"] = name
    c = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
    try:
        c.context.sni_callback = sni
        c.do_handshake()
    except (OSError, ssl.SSLError):
        raw.close()
        return
    log("accept %d %s" % (cid, names.get("sni", "-")))
    buf = b""
    die = False
    try:
        while True:
            head, buf = read_head(c, buf)
            if head is None:
                break
            lines = head.split("\r\n")
            method, path = lines[0].split(" ")[:2]
            fields = {}
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                fields[k.strip().lower()] = v.strip()
            n = int(fields.get("content-length", "0"))
            while len(buf) < n:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
            buf = buf[n:]
            log("req %d %s %s %s %d" % (cid, method, path, fields.get("host", "-"), n))
            if die:
                break
            if path == "/close-keep":
                respond(c, b"closing\n", "Connection: close\r\n")
            elif path == "/idle-close":
                respond(c, b"hello\n")
                time.sleep(0.3)
                break
            elif path == "/die-next":
                respond(c, b"hello\n")
                die = True
            elif path == "/big":
                respond(c, b"x" * (4 << 20))
            elif path == "/hello":
                respond(c, b"hello\n")
            else:
                respond(c, b"ok\n")
    except (OSError, ssl.SSLError):
        pass
    log("eof %d" % cid)
    try:
        c.close()
    except OSError:
        pass


def main():
    global LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready")
    a = ap.parse_args()
    LOG = a.log
    open(LOG, "w").close()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(64)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    while True:
        raw, _ = ls.accept()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        threading.Thread(target=serve, args=(raw, ctx), daemon=True).start()


if __name__ == "__main__":
    main()
