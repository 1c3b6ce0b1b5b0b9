#!/usr/bin/env python3
"""An HTTP origin on loopback that answers compressed whatever it is asked (stdlib only).

  gzip-origin.py --port P --log FILE [--ready FILE] [--file NAME=PATH ...]

  /gzip-echo          gzip of the request's header fields (an origin that reflects them),
                      Content-Length; /gzip-echo-chunked the same, Transfer-Encoding: chunked
                      in 100-byte chunks; /deflate-echo zlib (HTTP "deflate")
  /gzip-file/NAME     PATH of --file NAME=PATH gzipped (the gzip bytes are also written to
                      PATH.gz for the test to compare)
  /bomb               gzip of 256 MiB of zeros (256 members, about 260 KiB), Content-Encoding:
                      gzip
  /br                 some bytes with Content-Encoding: br
Appends "PATH" to FILE for each request.
"""
import argparse
import gzip
import os
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
FILES = {}
BOMB = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, body, encoding, chunked=False):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Encoding", encoding)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 100):
                part = body[i:i + 100]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_GET(self):
        with open(ARGS.log, "a") as f:
            f.write(self.path + "\n")
        echo = ("".join("%s: %s\n" % (k, v) for k, v in self.headers.items()) +
                "padding " * 200).encode()
        p = self.path
        if p == "/gzip-echo":
            self.reply(gzip.compress(echo), "gzip")
        elif p == "/gzip-echo-chunked":
            self.reply(gzip.compress(echo), "gzip", chunked=True)
        elif p == "/deflate-echo":
            self.reply(zlib.compress(echo), "deflate")
        elif p.startswith("/gzip-file/") and p[11:] in FILES:
            self.reply(FILES[p[11:]], "gzip")
        elif p == "/bomb":
            self.reply(BOMB, "gzip")
        elif p == "/br":
            self.reply(b"\x1b\x03\x00\xf8\xa5\x04\x02", "br")
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


def main():
    global ARGS, BOMB
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready")
    ap.add_argument("--file", action="append", default=[])
    ARGS = ap.parse_args()
    for spec in ARGS.file:
        name, _, path = spec.partition("=")
        with open(path, "rb") as f:
            FILES[name] = gzip.compress(f.read())
        with open(path + ".gz", "wb") as f:
            f.write(FILES[name])
    # 256 gzip members of 1 MiB of zeros each (gzip -c of one file, 256 times): quick to make
    BOMB = gzip.compress(bytes(1 << 20), 9) * 256
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    if ARGS.ready:
        with open(ARGS.ready, "w") as f:
            f.write(str(os.getpid()))
    srv.serve_forever()


if __name__ == "__main__":
    main()
