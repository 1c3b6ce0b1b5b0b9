#!/usr/bin/env python3
"""A hostile origin for test-redteam4 (plain HTTP, loopback only).

  redteam4-origin.py --port P --value V --log FILE --ready FILE

V is the credential's real value the origin "knows" (as an origin that reflects what it was
sent would). Every request head is logged ("req METHOD PATH" then "hdr NAME: VALUE" lines),
and so is what arrives after a 101 ("frame BYTES", repr). Paths:

  WebSocket (answered with a 101 whatever the request asked for):
    /ws-split-long    V's first 20 bytes, 1.5 s pause, the rest (a reflection split in time)
    /ws-split-b64     the same with base64("x:" + V)
    /ws-frag          V in two frames of one message (the first ending after 15 bytes of V), 1.5
                      s apart, a ping between them
    /ws-split-short   V's first 5 bytes, 2.5 s pause, the rest
    /ws-eof-long      V's first 20 bytes, then the origin closes
    /ws-stream        "m1 hello\\n", 2.5 s, "m2 " + V[:4] (ends in a short beginning), 2.5 s,
                      "m3 end\\n", close: an interactive stream, timed by the client
    /ws-echo          echoes what it receives (and logs it)
    /ws-ext           a 101 choosing permessage-deflate (not offered), a compressed frame of V
  HTTP:
    /te-gzip          200, Transfer-Encoding: gzip, chunked; the data gzip("auth=" + V)
    /te-gzip-close    200, Transfer-Encoding: gzip (read until close), gzip("auth=" + V)
    /ce-twice         Content-Encoding: gzip, gzip (one field), gzip(gzip(V))
    /ce-id-gzip       Content-Encoding: identity, gzip (one field), gzip(V)
    /ce-split-members two gzip members, V split across them
    /ce-fname         gzip whose header's file name (FNAME) is V; the data is not
    /ce-dict          Content-Encoding: deflate, a zlib stream with a preset dictionary
    /ce-truncated     gzip of V and 64 KiB more, cut off after 2/3 (the origin closes)
    /empty            200 with Content-Length: 0, the connection kept open for 6 s
    anything else     200 "ok\\n" (the head is in the log)
"""
import argparse
import base64
import gzip
import time
import zlib

from originlib import log, log_fields, read_head, serve_forever, set_log

V = b""


def chunked(data):
    out = b""
    for i in range(0, len(data), 7):
        piece = data[i:i + 7]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def ws_101(conn):
    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")


def echo(conn, rest):
    if rest:
        log("frame " + repr(rest))
        conn.sendall(rest)
    conn.settimeout(30)
    while True:
        d = conn.recv(65536)
        if not d:
            break
        log("frame " + repr(d))
        conn.sendall(d)


def http(conn, head_extra, body):
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + head_extra + b"Connection: close\r\n\r\n" + body)


def serve(conn):
    try:
        got = read_head(conn)
        if got is None:
            return
        lines, rest = got
        method, path = lines[0].split(" ")[0], lines[0].split(" ")[1]
        log(f"req {method} {path}")
        log_fields(lines[1:])
        if rest:
            log("after-head " + repr(rest))
        if path == "/ws-ext":
            # a 101 with permessage-deflate the client never offered, then a compressed text
            # frame (RSV1) holding the value
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: x\r\n"
                         b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
            z = zlib.compressobj(wbits=-15)
            payload = (z.compress(b"auth=" + V) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]
            conn.sendall(bytes([0xC1, len(payload)]) + payload)
            time.sleep(1)
            return
        if path.startswith("/ws-"):
            ws_101(conn)
            time.sleep(0.2)
            if path == "/ws-split-long":
                conn.sendall(b"reflect: " + V[:20])
                time.sleep(1.5)
                conn.sendall(V[20:] + b"\n")
            elif path == "/ws-split-b64":
                b = base64.b64encode(b"x:" + V)
                conn.sendall(b"basic: " + b[:24])
                time.sleep(1.5)
                conn.sendall(b[24:] + b"\n")
            elif path == "/ws-frag":
                first = b"reflect: " + V[:15]
                conn.sendall(bytes([0x01, len(first)]) + first)  # text, not final
                time.sleep(1.5)
                rest = V[15:] + b"\n"
                conn.sendall(bytes([0x89, 4]) + b"ping" + bytes([0x80, len(rest)]) + rest)
            elif path == "/ws-split-short":
                conn.sendall(b"reflect: " + V[:5])
                time.sleep(2.5)
                conn.sendall(V[5:] + b"\n")
            elif path == "/ws-eof-long":
                conn.sendall(b"reflect: " + V[:20])
                time.sleep(0.3)
                return
            elif path == "/ws-stream":
                conn.sendall(b"m1 hello\n")
                time.sleep(2.5)
                conn.sendall(b"m2 " + V[:4])
                time.sleep(2.5)
                conn.sendall(b"m3 end\n")
                time.sleep(0.3)
                return
            echo(conn, rest)
            return
        if path == "/te-gzip":
            http(conn, b"Transfer-Encoding: gzip, chunked\r\n", chunked(gzip.compress(b"auth=" + V)))
        elif path == "/te-gzip-close":
            http(conn, b"Transfer-Encoding: gzip\r\n", gzip.compress(b"auth=" + V))
        elif path == "/ce-twice":
            body = gzip.compress(gzip.compress(b"auth=" + V))
            http(conn, b"Content-Encoding: gzip, gzip\r\nContent-Length: %d\r\n" % len(body), body)
        elif path == "/ce-id-gzip":
            body = gzip.compress(b"auth=" + V)
            http(conn, b"Content-Encoding: identity, gzip\r\nContent-Length: %d\r\n" % len(body),
                 body)
        elif path == "/ce-split-members":
            body = gzip.compress(b"auth=" + V[:10]) + gzip.compress(V[10:] + b"\n")
            http(conn, b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(body), body)
        elif path == "/ce-fname":
            import io
            buf = io.BytesIO()
            with gzip.GzipFile(filename=V.decode("latin-1"), mode="wb", fileobj=buf) as g:
                g.write(b"nothing to see\n")
            body = buf.getvalue()
            http(conn, b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(body), body)
        elif path == "/ce-dict":
            z = zlib.compressobj(zdict=b"auth=" + V)
            body = z.compress(b"auth=" + V + b"\n") + z.flush()
            http(conn, b"Content-Encoding: deflate\r\nContent-Length: %d\r\n" % len(body), body)
        elif path == "/ce-truncated":
            import os
            full = gzip.compress(b"auth=" + V + b"\n" + os.urandom(65536))
            body = full[:len(full) * 2 // 3]
            http(conn, b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(full), body)
        elif path == "/empty":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            time.sleep(6)
        else:
            http(conn, b"Content-Length: 3\r\n", b"ok\n")
    except (OSError, ValueError, IndexError) as e:
        log("error " + repr(e))
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    global V
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--value", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready", required=True)
    a = ap.parse_args()
    set_log(a.log)
    V = a.value.encode()
    serve_forever(a.port, a.ready, serve)


if __name__ == "__main__":
    main()
