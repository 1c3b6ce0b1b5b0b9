/*
 * The microvm's command streams without a VM: the host side (src/backend/microvm/session.c,
 * what the backend's attach and exec use) and bottle-init's side (src/guest/vmsession.c)
 * joined by a socketpair channel, each with its own mux, in one process and one loop. The
 * guest's spawn forks /bin/sh here (bottle-init's confinement is not under test). Checks:
 * stdout and stderr arrive apart, stdin with its EOF, the exit status, a pty with the
 * requested size and a /dev/pts name, a resize, a signal, the main session's end only after
 * its output is across.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/microvm/session.h"
#include "channel/mux.h"
#include "common/loop.h"
#include "guest/vmsession.h"

struct env {
    struct loop *loop;
    struct mux *host, *guest;
    struct vms *vms;
    int main_status;
    bool main_done;
    char *const *main_argv;
};

static struct env *cur;

static int refuse(void *ud, enum channel_kind kind)
{
    (void)ud;
    (void)kind;
    return -EOPNOTSUPP;
}

static int guest_open(void *ud, enum channel_kind kind)
{
    return vms_open_stream(ud, (int)kind);
}

static pid_t spawn(void *ud, const struct vms_spawn *req)
{
    struct env *e = ud;
    char *const *argv = req->argv ? req->argv : e->main_argv;
    pid_t pid = fork();

    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        for (int i = 0; i < 3; i++)
            dup2(fcntl(req->stdio[i], F_DUPFD, 10), i);
        setsid();
        if (req->tty)
            (void)ioctl(0, TIOCSCTTY, 0);
        for (char **v = req->env; v && *v; v++)
            putenv(*v);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid < 0 ? -125 : pid;
}

static void main_done(void *ud, int status)
{
    struct env *e = ud;
    e->main_done = true;
    e->main_status = status;
}

static void on_chld(struct loop *l, int signo, void *ud)
{
    struct env *e = ud;
    int st;
    pid_t pid;
    (void)l;
    (void)signo;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        (void)vms_reaped(e->vms, pid, st);
}

static void setup_env(struct env *e)
{
    int sp[2];
    static const struct mux_ops host_ops = { .open_stream = refuse };
    static const struct mux_ops guest_ops = { .open_stream = guest_open };
    struct vms_ops vo = { .spawn = spawn, .main_done = main_done };

    memset(e, 0, sizeof(*e));
    cur = e;
    vo.ud = e;
    vo.uid = getuid();
    vo.gid = getgid();
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(loop_new(&e->loop), 0);
    assert_int_equal(loop_add_signal(e->loop, SIGCHLD, on_chld, e), 0);
    assert_int_equal(vms_new(e->loop, &vo, &e->vms), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
    assert_int_equal(mux_new(e->loop, sp[0], CHANNEL_ROLE_HOST, &host_ops, NULL, &e->host), 0);
    assert_int_equal(mux_new(e->loop, sp[1], CHANNEL_ROLE_GUEST, &guest_ops, e->vms, &e->guest), 0);
}

static void teardown_env(struct env *e)
{
    vms_free(e->vms);
    mux_free(e->host);
    mux_free(e->guest);
    loop_free(e->loop);
}

static bool readable(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, 0) == 1;
}

/* Runs the loop until fd is readable (at most ~20 s). */
static void run_until_readable(struct env *e, int fd)
{
    for (int i = 0; i < 2000 && !readable(fd); i++)
        (void)loop_run_once(e->loop, 10);
    assert_true(readable(fd));
}

