#!/usr/bin/env python3
"""A git smart-HTTP origin over HTTPS that demands HTTP Basic authentication (stdlib + git).

  git-origin.py --port P --cert PEM --key PEM --root DIR --token TOKEN --log FILE
                [--ready FILE]

Serves the bare repositories under DIR with `git http-backend` (CGI) on 127.0.0.1:P. Every
request must carry `Authorization: Basic base64(USER:TOKEN)` (any user, the password exactly
TOKEN), else 401 with `WWW-Authenticate: Basic realm="git"`, as GitHub and GitLab do. Appends
"METHOD PATH auth=ok|missing|bad:<the decoded password>" to FILE for each request.
/headers answers with the request's header fields (an origin that reflects what it got).
"""
import argparse
import base64
import os
import ssl
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None


def log(line):
    with open(ARGS.log, "a") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def auth(self):
        h = self.headers.get("Authorization", "")
        if not h.lower().startswith("basic "):
            return "missing"
        try:
            user, _, pw = base64.b64decode(h[6:].strip()).decode().partition(":")
        except Exception:
            return "bad:undecodable"
        return "ok" if pw == ARGS.token else "bad:" + pw

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self):
        a = self.auth()
        log("%s %s auth=%s" % (self.command, self.path, a))
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if a != "ok":
            self.reply(401, b"authentication required\n",
                       [("WWW-Authenticate", 'Basic realm="git"')])
            return
        path, _, query = self.path.partition("?")
        if path == "/headers":
            self.reply(200, str(self.headers).encode())
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": ARGS.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "git",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, timeout=60).stdout
        head, _, rest = out.partition(b"\r\n\r\n")
        if not rest and b"\r\n" not in head:
            head, _, rest = out.partition(b"\n\n")
        code, hdrs = 200, []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                code = int(v.split()[0])
            elif k:
                hdrs.append((k, v.strip()))
        self.reply(code, rest, hdrs)

    do_GET = do_POST = handle_any


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--ready")
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ARGS.cert, ARGS.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if ARGS.ready:
        with open(ARGS.ready, "w") as f:
            f.write(str(os.getpid()))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
