/* bench/tools/run-time.c: time one command from fork to exit, for bench/run.sh.
 *
 * Usage: run-time TIMEOUT_MS CMD [ARG...]
 * Forks, execs CMD (PATH search) in its own process group with stdin from /dev/null, stdout
 * and stderr as given, waits for it, and prints one line on stdout:
 *     "<elapsed_us> <status>"
 * where elapsed is CLOCK_MONOTONIC from just before fork() to the reaping of the child, and
 * status is the exit code, 128+N when killed by signal N, or "timeout" when TIMEOUT_MS ran
 * out (the child's process group then gets SIGKILL). Exit status: 0 when it printed a line,
 * 2 on a usage or system error.
 *
 * This takes the shell's own fork/exec and timeout(1)'s out of the measurement: what remains
 * is exactly one fork+exec of CMD and its run to exit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int parse_ms(const char *s, uint64_t *ret)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9' || v > 3600000)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v == 0 || v > 3600000)
        return -1;
    *ret = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t timeout_ms;
    if (argc < 3 || parse_ms(argv[1], &timeout_ms) < 0) {
        fprintf(stderr, "usage: run-time TIMEOUT_MS CMD [ARG...]\n");
        return 2;
    }
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) {
        perror("run-time: /dev/null");
        return 2;
    }
    int64_t t0 = now_us();
    pid_t pid = fork();
    if (pid < 0) {
        perror("run-time: fork");
        return 2;
    }
    if (pid == 0) {
        setpgid(0, 0);
        dup2(null, 0);
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    setpgid(pid, pid); /* also from here, so the kill below never misses */
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int timed_out = 0;
    if (pfd >= 0) {
        struct pollfd p = { .fd = pfd, .events = POLLIN };
        int64_t deadline = t0 + (int64_t)timeout_ms * 1000;
        for (;;) {
            int64_t left = deadline - now_us();
            if (left <= 0) {
                timed_out = 1;
                break;
            }
            int r = poll(&p, 1, (int)((left + 999) / 1000));
            if (r > 0)
                break;
            if (r < 0 && errno != EINTR) {
                perror("run-time: poll");
                break;
            }
        }
    }
    if (timed_out)
        kill(-pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("run-time: waitpid");
            return 2;
        }
    }
    int64_t t1 = now_us();
    if (timed_out)
        printf("%lld timeout\n", (long long)(t1 - t0));
    else if (WIFSIGNALED(st))
        printf("%lld %d\n", (long long)(t1 - t0), 128 + WTERMSIG(st));
    else
        printf("%lld %d\n", (long long)(t1 - t0), WEXITSTATUS(st));
    return 0;
}
