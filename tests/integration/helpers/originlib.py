"""What the hand-written origins in this folder share (loopback only): the log file, reading a
request head, and the accept loop. ws-origin.py and redteam4-origin.py import it (Python puts
the script's own folder first on sys.path).
"""
import socket
import ssl
import threading

_LOG = None
_LOCK = threading.Lock()


def set_log(path):
    global _LOG
    _LOG = path


def log(line):
    """Appends a line to the log file (one writer at a time: each connection has a thread)."""
    with _LOCK:
        with open(_LOG, "a") as f:
            f.write(line + "\n")


def read_head(conn):
    """Reads up to the end of a request head: (its lines, decoded as latin-1, and the bytes
    that came after it), or None when the peer closes first."""
    data = b""
    while b"\r\n\r\n" not in data:
        d = conn.recv(4096)
        if not d:
            return None
        data += d
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1").split("\r\n"), rest


def log_fields(lines):
    """Logs the head's fields ("hdr NAME: VALUE", in order) and returns them by lower-case
    name. A line without a colon raises ValueError (after the fields before it are logged)."""
    hdrs = {}
    for l in lines:
        k, v = l.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
        log(f"hdr {k.strip()}: {v.strip()}")
    return hdrs


def serve_forever(port, ready, serve, ctx=None):
    """Listens on 127.0.0.1:port, writes "ready" to the file ready, and runs serve(conn) in a
    thread for each connection (after a TLS handshake with ctx when one is given)."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(64)
    with open(ready, "w") as f:
        f.write("ready\n")
    while True:
        c, _ = s.accept()
        if ctx:
            try:
                c = ctx.wrap_socket(c, server_side=True)
            except (OSError, ssl.SSLError):
                c.close()
                continue
        threading.Thread(target=serve, args=(c,), daemon=True).start()
