#!/usr/bin/env python3
"""A WebSocket-upgrade origin for the proxy's upgrade tests (loopback only).

  ws-origin.py --port P [--cert C --key K] --log FILE --ready FILE

A GET with `Connection: Upgrade` and `Upgrade: websocket` gets a 101 (Sec-WebSocket-Accept
computed as RFC 6455 says); the request head is logged ("hdr NAME: VALUE" lines after "req
PATH"). After the 101 the connection echoes what it receives (the proxy relays bytes; framing
is the endpoints' business). /reflect sends the request's Authorization value back first;
/no-upgrade answers 200 without switching; /other-protocol switches to "h2c".
"""
import argparse
import base64
import hashlib
import ssl

from originlib import log, log_fields, read_head, serve_forever, set_log

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC11B85"


def serve(conn):
    try:
        got = read_head(conn)
        if got is None:
            return
        lines, rest = got
        path = lines[0].split(" ")[1]
        log(f"req {path}")
        hdrs = log_fields(lines[1:])
        if path == "/no-upgrade":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nno\n")
            return
        key = hdrs.get("sec-websocket-key", "")
        acc = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        proto = "h2c" if path == "/other-protocol" else "websocket"
        conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: %s\r\n\r\n" % (proto, acc)).encode())
        if path == "/reflect":
            conn.sendall(("you sent " + hdrs.get("authorization", "") + "\n").encode())
        if rest:
            conn.sendall(rest)
        while True:
            d = conn.recv(65536)
            if not d:
                break
            conn.sendall(d)
    except (OSError, ValueError, IndexError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    set_log(a.log)
    ctx = None
    if a.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
    serve_forever(a.port, a.ready, serve, ctx)


if __name__ == "__main__":
    main()
