/* bench/tools/bbtls.c: TLS load client for bench/intercept.sh (loopback only).
 *
 *   bbtls get  --proxy P --host NAME --port ORIGIN --cafile CA --conns C
 *              (--seconds T [--warmup-ms W] | --count N) [--new-conn] [--path /hello]
 *              [--pid PID] [--origin-pid PID]
 *   bbtls bulk --proxy P --host NAME --port ORIGIN --cafile CA --size BYTES [--pid ...]
 *
 * Each connection: TCP to 127.0.0.1:P, "CONNECT NAME:ORIGIN", the proxy's 200, then a TLS
 * handshake (TLS 1.2 or 1.3, SNI NAME, ALPN http/1.1) that verifies the chain against CA and
 * the certificate's name against NAME (SSL_set1_host); a failed verification is an error.
 *   get:  C connections (one thread each, blocking I/O), one GET in flight on each. Kept alive
 *         by default; --new-conn makes every request a new connection (CONNECT + a full
 *         handshake, no session resumption) that is closed after the answer. A time window of T
 *         seconds after a warm-up (default 500 ms), or N requests in all from the start.
 *         Reports requests/s, errors, and latency p50/p99 (us; for --new-conn from socket()
 *         to the last byte of the answer).
 *   bulk: one kept-alive connection, one GET /size/BYTES, the body read into a 64 KiB buffer;
 *         reports MB/s (10^6 bytes) from the request to the last byte.
 * --pid/--origin-pid: the CPU time of that process (all its threads, from
 * /proc/PID/task/TID/schedstat, in ns) over the measured window is reported as
 * proxy_cpu_us/origin_cpu_us; client_cpu_us is our own (getrusage). Answers must be
 * "HTTP/1.1 200" with a Content-Length (or chunked) body, else the request counts as an error.
 * Output: one line of key=value pairs on stdout. A hard alarm bounds every run. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem, strcasestr */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "u64vec.h"

#define IO_TIMEOUT_S 10
#define HEAD_CAP 16384
#define MAX_CONNS 1024

struct opts {
    const char *mode, *host, *cafile, *path;
    unsigned proxy, port, conns, seconds, warmup_ms, count, pid, origin_pid;
    unsigned long long size;
    bool new_conn;
};

struct worker {
    pthread_t th;
    unsigned id;
    struct u64_vec lat;
    unsigned long long done, errors;
    char err[160];
};

static struct opts o = { .path = "/hello", .warmup_ms = 500 };
static SSL_CTX *ctx;
static atomic_bool measuring, stopping;
static atomic_ullong claimed;
static uint64_t bulk_bytes;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int parse_u(const char *s, unsigned long long *ret)
{
    unsigned long long v = 0;

    if (!s || *s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1000000000000ull)
            return -EINVAL;
        v = v * 10 + (unsigned)(*s - '0');
    }
    *ret = v;
    return 0;
}

/* The decimal number at the start of s (0 when none); *end: past it. */
static uint64_t digits(const char *s, const char **end)
{
    uint64_t v = 0;

    for (; *s >= '0' && *s <= '9' && v < 1000000000000000000ull; s++)
        v = v * 10 + (uint64_t)(*s - '0');
    if (end)
        *end = s;
    return v;
}

/* CPU time of a whole process in ns (the sum of its threads' schedstat), 0 if unknown. */
static uint64_t proc_cpu_ns(unsigned pid)
{
    char path[64], line[128];
    uint64_t sum = 0;
    struct dirent *d;
    DIR *dir;

    if (pid == 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%u/task", pid);
    dir = opendir(path);
    if (!dir)
        return 0;
    while ((d = readdir(dir))) {
        char p[300];
        FILE *f;

        if (d->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "/proc/%u/task/%s/schedstat", pid, d->d_name);
        f = fopen(p, "re");
        if (!f)
            continue;
        if (fgets(line, sizeof(line), f))
            sum += digits(line, NULL);
        fclose(f);
    }
    closedir(dir);
    return sum;
}

static uint64_t self_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000ull + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000ull + (uint64_t)ru.ru_stime.tv_usec;
}

