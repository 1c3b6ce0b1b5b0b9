/* bench/tools/bbload.c: load generator for bench/proxy.sh (loopback only).
 *
 *   bbload tput  --port SRC  [--proxy P] --streams N --seconds T [--pid PID] [--origin-pid PID]
 *   bbload setup --port SINK [--proxy P] --workers W --seconds T [--pid PID]
 *   bbload get   --port HTTP [--proxy P] --conns C   --seconds T [--pid PID] [--origin-pid PID]
 *   bbload idle  --port SINK  --proxy P  --count N --ready-file F [--hold S]
 *
 * Every target is 127.0.0.1. With --proxy, tunnels are opened with "CONNECT 127.0.0.1:PORT" and
 * GETs use the absolute-URI form; without it the client talks to the origin directly.
 *   tput:  N tunnels to the origin's source port, read (recv into a buffer) for T seconds after
 *          a warm-up; reports MB/s (10^6 bytes).
 *   setup: W concurrent loops of connect proxy, CONNECT, read the 200, close (direct: TCP
 *          connect, close); reports setups/s and p50/p99 latency (socket() to 200 received).
 *   get:   C keep-alive connections each with one request in flight; reports requests/s, how
 *          often a connection had to be reopened (a proxy that closes after each answer), the
 *          longest wait for an answer, and "stalled": requests unanswered for over a second at
 *          the end of the window (a proxy that lost track of a request).
 *   idle:  opens N tunnels to the sink port, writes "opened=N errors=E" to F, then holds them
 *          until SIGTERM or S seconds (default 60).
 * --pid/--origin-pid: utime+stime of that process over the measured window (from /proc, so the
 * whole thread group) are reported as proxy_cpu_us/origin_cpu_us; client_cpu_us is our own.
 * Output: one line of key=value pairs on stdout. A hard alarm bounds every run. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, memmem */
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "parse-uint.h"
#include "u64vec.h"

#define IO_TIMEOUT_MS 5000
#define HEAD_CAP 16384
#define MAX_STREAMS 20000

struct opts {
    const char *mode;
    unsigned port, proxy, streams, seconds, pid, origin_pid, hold;
    unsigned warmup_ms;
    const char *ready_file;
};

struct window {
    uint64_t t0, t1;
    uint64_t proxy0, proxy1, origin0, origin1;
    uint64_t self0, self1;
};

