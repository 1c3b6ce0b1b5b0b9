#!/usr/bin/env python3
"""Another user on the host against the making of a microVM start-up snapshot
(test-redteam-snapshot.sh). Runs as the bottle's user (the uid QEMU runs as when root's
supervisor starts a bottle for it) and, until DEADLINE_S passed or STOPFILE exists, tries:

- the template boot's files in its own bottles' run directories (/tmp/bb-vm.*, which belong to
  it): connects to the template's ctl, chan and QMP sockets before QEMU does, says
  "template" as the guest would and answers QMP as QEMU would; the supervisor then hands it
  the template's file (getfd), into which it writes (HIJACK, WROTE lines); replaces the
  template's initramfs with a file of its own (REPLACED);
- the same for the paths a running template QEMU's command line names (its -initrd and
  sockets), when they are in its own run directories or under SCOPE (the test's directory:
  never another test's files);
- the template QEMU itself: is it running as this user (TEMPLATE-UID), can this user open its
  memory for writing (MEM)?

Every success is a line in LOG; SAW lines say what it looked at (so that a test can tell the
attacker ran). Nothing leaves the machine: unix sockets only.
"""
import array
import glob
import os
import socket
import sys
import threading
import time

log_path, deadline_s, stopfile, scope = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
me = os.getuid()
lock = threading.Lock()


def log(line):
    with lock, open(log_path, "a") as f:
        f.write(line + "\n")


def fake_guest(sock):
    try:
        sock.sendall(b"template\n")
        time.sleep(120)
    except OSError:
        pass


def fake_qmp(sock, where):
    """QEMU's monitor as the supervisor expects it; writes into the fd getfd passes."""
    try:
        sock.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\n')
        buf = b""
        while True:
            data, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
            if not data:
                return
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds = array.array("i")
                    fds.frombytes(payload[: len(payload) - len(payload) % 4])
                    for fd in fds:
                        try:
                            os.write(fd, b"written by uid %d, not a VM\n" % me)
                            log("WROTE into the template's file (fd from getfd) via %s" % where)
                        except OSError as e:
                            log("GOTFD %s but write failed: %s" % (where, e))
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if b"query-migrate" in line:
                    sock.sendall(b'{"return": {"status": "completed"}}\n')
                else:
                    sock.sendall(b'{"return": {}}\n')
    except OSError:
        pass


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return s
    except OSError:
        s.close()
        return None


done = set()


def hijack(ctl, chan, qmp, where):
    key = (ctl, chan, qmp)
    if key in done:
        return
    c = connect(ctl)
    h = connect(chan)
    q = connect(qmp)
    if not (c and h and q):
        for s in (c, h, q):
            if s:
                s.close()
                log("CONNECTED to a template socket in %s" % where)
        return
    done.add(key)
    log("HIJACK the template's ctl, chan and QMP sockets in %s" % where)
    threading.Thread(target=fake_guest, args=(c,), daemon=True).start()
    threading.Thread(target=fake_qmp, args=(q, where), daemon=True).start()


def replace(path, where):
    if path in done:
        return
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        data = None
    tmp = "%s.att%d" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            # the same bytes when they could be read: the boot goes on, with our file
            f.write(data if data is not None else b"")
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    done.add(path)
    log("REPLACED the template's initramfs %s (%s)" % (path, where))


def qemu_paths(argv):
    """-initrd and the chardev socket paths of a QEMU command line."""
    initrd, socks = None, {}
    for i, a in enumerate(argv):
        if a == "-initrd" and i + 1 < len(argv):
            initrd = argv[i + 1]
        if a.startswith("socket,"):
            opts = dict(o.split("=", 1) for o in a.split(",")[1:] if "=" in o)
            if "id" in opts and "path" in opts:
                socks[opts["id"]] = opts["path"]
    return initrd, socks


seen_dirs, seen_tpl = set(), set()
end = time.time() + deadline_s
while time.time() < end and not os.path.exists(stopfile):
    for d in glob.glob("/tmp/bb-vm.*"):
        try:
            if os.stat(d).st_uid != me:
                continue
        except OSError:
            continue
        if d not in seen_dirs:
            seen_dirs.add(d)
            log("SAW a run directory of ours: %s" % d)
        tc, th, tq = d + "/tpl-ctl.sock", d + "/tpl-chan.sock", d + "/qmp.sock"
        if os.path.exists(tq) and os.path.exists(tc) and os.path.exists(th):
            hijack(tc, th, tq, d)
        if os.path.exists(d + "/template.cpio"):
            replace(d + "/template.cpio", d)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
            if not any("bbtemplate=1" in a for a in argv):
                continue
            uid = os.stat("/proc/%s" % pid).st_uid
        except OSError:
            continue
        if pid not in seen_tpl:
            seen_tpl.add(pid)
            log("SAW a template QEMU, pid %s, uid %d" % (pid, uid))
            if uid == me:
                log("TEMPLATE-UID the template QEMU (pid %s) runs as this user (%d)" % (pid, me))
            try:
                fd = os.open("/proc/%s/mem" % pid, os.O_RDWR)
                os.close(fd)
                log("MEM opened the template QEMU's memory (pid %s) for writing" % pid)
            except OSError:
                pass
        initrd, socks = qemu_paths(argv)

        def ours(path):
            if path.startswith(scope + "/"):
                return True
            try:
                return os.stat(os.path.dirname(path)).st_uid == me
            except OSError:
                return False

        socks = {k: v for k, v in socks.items() if ours(v)}
        if initrd and not ours(initrd):
            initrd = None
        if {"ctl", "chan", "qmp"} <= socks.keys():
            hijack(socks["ctl"], socks["chan"], socks["qmp"], "QEMU pid %s" % pid)
        if initrd:
            replace(initrd, "QEMU pid %s" % pid)
    time.sleep(0.002)
