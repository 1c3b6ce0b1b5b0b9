/*
 * The state root (src/supervisor/state.c): create, info, list, running, stale reclaim, and a
 * reclaim racing a create (the lock over the bottles directory makes them exclusive).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "supervisor/state.h"
#include "unit-util.h"

static char dir[] = "/tmp/bb-state-test.XXXXXX";
static struct state st;

static void test_open_refuses_foreign_modes(void **unused)
{
    char p[600];
    struct state s2;
    (void)unused;

    snprintf(p, sizeof(p), "%s/open", dir);
    assert_int_equal(state_open(p, false, &s2), -ENOENT);
    assert_int_equal(state_open(p, true, &s2), 0);
    assert_int_equal(chmod(s2.logs, 0755), 0);
    assert_int_equal(state_open(p, true, &s2), -EPERM); /* readable by others: refused */
    assert_int_equal(chmod(s2.logs, 0700), 0);
    assert_int_equal(state_open(p, false, &s2), 0);
}

static void test_create_info_list(void **unused)
{
    struct state_bottle a, b, c;
    struct state_info in = { .pid = 11, .bottle_pid = 12, .daemon_pid = 13 }, out;
    char names[4][BOTTLE_SPEC_MAX_NAME + 1];
    (void)unused;

    assert_int_equal(state_bottle_create(&st, "bad/name", &a), -EINVAL);
    assert_int_equal(state_bottle_create(&st, ".hidden", &a), -EINVAL);
    assert_int_equal(state_bottle_create(&st, "beta", &b), 0);
    assert_int_equal(state_bottle_create(&st, "alpha", &a), 0);
    assert_int_equal(state_bottle_create(&st, "alpha", &c), -EEXIST);
    assert_int_equal(state_bottle_running(&st, "alpha"), 1);
    assert_int_equal(state_bottle_running(&st, "gamma"), 0);

    assert_int_equal(state_info_read(&st, "alpha", &out), -ENOENT); /* not written yet */
    snprintf(in.name, sizeof(in.name), "alpha");
    snprintf(in.backend, sizeof(in.backend), "namespace");
    snprintf(in.alias, sizeof(in.alias), "127.77.1.2");
    snprintf(in.audit, sizeof(in.audit), "/x/alpha.audit.log");
    snprintf(in.workspace, sizeof(in.workspace), "/home/u/proj");
    strv_push(&in.protect_roots, "/home/u/proj");
    strv_push(&in.protect_roots, "/home/u/repo");
    assert_int_equal(state_info_write(&a, &in), 0);
    assert_int_equal(state_info_read(&st, "alpha", &out), 0);
    assert_string_equal(out.name, "alpha");
    assert_string_equal(out.backend, "namespace");
    assert_string_equal(out.alias, "127.77.1.2");
    assert_string_equal(out.workspace, "/home/u/proj");
    assert_int_equal(out.pid, 11);
    assert_int_equal(out.bottle_pid, 12);
    assert_int_equal(out.daemon_pid, 13);
    assert_int_equal(out.protect_roots.n, 2);
    assert_string_equal(out.protect_roots.v[1], "/home/u/repo");
    state_info_done(&out);
    strv_done(&in.protect_roots);

    /* sorted; only max written, the count is all of them */
    assert_int_equal(state_list(&st, names, 4), 2);
    assert_string_equal(names[0], "alpha");
    assert_string_equal(names[1], "beta");
    assert_int_equal(state_list(&st, names, 1), 2);
    assert_string_equal(names[0], "alpha");

    /* live bottles are never reclaimed */
    assert_int_equal(state_reclaim_stale(&st), 0);
    assert_int_equal(state_bottle_running(&st, "alpha"), 1);

    state_bottle_remove(&st, &a);
    state_bottle_remove(&st, &a); /* idempotent */
    state_bottle_remove(&st, &b);
    assert_int_equal(state_list(&st, names, 4), 0);
    assert_int_equal(state_info_read(&st, "alpha", &out), -ENOENT);
}

/* A supervisor killed with -9 leaves its directory behind, unlocked: reclaimed, and its name
 * can be used again. */
static void test_reclaim_stale(void **unused)
{
    struct state_bottle b;
    char p[1024];
    struct stat sb;
    pid_t pid;
    int status;
    (void)unused;

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct state_info in = { .pid = getpid() };
        if (state_bottle_create(&st, "crashed", &b) < 0 || state_info_write(&b, &in) < 0)
            _exit(1);
        _exit(0); /* no remove */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(state_bottle_path(&st, "crashed", NULL, p, sizeof(p)), 0);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(state_bottle_running(&st, "crashed"), 0);
    assert_int_equal(state_reclaim_stale(&st), 1);
    assert_int_equal(stat(p, &sb), -1);
    assert_int_equal(state_bottle_create(&st, "crashed", &b), 0);
    state_bottle_remove(&st, &b);
}

/* The creator's lock must be the lock file in its directory, and the directory must still be
 * there, whatever a concurrent reclaim does. */
static int creator(int rounds)
{
    for (int i = 0; i < rounds; i++) {
        struct state_bottle b;
        struct stat fst, pst;
        char lock[1024];
        int r = state_bottle_create(&st, "race", &b);
        if (r < 0) {
            fprintf(stderr, "# round %d: create: %s\n", i, strerror(-r));
            return 2;
        }
        snprintf(lock, sizeof(lock), "%s/lock", b.dir);
        if (fstat(b.lock_fd, &fst) < 0 || stat(lock, &pst) < 0 || fst.st_ino != pst.st_ino ||
            fst.st_nlink == 0) {
            fprintf(stderr, "# round %d: our lock file was removed under us\n", i);
            return 1;
        }
        state_bottle_remove(&st, &b);
    }
    return 0;
}

static void test_reclaim_races_create(void **unused)
{
    const int rounds = 3000;
    pid_t cpid, rpid;
    int status = -1;
    struct timespec t0, now;
    (void)unused;

    cpid = fork();
    assert_true(cpid >= 0);
    if (cpid == 0)
        _exit(creator(rounds));
    rpid = fork();
    assert_true(rpid >= 0);
    if (rpid == 0) {
        for (;;)
            (void)state_reclaim_stale(&st);
    }
    /* bounded: 60 s at most */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        pid_t w = waitpid(cpid, &status, WNOHANG);
        if (w == cpid)
            break;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 60) {
            kill(cpid, SIGKILL);
            waitpid(cpid, &status, 0);
            status = -1;
            break;
        }
        usleep(10000);
    }
    kill(rpid, SIGKILL);
    waitpid(rpid, NULL, 0);
    assert_true(status != -1); /* did not time out */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_refuses_foreign_modes),
        cmocka_unit_test(test_create_info_list),
        cmocka_unit_test(test_reclaim_stale),
        cmocka_unit_test(test_reclaim_races_create),
    };
    char root[600];
    int r;

    if (!mkdtemp(dir))
        return 1;
    snprintf(root, sizeof(root), "%s/state", dir);
    if (state_open(root, true, &st) < 0)
        return 1;
    r = cmocka_run_group_tests(tests, NULL, NULL);
    (void)rm_rf(dir);
    return r;
}
