#!/usr/bin/env bash
# The bottle's output on its way to the user's terminal (docs/supervisor.md, "The terminal
# filter"), under a real pty (python3's pty as the terminal): OSC 52 (a command put on the
# user's clipboard), DCS, window reports and iTerm2 file operations never reach it, with -t
# and without; SGR colours, titles and hyperlinks do. With -t, a reply to a query the bottle
# sent does not reach the user's shell after the bottle is gone.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] && ! unshare -Ur true 2>/dev/null; then
    skip "terminal filter tests" "user namespaces are not available to this user"
    done_testing
fi
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "Bail out! $PY is needed (install-deps installs python3)"; exit 1; }

mkdir -p "$T/ws"
DNS=$(free_port)

# interm.py OUT CMD...: runs CMD on a fresh pty and writes every byte the terminal got to OUT.
# Like a terminal, it answers a cursor position query (ESC [ 6 n), after $REPLY_DELAY s.
cat >"$T/interm.py" <<'PY'
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out = b""
answered = 0
while True:
    try:
        d = os.read(fd, 65536)
    except OSError:
        break
    if not d:
        break
    out += d
    while out.count(b"\x1b[6n") > answered:
        time.sleep(float(os.environ.get("REPLY_DELAY", "0")))
        os.write(fd, b"\x1b[12;1R")
        answered += 1
os.waitpid(pid, 0)
open(sys.argv[1], "wb").write(out)
PY
# (timeout --foreground: in a process group of its own, run -t would be stopped by SIGTTOU)
# what the bottle prints: the attack, split across writes too, and benign sequences
cat >"$T/ws/emit.sh" <<'SH'
printf '\033[31mRED\033[0m \033]0;bottle-title\007 \033]8;;https://example.invalid/\033\\link\033]8;;\033\\\n'
printf 'A\033]52;c;ZWNobyBwd25lZAo=\007B\n'
printf 'C\033]52;c;ZWNobyBzdA==\033\\D\n' >&2
printf 'E\033]5'; sleep 0.2; printf '2;c;c3BsaXQ=\007F\n'
printf 'G\033Ptmux;\033\033]52;c;dG11eA==\007\033\\H\n'
printf 'I\033P$qm\033\\J\033[21tK\033]1337;File=name=eA==:Zm9v\007L\033]50;?\007M\n'
printf 'N\302\23552;c;YzE=\007O\n'
echo emit-done
SH
check_out() { # FILE LABEL
    local got
    got=$("$PY" -c 'import sys; print(repr(open(sys.argv[1], "rb").read()))' "$1")
    like "$2: the command ran" "$got" "emit-done"
    like "$2: SGR colours reach the terminal" "$got" '\\x1b\[31mRED\\x1b\[0m'
    like "$2: a title and a hyperlink reach it" "$got" 'x1b\]0;bottle-title\\x07.*x1b\]8;;https://example\.invalid/\\x1b\\\\link'
    unlike "$2: no OSC 52 reaches it (stdout, stderr, split, in tmux passthrough, 8-bit)" "$got" \
        ']52|ZWNobyBwd25lZAo|ZWNobyBzdA|c3BsaXQ|dG11eA'
    # Each piece on its own: stdout and stderr are separate pipes (without -t), so the order
    # between the CD line (stderr) and the others is not defined; and while the filter holds
    # the unfinished sequence after E (the bottle sleeps in it), the CD line may pass.
    local piece missing=""
    for piece in 'AB' 'CD' 'E(CD\\r\\n)?F' 'G(\\x1b\\\\)?H' 'IJKLM' 'N52;c;YzE=\\x07O'; do
        grep -qE -- "$piece" <<<"$got" || missing="$missing $piece"
    done
    is "$2: the text around each dropped sequence does" "${missing:-none missing}" "none missing"
    unlike "$2: no DCS, window report, iTerm2 file or font operation" "$got" \
        '\\x1bP|\[21t|1337|\]50|\\x9d|\\xc2'
}

cat >"$T/plain.sh" <<SH
cd "$T/ws" && timeout 60 "$BB" run --backend namespace --upstream-dns 127.0.0.1:$DNS -- sh emit.sh
SH
timeout 90 "$PY" "$T/interm.py" "$T/plain.out" sh "$T/plain.sh"
check_out "$T/plain.out" "without -t, stdout a terminal"

cat >"$T/tty.sh" <<SH
cd "$T/ws" && timeout --foreground 60 "$BB" run --backend namespace --upstream-dns 127.0.0.1:$DNS -t -- sh emit.sh
SH
timeout 90 "$PY" "$T/interm.py" "$T/tty.out" sh "$T/tty.sh"
check_out "$T/tty.out" "-t"

# not a terminal: the bytes pass as they are (a file or a pipe gets what the command wrote)
(cd "$T/ws" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" -- \
    sh -c "printf 'A\033]52;c;eA==\007B'") >"$T/file.out"
is "to a file: nothing is filtered" "$(od -An -c "$T/file.out" | tr -s ' ' | tr -d '\n')" \
    " A 033 ] 5 2 ; c ; e A = = \a B"

# -t: the bottle asks for the cursor position and exits at once; the terminal's reply must
# not reach the shell that runs next (it would read it as typed input)
cat >"$T/reply.sh" <<SH
cd "$T/ws" && timeout --foreground 60 "$BB" run --backend namespace --upstream-dns 127.0.0.1:$DNS -t -- \
    sh -c 'printf "\033[6n"; exit 0'
"$PY" -c '
import os, select, termios, tty
old = termios.tcgetattr(0)
tty.setcbreak(0)
r, _, _ = select.select([0], [], [], 1.0)
d = os.read(0, 100) if r else b""
termios.tcsetattr(0, termios.TCSANOW, old)
print("after-exit-input=%r" % d)'
SH
# a terminal that answers 60 ms later (over ssh, say): after the bottle is gone
REPLY_DELAY=0.06 timeout 90 "$PY" "$T/interm.py" "$T/reply.out" sh "$T/reply.sh"
got=$("$PY" -c 'import sys; print(repr(open(sys.argv[1], "rb").read()))' "$T/reply.out")
like "-t: the cursor position query reached the terminal (DSR passes)" "$got" '\\x1b\[6n'
like "-t: its reply did not reach the shell after the bottle exited" "$got" "after-exit-input=b''"

done_testing
