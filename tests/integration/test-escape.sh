#!/usr/bin/env bash
# Host escapes through the workspace and through socket families (docs/namespace.md,
# "seccomp"), from inside a real bottle run as root with `bot-bottle run --backend namespace`:
#  - every way to leave a setuid/setgid file or a file capability in the host's workspace
#    (chmod, install, cp -p, tar xpf, mknod, open/openat/O_TMPFILE, fchmodat2, mkdir, setgid
#    directories, chown, setxattr security.capability, hard links, rename) fails with the
#    expected errno, and afterwards `find -perm /6000` and `getcap -r` find nothing;
#  - run through sudo (SUDO_UID/SUDO_GID), the files the bottle writes are the invoking user's;
#  - socket families outside AF_UNIX/AF_INET/AF_INET6/NETLINK_ROUTE fail (AF_VSOCK reaches the
#    hypervisor: only the socket is created, nothing connects).
# Nothing leaves the machine: the daemon's upstream DNS is a stub on loopback.
source "$(dirname "$0")/lib.sh"

need_root "escape tests" "they need root (a bottle whose uid 0 is host root is the case tested)"
command -v getcap >/dev/null && command -v setcap >/dev/null ||
    { echo "Bail out! getcap/setcap are needed (libcap2-bin; scripts/install-deps.sh)"; exit 1; }

dns_stub

WS=$T/ws
mkdir -p "$WS"
# The root case: no sudo variables, whatever ran this test.
run() {
    (cd "$WS" && env -u SUDO_UID -u SUDO_GID -u SUDO_USER timeout 120 "$BB" run \
        --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@")
}

# --- setuid/setgid bits and file capabilities
SUID_BIN=/usr/bin/passwd
[ -u "$SUID_BIN" ] || SUID_BIN=$(find /usr/bin -maxdepth 1 -type f -perm -4000 | head -1)
[ -n "$SUID_BIN" ] || { echo "Bail out! no setuid binary in /usr/bin to hard-link"; exit 1; }
# A tar archive holding a setuid file, a setgid file and a setgid directory.
mkdir -p "$T/tarsrc/sgid-dir"
cp /usr/bin/id "$T/tarsrc/tar-suid"
cp /usr/bin/id "$T/tarsrc/tar-sgid"
chmod 4755 "$T/tarsrc/tar-suid"
chmod 2755 "$T/tarsrc/tar-sgid" "$T/tarsrc/sgid-dir"
tar cf "$WS/suid.tar" -C "$T/tarsrc" .

cat >"$WS/escape.py" <<'PY'
import ctypes, errno, os, stat, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
suid_bin = sys.argv[1]

def attempt(label, fn):
    try:
        fn()
        r = "OK"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print("%s=%s" % (label, r))

def raw(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a
                                         for a in args])
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r

