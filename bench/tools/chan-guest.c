/* bench/tools/chan-guest.c: the guest-side parts of bench/microvm-chan.sh's decomposition.
 *
 * Built static, copied into the bottle's workspace and run inside the microVM with
 * `bot-bottle run -- chan-guest MODE ...`. Every mode prints one line
 *   CHAN-GUEST mode=M bytes=N ms=T cpu=U/S/I/SI/ID self=U/S init=U/S
 * ms: guest CLOCK_MONOTONIC from the first request to the last byte; cpu: the guest's
 * /proc/stat deltas over that time (user+nice, system, irq, softirq, idle; in ms); self: the
 * measured process tree's user/system CPU ms (getrusage of the reaped children plus itself);
 * init: PID 1's (bottle-init: the channel relay) user/system ms from /proc/1/stat.
 *
 * Modes:
 *   tcp SIZE CHUNK         a forked receiver reads SIZE bytes from a sender over the guest's
 *                          TCP loopback (127.0.0.1) in CHUNK-byte reads/writes: the guest TCP
 *                          stack alone, no channel.
 *   get URL SIZE CHUNK     an HTTP/1.1 GET of URL (http://127.0.0.1:P/SIZE) through $HTTP_PROXY
 *                          (the relay at A:3128), the body read in CHUNK-byte reads and
 *                          discarded: the full path with the cheapest possible client.
 *   wrap SIZE CMD ARG...   runs CMD (e.g. curl fetching SIZE bytes) and reports the same counters
 *                          for it (bytes=SIZE when CMD exits 0, else 0).
 * Benchmark tool only; not hardened.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct snap {
    double t;
    unsigned long long cpu[5]; /* user+nice, system, irq, softirq, idle (ticks) */
    unsigned long long init[2];
};

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void take(struct snap *s)
{
    unsigned long long v[8] = { 0 };
    char buf[1024];
    FILE *f = fopen("/proc/stat", "r");

    memset(s, 0, sizeof(*s));
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            s->cpu[0] = v[0] + v[1];
            s->cpu[1] = v[2];
            s->cpu[2] = v[5];
            s->cpu[3] = v[6];
            s->cpu[4] = v[3] + v[4];
        }
        fclose(f);
    }
    f = fopen("/proc/1/stat", "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        char *p;
        buf[n] = '\0';
        p = strrchr(buf, ')');
        /* after ") ": state(3) ... utime is field 14, stime 15 */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &s->init[0],
                        &s->init[1]) != 2)
            s->init[0] = s->init[1] = 0;
        fclose(f);
    }
    s->t = now_ms();
}

static void report(const char *mode, unsigned long long bytes, const struct snap *a,
                   const struct snap *b)
{
    double tick = 1000.0 / (double)sysconf(_SC_CLK_TCK);
    struct rusage self, kids;

    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    double su = (self.ru_utime.tv_sec + kids.ru_utime.tv_sec) * 1e3 +
                (self.ru_utime.tv_usec + kids.ru_utime.tv_usec) / 1e3;
    double ss = (self.ru_stime.tv_sec + kids.ru_stime.tv_sec) * 1e3 +
                (self.ru_stime.tv_usec + kids.ru_stime.tv_usec) / 1e3;
    printf("CHAN-GUEST mode=%s bytes=%llu ms=%.1f cpu=%.0f/%.0f/%.0f/%.0f/%.0f self=%.0f/%.0f "
           "init=%.0f/%.0f\n",
           mode, bytes, b->t - a->t, ((double)b->cpu[0] - (double)a->cpu[0]) * tick,
           ((double)b->cpu[1] - (double)a->cpu[1]) * tick,
           ((double)b->cpu[2] - (double)a->cpu[2]) * tick,
           ((double)b->cpu[3] - (double)a->cpu[3]) * tick,
           ((double)b->cpu[4] - (double)a->cpu[4]) * tick, su, ss,
           ((double)b->init[0] - (double)a->init[0]) * tick,
           ((double)b->init[1] - (double)a->init[1]) * tick);
    fflush(stdout);
}

