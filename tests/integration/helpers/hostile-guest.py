#!/usr/bin/env python3
"""A fake QEMU whose "guest" is hostile (test-redteam3.sh): it plays a compromised guest
kernel on the microvm backend's two chardev sockets without booting anything.

Used as BOT_BOTTLE_QEMU through a copy with the options written in (QEMU's environment is only
PATH, and QEMU may run in a jail that sees /usr and its run directory only):
  hostile-guest.py --mode MODE [--ready FILE] [QEMU ARGV...]
  hostile-guest.py -version            answers like QEMU 7.2 (the backend's probe)

It connects to the ctl and chan sockets named in the -chardev options, reads the mode line,
says HELLO on the channel, then does MODE:
  streams     open --count TCP_PROXY streams (ids 1..N), count OPEN_OK/RESET answers, write
              "opened OK RESET" to the ready file (if any), then hold them (the proxy closes them
              after its head timeout, 30 s)
Always: reads the channel (answers nothing else), and on "stop" on bottle.ctl writes
"exit 0" there and exits (QEMU exiting).
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time

if "-version" in sys.argv[1:]:
    print("QEMU emulator version 7.2.22 (hostile-guest.py)")
    sys.exit(0)

ap = argparse.ArgumentParser()
ap.add_argument("--mode", required=True)
ap.add_argument("--count", type=int, default=1000)
ap.add_argument("--ready")
args, qemu_argv = ap.parse_known_args()

paths = {}
for i, a in enumerate(qemu_argv):
    if a == "-chardev" and i + 1 < len(qemu_argv):
        opts = dict(o.split("=", 1) for o in qemu_argv[i + 1].split(",")[1:] if "=" in o)
        ident = qemu_argv[i + 1].split(",")[0]
        if "path" in opts and "id" in opts:
            paths[opts["id"]] = opts["path"]
        del ident


def conn(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


ctl = conn(paths["ctl"])
chan = conn(paths["chan"])
mode_line = b""
while not mode_line.endswith(b"\n"):
    b = ctl.recv(1)
    if not b:
        sys.exit(1)
    mode_line += b

T_HELLO, T_OPEN, T_OPEN_OK, T_RESET, T_DATA, T_FIN, T_WINDOW = 1, 2, 3, 4, 5, 6, 7
wlock = threading.Lock()


def frame(t, stream, payload=b""):
    return struct.pack(">BBHI", t, 0, len(payload), stream) + payload


def send(data):
    with wlock:
        chan.sendall(data)


send(frame(T_HELLO, 0, b"BBCH" + bytes([3, 1])))  # version 3 (CHANNEL_VERSION), role guest

answers = {"ok": 0, "reset": 0}
done = threading.Event()


def reader():
    buf = b""
    while True:
        try:
            d = chan.recv(65536)
        except OSError:
            break
        if not d:
            break
        buf += d
        while len(buf) >= 8:
            t, _, ln, sid = struct.unpack(">BBHI", buf[:8])
            if len(buf) < 8 + ln:
                break
            buf = buf[8 + ln:]
            if sid < 0x80000000 and sid != 0:
                if t == T_OPEN_OK:
                    answers["ok"] += 1
                elif t == T_RESET:
                    answers["reset"] += 1
            if answers["ok"] + answers["reset"] >= args.count:
                done.set()
    done.set()


def ctl_watch():
    data = b""
    while True:
        try:
            d = ctl.recv(64)
        except OSError:
            d = b""
        if not d:
            os._exit(0)
        data += d
        if b"stop\n" in data:
            try:
                ctl.sendall(b"exit 0\n")
            except OSError:
                pass
            os._exit(0)


threading.Thread(target=reader, daemon=True).start()
threading.Thread(target=ctl_watch, daemon=True).start()

if args.mode == "streams":
    n = args.count
    send(b"".join(frame(T_OPEN, i, bytes([1])) for i in range(1, n + 1)))
    done.wait(60)
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write("opened %d %d\n" % (answers["ok"], answers["reset"]))
        os.rename(args.ready + ".tmp", args.ready)
    # hold them (the proxy closes them after its 30 s head timeout)
    while True:
        time.sleep(60)
else:
    sys.exit("hostile-guest.py: unknown mode %s" % args.mode)
