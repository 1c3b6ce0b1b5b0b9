#!/usr/bin/env python3
"""DNS test helper (stdlib only), loopback only.

  dns-stub.py serve --port P [--addr 127.0.0.1] --log FILE [--ready FILE (gets our pid)]
      An upstream stub on UDP and TCP: appends every question it is asked to FILE as
      "udp|tcp NAME TYPE" (one line each, flushed at once) and answers from a fixed table:
        private.*     A 10.0.0.5, A 93.184.216.35, A 169.254.169.254
        allprivate.*  A 127.0.0.1
        big.*         TXT, 12 x 256 bytes (truncated over UDP when it does not fit)
        nx.*          NXDOMAIN with an SOA
        fail.*        SERVFAIL
        slow.*        no answer
        AAAA          2606:2800::1
        anything else A 93.184.216.34
  dns-stub.py query --server ADDR:PORT [--tcp] [--edns N] NAME [TYPE]
      Ask one question; prints "rcode=NAME tc=0|1 an=N addrs=a,b" and exits 0 (2 on timeout).
  dns-stub.py raw --server ADDR:PORT HEX
      Send one datagram of raw bytes (malformed input); prints the rcode of a reply, or "none".
"""
import argparse
import os
import socket
import struct
import sys
import threading

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "SVCB": 64, "HTTPS": 65, "AXFR": 252, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def read_name(msg, off):
    """Decode a possibly compressed name; returns (text, offset after it)."""
    labels, end, hops = [], None, 0
    while True:
        c = msg[off]
        if c & 0xC0 == 0xC0:
            if end is None:
                end = off + 2
            off = ((c & 0x3F) << 8) | msg[off + 1]
            hops += 1
            if hops > 64:
                raise ValueError("pointer loop")
            continue
        if c == 0:
            off += 1
            break
        labels.append(msg[off + 1:off + 1 + c].decode("latin-1"))
        off += 1 + c
    return ".".join(labels), (end if end is not None else off)


def rr(rtype, ttl, rdata):
    return b"\xc0\x0c" + struct.pack(">HHIH", rtype, 1, ttl, len(rdata)) + rdata


def answer(query, tcp, log):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    if flags & 0x8000 or qd != 1:
        return None
    name, off = read_name(query, 12)
    qtype, qclass = struct.unpack(">HH", query[off:off + 4])
    qend = off + 4
    udp_size = 512
    if len(query) >= qend + 11 and query[qend] == 0 and query[qend + 1:qend + 3] == b"\x00\x29":
        udp_size = max(512, struct.unpack(">H", query[qend + 3:qend + 5])[0])
    log.write("%s %s %s\n" % ("tcp" if tcp else "udp", name.lower(), TYPE_NAMES.get(qtype, qtype)))
    log.flush()
    first = name.lower().split(".")[0]
    rcode, an, ns, body = 0, [], [], b""
    if first == "slow":
        return None
    if first == "fail":
        rcode = 2
    elif first == "nx":
        rcode = 3
        ns.append(rr(6, 600, b"\0\0" + struct.pack(">IIIII", 1, 2, 3, 4, 30)))
    elif qtype == 28:
        an.append(rr(28, 300, socket.inet_pton(socket.AF_INET6, "2606:2800::1")))
    elif first == "private":
        for ip in ("10.0.0.5", "93.184.216.35", "169.254.169.254"):
            an.append(rr(1, 300, socket.inet_aton(ip)))
    elif first == "allprivate":
        an.append(rr(1, 300, socket.inet_aton("127.0.0.1")))
    elif first == "big":
        for _ in range(12):
            an.append(rr(16, 300, b"\xff" + b"x" * 255))
    elif qtype == 16:
        an.append(rr(16, 300, b"\x05hello"))
    else:
        an.append(rr(1, 300, socket.inet_aton("93.184.216.34")))
    body = b"".join(an) + b"".join(ns)
    rflags = 0x8000 | 0x0080 | (flags & 0x0100) | rcode
    msg = struct.pack(">HHHHHH", qid, rflags, 1, len(an), len(ns), 0) + query[12:qend] + body
    if not tcp and len(msg) > udp_size:
        msg = struct.pack(">HHHHHH", qid, rflags | 0x0200, 1, 0, 0, 0) + query[12:qend]
    return msg


