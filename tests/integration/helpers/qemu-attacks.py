# A compromised QEMU (tests/integration/test-qemu-jail.sh): run as the microvm backend's QEMU
# (BOT_BOTTLE_QEMU) behind a header the test writes (CONF = {...}), it does what a hostile
# guest that took over QEMU through a virtio or 9p bug would try, and writes one line per try
# to jail-report in the workspace (through its share, as QEMU would write there):
# "attack NAME: blocked (why)" or "attack NAME: DONE"; "control NAME: ..." lines
# are what QEMU must still be able to do. Never QEMU: it exits 1 before connecting anywhere.
# Everything it manages to create on the host it removes again (the test also checks).
import ctypes
import os
import socket
import stat
import struct
import sys

CONF = globals().get("CONF", {})
libc = ctypes.CDLL(None, use_errno=True)


def report(kind, name, fn):
    try:
        r = fn()
        line = f"{kind} {name}: " + (
            "blocked (no effect)" if r is False else f"DONE {r if r not in (None, True) else ''}")
    except OSError as e:
        line = f"{kind} {name}: blocked ({e.strerror})"
    with open(f"{ws}/jail-report", "a") as f:
        f.write(line.rstrip() + "\n")


def c_call(fn, *args):
    if fn(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


if len(sys.argv) > 1 and sys.argv[1] == "-version":
    print("QEMU emulator version 7.2.0")
    sys.exit(0)

# Its cgroups at its first instruction (cgroup v1: QEMU's child joins them before exec)
first_cgroups = open("/proc/self/cgroup").read()

# The shares, as QEMU got them: -fsdev local,id=fsN,path=...
shares = []
for i, a in enumerate(sys.argv):
    if i > 0 and sys.argv[i - 1] == "-fsdev":
        opts = dict(o.split("=", 1) for o in a.split(",") if "=" in o)
        shares.append(opts["path"])
ws, ro = shares[1], shares[2] if len(shares) > 2 else None
run_dir = os.path.dirname(sys.argv[sys.argv.index("-initrd") + 1])


def read(path):
    with open(path, "rb") as f:
        return f"read {len(f.read(64))} bytes"


def write_new(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    os.unlink(path)


def suid_create():
    p = f"{ws}/suid-new"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o4755)
    os.close(fd)
    mode = os.stat(p).st_mode
    os.unlink(p)
    return bool(mode & stat.S_ISUID) and "mode %o" % mode


def chmod_suid():
    os.chmod(f"{ws}/victim", 0o4755)
    mode = os.stat(f"{ws}/victim").st_mode
    os.chmod(f"{ws}/victim", 0o644)
    return bool(mode & stat.S_ISUID) and "mode %o" % mode


def fcap():
    # VFS_CAP_REVISION_2 | effective, CAP_DAC_OVERRIDE permitted
    os.setxattr(f"{ws}/victim", "security.capability", struct.pack("<IIIII", 0x02000001, 2, 0, 0, 0))
    os.removexattr(f"{ws}/victim", "security.capability")


def mknod():
    p = f"{ws}/mem"
    os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 1))
    os.unlink(p)


def chown():
    os.chown(f"{ws}/victim", 1234, 1234)
    st = os.stat(f"{ws}/victim")
    os.chown(f"{ws}/victim", CONF["uid"], CONF["uid"])
    return st.st_uid == 1234 and "uid 1234"


def loopback():
    s = socket.create_connection(("127.0.0.1", CONF["port"]), timeout=3)
    s.close()


def other_tmp():
    # (this fake's own directory is there too: the jail binds QEMU's binary, a /usr path
    # for the real one)
    mine = (run_dir + "/", os.path.abspath(sys.argv[0]))
    others = [e for e in os.listdir("/tmp") if not any(m.startswith(f"/tmp/{e}/") for m in mine)]
    return bool(others) and f"{len(others)} entries"


def processes():
    pids = [e for e in os.listdir("/proc") if e.isdigit()]
    return len(pids) > 1 and f"{len(pids)} processes"


def caps():
    for line in open("/proc/self/status"):
        if line.startswith("CapEff:"):
            v = int(line.split()[1], 16)
            return v != 0 and f"CapEff {v:x}"


def usr_write():
    write_new(f"/usr/.bb-jail-test-{os.getpid()}")


def unshare():
    c_call(libc.unshare, 0x10000000)  # CLONE_NEWUSER


def mount():
    c_call(libc.mount, b"none", b"/tmp", b"tmpfs", 0, None)


report("control", "ws-write", lambda: write_new(f"{ws}/new-file"))
report("control", "chmod-755", lambda: os.chmod(f"{ws}/victim", 0o755))
report("control", "cgroup-at-exec", lambda: [
    l.split(":", 2)[2] for l in first_cgroups.splitlines()
    if l.split(":", 2)[1] in ("pids", "memory", "")][0])
report("control", "run-dir", lambda: os.stat(f"{run_dir}/ctl.sock") and None)
report("attack", "shadow", lambda: read("/etc/shadow"))
report("attack", "passwd", lambda: read("/etc/passwd"))
report("attack", "home", lambda: f"{len(os.listdir(CONF['home']))} entries")
report("attack", "outside", lambda: read(CONF["outside"]))
report("attack", "state", lambda: f"{len(os.listdir(CONF['state']))} entries")
report("attack", "other-tmp", other_tmp)
report("attack", "loopback", loopback)
report("attack", "processes", processes)
report("attack", "caps", caps)
report("attack", "usr-write", usr_write)
report("attack", "ro-mount-write", lambda: write_new(f"{ro}/new-file"))
report("attack", "chmod-suid", chmod_suid)
report("attack", "create-suid", suid_create)
report("attack", "fcap", fcap)
report("attack", "mknod", mknod)
report("attack", "chown", chown)
report("attack", "unshare", unshare)
report("attack", "mount", mount)
report("attack", "dev-mem", lambda: read("/dev/mem"))
report("attack", "proc-sys", lambda: read("/proc/sys/kernel/osrelease"))
sys.exit(1)
