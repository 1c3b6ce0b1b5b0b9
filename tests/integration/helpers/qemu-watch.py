#!/usr/bin/env python3
"""qemu-watch.py UID PATTERN ACTION: for test-redteam-snapshot.sh, plays a process that acts
on a QEMU as soon as it appears. Watches /proc every 2 ms (a restore's handshake, or the time
a restoring QEMU keeps its state fd, lasts a fraction of a second) for a QEMU running as UID
(the test's own: never another test's) with PATTERN in one of its arguments, for 120 s.

  kill    SIGKILL the first one; prints its pid
  reopen  open its /proc/PID/fd/N (N from -incoming fd:N) for writing, as a compromised QEMU
          could; prints "PID N RESULT" (RESULT "writable" or the errno's name) for the first
          QEMU whose fd it reached (one that had closed it already is passed over)

Exit 0 when it acted, 1 when nothing came within 120 s."""
import errno
import os
import signal
import sys
import time

uid, pat, action = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
seen, end = set(), time.time() + 120
while time.time() < end:
    for p in os.listdir("/proc"):
        if not p.isdigit() or p in seen:
            continue
        try:
            if os.stat("/proc/" + p).st_uid != uid:
                continue
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"qemu-system" not in argv[0] or not any(pat in a for a in argv):
            continue
        seen.add(p)
        if action == "kill":
            try:
                os.kill(int(p), signal.SIGKILL)
            except OSError:
                continue
            print(p, flush=True)
            sys.exit(0)
        fds = [a for a in argv if a.startswith(b"fd:")]
        if not fds:
            continue
        n = fds[0][3:].decode()
        try:
            os.close(os.open("/proc/%s/fd/%s" % (p, n), os.O_RDWR))
            r = "writable"
        except OSError as e:
            r = errno.errorcode.get(e.errno, str(e.errno))
        if r != "ENOENT":
            print(p, n, r, flush=True)
            sys.exit(0)
    time.sleep(0.002)
sys.exit(1)