static volatile sig_atomic_t stop_flag;
static char rbuf[256 * 1024];

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* utime+stime of a whole process in microseconds, or 0 if it cannot be read. */
static uint64_t proc_cpu_us(unsigned pid)
{
    static long tck;
    char path[64], buf[1024];
    unsigned long long ut = 0, st = 0;
    const char *p;
    ssize_t n;
    int fd;

    if (pid == 0)
        return 0;
    if (tck <= 0)
        tck = sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof(path), "/proc/%u/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    p = strrchr(buf, ')');
    /* after ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return (ut + st) * 1000000ull / (unsigned long long)tck;
}

static uint64_t self_cpu_us(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_utime.tv_sec * 1000000ull + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000ull + (uint64_t)ru.ru_stime.tv_usec;
}

static void window_begin(struct window *w, const struct opts *o)
{
    w->proxy0 = proc_cpu_us(o->pid);
    w->origin0 = proc_cpu_us(o->origin_pid);
    w->self0 = self_cpu_us();
    w->t0 = now_ns();
}

static void window_end(struct window *w, const struct opts *o)
{
    w->t1 = now_ns();
    w->proxy1 = proc_cpu_us(o->pid);
    w->origin1 = proc_cpu_us(o->origin_pid);
    w->self1 = self_cpu_us();
}

static void window_print(const struct window *w)
{
    printf(" secs=%.3f proxy_cpu_us=%llu origin_cpu_us=%llu client_cpu_us=%llu",
           (double)(w->t1 - w->t0) / 1e9, (unsigned long long)(w->proxy1 - w->proxy0),
           (unsigned long long)(w->origin1 - w->origin0),
           (unsigned long long)(w->self1 - w->self0));
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static struct sockaddr_in loopback(unsigned port)
{
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    return a;
}

/* Blocking connect to 127.0.0.1:port with IO_TIMEOUT_MS send/receive timeouts. */
static int tcp_connect(unsigned port)
{
    struct timeval tv = { .tv_sec = IO_TIMEOUT_MS / 1000 };
    struct sockaddr_in a = loopback(port);
    int one = 1;
    int fd;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int connect_request(char *buf, size_t cap, unsigned port)
{
    int n = snprintf(buf, cap, "CONNECT 127.0.0.1:%u HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", port,
                     port);
    return n > 0 && (size_t)n < cap ? n : -ENOBUFS;
}

/* "HTTP/1.x 200 ..." */
static bool status_is_200(const char *p, size_t len)
{
    return len >= 12 && memcmp(p, "HTTP/1.", 7) == 0 && memcmp(p + 8, " 200", 4) == 0;
}

/* Open a tunnel to 127.0.0.1:port through the proxy (or directly when proxy is 0) on a
 * blocking socket, consuming exactly the proxy's answer head so that no tunnel byte is lost. */
static int open_tunnel(unsigned proxy, unsigned port)
{
    char req[128], head[HEAD_CAP];
    uint64_t deadline = now_ns() + IO_TIMEOUT_MS * 1000000ull;
    int fd, n, r;

    fd = tcp_connect(proxy ? proxy : port);
    if (fd < 0 || !proxy)
        return fd;
    n = connect_request(req, sizeof(req), port);
    r = n < 0 ? n : send_all(fd, req, (size_t)n);
    while (r == 0) {
        const char *end;
        ssize_t got = recv(fd, head, sizeof(head), MSG_PEEK);

        if (got <= 0) {
            r = got == 0 ? -ECONNRESET : -errno;
            break;
        }
        end = memmem(head, (size_t)got, "\r\n\r\n", 4);
        if (!end) {
            if ((size_t)got == sizeof(head)) {
                r = -E2BIG;
                break;
            }
            /* wait for more: a blocking peek returns at once while data is queued */
            if (now_ns() > deadline) {
                r = -ETIMEDOUT;
                break;
            }
            usleep(200);
            continue;
        }
        got = recv(fd, head, (size_t)(end - head) + 4, 0);
        if (got != end - head + 4 || !status_is_200(head, (size_t)got))
            r = -EPROTO;
        break;
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* ---- tput ---- */

static int run_tput(const struct opts *o)
{
    struct epoll_event evs[64];
    struct window w = { 0 };
    uint64_t bytes = 0, measure_from, measure_to;
    unsigned errors = 0, open_now = 0;
    bool measuring = false;
    int *fds, ep;

    fds = calloc(o->streams, sizeof(*fds));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!fds || ep < 0)
        return -ENOMEM;
    for (unsigned i = 0; i < o->streams; i++) {
        struct epoll_event ev = { .events = EPOLLIN };

        fds[i] = open_tunnel(o->proxy, o->port);
        if (fds[i] < 0) {
            fprintf(stderr, "bbload: tunnel %u: %s\n", i, strerror(-fds[i]));
            return fds[i];
        }
        set_nonblock(fds[i]);
        ev.data.u32 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        open_now++;
    }
    measure_from = now_ns() + (uint64_t)o->warmup_ms * 1000000ull;
    measure_to = measure_from + (uint64_t)o->seconds * 1000000000ull;
    while (!stop_flag && open_now > 0) {
        uint64_t t = now_ns();
        int n;

        if (!measuring && t >= measure_from) {
            measuring = true;
            window_begin(&w, o);
        }
        if (t >= measure_to)
            break;
        n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            int fd = fds[evs[i].data.u32];
            ssize_t got = recv(fd, rbuf, sizeof(rbuf), 0);

            if (got > 0) {
                if (measuring)
                    bytes += (uint64_t)got;
            } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
                errors++;
                open_now--;
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
            }
        }
    }
    window_end(&w, o);
    printf("mode=tput streams=%u bytes=%llu mbps=%.1f errors=%u", o->streams,
           (unsigned long long)bytes, (double)bytes / ((double)(w.t1 - w.t0) / 1e9) / 1e6, errors);
    window_print(&w);
    printf("\n");
    return errors ? -EIO : 0;
}

/* ---- setup ---- */

struct setup_worker {
    int fd;
    bool sent;
    size_t got;
    uint64_t t_start;
    char buf[1024];
};

static int setup_start(int ep, struct setup_worker *s, unsigned idx, unsigned port)
{
    struct sockaddr_in a = loopback(port);
    struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = idx };
    int one = 1;

    s->sent = false;
    s->got = 0;
    s->t_start = now_ns();
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -errno;
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(s->fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
        int e = -errno;
        close(s->fd);
        s->fd = -1;
        return e;
    }
    epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev);
    return 0;
}

