/*
 * Unit tests for src/backend/microvm/snapshot.c: the template's key, its files in the cache
 * (checks, pruning, discarding only the file that failed) and the QMP save against a fake
 * QEMU monitor in a child process.
 */
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend/microvm/snapshot.h"
#include "common/str.h"
#include "unit-util.h"

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void test_key(void **state)
{
    char dir[] = "/tmp/test-snap-key.XXXXXX", a[PATH_MAX], b[PATH_MAX];
    char k1[SNAPSHOT_KEY_HEX + 1], k2[SNAPSHOT_KEY_HEX + 1], k3[SNAPSHOT_KEY_HEX + 1];
    char *argv1[] = { "qemu", "-m", "1024M", NULL }, *argv2[] = { "qemu", "-m", "512M", NULL };
    char *argv3[] = { "qemu", "-m1", "024M", NULL };
    const char *files[2];
    struct timespec ts[2] = { { 0, 0 }, { 1000, 0 } };
    (void)state;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(str_printf(a, sizeof(a), "%s/qemu", dir), 0);
    assert_int_equal(str_printf(b, sizeof(b), "%s/vmlinux", dir), 0);
    put(a, "qemu");
    put(b, "kernel");
    files[0] = a;
    files[1] = b;
    assert_int_equal(snapshot_key(files, 2, argv1, k1), 0);
    assert_int_equal(strlen(k1), SNAPSHOT_KEY_HEX);
    assert_int_equal(strspn(k1, "0123456789abcdef"), SNAPSHOT_KEY_HEX);
    assert_int_equal(snapshot_key(files, 2, argv1, k2), 0);
    assert_string_equal(k1, k2); /* the same inputs: the same template */
    assert_int_equal(snapshot_key(files, 2, argv2, k2), 0);
    assert_string_not_equal(k1, k2); /* another -m */
    assert_int_equal(snapshot_key(files, 2, argv3, k3), 0);
    assert_string_not_equal(k1, k3); /* arguments are not just concatenated */
    /* a rebuilt kernel (another mtime), or one replaced by another file */
    ts[1].tv_sec = 12345;
    assert_int_equal(utimensat(AT_FDCWD, b, ts, 0), 0);
    assert_int_equal(snapshot_key(files, 2, argv1, k2), 0);
    assert_string_not_equal(k1, k2);
    assert_int_equal(unlink(b), 0);
    assert_int_equal(snapshot_key(files, 2, argv1, k2), -ENOENT);
    assert_int_equal(rm_rf(dir), 0);
}

static void test_cpu_model(void **state)
{
    char path[] = "/tmp/test-snap-cpu.XXXXXX", model[64];
    int fd = mkstemp(path);
    static const char text[] = "processor\t: 0\nvendor_id\t: GenuineIntel\n"
                               "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"
                               "cpu MHz\t\t: 2199.998\nprocessor\t: 1\n"
                               "model name\t: Another\n";
    (void)state;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof(text) - 1), sizeof(text) - 1);
    close(fd);
    assert_int_equal(snapshot_cpu_model(path, model, sizeof(model)), 0);
    assert_string_equal(model, "Intel(R) Xeon(R) CPU @ 2.20GHz"); /* the first one */
    fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_int_equal(write(fd, "processor\t: 0\n", 14), 14);
    close(fd);
    assert_int_equal(snapshot_cpu_model(path, model, sizeof(model)), 0);
    assert_string_equal(model, ""); /* none (some architectures) */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(snapshot_cpu_model(path, model, sizeof(model)), -ENOENT);
}

static void touch_at(const char *dir, const char *name, time_t mtime)
{
    char p[PATH_MAX];
    struct timespec ts[2] = { { mtime, 0 }, { mtime, 0 } };
    int fd;

    assert_int_equal(str_printf(p, sizeof(p), "%s/%s", dir, name), 0);
    fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "state", 5), 5);
    assert_int_equal(futimens(fd, ts), 0);
    close(fd);
}

static bool exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    struct stat st;

    assert_int_equal(str_printf(p, sizeof(p), "%s/%s", dir, name), 0);
    return lstat(p, &st) == 0;
}

#define K(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c /* 32 */