def recv_exact(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def serve(args):
    log = open(args.log, "a")
    lock = threading.Lock()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((args.addr, args.port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((args.addr, args.port))
    tcp.listen(16)

    def udp_loop():
        while True:
            data, peer = udp.recvfrom(65535)
            try:
                with lock:
                    msg = answer(data, False, log)
            except (ValueError, IndexError, struct.error):
                continue
            if msg:
                udp.sendto(msg, peer)

    def tcp_conn(conn):
        with conn:
            while True:
                hdr = recv_exact(conn, 2)
                if not hdr:
                    return
                data = recv_exact(conn, struct.unpack(">H", hdr)[0])
                if data is None:
                    return
                try:
                    with lock:
                        msg = answer(data, True, log)
                except (ValueError, IndexError, struct.error):
                    return
                if msg:
                    conn.sendall(struct.pack(">H", len(msg)) + msg)

    def tcp_loop():
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=tcp_conn, args=(conn,), daemon=True).start()

    threading.Thread(target=udp_loop, daemon=True).start()
    threading.Thread(target=tcp_loop, daemon=True).start()
    if args.ready:
        with open(args.ready, "w") as f:  # our own pid: a wrapper (pyenv shim) may sit above us
            f.write("%d\n" % os.getpid())
    threading.Event().wait()


def parse_server(s):
    host, port = s.rsplit(":", 1)
    if host not in ("localhost",) and not (host.startswith("127.") or host == "[::1]"):
        sys.exit("refusing a non-loopback server: " + s)
    return host.strip("[]"), int(port)


def summarize(resp):
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", resp[:12])
    off = 12
    for _ in range(qd):
        _, off = read_name(resp, off)
        off += 4
    addrs = []
    for _ in range(an):
        _, off = read_name(resp, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", resp[off:off + 10])
        off += 10
        if rtype == 1 and rdlen == 4:
            addrs.append(socket.inet_ntoa(resp[off:off + 4]))
        elif rtype == 28 and rdlen == 16:
            addrs.append(socket.inet_ntop(socket.AF_INET6, resp[off:off + 16]))
        off += rdlen
    return "rcode=%s tc=%d an=%d ar=%d addrs=%s len=%d" % (
        RCODES.get(flags & 0xF, flags & 0xF), 1 if flags & 0x0200 else 0, an, ar,
        ",".join(addrs), len(resp))


def query(args):
    host, port = parse_server(args.server)
    qtype = TYPES.get(args.type.upper()) or int(args.type)
    qid = 0x5A5A
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 1 if args.edns else 0)
    msg += encode_name(args.name) + struct.pack(">HH", qtype, 1)
    if args.edns:
        msg += b"\0" + struct.pack(">HHIH", 41, args.edns, 0, 0)
    try:
        if args.tcp:
            with socket.create_connection((host, port), timeout=args.timeout) as s:
                s.sendall(struct.pack(">H", len(msg)) + msg)
                n = recv_exact(s, 2)
                resp = recv_exact(s, struct.unpack(">H", n)[0]) if n else None
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(args.timeout)
                s.sendto(msg, (host, port))
                resp, _ = s.recvfrom(65535)
    except (socket.timeout, ConnectionError, OSError) as e:
        print("error=%s" % e.__class__.__name__)
        return 2
    if not resp or struct.unpack(">H", resp[:2])[0] != qid:
        print("error=bad-reply")
        return 2
    print(summarize(resp))
    return 0


def raw(args):
    host, port = parse_server(args.server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(args.timeout)
        s.sendto(bytes.fromhex(args.hex), (host, port))
        try:
            resp, _ = s.recvfrom(65535)
        except socket.timeout:
            print("none")
            return 0
    print(RCODES.get(resp[3] & 0xF, resp[3] & 0xF) if len(resp) >= 4 else "short")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--addr", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--log", required=True)
    s.add_argument("--ready")
    q = sub.add_parser("query")
    q.add_argument("--server", required=True)
    q.add_argument("--tcp", action="store_true")
    q.add_argument("--edns", type=int, default=0)
    q.add_argument("--timeout", type=float, default=3.0)
    q.add_argument("name")
    q.add_argument("type", nargs="?", default="A")
    r = sub.add_parser("raw")
    r.add_argument("--server", required=True)
    r.add_argument("--timeout", type=float, default=0.5)
    r.add_argument("hex")
    args = ap.parse_args()
    if args.cmd == "serve":
        if not args.addr.startswith("127."):
            sys.exit("loopback only")
        serve(args)
        return 0
    return query(args) if args.cmd == "query" else raw(args)


if __name__ == "__main__":
    sys.exit(main())
