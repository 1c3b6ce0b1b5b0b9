#!/usr/bin/env python3
"""Run a command on a new pseudo-terminal, as if typed at one, for the integration tests.

pty-run.py [--size ROWS COLS] [--when TEXT [--resize ROWS COLS] --send BYTES] [--] COMMAND [ARG...]

Prints everything the command wrote to the terminal, then a line "status=N" (the command's
exit status), and exits 0. --size sets the terminal's window size first. --send writes BYTES
(Python escapes allowed, e.g. '\\x03' for Ctrl-C) to the terminal once TEXT has appeared in the
output (or after 20 s without it); with --resize, the window size changes first (SIGWINCH) and
BYTES follow a second later.
"""
import argparse
import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time

ap = argparse.ArgumentParser()
ap.add_argument("--size", nargs=2, type=int, metavar=("ROWS", "COLS"))
ap.add_argument("--when")
ap.add_argument("--send")
ap.add_argument("--resize", nargs=2, type=int, metavar=("ROWS", "COLS"))
ap.add_argument("command", nargs=argparse.REMAINDER)
a = ap.parse_args()
cmd = a.command[1:] if a.command[:1] == ["--"] else a.command

pid, fd = pty.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
if a.size:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", a.size[0], a.size[1], 0, 0))
out = b""
if a.send is not None:
    deadline = time.time() + 20
    want = (a.when or "").encode()
    while want not in out and time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    if a.resize:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", a.resize[0], a.resize[1], 0, 0))
        end = time.time() + 1
        while time.time() < end:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    out += os.read(fd, 4096)
                except OSError:
                    break
    os.write(fd, a.send.encode().decode("unicode_escape").encode("latin-1"))
while True:
    try:
        d = os.read(fd, 65536)
    except OSError:
        break
    if not d:
        break
    out += d
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("status=%d" % os.waitstatus_to_exitcode(st))