/* The directory, the checks on a template, commit + prune, discard. */
/* The lock is waited for a bounded time (its holder may be stopped), then -ETIMEDOUT. */
static void on_alarm(int sig)
{
    (void)sig;
    fail_msg("snapshot_lock waited for ever on a lock another holds");
}

static void test_lock_bounded(void **state)
{
    char cache[] = "/tmp/test-snap-lock.XXXXXX", dir[PATH_MAX];
    struct timespec a, b;
    long long ms;
    int held, fd;
    (void)state;

    assert_non_null(mkdtemp(cache));
    assert_int_equal(snapshot_dir(cache, dir, sizeof(dir)), 0);
    held = snapshot_lock(dir, 1000);
    assert_true(held >= 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    clock_gettime(CLOCK_MONOTONIC, &a);
    fd = snapshot_lock(dir, 300);
    clock_gettime(CLOCK_MONOTONIC, &b);
    alarm(0);
    assert_int_equal(fd, -ETIMEDOUT);
    ms = (b.tv_sec - a.tv_sec) * 1000LL + (b.tv_nsec - a.tv_nsec) / 1000000;
    assert_true(ms >= 300 && ms < 5000);
    close(held);
    fd = snapshot_lock(dir, 300); /* free again */
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(rm_rf(cache), 0);
}

static void test_files(void **state)
{
    char cache[] = "/tmp/test-snap-files.XXXXXX", dir[PATH_MAX], tmp[PATH_MAX], p[PATH_MAX];
    time_t now = time(NULL);
    int fd, fd2;
    (void)state;

    assert_non_null(mkdtemp(cache));
    assert_int_equal(snapshot_dir(cache, dir, sizeof(dir)), 0);
    {
        struct stat st;
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        /* not private: refused */
        assert_int_equal(chmod(dir, 0750), 0);
        assert_int_equal(snapshot_dir(cache, p, sizeof(p)), -EPERM);
        assert_int_equal(chmod(dir, 0700), 0);
    }
    assert_int_equal(snapshot_open(dir, K("a")), -ENOENT);
    assert_int_equal(snapshot_open(dir, "../x"), -EINVAL);
    /* five older templates and a stale temporary file */
    touch_at(dir, K("1") ".vmstate", now - 500);
    touch_at(dir, K("2") ".vmstate", now - 400);
    touch_at(dir, K("3") ".vmstate", now - 300);
    touch_at(dir, K("4") ".vmstate", now - 200);
    touch_at(dir, K("5") ".vmstate", now - 100);
    touch_at(dir, K("6") ".vmstate.tmp.1", now - 7200);
    touch_at(dir, K("7") ".vmstate.tmp.2", now - 10); /* another's, being written */
    /* group- or world-writable: left alone */
    assert_int_equal(str_printf(p, sizeof(p), "%s/%s.vmstate", dir, K("5")), 0);
    assert_int_equal(chmod(p, 0620), 0);
    assert_int_equal(snapshot_open(dir, K("5")), -EPERM);
    assert_int_equal(chmod(p, 0600), 0);
    fd = snapshot_open(dir, K("5"));
    assert_true(fd >= 0);
    close(fd);

    fd = snapshot_create_tmp(dir, K("a"), tmp, sizeof(tmp));
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "new", 3), 3);
    assert_int_equal(snapshot_commit(fd, tmp, dir, K("a")), 0);
    close(fd);
    /* kept: the new one and the three newest before it; gone: the rest, the stale tmp */
    assert_true(exists(dir, K("a") ".vmstate"));
    assert_true(exists(dir, K("5") ".vmstate"));
    assert_true(exists(dir, K("4") ".vmstate"));
    assert_true(exists(dir, K("3") ".vmstate"));
    assert_false(exists(dir, K("2") ".vmstate"));
    assert_false(exists(dir, K("1") ".vmstate"));
    assert_false(exists(dir, K("6") ".vmstate.tmp.1"));
    assert_true(exists(dir, K("7") ".vmstate.tmp.2"));
    assert_false(exists(dir, tmp + strlen(dir) + 1));

    /* discard removes the file that failed, not one made again since */
    fd = snapshot_open(dir, K("a"));
    assert_true(fd >= 0);
    fd2 = snapshot_create_tmp(dir, K("a"), tmp, sizeof(tmp));
    assert_true(fd2 >= 0);
    assert_int_equal(write(fd2, "newer", 5), 5);
    assert_int_equal(snapshot_commit(fd2, tmp, dir, K("a")), 0); /* replaced meanwhile */
    close(fd2);
    assert_false(snapshot_discard(dir, K("a"), fd));
    assert_true(exists(dir, K("a") ".vmstate"));
    close(fd);
    fd = snapshot_open(dir, K("a"));
    assert_true(fd >= 0);
    assert_true(snapshot_discard(dir, K("a"), fd));
    assert_false(exists(dir, K("a") ".vmstate"));
    close(fd);
    assert_int_equal(rm_rf(cache), 0);
}

