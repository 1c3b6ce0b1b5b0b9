#!/usr/bin/env bash
# The bottle's stdio (S11): without -t the bottle holds no fd of the user's terminal (or of any
# file the supervisor's stdio refers to); its stdout/stderr are pipes the supervisor relays, in
# order, complete, separately, with backpressure and EPIPE handling; stdin is /dev/null, or a
# pipe fed from our stdin with -i.
source "$(dirname "$0")/lib.sh"

need_bottles "stdio tests"

mkdir -p "$T/ws"
DNS=$(free_port)
run() {
    (cd "$T/ws" && timeout 60 "$BB" run --backend namespace --upstream-dns "127.0.0.1:$DNS" "$@")
}

# --- under a real terminal, without -t: the bottle must not get it
cat >"$T/ws/probe.sh" <<'SH'
for fd in 0 1 2; do
    if test -t $fd; then echo "fd$fd-is-a-tty"; else echo "fd$fd-not-a-tty"; fi
done
if (exec 9<>/dev/tty) 2>/dev/null; then echo devtty-opened; else echo devtty-refused; fi
for fd in 0 1 2; do
    stty raw -echo -isig <&$fd 2>/dev/null && echo "stty-on-fd$fd-worked"
done
python3 -c '
import fcntl, termios
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"#")
        print("tiocsti-on-fd%d-worked" % fd)
    except OSError:
        pass
' 2>/dev/null
echo probe-done
SH
cat >"$T/outer.sh" <<SH
before=\$(stty -g)
cd "$T/ws" && timeout 60 "$BB" run --backend namespace --upstream-dns 127.0.0.1:$DNS -- sh probe.sh
echo "rc=\$?"
after=\$(stty -g)
if [ "\$before" = "\$after" ]; then echo modes-unchanged; else echo "modes-changed \$before -> \$after"; fi
SH
out=$(timeout 90 "$PY" "$HELPERS/pty-run.py" sh "$T/outer.sh" | tr -d '\r')
like "pty: the command ran" "$out" "probe-done"
like "pty: stdin is not a terminal inside without -t" "$out" "fd0-not-a-tty"
like "pty: stdout is not a terminal inside without -t" "$out" "fd1-not-a-tty"
like "pty: stderr is not a terminal inside without -t" "$out" "fd2-not-a-tty"
like "pty: /dev/tty cannot be opened inside" "$out" "devtty-refused"
unlike "pty: stty works on none of the bottle's fds" "$out" "stty-on-fd"
unlike "pty: TIOCSTI works on none of the bottle's fds" "$out" "tiocsti-on-fd"
like "pty: the terminal's modes are unchanged after the bottle tried stty raw -echo" "$out" \
    "modes-unchanged"
like "pty: run returned the command's status" "$out" "rc=0"

# with -i under a terminal: stdin is a pipe, not the terminal
cat >"$T/outer-i.sh" <<SH
cd "$T/ws" && timeout 60 "$BB" run --backend namespace --upstream-dns 127.0.0.1:$DNS -i -- \
    sh -c 'test -t 0 && echo in-is-tty || echo in-not-tty' </dev/tty
SH
out=$(timeout 90 "$PY" "$HELPERS/pty-run.py" sh "$T/outer-i.sh" | tr -d '\r')
like "pty -i: stdin inside is not the terminal" "$out" "in-not-tty"

# --- the relay
run -- sh -c 'echo out; echo err >&2' >"$T/o" 2>"$T/e"
is "stdout and stderr stay separate (stdout)" "$(cat "$T/o")" "out"
is "stdout and stderr stay separate (stderr)" "$(cat "$T/e")" "err"

run -- sh -c 'seq 1 20000; seq 1 20000 >&2' >"$T/o" 2>"$T/e"
is "stdout arrives complete and in order" "$(sha256sum <"$T/o")" "$(seq 1 20000 | sha256sum)"
is "stderr arrives complete and in order" "$(sha256sum <"$T/e")" "$(seq 1 20000 | sha256sum)"

head -c 52428800 /dev/urandom >"$T/ws/big"
run -- cat big >"$T/o"
is "50 MB of binary data pass intact to a file" "$(sha256sum <"$T/o")" "$(sha256sum <"$T/ws/big")"
got=$(run -- head -c 52428800 big | sha256sum)
is "50 MB pass intact through a pipe" "$got" "$(sha256sum <"$T/ws/big")"
got=$(run -- head -c 5242880 /dev/zero | (sleep 2; wc -c))
is "a slow reader still gets every byte (backpressure, drained before exit)" "$got" "5242880"

"$PY" -c 'import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)' >"$T/ws/allbytes"
run -- cat allbytes >"$T/o"
check "every byte value passes unchanged" cmp "$T/o" "$T/ws/allbytes"

start=$(date +%s)
got=$(run -- yes | head -1)
rc=$?
is "run ... | head -1 gets the first line" "$got" "y"
is "... and does not hang" "$(( $(date +%s) - start < 20 ))" "1"
run -- sh -c 'trap "" PIPE; yes; echo "yes-status=$?" >&2' 2>"$T/e" | head -1 >/dev/null
like "with SIGPIPE ignored, the writer gets EPIPE" "$(cat "$T/e")" "Broken pipe.*yes-status=1"

out=$(echo from-host | run -- cat)
is "without -i the command's stdin is empty (/dev/null)" "$out" ""
out=$(printf 'abc' | run -i -- sh -c 'cat; echo END')
is "-i: stdin reaches the command and its EOF is passed on" "$out" "abcEND"
got=$(run -i -- sha256sum <"$T/ws/big")
is "-i: 50 MB of stdin pass intact" "${got%% *}" "$(sha256sum <"$T/ws/big" | cut -d' ' -f1)"

run -- sh -c 'head -c 3000000 /dev/zero; exit 3' >"$T/o"
rc=$?
is "output written just before exit is complete" "$(wc -c <"$T/o")" "3000000"
is "... and the command's status is kept" "$rc" "3"

# the bottle's stdio, seen from inside: pipes and /dev/null, never our files
run -- sh -c 'readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2' 2>/dev/null >"$T/o"
is "inside: stdin is /dev/null" "$(sed -n 1p "$T/o")" "/dev/null"
like "inside: stdout is a pipe, not our file" "$(sed -n 2p "$T/o")" "^pipe:"
like "inside: stderr is a pipe" "$(sed -n 3p "$T/o")" "^pipe:"

done_testing
