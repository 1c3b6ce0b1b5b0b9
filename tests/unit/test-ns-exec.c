/*
 * The namespace backend's exec (src/backend/namespace/ns.c): a command run in a running bottle
 * lands in the bottle's namespaces (pid, mount, net, uts, ...) and cgroup, with the same
 * confinement as the bottle's own command (no capabilities, no_new_privs, the seccomp filter),
 * the bottle's environment plus the extra variables, and its exit status comes back.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "common/log.h"

static char ws[] = "/tmp/bb-ns-exec-test.XXXXXX";
static const struct backend_ops *ops;
static struct bottle *b;
static struct backend_started started = { .pidfd = -1, .channel_fd = -1 };
static struct bottle_spec spec;

/* Run argv in the bottle; its stdout into out; returns the exit status (or -errno). */
static int run_exec(char *const *argv, char *const *env, char *out, size_t size)
{
    struct backend_exec_args a = { .argv = argv, .env = env, .stdio = { -1, -1, -1 } };
    struct backend_exec *e = NULL;
    int p[2], r, status = -1;
    size_t have = 0;
    ssize_t n;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    a.stdio[1] = p[1];
    /* -EAGAIN until bottle-init has set the bottle up and started its command */
    for (int i = 0; (r = ops->exec(b, &a, &e)) == -EAGAIN && i < 100; i++)
        usleep(50000);
    close(p[1]);
    if (r < 0) {
        close(p[0]);
        return r;
    }
    while (have + 1 < size && (n = read(p[0], out + have, size - 1 - have)) > 0)
        have += (size_t)n;
    out[have] = '\0';
    close(p[0]);
    assert_true(ops->exec_pidfd(e) >= 0);
    assert_int_equal(ops->exec_wait(e, &status), 0);
    ops->exec_free(e);
    return status;
}

static void test_exec_joins_the_bottle(void **unused)
{
    char out[4096], host_pidns[64], path[64], want[128];
    char *const argv[] = { "/bin/sh", "-c",
                           "hostname; readlink /proc/self/ns/pid; readlink /proc/self/ns/net; "
                           "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
                           "echo \"extra=$BB_EXTRA\"; pwd; id -u; "
                           "unshare -U true 2>/dev/null && echo unshare-worked; "
                           "test -e /tmp/bb-ns-exec-host-only && echo host-visible; exit 7",
                           NULL };
    char *const env[] = { "BB_EXTRA=hello", NULL };
    ssize_t n;
    (void)unused;

    assert_int_equal(run_exec(argv, env, out, sizeof(out)), 7);
    /* same pid and net namespaces as bottle-init */
    snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)started.pid);
    n = readlink(path, host_pidns, sizeof(host_pidns) - 1);
    assert_true(n > 0);
    host_pidns[n] = '\0';
    snprintf(want, sizeof(want), "ns-exec-test\n%s\n", host_pidns);
    assert_true(strncmp(out, want, strlen(want)) == 0);
    {
        char netns[64];
        snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)started.pid);
        n = readlink(path, netns, sizeof(netns) - 1);
        assert_true(n > 0);
        netns[n] = '\0';
        assert_non_null(strstr(out, netns));
    }
    assert_non_null(strstr(out, "CapEff:\t0000000000000000"));
    assert_non_null(strstr(out, "CapBnd:\t0000000000000000"));
    assert_non_null(strstr(out, "NoNewPrivs:\t1"));
    assert_non_null(strstr(out, "Seccomp:\t2"));
    assert_non_null(strstr(out, "extra=hello"));
    snprintf(want, sizeof(want), "\n%s\n%u\n", ws, (unsigned)getuid());
    assert_non_null(strstr(out, want));
    assert_null(strstr(out, "unshare-worked"));
    assert_null(strstr(out, "host-visible")); /* the bottle's /tmp, not the host's */
}

static void test_exec_not_found(void **unused)
{
    char out[64];
    char *const argv[] = { "no-such-command-here", NULL };
    (void)unused;

    assert_int_equal(run_exec(argv, NULL, out, sizeof(out)), -ENOENT);
}

