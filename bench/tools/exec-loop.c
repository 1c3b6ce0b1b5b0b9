/*
 * exec-loop: runs a command N times (fork, exec, wait) and prints the median wall time of one
 * run in microseconds. bench/microvm-exec.sh runs it inside a bottle.
 *
 *   exec-loop N PROGRAM [ARG...]
 *
 * Prints "median_us MEDIAN min_us MIN" on stdout; exits 1 when a run did not exit 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "parse-uint.h"

static long long now_us(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int cmp(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long long *t;
    unsigned n;

    if (argc < 3 || parse_uint(argv[1], &n) < 0 || n == 0 || n > 100000) {
        fprintf(stderr, "usage: exec-loop N PROGRAM [ARG...]\n");
        return 2;
    }
    t = calloc((size_t)n, sizeof(*t));
    if (!t)
        return 2;
    for (unsigned i = 0; i < n; i++) {
        long long a = now_us();
        int status;
        pid_t p = fork();

        if (p < 0)
            return 2;
        if (p == 0) {
            execv(argv[2], argv + 2);
            _exit(127);
        }
        if (waitpid(p, &status, 0) != p || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "exec-loop: %s did not exit 0\n", argv[2]);
            return 1;
        }
        t[i] = now_us() - a;
    }
    qsort(t, (size_t)n, sizeof(*t), cmp);
    printf("median_us %lld min_us %lld\n", t[n / 2], t[0]);
    free(t);
    return 0;
}
