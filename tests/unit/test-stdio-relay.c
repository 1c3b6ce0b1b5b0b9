/*
 * The stdio relay of `run` without -t (supervisor/stdio-relay.h), driven over pipes by the
 * loop: complete and in order per stream, bounded with backpressure, EPIPE passed back to the
 * writer, EOF of stdin passed on.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/loop.h"
#include "common/net.h"
#include "supervisor/stdio-relay.h"

#define N_BYTES (1024 * 1024)

static unsigned char pattern(size_t i, int stream)
{
    return (unsigned char)((i * 7 + i / 251 + (size_t)stream * 13) & 0xff);
}

/* A child with the relay's bottle ends as its 0-2 and nothing else open. */
static pid_t spawn(struct stdio_relay *r, int (*body)(void))
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 3; i++)
            if (r->child[i] >= 0 && dup2(r->child[i], i) < 0)
                _exit(99);
        syscall(SYS_close_range, 3, ~0U, 0);
        _exit(body());
    }
    stdio_relay_close_child(r);
    return pid;
}

static int write_all(int fd, int stream)
{
    unsigned char buf[8192];
    size_t off = 0;

    while (off < N_BYTES) {
        size_t n = sizeof(buf);
        ssize_t w;
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern(off + i, stream);
        w = write(fd, buf, n);
        if (w < 0)
            return errno;
        off += (size_t)w;
    }
    return 0;
}

static int body_write_both(void)
{
    return write_all(1, 1) || write_all(2, 2) ? 1 : 0;
}

static int body_epipe(void)
{
    signal(SIGPIPE, SIG_IGN);
    return write_all(1, 1) == EPIPE ? 0 : 1;
}

static int body_read_stdin(void)
{
    char buf[64] = { 0 };
    size_t off = 0;
    ssize_t n;

    while ((n = read(0, buf + off, sizeof(buf) - 1 - off)) > 0)
        off += (size_t)n;
    return n == 0 && strcmp(buf, "hello, bottle") == 0 ? 0 : 1;
}

static void drain_into(int fd, unsigned char *dst, size_t *len)
{
    ssize_t n;
    while (*len < N_BYTES + 1 && (n = read(fd, dst + *len, N_BYTES + 1 - *len)) > 0)
        *len += (size_t)n;
}

static int child_status(pid_t pid)
{
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_complete_in_order_bounded(void **state)
{
    struct loop *l;
    struct stdio_relay r;
    int op[2], ep[2], devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    unsigned char *out = malloc(N_BYTES + 1), *err = malloc(N_BYTES + 1);
    size_t out_len = 0, err_len = 0;
    pid_t pid;
    (void)state;

    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(pipe2(op, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ep, O_CLOEXEC), 0);
    assert_int_equal(stdio_relay_open(&r, l, false, devnull, -1, op[1], ep[1]), 0);
    assert_int_equal(r.child[0], devnull);
    pid = spawn(&r, body_write_both);
    assert_int_equal(stdio_relay_start(&r, NULL, NULL), 0);
    close(op[1]);
    close(ep[1]);
    fd_set_nonblock(op[0], true);
    fd_set_nonblock(ep[0], true);

    /* Nobody reads our stdout: the relay stops at its bound and the writer blocks. */
    for (int i = 0; i < 50; i++)
        loop_run_once(l, 5);
    assert_true(r.s[STDIO_OUT].len <= STDIO_RING);
    assert_false(stdio_relay_finished(&r));
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);

    while (!stdio_relay_finished(&r)) {
        loop_run_once(l, 5);
        drain_into(op[0], out, &out_len);
        drain_into(ep[0], err, &err_len);
    }
    drain_into(op[0], out, &out_len);
    drain_into(ep[0], err, &err_len);
    assert_int_equal(child_status(pid), 0);
    assert_int_equal(out_len, N_BYTES);
    assert_int_equal(err_len, N_BYTES);
    for (size_t i = 0; i < N_BYTES; i++)
        if (out[i] != pattern(i, 1) || err[i] != pattern(i, 2))
            fail_msg("byte %zu differs", i);
    stdio_relay_done(&r);
    stdio_relay_done(&r); /* idempotent */
    close(op[0]);
    close(ep[0]);
    close(devnull);
    free(out);
    free(err);
    loop_free(l);
}

static void test_epipe_reaches_the_writer(void **state)
{
    struct loop *l;
    struct stdio_relay r;
    int op[2], devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t pid;
    (void)state;

    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(pipe2(op, O_CLOEXEC), 0);
    assert_int_equal(stdio_relay_open(&r, l, false, devnull, -1, op[1], devnull), 0);
    close(op[0]); /* `run ... | head -1`: the reader is gone */
    pid = spawn(&r, body_epipe);
    assert_int_equal(stdio_relay_start(&r, NULL, NULL), 0);
    for (int i = 0; i < 2000 && !stdio_relay_finished(&r); i++)
        loop_run_once(l, 5);
    assert_true(stdio_relay_finished(&r));
    assert_int_equal(child_status(pid), 0); /* it got EPIPE */
    stdio_relay_done(&r);
    close(op[1]);
    close(devnull);
    loop_free(l);
}

static void test_stdin_and_its_eof(void **state)
{
    struct loop *l;
    struct stdio_relay r;
    int ip[2], devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t pid;
    int st = -1;
    (void)state;

    assert_int_equal(loop_new(&l), 0);
    assert_int_equal(pipe2(ip, O_CLOEXEC), 0);
    assert_int_equal(write(ip[1], "hello, bottle", 13), 13);
    assert_int_equal(stdio_relay_open(&r, l, true, devnull, ip[0], devnull, devnull), 0);
    assert_true(r.child[0] != devnull);
    close(ip[1]); /* our stdin ends: the bottle must see EOF */
    pid = spawn(&r, body_read_stdin);
    assert_int_equal(stdio_relay_start(&r, NULL, NULL), 0);
    for (int i = 0; i < 2000; i++) {
        loop_run_once(l, 5);
        if (waitpid(pid, &st, WNOHANG) == pid)
            break;
    }
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    stdio_relay_done(&r);
    close(ip[0]);
    close(devnull);
    loop_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_in_order_bounded),
        cmocka_unit_test(test_epipe_reaches_the_writer),
        cmocka_unit_test(test_stdin_and_its_eof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