struct window {
    uint64_t t0, t1, p0, p1, o0, o1, s0, s1;
};

static void window_begin(struct window *w)
{
    w->p0 = proc_cpu_ns(o.pid);
    w->o0 = proc_cpu_ns(o.origin_pid);
    w->s0 = self_cpu_us();
    w->t0 = now_ns();
}

static void window_end(struct window *w)
{
    w->t1 = now_ns();
    w->p1 = proc_cpu_ns(o.pid);
    w->o1 = proc_cpu_ns(o.origin_pid);
    w->s1 = self_cpu_us();
}

static void set_err(struct worker *w, const char *what)
{
    unsigned long e = ERR_peek_last_error();

    if (w->err[0] == '\0') {
        char es[120] = "";
        if (e)
            ERR_error_string_n(e, es, sizeof(es));
        snprintf(w->err, sizeof(w->err), "%s%s%s", what, es[0] ? ": " : "", es);
    }
    ERR_clear_error();
}

/* TCP to the proxy, CONNECT, the 200 head (read byte-exact: the proxy sends nothing more
 * before our ClientHello), then the verified TLS handshake. NULL on failure. */
static SSL *open_conn(struct worker *w)
{
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)o.proxy),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    char req[512], head[HEAD_CAP];
    size_t got = 0;
    int fd, one = 1, n;
    SSL *ssl;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_err(w, "socket");
        return NULL;
    }
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        set_err(w, "connect to the proxy");
        close(fd);
        return NULL;
    }
    n = snprintf(req, sizeof(req), "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\n\r\n", o.host, o.port,
                 o.host, o.port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        set_err(w, "send CONNECT");
        close(fd);
        return NULL;
    }
    for (;;) {
        ssize_t r = recv(fd, head + got, sizeof(head) - 1 - got, 0);
        if (r <= 0) {
            set_err(w, "CONNECT answer");
            close(fd);
            return NULL;
        }
        got += (size_t)r;
        if (memmem(head, got, "\r\n\r\n", 4))
            break;
        if (got == sizeof(head) - 1) {
            set_err(w, "CONNECT answer too long");
            close(fd);
            return NULL;
        }
    }
    if (got < 12 || memcmp(head, "HTTP/1.", 7) != 0 || memcmp(head + 8, " 200", 4) != 0) {
        set_err(w, "CONNECT refused");
        close(fd);
        return NULL;
    }
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1 || SSL_set_tlsext_host_name(ssl, o.host) != 1 ||
        SSL_set1_host(ssl, o.host) != 1 || SSL_connect(ssl) != 1) {
        set_err(w, "TLS handshake");
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void close_conn(SSL *ssl)
{
    int fd;

    if (!ssl)
        return;
    fd = SSL_get_fd(ssl);
    SSL_shutdown(ssl); /* our close_notify; we do not wait for theirs */
    SSL_free(ssl);
    close(fd);
}

/* One GET and its whole answer. Returns the body length, or -1 on an error. sink: where bodies
 * go (bulk reads them into a big buffer). */
static long long do_get(struct worker *w, SSL *ssl, const char *path, char *sink, size_t sink_cap)
{
    char req[512], buf[HEAD_CAP];
    size_t got = 0, hl, have;
    const char *end, *cl;
    long long len = -1, body = 0;
    bool chunked;
    int n;

    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: bbtls\r\n\r\n",
                 path, o.host, o.port);
    if (SSL_write(ssl, req, n) != n) {
        set_err(w, "send GET");
        return -1;
    }
    for (;;) {
        int r = SSL_read(ssl, buf + got, (int)(sizeof(buf) - 1 - got));
        if (r <= 0) {
            set_err(w, "read answer head");
            return -1;
        }
        got += (size_t)r;
        buf[got] = '\0';
        end = memmem(buf, got, "\r\n\r\n", 4);
        if (end)
            break;
        if (got == sizeof(buf) - 1) {
            set_err(w, "answer head too long");
            return -1;
        }
    }
    if (got < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0) {
        set_err(w, "answer not 200");
        return -1;
    }
    hl = (size_t)(end - buf) + 4;
    buf[hl - 2] = '\0'; /* search the head only */
    cl = strcasestr(buf, "\r\ncontent-length:");
    chunked = strcasestr(buf, "\r\ntransfer-encoding: chunked") != NULL;
    if (cl) {
        const char *v = cl + 17;
        while (*v == ' ' || *v == '\t')
            v++;
        len = (long long)digits(v, NULL);
    } else if (!chunked) {
        set_err(w, "answer without a length");
        return -1;
    }
    have = got - hl;
    if (!chunked) {
        body = (long long)have;
        while (body < len) {
            int r = SSL_read(ssl, sink, (int)sink_cap);
            if (r <= 0) {
                set_err(w, "read body");
                return -1;
            }
            body += r;
        }
        if (body != len) {
            set_err(w, "more than the body");
            return -1;
        }
        return body;
    }
    /* chunked: small bodies only (the fixed answer), the whole thing within buf */
    memmove(buf, buf + hl, have);
    got = have;
    for (;;) {
        buf[got] = '\0';
        if (memmem(buf, got, "0\r\n\r\n", 5))
            return (long long)got;
        if (got == sizeof(buf) - 1) {
            set_err(w, "chunked body too long");
            return -1;
        }
        int r = SSL_read(ssl, buf + got, (int)(sizeof(buf) - 1 - got));
        if (r <= 0) {
            set_err(w, "read chunked body");
            return -1;
        }
        got += (size_t)r;
    }
}

