#!/usr/bin/env python3
"""Send one request to a bottle's control socket and print the reply (docs/supervisor.md).

usage: control-call.py SOCKET CMD [PATTERN]
Frame: 4-byte big-endian length + one JSON object. Exit 0 when the reply says ok, 1 when
not, 2 when there was no reply (refused, closed, timeout).
"""
import json
import socket
import struct
import sys


def main():
    path, cmd = sys.argv[1], sys.argv[2]
    req = {"cmd": cmd}
    if len(sys.argv) > 3:
        req["pattern"] = sys.argv[3]
    body = json.dumps(req).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        s.sendall(struct.pack(">I", len(body)) + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                print("no reply (connection closed)", file=sys.stderr)
                return 2
            data += chunk
    except OSError as e:
        print("no reply: %s" % e, file=sys.stderr)
        return 2
    n = struct.unpack(">I", data[:4])[0]
    reply = json.loads(data[4:4 + n])
    print(json.dumps(reply, sort_keys=True))
    return 0 if reply.get("ok") is True else 1


if __name__ == "__main__":
    sys.exit(main())