/* Returns 1 when the setup completed, 0 to keep waiting, <0 on failure. */
static int setup_step(int ep, struct setup_worker *s, unsigned idx, const struct opts *o)
{
    if (!s->sent) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };
        char req[128];
        int err = 0, n;
        socklen_t elen = sizeof(err);

        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err)
            return -(err ? err : errno);
        if (!o->proxy)
            return 1;
        n = connect_request(req, sizeof(req), o->port);
        if (n < 0 || send(s->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
            return -EIO;
        s->sent = true;
        epoll_ctl(ep, EPOLL_CTL_MOD, s->fd, &ev);
        return 0;
    }
    for (;;) {
        ssize_t got = recv(s->fd, s->buf + s->got, sizeof(s->buf) - s->got, 0);
        if (got < 0 && errno == EAGAIN)
            return 0;
        if (got <= 0)
            return got == 0 ? -ECONNRESET : -errno;
        s->got += (size_t)got;
        if (memmem(s->buf, s->got, "\r\n\r\n", 4))
            return status_is_200(s->buf, s->got) ? 1 : -EPROTO;
        if (s->got == sizeof(s->buf))
            return -E2BIG;
    }
}

static int run_setup(const struct opts *o)
{
    struct epoll_event evs[64];
    struct setup_worker *ws;
    struct window w = { 0 };
    struct u64_vec lat = { 0 };
    uint64_t measure_from, measure_to, done = 0;
    unsigned errors = 0, first_err = 0;
    bool measuring = false;
    int ep;

    ws = calloc(o->streams, sizeof(*ws));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!ws || ep < 0)
        return -ENOMEM;
    for (unsigned i = 0; i < o->streams; i++) {
        int r = setup_start(ep, &ws[i], i, o->proxy ? o->proxy : o->port);
        if (r < 0) {
            fprintf(stderr, "bbload: connect: %s\n", strerror(-r));
            return r;
        }
    }
    measure_from = now_ns() + (uint64_t)o->warmup_ms * 1000000ull;
    measure_to = measure_from + (uint64_t)o->seconds * 1000000000ull;
    while (!stop_flag) {
        uint64_t t = now_ns();
        int n;

        if (!measuring && t >= measure_from) {
            measuring = true;
            window_begin(&w, o);
        }
        if (t >= measure_to)
            break;
        n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            unsigned idx = evs[i].data.u32;
            struct setup_worker *s = &ws[idx];
            int r = setup_step(ep, s, idx, o);
            int r2;

            if (r == 0)
                continue;
            close(s->fd); /* also removes it from the epoll set */
            if (r > 0) {
                if (measuring) {
                    done++;
                    vec_push(&lat, now_ns() - s->t_start);
                }
            } else {
                errors++;
                if (!first_err)
                    first_err = (unsigned)-r;
            }
            r2 = setup_start(ep, s, idx, o->proxy ? o->proxy : o->port);
            if (r2 < 0) {
                errors++;
                if (!first_err)
                    first_err = (unsigned)-r2;
                usleep(1000);
                if (setup_start(ep, s, idx, o->proxy ? o->proxy : o->port) < 0)
                    stop_flag = 1;
            }
            if (errors > 1000)
                stop_flag = 1;
        }
    }
    window_end(&w, o);
    for (unsigned i = 0; i < o->streams; i++)
        if (ws[i].fd >= 0)
            close(ws[i].fd);
    qsort(lat.v, lat.len, sizeof(*lat.v), cmp_u64);
    printf("mode=setup workers=%u setups=%llu rate=%.1f p50_us=%.1f p99_us=%.1f errors=%u "
           "first_error=%s",
           o->streams, (unsigned long long)done, (double)done / ((double)(w.t1 - w.t0) / 1e9),
           lat.len ? (double)lat.v[(lat.len - 1) * 50 / 100] / 1e3 : 0.0,
           lat.len ? (double)lat.v[(lat.len - 1) * 99 / 100] / 1e3 : 0.0, errors,
           first_err ? strerror((int)first_err) : "none");
    window_print(&w);
    printf("\n");
    return errors > 1000 ? -EIO : 0;
}