/* ---- a fake QEMU monitor ---- */

static ssize_t read_line(int fd, char *buf, size_t size, int *passed)
{
    size_t len = 0;

    while (len + 1 < size) {
        char cb[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { .iov_base = buf + len, .iov_len = 1 };
        struct msghdr mh = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb, .msg_controllen = sizeof(cb)
        };
        ssize_t n = recvmsg(fd, &mh, 0);
        struct cmsghdr *c;

        if (n <= 0)
            return -1;
        for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_type == SCM_RIGHTS && passed)
                memcpy(passed, CMSG_DATA(c), sizeof(int));
        if (buf[len++] == '\n')
            break;
    }
    buf[len] = '\0';
    return (ssize_t)len;
}

static void say(int fd, const char *s)
{
    if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
        _exit(3);
}

/* mode 0: a good save; 1: migrate fails; 2: the monitor never greets */
static _Noreturn void fake_qemu(int fd, int mode)
{
    char line[512];
    int passed = -1, polls = 0;

    if (mode == 2) {
        sleep(5);
        _exit(0);
    }
    say(fd, "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n");
    while (read_line(fd, line, sizeof(line), &passed) > 0) {
        if (strstr(line, "\"migrate\"")) {
            if (mode == 1) {
                say(fd, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such fd\"}}\n");
                continue;
            }
            if (passed < 0 || write(passed, "SAVED-STATE", 11) != 11)
                _exit(4);
            say(fd, "{\"return\": {}}\n");
        } else if (strstr(line, "query-migrate")) {
            /* an event between, as QEMU sends them */
            say(fd, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}}\n");
            say(fd, polls++ < 2 ? "{\"return\": {\"status\": \"active\"}}\n"
                                : "{\"return\": {\"status\": \"completed\"}}\n");
        } else if (strstr(line, "getfd")) {
            say(fd, passed >= 0
                        ? "{\"return\": {}}\n"
                        : "{\"error\": {\"class\": \"GenericError\", \"desc\": \"none\"}}\n");
        } else if (strstr(line, "quit")) {
            say(fd, "{\"return\": {}}\n");
            _exit(0);
        } else {
            say(fd, "{\"return\": {}}\n");
        }
    }
    _exit(0);
}

static int run_save(int mode, int timeout_ms, char *why, size_t size, char *saved, size_t ssize)
{
    char path[] = "/tmp/test-snap-state.XXXXXX";
    int sv[2], state = mkstemp(path), r, st;
    pid_t pid;
    ssize_t n;

    assert_true(state >= 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        fake_qemu(sv[1], mode);
    }
    close(sv[1]);
    r = snapshot_save(sv[0], state, timeout_ms, why, size);
    close(sv[0]);
    (void)kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    n = pread(state, saved, ssize - 1, 0);
    saved[n > 0 ? n : 0] = '\0';
    close(state);
    unlink(path);
    return r;
}

static void test_save(void **state)
{
    char why[256] = "x", saved[64];
    (void)state;

    assert_int_equal(run_save(0, 5000, why, sizeof(why), saved, sizeof(saved)), 0);
    assert_string_equal(saved, "SAVED-STATE"); /* written by "QEMU" into the fd we passed */
    assert_string_equal(why, "");
    assert_int_equal(run_save(1, 5000, why, sizeof(why), saved, sizeof(saved)), -EIO);
    assert_string_equal(why, "QEMU: no such fd");
    assert_int_equal(run_save(2, 300, why, sizeof(why), saved, sizeof(saved)), -ETIMEDOUT);
    assert_non_null(strstr(why, "did not greet"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),   cmocka_unit_test(test_cpu_model),
        cmocka_unit_test(test_files), cmocka_unit_test(test_lock_bounded),
        cmocka_unit_test(test_save),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