open("plain", "w").write("x")
os.chmod("plain", 0o755)
attempt("chmod-4755", lambda: os.chmod("plain", 0o4755))
attempt("chmod-2755", lambda: os.chmod("plain", 0o2755))
attempt("chmod-6755", lambda: os.chmod("plain", 0o6755))
fd = os.open("plain", os.O_RDONLY)
attempt("fchmod-4755", lambda: os.fchmod(fd, 0o4755))
attempt("fchmodat2-4755", lambda: raw(452, -100, b"plain", 0o4755, 0))
attempt("open-creat-4755", lambda: os.close(os.open("o-creat", os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt("open-creat-2755", lambda: os.close(os.open("o-creat2", os.O_CREAT | os.O_WRONLY, 0o2755)))
# syscall numbers below: x86_64 (creat only exists there; the rest match the generic table)
if os.uname().machine == "x86_64":
    attempt("creat-4755", lambda: os.close(raw(85, b"creat-x", 0o4755)))
def tmpfile_link():
    t = os.open(".", os.O_TMPFILE | os.O_RDWR, 0o4755)
    os.link("/proc/self/fd/%d" % t, "tmpfile-linked", follow_symlinks=True)
attempt("open-tmpfile-4755", tmpfile_link)
# openat2: its mode is in a struct; refused with ENOSYS so libc uses openat
how = (ctypes.c_uint64 * 3)(os.O_CREAT | os.O_WRONLY, 0o4755, 0)
attempt("openat2", lambda: raw(437, -100, b"o2", ctypes.byref(how), 24))
attempt("mknod-reg-4755", lambda: os.mknod("mknod-x", stat.S_IFREG | 0o4755))
attempt("mknod-fifo-2755", lambda: os.mknod("mknod-p", stat.S_IFIFO | 0o2755))
attempt("mkdir-2755", lambda: os.mkdir("sgid-d", 0o2755))
os.mkdir("d", 0o755)
attempt("chmod-dir-g+s", lambda: os.chmod("d", 0o2755))
# chown: no other id is mapped (EINVAL); a group change then setgid is still refused
attempt("chown-other-uid", lambda: os.chown("plain", 1, -1))
attempt("chown-own-group", lambda: os.chown("plain", -1, os.getgid()))
attempt("chmod-after-chown", lambda: os.chmod("plain", 0o2711))
# file capabilities: a v2 security.capability blob for cap_setuid
cap = bytes.fromhex("01000002" "80000000" "00000000" "00000000" "00000000")
attempt("setxattr-capability", lambda: os.setxattr("plain", "security.capability", cap))
# an existing setuid binary: hard link (another mount), rename from /tmp (tmpfs)
attempt("link-suid-bin", lambda: os.link(suid_bin, "linked-suid"))
open("/tmp/t", "w").write("x")
attempt("rename-from-tmp", lambda: os.rename("/tmp/t", "renamed"))
attempt("io_uring_setup", lambda: raw(425, 1, ctypes.create_string_buffer(120)))
PY

cat >"$WS/escape.sh" <<'SH'
cp /usr/bin/id suid-id; chmod 4755 suid-id; echo "chmod rc=$?"
install -m 4755 /usr/bin/id inst-id; echo "install rc=$?"
cp -p "$1" cp-p; echo "cp-p rc=$?"
mkdir tarout; tar xpf suid.tar -C tarout; echo "tar rc=$?"
mknod -m 4755 fifo p; echo "mknod rc=$?"
mkdir -m 2755 mkdir-m; echo "mkdir-m rc=$?"
mkdir gs; chmod g+s gs; echo "chmod-g+s rc=$?"
cp /usr/bin/id capped; setcap cap_net_raw+ep capped; echo "setcap rc=$?"
id -u
SH

out=$(run -- /bin/sh "$WS/escape.sh" "$SUID_BIN" 2>"$T/sh.err")
diag "$out"
for tool in chmod install cp-p tar mknod mkdir-m chmod-g+s setcap; do
    is "setuid: '$tool' inside the bottle fails" "$(grep -c "^$tool rc=[1-9]" <<<"$out")" 1
done
is "setuid: the shell ran as uid 0 (the case where the bits would be host root's)" \
    "$(tail -n 1 <<<"$out")" 0
like "setuid: the tools report 'Operation not permitted'" "$(cat "$T/sh.err")" \
    "Operation not permitted"
check "setuid: the files were still created (the attempts ran)" \
    test -f "$WS/suid-id" -a -f "$WS/inst-id" -a -f "$WS/tarout/tar-suid" -a -f "$WS/capped"

out=$(run -- "$PY" "$WS/escape.py" "$SUID_BIN" 2>&1)
diag "$out"
want() { # want LABEL RESULT
    local got
    got=$(sed -n "s/^$1=//p" <<<"$out")
    is "setuid: $1 -> $2" "$got" "$2"
}
for l in chmod-4755 chmod-2755 chmod-6755 fchmod-4755 fchmodat2-4755 open-creat-4755 \
    open-creat-2755 open-tmpfile-4755 mknod-reg-4755 mknod-fifo-2755 mkdir-2755 \
    chmod-dir-g+s chmod-after-chown io_uring_setup; do
    want "$l" EPERM
done
[ "$(uname -m)" = x86_64 ] && want creat-4755 EPERM
want openat2 ENOSYS
want chown-other-uid EINVAL
want chown-own-group OK
want setxattr-capability EPERM
want link-suid-bin EXDEV
want rename-from-tmp EXDEV

is "setuid: find WORKSPACE -perm /6000 on the host finds nothing" \
    "$(find "$WS" -perm /6000 | grep -v '^$')" ""
is "setuid: getcap -r WORKSPACE on the host finds nothing" "$(getcap -r "$WS" 2>/dev/null)" ""
is "root without sudo: what the bottle writes is host root's" "$(stat -c %u:%g "$WS/plain")" "0:0"
# Control: the host itself can do what the bottle was refused, so the checks above can fail.
cp /usr/bin/id "$T/control"; chmod 4755 "$T/control"; setcap cap_net_raw+ep "$T/control"
check "setuid (control): find and getcap see a setuid, capable file made on the host" \
    bash -c "[ -n \"\$(find '$T/control' -perm /6000)\" ] && getcap '$T/control' | grep -q cap_net_raw"

# --- sudo: the bottle runs as the invoking user, and what it writes is theirs
SWS=$T/sudo-ws
mkdir -p "$SWS"
chown 65534:65534 "$SWS"
out=$(cd "$SWS" && env SUDO_UID=65534 SUDO_GID=65534 SUDO_USER=nobody timeout 120 "$BB" run \
    --backend namespace --upstream-dns "127.0.0.1:$DNS" -- sh -c \
    'echo written >file; id -u; id -g; echo "user=$(id -un) home=$HOME"; cp /usr/bin/id s; chmod 4755 s; echo "chmod rc=$?"' 2>&1)
diag "$out"
is "sudo: the command runs as SUDO_UID/SUDO_GID" "$(head -n 2 <<<"$out" | tr '\n' ' ')" \
    "65534 65534 "
like "sudo: with that user's name and home" "$out" "user=$(getent passwd 65534 | cut -d: -f1) home=$(getent passwd 65534 | cut -d: -f6)"
is "sudo: the file the bottle wrote is owned by 65534 on the host" \
    "$(stat -c %u:%g "$SWS/file" 2>&1)" "65534:65534"
like "sudo: the seccomp rules hold there too" "$out" "chmod rc=[1-9]"
is "sudo: nothing setuid in that workspace" "$(find "$SWS" -perm /6000)" ""
out=$(cd "$SWS" && env SUDO_UID=x SUDO_GID=65534 timeout 60 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -- true 2>&1; echo "rc=$?")
like "sudo: a SUDO_UID that is not a number is refused (not run as root)" "$out" \
    "SUDO_UID 'x'.*rc=125"

# --- socket families: a list, everything else refused
cat >"$WS/sockets.py" <<'PY'
import errno, socket
def attempt(label, fam, typ, proto=0, pair=False):
    try:
        if pair:
            a, b = socket.socketpair(fam, typ, proto); a.close(); b.close()
        else:
            socket.socket(fam, typ, proto).close()
        r = "OK"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print("%s=%s" % (label, r))
SS, DG, RAW = socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW
# refused (numbers where python lacks the constant)
attempt("AF_VSOCK", 40, SS)
attempt("AF_PACKET", 17, RAW)
attempt("AF_ALG", 38, 5)
attempt("AF_BLUETOOTH", 31, SS)
attempt("AF_KEY", 15, RAW, 2)
attempt("AF_XDP", 44, RAW)
attempt("AF_TIPC", 30, DG)
attempt("AF_RDS", 21, 5)
attempt("AF_CAN", 29, RAW)
attempt("AF_QIPCRTR", 42, DG)
attempt("AF_SMC", 43, SS)
attempt("AF_MCTP", 45, DG)
attempt("AF_APPLETALK", 5, DG)
attempt("AF_UNSPEC", 0, SS)
attempt("NETLINK_AUDIT", 16, RAW, 9)
attempt("NETLINK_KOBJECT_UEVENT", 16, RAW, 15)
attempt("NETLINK_SOCK_DIAG", 16, RAW, 4)
attempt("NETLINK_GENERIC", 16, RAW, 16)
attempt("NETLINK_NETFILTER", 16, RAW, 12)
attempt("socketpair-AF_VSOCK", 40, SS, pair=True)
attempt("socketpair-AF_INET", 2, SS, pair=True)
# allowed
attempt("AF_INET", 2, SS)
attempt("AF_INET-dgram", 2, DG)
attempt("AF_INET6", 10, SS)
attempt("AF_UNIX", 1, SS)
attempt("socketpair-AF_UNIX", 1, SS, pair=True)
attempt("NETLINK_ROUTE", 16, RAW, 0)
PY
out=$(run -- "$PY" "$WS/sockets.py" 2>&1)
diag "$out"
fam() { # fam LABEL RESULT
    is "sockets: $1 -> $2" "$(sed -n "s/^$1=//p" <<<"$out")" "$2"
}
for l in AF_VSOCK AF_PACKET AF_ALG AF_BLUETOOTH AF_KEY AF_XDP AF_TIPC AF_RDS AF_CAN AF_QIPCRTR \
    AF_SMC AF_MCTP AF_APPLETALK AF_UNSPEC NETLINK_AUDIT NETLINK_KOBJECT_UEVENT \
    NETLINK_SOCK_DIAG NETLINK_GENERIC NETLINK_NETFILTER socketpair-AF_VSOCK socketpair-AF_INET; do
    fam "$l" EAFNOSUPPORT
done
for l in AF_INET AF_INET-dgram AF_INET6 AF_UNIX socketpair-AF_UNIX NETLINK_ROUTE; do
    fam "$l" OK
done
# The tools a bottle needs still work: ip (NETLINK_ROUTE) lists lo.
out=$(run -- ip -o link show 2>&1)
like "sockets: ip link (NETLINK_ROUTE) works inside" "$out" "lo:"

done_testing