static void test_exec_env_refused(void **unused)
{
    char out[64];
    char *const argv[] = { "true", NULL };
    char *const env[] = { "NOEQUALS", NULL };
    (void)unused;

    assert_int_equal(run_exec(argv, env, out, sizeof(out)), -EINVAL);
}

/* exec_signal reaches the command (SIGTERM: 143) */
static void test_exec_signal(void **unused)
{
    char *const argv[] = { "/bin/sh", "-c", "echo up; exec sleep 30", NULL };
    struct backend_exec_args a = { .argv = argv, .stdio = { -1, -1, -1 } };
    struct backend_exec *e = NULL;
    char buf[8];
    int p[2], r, status = -1;
    (void)unused;

    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    a.stdio[1] = p[1];
    for (int i = 0; (r = ops->exec(b, &a, &e)) == -EAGAIN && i < 100; i++)
        usleep(50000);
    close(p[1]);
    assert_int_equal(r, 0);
    assert_true(read(p[0], buf, sizeof(buf)) > 0); /* "up": running */
    close(p[0]);
    assert_int_equal(ops->exec_signal(e, SIGTERM), 0);
    assert_int_equal(ops->exec_wait(e, &status), 0);
    assert_int_equal(status, 128 + SIGTERM);
    ops->exec_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exec_joins_the_bottle),
        cmocka_unit_test(test_exec_not_found),
        cmocka_unit_test(test_exec_env_refused),
        cmocka_unit_test(test_exec_signal),
    };
    struct backend_create_args args = { .stdio = { -1, -1, -1 }, .handoff_fd = -1 };
    struct backend_probe probe;
    int r, status;

    signal(SIGPIPE, SIG_IGN);
    log_set_prefix("test-ns-exec");
    ops = backend_find("namespace");
    if (!ops || ops->probe(NULL, &probe) < 0 || !probe.available) {
        printf("1..0 # SKIP namespace backend unavailable: %s\n", ops ? probe.reason : "none");
        return 0;
    }
    if (!mkdtemp(ws))
        return 1;
    {
        FILE *f = fopen("/tmp/bb-ns-exec-host-only", "w");
        if (f)
            fclose(f);
    }
    spec.uid = (uint32_t)getuid();
    spec.gid = (uint32_t)getgid();
    spec.tmpfs_size[BOTTLE_TMPFS_TMP] = spec.tmpfs_size[BOTTLE_TMPFS_HOME] = 64ULL << 20;
    spec.tmpfs_size[BOTTLE_TMPFS_SHM] = 16ULL << 20;
    (void)bottle_spec_set_str(&spec.name, "ns-exec-test");
    (void)bottle_spec_set_str(&spec.hostname, "ns-exec-test");
    (void)bottle_spec_set_str(&spec.user, "user");
    (void)bottle_spec_set_str(&spec.home, "/home/user");
    (void)bottle_spec_set_str(&spec.workspace, ws);
    (void)bottle_spec_set_str(&spec.channel, "fd:3");
    (void)bottle_spec_add_arg(&spec, "sleep");
    (void)bottle_spec_add_arg(&spec, "60");
    inet_pton(AF_INET, "127.77.250.9", &spec.alias);
    args.spec = &spec;
    if (ops->create(&args, &b) < 0 || ops->start(b, &started) < 0) {
        printf("Bail out! cannot start a namespace bottle\n");
        return 1;
    }
    r = cmocka_run_group_tests(tests, NULL, NULL);
    /* the bottle still ends through the non-blocking ops */
    assert_int_equal(ops->request_stop(b), 0);
    if (ops->wait(b, &status) < 0 || status != 128 + SIGTERM) {
        printf("# the bottle's status after request_stop: %d\n", status);
        r = 1;
    }
    assert_int_equal(ops->kill(b), 0); /* already gone: still 0 */
    close(started.channel_fd);
    ops->destroy(b);
    bottle_spec_done(&spec);
    rmdir(ws);
    unlink("/tmp/bb-ns-exec-host-only");
    return r;
}