static bool take_one(void)
{
    if (atomic_load(&stopping))
        return false;
    if (o.count && atomic_fetch_add(&claimed, 1) >= o.count)
        return false;
    return true;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char sink[16384];
    SSL *ssl = NULL;

    while (take_one()) {
        uint64_t t0 = now_ns();
        bool m0 = atomic_load(&measuring);
        long long r;

        if (!ssl)
            ssl = open_conn(w);
        r = ssl ? do_get(w, ssl, o.path, sink, sizeof(sink)) : -1;
        if (o.new_conn || r < 0) {
            close_conn(ssl);
            ssl = NULL;
        }
        if (m0 && atomic_load(&measuring)) {
            if (r < 0)
                w->errors++;
            else {
                w->done++;
                vec_push(&w->lat, now_ns() - t0);
            }
        } else if (r < 0)
            w->errors++;
        if (r < 0) {
            if (w->errors > 1000)
                break;
            usleep(1000);
        }
    }
    close_conn(ssl);
    return NULL;
}

static void print_window(const struct window *w)
{
    printf(" secs=%.3f proxy_cpu_us=%llu origin_cpu_us=%llu client_cpu_us=%llu",
           (double)(w->t1 - w->t0) / 1e9, (unsigned long long)((w->p1 - w->p0) / 1000),
           (unsigned long long)((w->o1 - w->o0) / 1000), (unsigned long long)(w->s1 - w->s0));
}

static int run_get(void)
{
    struct worker *ws = calloc(o.conns, sizeof(*ws));
    struct u64_vec all = { 0 };
    unsigned long long done = 0, errors = 0;
    const char *first_err = NULL;
    struct window win = { 0 };

    if (!ws)
        return 1;
    if (o.count) {
        atomic_store(&measuring, true);
        window_begin(&win);
    }
    for (unsigned i = 0; i < o.conns; i++) {
        ws[i].id = i;
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    }
    if (!o.count) {
        usleep(o.warmup_ms * 1000u);
        window_begin(&win);
        atomic_store(&measuring, true);
        usleep(o.seconds * 1000000u);
        atomic_store(&measuring, false);
        window_end(&win);
        atomic_store(&stopping, true);
    }
    for (unsigned i = 0; i < o.conns; i++) {
        pthread_join(ws[i].th, NULL);
        done += ws[i].done;
        errors += ws[i].errors;
        if (!first_err && ws[i].err[0])
            first_err = ws[i].err;
        for (size_t j = 0; j < ws[i].lat.len; j++)
            vec_push(&all, ws[i].lat.v[j]);
    }
    if (o.count)
        window_end(&win);
    qsort(all.v, all.len, sizeof(*all.v), cmp_u64);
    printf("mode=get conns=%u new_conn=%d requests=%llu errors=%llu rate=%.1f p50_us=%.0f "
           "p99_us=%.0f",
           o.conns, o.new_conn, done, errors, (double)done / ((double)(win.t1 - win.t0) / 1e9),
           all.len ? (double)all.v[all.len / 2] / 1e3 : 0.0,
           all.len ? (double)all.v[all.len * 99 / 100] / 1e3 : 0.0);
    print_window(&win);
    printf("\n");
    if (first_err)
        fprintf(stderr, "bbtls: first error: %s\n", first_err);
    return done == 0 ? 1 : 0;
}

