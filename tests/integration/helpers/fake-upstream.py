#!/usr/bin/env python3
"""Fake upstreams for integration tests and benchmarks (loopback only).

  fake-upstream.py --http PORT [--https PORT --cert C --key K] [--dns PORT --zone name=ip ...]
                   [--log FILE] [--ready FILE]

HTTP/HTTPS origin (HTTP/1.1, keep-alive):
  GET /hello        -> 200 "hello from fake upstream\n"
  GET /headers      -> 200, the request head as received (to check what the proxy forwarded)
  GET /size/N       -> 200 with N bytes of 'x' (Content-Length)
  GET /chunked/N    -> 200 chunked, N bytes in 1000-byte chunks
  GET /close/N      -> 200 with N bytes, no length, then close
  POST /echo        -> 200 echoing the body (Content-Length or chunked)
  GET /static/PATH  -> 200 with the file PATH under --static DIR (query ignored; e.g. a dumb
                       HTTP git repository, an npm registry), 404 when missing or outside
                       DIR; with --static-token T, /static/private/... is 401 without
                       "Authorization: Bearer T"
  POST /v1/messages -> with --messages-key K: a minimal Anthropic Messages API (the reply text
                       is "bottled reply: ok"; an SSE stream when the body asks for one), 401
                       unless "x-api-key: K" or "Authorization: Bearer K" came with it;
                       with it, GET /api/hello and /v1/oauth/hello (Claude Code's start-up
                       connectivity checks) -> 200
DNS stub (UDP+TCP): answers A/AAAA for --zone entries (name=ip, several allowed), NXDOMAIN
  otherwise. Every query name is appended to the log as "dns <qname> <qtype>".
Every HTTP request is logged as "http <method> <host header> <path>"; with --log-headers each
of its header fields follows as "hdr <name>: <value>".
"""
import argparse
import json
import os
import socket
import socketserver
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler

LOG_LOCK = threading.Lock()
LOG_FILE = None
STATIC_DIR = None
STATIC_TOKEN = None
LOG_HEADERS = False
MESSAGES_KEY = None


def log(line):
    if not LOG_FILE:
        return
    with LOG_LOCK:
        with open(LOG_FILE, "a") as f:
            f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # small writes (head, then body) must not wait on Nagle + the peer's delayed ACK (40 ms)
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, body, extra=None):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def do_GET(self):
        log(f"http {self.command} {self.headers.get('Host', '-')} {self.path}")
        if LOG_HEADERS:
            for k, v in self.headers.items():
                log(f"hdr {k}: {v}")
        p = self.path
        if p == "/hello":
            self._send(200, b"hello from fake upstream\n")
        elif p == "/headers":
            head = self.requestline + "\r\n" + str(self.headers)
            self._send(200, head.encode())
        elif p.startswith("/size/"):
            self._send(200, b"x" * int(p[6:]))
        elif p.startswith("/chunked/"):
            n = int(p[9:])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while n > 0:
                k = min(n, 1000)
                self.wfile.write(b"%x\r\n" % k + b"y" * k + b"\r\n")
                n -= k
            self.wfile.write(b"0\r\n\r\n")
        elif p.startswith("/static/") and STATIC_DIR:
            if (STATIC_TOKEN and p.startswith("/static/private/")
                    and self.headers.get("Authorization") != "Bearer " + STATIC_TOKEN):
                self._send(401, b"unauthorized\n")
                return
            f = os.path.realpath(os.path.join(STATIC_DIR, p[8:].split("?")[0]))
            if f.startswith(STATIC_DIR + os.sep) and os.path.isfile(f):
                with open(f, "rb") as fh:
                    self._send(200, fh.read(), {"Content-Type": "application/octet-stream"})
            else:
                self._send(404, b"not found\n")
        elif MESSAGES_KEY and p.split("?")[0] in ("/api/hello", "/v1/oauth/hello"):
            self._send(200, b'{"message":"hello"}', {"Content-Type": "application/json"})
        elif p.startswith("/close/"):
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"z" * int(p[7:]))
            self.close_connection = True
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        log(f"http {self.command} {self.headers.get('Host', '-')} {self.path}")
        if LOG_HEADERS:
            for k, v in self.headers.items():
                log(f"hdr {k}: {v}")
        body = self._read_body()
        if MESSAGES_KEY and self.path.split("?")[0].startswith("/v1/messages"):
            self._messages(body)
            return
        self._send(200, body)

    def _messages(self, body):
        auth = self.headers.get("Authorization", "")
        if MESSAGES_KEY not in (self.headers.get("x-api-key"), auth[7:] if auth.startswith("Bearer ") else None):
            self._send(401, json.dumps({"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}}).encode(),
                {"Content-Type": "application/json"})
            return
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        text = "bottled reply: ok"
        msg = {"id": "msg_bb1", "type": "message", "role": "assistant",
               "model": req.get("model", "claude-test"), "content": [], "stop_reason": None,
               "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 4}}
        if not req.get("stream"):
            msg.update(content=[{"type": "text", "text": text}], stop_reason="end_turn")
            self._send(200, json.dumps(msg).encode(), {"Content-Type": "application/json"})
            return
        events = [
            ("message_start", {"type": "message_start", "message": msg}),
            ("content_block_start", {"type": "content_block_start", "index": 0,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                     "delta": {"type": "text_delta", "text": text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                               "stop_sequence": None}, "usage": {"output_tokens": 4}}),
            ("message_stop", {"type": "message_stop"}),
        ]
        sse = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)
        self._send(200, sse.encode(), {"Content-Type": "text/event-stream"})


class TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


class TLSServer(TCPServer):
    def __init__(self, addr, handler, ctx):
        self.ctx = ctx
        super().__init__(addr, handler)

    def get_request(self):
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True), addr


def dns_answer(query, zone):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    if qd != 1:
        return None
    pos = 12
    labels = []
    while pos < len(query):
        n = query[pos]
        pos += 1
        if n == 0:
            break
        labels.append(query[pos:pos + n].decode("ascii", "replace"))
        pos += n
    qtype, qclass = struct.unpack("!HH", query[pos:pos + 4])
    question = query[12:pos + 4]
    name = ".".join(labels).lower()
    log(f"dns {name} {qtype}")
    answers = []
    for ip in zone.get(name, []):
        if qtype == 1 and ":" not in ip:
            answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip))
        elif qtype == 28 and ":" in ip:
            answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 16) +
                           socket.inet_pton(socket.AF_INET6, ip))
    rcode = 0 if name in zone else 3
    hdr = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100) | rcode, 1, len(answers), 0, 0)
    return hdr + question + b"".join(answers)