static int mode_tcp(unsigned long long size, size_t chunk)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    int ls = socket(AF_INET, SOCK_STREAM, 0), c, st;
    char *buf = calloc(1, chunk);
    unsigned long long done = 0;
    struct snap a, b;
    pid_t pid;

    if (ls < 0 || !buf || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0)
        return perror("chan-guest: listen"), 1;
    pid = fork();
    if (pid == 0) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            _exit(1);
        memset(buf, 'x', chunk);
        while (done < size) {
            ssize_t k = write(s, buf, size - done < chunk ? size - done : chunk);
            if (k <= 0)
                _exit(1);
            done += (unsigned long long)k;
        }
        _exit(0);
    }
    c = accept(ls, NULL, NULL);
    if (c < 0)
        return perror("chan-guest: accept"), 1;
    take(&a);
    for (;;) {
        ssize_t k = read(c, buf, chunk);
        if (k <= 0)
            break;
        done += (unsigned long long)k;
    }
    waitpid(pid, &st, 0);
    take(&b);
    report("tcp", done, &a, &b);
    return done == size ? 0 : 1;
}

static int mode_get(const char *url, unsigned long long size, size_t chunk)
{
    const char *proxy = getenv("HTTP_PROXY");
    char host[64], req[512], *buf = calloc(1, chunk + 1);
    unsigned port = 0;
    struct sockaddr_in sa = { .sin_family = AF_INET };
    unsigned long long body = 0;
    size_t hlen = 0;
    bool in_head = true;
    struct snap a, b;
    int s;

    if (!proxy || sscanf(proxy, "http://%63[0-9.]:%u", host, &port) != 2 ||
        inet_pton(AF_INET, host, &sa.sin_addr) != 1 || !buf)
        return fprintf(stderr, "chan-guest: HTTP_PROXY is not http://IPv4:PORT\n"), 1;
    sa.sin_port = htons((unsigned short)port);
    const char *h = url + strlen("http://"), *slash = strchr(h, '/');
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %.*s\r\nConnection: close\r\n\r\n",
                     url, (int)(slash ? slash - h : (long)strlen(h)), h);
    take(&a);
    s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        write(s, req, (size_t)n) != n)
        return perror("chan-guest: proxy"), 1;
    for (;;) {
        ssize_t k = read(s, buf, chunk);
        if (k <= 0)
            break;
        if (in_head) {
            /* the head is small: find its end in what we have (kept across reads) */
            char *e;
            buf[k] = '\0';
            e = strstr(buf, "\r\n\r\n");
            hlen += (size_t)k;
            if (!e) {
                if (hlen > 8192)
                    return fprintf(stderr, "chan-guest: no response head\n"), 1;
                continue;
            }
            if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
                return fprintf(stderr, "chan-guest: %.40s\n", buf), 1;
            body += (unsigned long long)(k - (e + 4 - buf));
            in_head = false;
            continue;
        }
        body += (unsigned long long)k;
    }
    take(&b);
    report("get", body, &a, &b);
    return body == size ? 0 : 1;
}

static int mode_wrap(unsigned long long size, char **argv)
{
    struct snap a, b;
    int st;
    pid_t pid;

    take(&a);
    pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    take(&b);
    st = WIFEXITED(st) ? WEXITSTATUS(st) : 1;
    report("wrap", st == 0 ? size : 0, &a, &b);
    return st;
}

/* Decimal digits of s (0 for anything else; capped at 2^40). */
static unsigned long long num(const char *s)
{
    unsigned long long v = 0;

    while (*s >= '0' && *s <= '9' && v < (1ULL << 40))
        v = v * 10 + (unsigned long long)(*s++ - '0');
    return v;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "get") == 0 &&
        (num(argv[4]) == 0 || num(argv[4]) > (64u << 20)))
        argc = 0; /* CHUNK out of range: usage */
    if (argc >= 4 && strcmp(argv[1], "tcp") == 0 &&
        (num(argv[3]) == 0 || num(argv[3]) > (64u << 20)))
        argc = 0;
    if (argc >= 4 && strcmp(argv[1], "tcp") == 0)
        return mode_tcp(num(argv[2]), (size_t)num(argv[3]));
    if (argc >= 5 && strcmp(argv[1], "get") == 0)
        return mode_get(argv[2], num(argv[3]), (size_t)num(argv[4]));
    if (argc >= 4 && strcmp(argv[1], "wrap") == 0)
        return mode_wrap(num(argv[2]), argv + 3);
    fprintf(stderr, "usage: chan-guest tcp SIZE CHUNK | get URL SIZE CHUNK | wrap SIZE CMD...\n");
    return 2;
}