static int run_bulk(void)
{
    static char sink[64 * 1024];
    struct worker w = { 0 };
    struct window win = { 0 };
    char path[64];
    long long r;
    SSL *ssl;

    snprintf(path, sizeof(path), "/size/%llu", o.size);
    ssl = open_conn(&w);
    if (!ssl) {
        fprintf(stderr, "bbtls: %s\n", w.err);
        return 1;
    }
    window_begin(&win);
    r = do_get(&w, ssl, path, sink, sizeof(sink));
    window_end(&win);
    close_conn(ssl);
    if (r < 0 || (unsigned long long)r != o.size) {
        fprintf(stderr, "bbtls: bulk: %s\n", w.err[0] ? w.err : "short body");
        return 1;
    }
    bulk_bytes = (uint64_t)r;
    printf("mode=bulk bytes=%llu mbps=%.1f", (unsigned long long)bulk_bytes,
           (double)bulk_bytes / ((double)(win.t1 - win.t0) / 1e9) / 1e6);
    print_window(&win);
    printf("\n");
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bbtls get|bulk --proxy P --host NAME --port ORIGIN --cafile CA "
                    "[--conns C] [--seconds T | --count N] [--new-conn] [--size BYTES] ...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "proxy", 1, 0, 'P' },     { "host", 1, 0, 'H' },  { "port", 1, 0, 'p' },
        { "cafile", 1, 0, 'C' },    { "conns", 1, 0, 'c' }, { "seconds", 1, 0, 's' },
        { "warmup-ms", 1, 0, 'w' }, { "count", 1, 0, 'n' }, { "new-conn", 0, 0, 'N' },
        { "path", 1, 0, 'u' },      { "pid", 1, 0, 'i' },   { "origin-pid", 1, 0, 'o' },
        { "size", 1, 0, 'z' },      { 0, 0, 0, 0 },
    };
    unsigned long long v;
    int c;

    if (argc < 2)
        usage();
    o.mode = argv[1];
    optind = 2;
    o.conns = 1;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'H')
            o.host = optarg;
        else if (c == 'C')
            o.cafile = optarg;
        else if (c == 'u')
            o.path = optarg;
        else if (c == 'N')
            o.new_conn = true;
        else if (c == '?' || parse_u(optarg, &v) < 0)
            usage();
        else if (c == 'P')
            o.proxy = (unsigned)v;
        else if (c == 'p')
            o.port = (unsigned)v;
        else if (c == 'c')
            o.conns = (unsigned)v;
        else if (c == 's')
            o.seconds = (unsigned)v;
        else if (c == 'w')
            o.warmup_ms = (unsigned)v;
        else if (c == 'n')
            o.count = (unsigned)v;
        else if (c == 'i')
            o.pid = (unsigned)v;
        else if (c == 'o')
            o.origin_pid = (unsigned)v;
        else if (c == 'z')
            o.size = v;
    }
    if (!o.proxy || !o.port || !o.host || !o.cafile || o.conns == 0 || o.conns > MAX_CONNS)
        usage();
    if (strcmp(o.mode, "get") == 0 && !o.count && !o.seconds)
        usage();
    signal(SIGPIPE, SIG_IGN);
    alarm(o.count ? 300 : o.seconds + 60);
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, o.cafile, NULL) != 1) {
        fprintf(stderr, "bbtls: cannot load CA file %s\n", o.cafile);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x08http/1.1", 9);
    if (strcmp(o.mode, "get") == 0)
        return run_get();
    if (strcmp(o.mode, "bulk") == 0 && o.size)
        return run_bulk();
    usage();
    return 2;
}