static size_t slurp(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

static void pipe_pair(int p[2])
{
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
}

static void test_exec_stdio_split(void **state)
{
    struct env e;
    struct vm_session x;
    int in[2], out[2], err[2];
    char buf[256];
    char *argv[] = { "/bin/sh", "-c", "read l; echo \"out:$l:$BB_X\"; echo err >&2; exit 3", NULL };
    char *env[] = { "BB_X=extra", NULL };
    (void)state;

    setup_env(&e);
    pipe_pair(in);
    pipe_pair(out);
    pipe_pair(err);
    session_init(&x, 7);
    x.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    {
        int io[3] = { in[0], out[1], err[1] };
        assert_int_equal(session_open(&x, e.loop, e.host, io, false, argv, env, NULL), 0);
    }
    assert_int_equal(session_watch_exit(&x), 0);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    assert_int_equal(write(in[1], "hi\n", 3), 3);
    close(in[1]); /* EOF */
    run_until_readable(&e, x.efd);
    assert_true(x.reported);
    assert_int_equal(x.status, 3);
    slurp(out[0], buf, sizeof(buf));
    assert_string_equal(buf, "out:hi:extra\n");
    slurp(err[0], buf, sizeof(buf));
    assert_string_equal(buf, "err\n");
    session_close(&x);
    close(out[0]);
    close(err[0]);
    teardown_env(&e);
}

/* A long argv (about 300 KiB, 600 KiB hex-encoded: more than a socket buffer holds) is
 * written from the loop as the mux drains it: session_open returns at once (it used to wait
 * 1 s for a buffer only this loop drains, then fail), the command gets every argument; and a
 * request over VMS_MAX_REQUEST is refused at once with -E2BIG. */
static void test_exec_long_argv(void **state)
{
    enum { NARGS = 3000, ARGLEN = 100 };
    struct env e;
    struct vm_session x;
    int out[2];
    char buf[256], **argv = calloc(NARGS + 5, sizeof(char *));
    char *arg = malloc(ARGLEN + 1);
    struct timespec t0, t1;
    long ms;
    (void)state;

    assert_non_null(argv);
    assert_non_null(arg);
    memset(arg, 'a', ARGLEN);
    arg[ARGLEN] = '\0';
    argv[0] = "/bin/sh";
    argv[1] = "-c";
    argv[2] = "echo $# ${#1}";
    argv[3] = "sh";
    for (int i = 0; i < NARGS; i++)
        argv[4 + i] = arg;
    setup_env(&e);
    pipe_pair(out);
    session_init(&x, 9);
    x.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    {
        int io[3] = { -1, out[1], out[1] };
        io[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(session_open(&x, e.loop, e.host, io, false, argv, NULL, NULL), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        close(io[0]);
    }
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 500);
    assert_int_equal(session_watch_exit(&x), 0);
    close(out[1]);
    run_until_readable(&e, x.efd);
    assert_int_equal(x.status, 0);
    slurp(out[0], buf, sizeof(buf));
    assert_string_equal(buf, "3000 100\n");
    session_close(&x);
    close(out[0]);

    /* twice that: over the guest's limit, refused before anything is sent */
    {
        char **big = calloc(2 * NARGS + 2, sizeof(char *));
        int io[3] = { -1, -1, -1 };
        assert_non_null(big);
        big[0] = "/bin/true";
        for (int i = 1; i <= 2 * NARGS; i++)
            big[i] = arg;
        for (int i = 0; i < 3; i++)
            io[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
        session_init(&x, 10);
        x.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(session_open(&x, e.loop, e.host, io, false, big, NULL, NULL), -E2BIG);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        assert_true(ms < 500);
        session_close(&x);
        for (int i = 0; i < 3; i++)
            close(io[i]);
        free(big);
    }
    teardown_env(&e);
    free(arg);
    free(argv);
}

/* Reads what the pty master has until `want` shows up (the loop keeps running). */
static void read_until(struct env *e, int master, char *buf, size_t size, size_t *len,
                       const char *want)
{
    for (int i = 0; i < 2000 && !strstr(buf, want); i++) {
        (void)loop_run_once(e->loop, 10);
        while (readable(master) && *len + 1 < size) {
            ssize_t n = read(master, buf + *len, size - 1 - *len);
            if (n <= 0)
                break;
            *len += (size_t)n;
            buf[*len] = '\0';
        }
    }
    assert_non_null(strstr(buf, want));
}

static void test_exec_tty(void **state)
{
    struct env e;
    struct vm_session x;
    struct winsize ws = { .ws_row = 33, .ws_col = 77 };
    char buf[4096] = "";
    size_t len = 0;
    int master, slave;
    char *argv[] = { "/bin/sh", "-c",
                     "test -t 0 && test -t 1 && echo is-a-tty; tty; stty size; read l; "
                     "stty size; echo \"got:$l\"; exit 4",
                     NULL };
    (void)state;

    setup_env(&e);
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(master >= 0);
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    assert_true(slave >= 0);
    assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
    session_init(&x, 9);
    x.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    {
        int io[3] = { slave, slave, slave };
        assert_int_equal(session_open(&x, e.loop, e.host, io, true, argv, NULL, NULL), 0);
    }
    assert_int_equal(session_watch_exit(&x), 0);
    close(slave);
    read_until(&e, master, buf, sizeof(buf), &len, "33 77");
    assert_non_null(strstr(buf, "is-a-tty"));
    assert_non_null(strstr(buf, "/dev/pts/"));
    /* a resize (the supervisor's SIGWINCH path), then a line typed on the terminal */
    ws.ws_row = 40;
    ws.ws_col = 100;
    assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
    session_resize(&x);
    for (int i = 0; i < 50; i++)
        (void)loop_run_once(e.loop, 10);
    assert_int_equal(write(master, "typed\r", 6), 6);
    read_until(&e, master, buf, sizeof(buf), &len, "got:typed");
    assert_non_null(strstr(buf, "40 100"));
    run_until_readable(&e, x.efd);
    assert_int_equal(x.status, 4);
    session_close(&x);
    close(master);
    teardown_env(&e);
}

static void test_exec_signal(void **state)
{
    struct env e;
    struct vm_session x;
    char *argv[] = { "/bin/sleep", "30", NULL };
    int io[3];
    (void)state;

    setup_env(&e);
    io[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    io[1] = io[2] = open("/dev/null", O_WRONLY | O_CLOEXEC);
    session_init(&x, 3);
    x.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    /* /dev/null cannot be polled: stdin ends at once; output to /dev/null never blocks */
    assert_int_equal(session_open(&x, e.loop, e.host, io, false, argv, NULL, NULL), 0);
    assert_int_equal(session_watch_exit(&x), 0);
    for (int i = 0; i < 30; i++)
        (void)loop_run_once(e.loop, 10);
    assert_int_equal(send_ctl_line(&x, "signal 15\n"), 0);
    run_until_readable(&e, x.efd);
    assert_int_equal(x.status, 128 + SIGTERM);
    session_close(&x);
    close(io[0]);
    close(io[1]);
    teardown_env(&e);
}

/* Session 0 (the bottle's command): main_done comes only once all its output is in our
 * pipe, so the VM may power off then without losing any. */
static void test_main_output_across_before_done(void **state)
{
    struct env e;
    struct vm_session x;
    char *argv[] = { "/bin/sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x; exit 5", NULL };
    int out[2], err[2], in;
    size_t total = 0;
    char buf[65536];
    (void)state;

    setup_env(&e);
    e.main_argv = argv;
    pipe_pair(out);
    pipe_pair(err);
    in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    session_init(&x, 0);
    {
        int io[3] = { in, out[1], err[1] };
        assert_int_equal(session_open(&x, e.loop, e.host, io, false, NULL, NULL, NULL), 0);
    }
    close(out[1]);
    close(err[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    for (int i = 0; i < 3000 && !e.main_done; i++) {
        ssize_t n;
        (void)loop_run_once(e.loop, 10);
        while ((n = read(out[0], buf, sizeof(buf))) > 0)
            total += (size_t)n;
    }
    assert_true(e.main_done);
    assert_int_equal(e.main_status, 5);
    /* everything was written to our pipe before main_done (read what is left in it) */
    {
        ssize_t n;
        while ((n = read(out[0], buf, sizeof(buf))) > 0)
            total += (size_t)n;
    }
    assert_int_equal(total, 300000);
    /* nothing on stderr: the command's stdout never failed (a non-blocking socket would give
     * it EAGAIN once full) */
    fcntl(err[0], F_SETFL, O_NONBLOCK);
    assert_int_equal(read(err[0], buf, sizeof(buf)), 0); /* EOF, nothing before it */
    session_close(&x);
    close(in);
    close(out[0]);
    close(err[0]);
    teardown_env(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_stdio_split),
        cmocka_unit_test(test_exec_long_argv),
        cmocka_unit_test(test_exec_tty),
        cmocka_unit_test(test_exec_signal),
        cmocka_unit_test(test_main_output_across_before_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