/* ---- get ---- */

struct get_conn {
    int fd;
    uint64_t sent_at; /* when the request in flight was sent */
    size_t len;
    char buf[HEAD_CAP];
};

static int get_send(struct get_conn *c, const char *req, size_t req_len)
{
    c->sent_at = now_ns();
    return send_all(c->fd, req, req_len);
}

static int get_open(int ep, struct get_conn *c, unsigned idx, unsigned port)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = idx };

    c->len = 0;
    c->fd = tcp_connect(port);
    if (c->fd < 0)
        return c->fd;
    set_nonblock(c->fd);
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

/* Parse one complete response at the start of c->buf: returns its total length, 0 if more
 * bytes are needed, <0 if it is not a 200 with a Content-Length. *close_after is set when the
 * server said "Connection: close". */
static ssize_t get_parse(const struct get_conn *c, bool *close_after)
{
    const char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    const char *p, *line_end;
    size_t head_len;
    long long cl = -1;

    if (!end)
        return c->len == sizeof(c->buf) ? -E2BIG : 0;
    head_len = (size_t)(end - c->buf) + 4;
    if (!status_is_200(c->buf, head_len))
        return -EPROTO;
    *close_after = false;
    for (p = memmem(c->buf, head_len, "\r\n", 2) + 2; p < end; p = line_end + 2) {
        line_end = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        if (!line_end)
            break;
        if ((size_t)(line_end - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
            const char *q = p + 15;
            cl = 0;
            while (q < line_end && *q == ' ')
                q++;
            for (; q < line_end && *q >= '0' && *q <= '9' && cl < (1 << 20); q++)
                cl = cl * 10 + (*q - '0');
        } else if ((size_t)(line_end - p) > 11 && strncasecmp(p, "connection:", 11) == 0 &&
                   memmem(p, (size_t)(line_end - p), "lose", 4)) {
            *close_after = true;
        }
    }
    if (cl < 0 || cl >= (1 << 20))
        return -EPROTO;
    if (c->len < head_len + (size_t)cl)
        return 0;
    return (ssize_t)(head_len + (size_t)cl);
}

static int run_get(const struct opts *o)
{
    struct epoll_event evs[64];
    struct get_conn *cs;
    struct window w = { 0 };
    uint64_t measure_from, measure_to, done = 0, reopened = 0, max_lat = 0;
    unsigned errors = 0, first_err = 0, stalled = 0;
    unsigned port = o->proxy ? o->proxy : o->port;
    bool measuring = false;
    char req[256];
    size_t req_len;
    int n, ep;

    if (o->proxy)
        n = snprintf(req, sizeof(req),
                     "GET http://127.0.0.1:%u/ HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", o->port,
                     o->port);
    else
        n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n\r\n", o->port);
    req_len = (size_t)n;
    cs = calloc(o->streams, sizeof(*cs));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cs || ep < 0)
        return -ENOMEM;
    for (unsigned i = 0; i < o->streams; i++) {
        int r = get_open(ep, &cs[i], i, port);
        if (r == 0)
            r = get_send(&cs[i], req, req_len);
        if (r < 0) {
            fprintf(stderr, "bbload: connect: %s\n", strerror(-r));
            return r;
        }
    }
    measure_from = now_ns() + (uint64_t)o->warmup_ms * 1000000ull;
    measure_to = measure_from + (uint64_t)o->seconds * 1000000000ull;
    while (!stop_flag) {
        uint64_t t = now_ns();

        if (!measuring && t >= measure_from) {
            measuring = true;
            window_begin(&w, o);
        }
        if (t >= measure_to)
            break;
        n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            unsigned idx = evs[i].data.u32;
            struct get_conn *c = &cs[idx];
            ssize_t got = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
            bool reopen = false, close_after = false;
            int r = 0;

            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0) {
                /* closed between answers (a proxy without client keep-alive) or an error */
                if (c->len != 0 || got < 0) {
                    errors++;
                    if (!first_err)
                        first_err = got < 0 ? (unsigned)errno : EPROTO;
                }
                reopen = true;
            } else {
                ssize_t used;

                c->len += (size_t)got;
                used = get_parse(c, &close_after);
                if (used < 0) {
                    errors++;
                    if (!first_err)
                        first_err = (unsigned)-used;
                    reopen = true;
                } else if (used > 0) {
                    uint64_t lat = now_ns() - c->sent_at;
                    if (measuring) {
                        done++;
                        if (lat > max_lat)
                            max_lat = lat;
                    }
                    memmove(c->buf, c->buf + used, c->len - (size_t)used);
                    c->len -= (size_t)used;
                    if (close_after)
                        reopen = true;
                    else
                        r = get_send(c, req, req_len);
                }
            }
            if (r < 0)
                reopen = true;
            if (reopen) {
                close(c->fd);
                if (measuring)
                    reopened++;
                r = get_open(ep, c, idx, port);
                if (r == 0)
                    r = get_send(c, req, req_len);
                if (r < 0) {
                    fprintf(stderr, "bbload: reconnect: %s\n", strerror(-r));
                    stop_flag = 1;
                    errors++;
                }
            }
            if (errors > 1000)
                stop_flag = 1;
        }
    }
    window_end(&w, o);
    /* a request unanswered for over a second at the end is a stall, not load */
    for (unsigned i = 0; i < o->streams; i++) {
        uint64_t waited = w.t1 - cs[i].sent_at;
        if (waited > 1000000000ull)
            stalled++;
        if (waited > max_lat)
            max_lat = waited;
    }
    printf("mode=get conns=%u requests=%llu rate=%.1f reopened=%llu errors=%u first_error=%s "
           "max_latency_ms=%.1f stalled=%u",
           o->streams, (unsigned long long)done, (double)done / ((double)(w.t1 - w.t0) / 1e9),
           (unsigned long long)reopened, errors, first_err ? strerror((int)first_err) : "none",
           (double)max_lat / 1e6, stalled);
    window_print(&w);
    printf("\n");
    return errors > 1000 ? -EIO : 0;
}

