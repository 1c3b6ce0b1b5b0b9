/*
 * Fuzz the host's end of a microVM command's streams (src/backend/microvm/session.c over a
 * real host-role struct mux and common/pump.c) against a hostile guest: the input is what a
 * compromised guest kernel writes on the channel port.
 *
 * Input: byte 0 picks tty (bit 0), whether the caller's stdin ends at once (bit 1), whether
 * the guest's bytes end with EOF on the channel (bit 2) and whether the caller stops reading
 * the output (bit 3); the rest is the guest's byte stream, after a HELLO the harness sends
 * first (so the fuzzer starts past it). The host opens an exec session (id 1): ctl, then
 * in/out/err or tty, streams 0x80000001.. in that order.
 * Checks: no crash, leak or use-after-free (ASan); the status is 0..255 or 125 once exited;
 * the eventfd fires only after the status; every descriptor is closed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend/microvm/session.h"
#include "channel/mux.h"
#include "channel/proto.h"
#include "common/loop.h"
#include "fuzz.h"

static void check(int cond)
{
    if (!cond)
        abort();
}

static int fz_open(void *ud, enum channel_kind kind)
{
    (void)ud;
    (void)kind;
    return -ECONNREFUSED; /* the guest's proxy/DNS streams are not what this target is about */
}

static const struct mux_ops fz_ops = { .open_stream = fz_open };

/* The lowest free descriptor number (leaks push it up). */
static int lowest_free_fd(void)
{
    int fd = fcntl(0, F_DUPFD_CLOEXEC, 0);

    if (fd >= 0)
        close(fd);
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct loop *loop;
    static uint8_t sink[65536];
    static char *const argv[] = { (char *)"sh", (char *)"-c", (char *)"true", NULL };
    static char *const env[] = { (char *)"A=B", NULL };
    uint8_t hello[CHANNEL_HDR_LEN + CHANNEL_HELLO_LEN];
    struct vm_session x;
    struct mux *m = NULL;
    int sp[2], in[2], out[2], err[2], io[3], fd0;
    bool tty, stdin_eof, chan_eof, stall;
    size_t off = 1;

    if (size < 1)
        return 0;
    tty = data[0] & 1;
    stdin_eof = data[0] & 2;
    chan_eof = data[0] & 4;
    stall = data[0] & 8;
    if (!loop && loop_new(&loop) < 0)
        abort();
    fd0 = lowest_free_fd();
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) < 0)
        return 0;
    if (mux_new(loop, sp[0], CHANNEL_ROLE_HOST, &fz_ops, NULL, &m) < 0) {
        close(sp[1]);
        return 0;
    }
    /* the caller's stdio: with tty one socket stands for the pty slave */
    if (tty) {
        check(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, in) == 0);
        io[0] = io[1] = io[2] = in[0];
        out[0] = out[1] = err[0] = err[1] = -1;
    } else {
        check(pipe2(in, O_CLOEXEC | O_NONBLOCK) == 0);
        check(pipe2(out, O_CLOEXEC | O_NONBLOCK) == 0);
        check(pipe2(err, O_CLOEXEC | O_NONBLOCK) == 0);
        io[0] = in[0];
        io[1] = out[1];
        io[2] = err[1];
    }
    (void)!write(in[1], "input\n", 6);
    session_init(&x, 1);
    x.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    check(x.efd >= 0);
    if (session_open(&x, loop, m, io, tty, argv, env, "/w") < 0 || session_watch_exit(&x) < 0)
        goto done;
    /* ours are in the session now */
    if (tty) {
        close(in[0]);
        in[0] = -1;
    } else {
        close(in[0]);
        close(out[1]);
        close(err[1]);
        in[0] = out[1] = err[1] = -1;
    }
    if (stdin_eof) {
        close(in[1]);
        in[1] = -1;
    }
    (void)channel_frame_encode_ctl(hello, CHANNEL_T_HELLO, 0, CHANNEL_ROLE_GUEST);
    check(send(sp[1], hello, sizeof(hello), MSG_NOSIGNAL) == (ssize_t)sizeof(hello));
    for (int round = 0; round < 24 && !mux_is_dead(m); round++) {
        uint64_t v;

        if (off < size) {
            ssize_t n = send(sp[1], data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
        } else if (chan_eof) {
            shutdown(sp[1], SHUT_WR);
        }
        while (recv(sp[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
        if (!stall) {
            int rd[2] = { tty ? in[1] : out[0], tty ? -1 : err[0] };
            for (int i = 0; i < 2; i++)
                while (rd[i] >= 0 && read(rd[i], sink, sizeof(sink)) > 0)
                    ;
        }
        if (loop_run_once(loop, 0) < 0)
            break;
        if (read(x.efd, &v, sizeof(v)) == (ssize_t)sizeof(v))
            check(x.exited && x.reported);
        if (x.exited)
            check(x.status >= 0 && x.status <= 255);
    }
done:
    session_close(&x);
    m = mux_free(m);
    loop_run_once(loop, 0); /* reap */
    close(sp[1]);
    for (int i = 0; i < 2; i++) {
        int *p[] = { &in[i], &out[i], &err[i] };
        for (int k = 0; k < 3; k++)
            if (*p[k] >= 0)
                close(*p[k]);
    }
    check(lowest_free_fd() == fd0);
    return 0;
}