def serve_dns_udp(port, zone):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    while True:
        data, addr = s.recvfrom(4096)
        resp = dns_answer(data, zone)
        if resp:
            s.sendto(resp, addr)


class DNSTCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        f = self.request.makefile("rb")
        while True:
            hdr = f.read(2)
            if len(hdr) < 2:
                return
            q = f.read(struct.unpack("!H", hdr)[0])
            resp = dns_answer(q, self.server.zone)
            if resp:
                self.request.sendall(struct.pack("!H", len(resp)) + resp)


def main():
    global LOG_FILE, STATIC_DIR, STATIC_TOKEN, LOG_HEADERS, MESSAGES_KEY
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", type=int)
    ap.add_argument("--https", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--dns", type=int)
    ap.add_argument("--zone", action="append", default=[])
    ap.add_argument("--log")
    ap.add_argument("--ready")
    ap.add_argument("--static")
    ap.add_argument("--static-token")
    ap.add_argument("--log-headers", action="store_true")
    ap.add_argument("--messages-key")
    a = ap.parse_args()
    LOG_FILE = a.log
    STATIC_DIR = os.path.realpath(a.static) if a.static else None
    STATIC_TOKEN = a.static_token
    LOG_HEADERS = a.log_headers
    MESSAGES_KEY = a.messages_key
    zone = {}
    for z in a.zone:
        name, ip = z.split("=", 1)
        zone.setdefault(name.lower().rstrip("."), []).append(ip)
    threads = []
    if a.http:
        srv = TCPServer(("127.0.0.1", a.http), Handler)
        threads.append(threading.Thread(target=srv.serve_forever, daemon=True))
    if a.https:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        srv2 = TLSServer(("127.0.0.1", a.https), Handler, ctx)
        threads.append(threading.Thread(target=srv2.serve_forever, daemon=True))
    if a.dns:
        threads.append(threading.Thread(target=serve_dns_udp, args=(a.dns, zone), daemon=True))
        dsrv = TCPServer(("127.0.0.1", a.dns), DNSTCPHandler)
        dsrv.zone = zone
        threads.append(threading.Thread(target=dsrv.serve_forever, daemon=True))
    for t in threads:
        t.start()
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    threading.Event().wait()


if __name__ == "__main__":
    main()