/* ---- idle ---- */

static int run_idle(const struct opts *o)
{
    unsigned opened = 0, errors = 0;
    uint64_t end;
    FILE *f;
    char tmp[4096];

    for (unsigned i = 0; i < o->streams && !stop_flag; i++) {
        int fd = open_tunnel(o->proxy, o->port);
        if (fd < 0) {
            if (errors++ == 0)
                fprintf(stderr, "bbload: idle tunnel %u: %s\n", i, strerror(-fd));
            if (errors > 50)
                break;
            continue;
        }
        opened++;
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", o->ready_file) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    f = fopen(tmp, "we");
    if (!f)
        return -errno;
    fprintf(f, "opened=%u errors=%u\n", opened, errors);
    if (fclose(f) != 0 || rename(tmp, o->ready_file) < 0)
        return -errno;
    end = now_ns() + (uint64_t)o->hold * 1000000000ull;
    while (!stop_flag && now_ns() < end)
        usleep(50000);
    printf("mode=idle opened=%u errors=%u\n", opened, errors);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "port", required_argument, NULL, 'p' },
        { "proxy", required_argument, NULL, 'x' },
        { "streams", required_argument, NULL, 'n' },
        { "workers", required_argument, NULL, 'n' },
        { "conns", required_argument, NULL, 'n' },
        { "count", required_argument, NULL, 'n' },
        { "seconds", required_argument, NULL, 't' },
        { "pid", required_argument, NULL, 'P' },
        { "origin-pid", required_argument, NULL, 'O' },
        { "hold", required_argument, NULL, 'h' },
        { "ready-file", required_argument, NULL, 'r' },
        { "warmup-ms", required_argument, NULL, 'w' },
        { NULL, 0, NULL, 0 },
    };
    struct opts o = { .streams = 1, .seconds = 3, .hold = 60, .warmup_ms = 500 };
    struct sigaction sa = { .sa_handler = on_signal };
    int c, r;

    if (argc < 2) {
        fprintf(stderr, "usage: bbload tput|setup|get|idle --port PORT [--proxy PORT] ...\n");
        return 2;
    }
    o.mode = argv[1];
    optind = 2;
    while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
        unsigned *dst = NULL;
        switch (c) {
        case 'p':
            dst = &o.port;
            break;
        case 'x':
            dst = &o.proxy;
            break;
        case 'n':
            dst = &o.streams;
            break;
        case 't':
            dst = &o.seconds;
            break;
        case 'P':
            dst = &o.pid;
            break;
        case 'O':
            dst = &o.origin_pid;
            break;
        case 'h':
            dst = &o.hold;
            break;
        case 'w':
            dst = &o.warmup_ms;
            break;
        case 'r':
            o.ready_file = optarg;
            break;
        default:
            return 2;
        }
        if (dst && parse_uint(optarg, dst) < 0) {
            fprintf(stderr, "bbload: bad number: %s\n", optarg);
            return 2;
        }
    }
    if (o.port == 0 || o.port > 65535 || o.proxy > 65535 || o.streams == 0 ||
        o.streams > MAX_STREAMS || o.seconds == 0 || o.seconds > 600 || o.hold > 600) {
        fprintf(stderr, "bbload: bad arguments\n");
        return 2;
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (strcmp(o.mode, "tput") == 0) {
        alarm(o.seconds + 30);
        r = run_tput(&o);
    } else if (strcmp(o.mode, "setup") == 0) {
        alarm(o.seconds + 30);
        r = run_setup(&o);
    } else if (strcmp(o.mode, "get") == 0) {
        alarm(o.seconds + 30);
        r = run_get(&o);
    } else if (strcmp(o.mode, "idle") == 0) {
        if (!o.proxy || !o.ready_file) {
            fprintf(stderr, "bbload: idle needs --proxy and --ready-file\n");
            return 2;
        }
        alarm(o.hold + 60);
        r = run_idle(&o);
    } else {
        fprintf(stderr, "bbload: unknown mode %s\n", o.mode);
        return 2;
    }
    if (r < 0) {
        fprintf(stderr, "bbload: %s failed: %s\n", o.mode, strerror(-r));
        return 1;
    }
    return 0;
}
