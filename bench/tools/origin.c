/* bench/tools/origin.c: a fast loopback origin for bench/proxy.sh.
 *
 * One epoll thread serving three listeners on 127.0.0.1 (ephemeral ports):
 *   http:   answers every request head ("...\r\n\r\n") with a small fixed keep-alive 200
 *   source: streams bytes as fast as the peer reads them
 *   sink:   reads and discards everything (also used to hold idle tunnels)
 *
 * Usage: origin PORTS_FILE [MAX_SECONDS]
 * Writes "HTTP SOURCE SINK\n" to PORTS_FILE (via rename, so a reader never sees half of it)
 * once listening, and exits on SIGTERM/SIGINT or after MAX_SECONDS (default 600).
 * Benchmark tool only: it binds loopback and trusts nothing it reads, but it is not hardened. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, memmem */
#endif
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "parse-uint.h"

#define MAX_FDS 65536
#define IN_CAP 16384
#define OUT_CAP 16384
#define SRC_CHUNK (128 * 1024)

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 3\r\n"
                               "\r\n"
                               "ok\n";
#define RESPONSE_LEN (sizeof(RESPONSE) - 1)

enum kind { K_NONE, K_LISTEN_HTTP, K_LISTEN_SRC, K_LISTEN_SINK, K_HTTP, K_SRC, K_SINK };

struct http_conn {
    size_t in_len;
    size_t out_len, out_off;
    char in[IN_CAP];
    char out[OUT_CAP];
};

static enum kind kinds[MAX_FDS];
static struct http_conn *https[MAX_FDS];
static char src_data[SRC_CHUNK];
static char scratch[256 * 1024];
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int listen_any(uint16_t *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int one = 1;
    int fd;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void conn_close(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    free(https[fd]);
    https[fd] = NULL;
    kinds[fd] = K_NONE;
    close(fd);
}

static void do_accept(int ep, int lfd, enum kind k)
{
    for (;;) {
        struct epoll_event ev = { 0 };
        int one = 1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0)
            return; /* EAGAIN, or EMFILE: the client will notice and report */
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        if (k == K_HTTP) {
            https[fd] = calloc(1, sizeof(struct http_conn));
            if (!https[fd]) {
                close(fd);
                continue;
            }
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        kinds[fd] = k;
        ev.events = EPOLLET | (k == K_SRC ? EPOLLOUT : EPOLLIN);
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(ep, fd);
    }
}

/* Returns false when the connection must be closed. */
static bool http_flush(int ep, int fd)
{
    struct http_conn *h = https[fd];
    struct epoll_event ev = { .data.fd = fd };

    while (h->out_off < h->out_len) {
        ssize_t n = send(fd, h->out + h->out_off, h->out_len - h->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return false;
            ev.events = EPOLLET | EPOLLIN | EPOLLOUT;
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            return true;
        }
        h->out_off += (size_t)n;
    }
    h->out_off = h->out_len = 0;
    return true;
}

/* Answer every complete head in h->in; keep the partial tail. */
static void http_answer(struct http_conn *h)
{
    size_t pos = 0;

    for (;;) {
        const char *end = memmem(h->in + pos, h->in_len - pos, "\r\n\r\n", 4);
        if (!end || h->out_len + RESPONSE_LEN > OUT_CAP)
            break;
        memcpy(h->out + h->out_len, RESPONSE, RESPONSE_LEN);
        h->out_len += RESPONSE_LEN;
        pos = (size_t)(end - h->in) + 4;
    }
    memmove(h->in, h->in + pos, h->in_len - pos);
    h->in_len -= pos;
}

static void on_http(int ep, int fd, uint32_t events)
{
    struct http_conn *h = https[fd];

    if ((events & EPOLLOUT) && !http_flush(ep, fd)) {
        conn_close(ep, fd);
        return;
    }
    for (;;) {
        ssize_t n;

        if (h->in_len == IN_CAP || h->out_len > OUT_CAP - RESPONSE_LEN) {
            /* client is not reading its answers, or sent an oversized head: drop it */
            if (h->in_len == IN_CAP) {
                conn_close(ep, fd);
                return;
            }
            break;
        }
        n = recv(fd, h->in + h->in_len, IN_CAP - h->in_len, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(ep, fd);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        h->in_len += (size_t)n;
        http_answer(h);
        if (!http_flush(ep, fd)) {
            conn_close(ep, fd);
            return;
        }
    }
}

static void on_src(int ep, int fd)
{
    for (;;) {
        ssize_t n = send(fd, src_data, sizeof(src_data), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                conn_close(ep, fd);
            return;
        }
    }
}

static void on_sink(int ep, int fd)
{
    for (;;) {
        ssize_t n = recv(fd, scratch, sizeof(scratch), 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno != EAGAIN)
            conn_close(ep, fd);
        return;
    }
}

static int write_ports(const char *path, const uint16_t ports[3])
{
    char tmp[4096];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    f = fopen(tmp, "we");
    if (!f)
        return -errno;
    fprintf(f, "%u %u %u\n", ports[0], ports[1], ports[2]);
    if (fclose(f) != 0 || rename(tmp, path) < 0)
        return -errno;
    return 0;
}

int main(int argc, char **argv)
{
    static const enum kind lk[3] = { K_LISTEN_HTTP, K_LISTEN_SRC, K_LISTEN_SINK };
    struct epoll_event evs[256];
    struct sigaction sa = { .sa_handler = on_signal };
    unsigned max_seconds = 600;
    uint16_t ports[3];
    time_t end;
    int ep;

    if (argc < 2 || argc > 3 || (argc == 3 && parse_uint(argv[2], &max_seconds) < 0)) {
        fprintf(stderr, "usage: origin PORTS_FILE [MAX_SECONDS]\n");
        return 2;
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    memset(src_data, 'x', sizeof(src_data));

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("origin: epoll_create1");
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        struct epoll_event ev = { .events = EPOLLIN };
        int fd = listen_any(&ports[i]);
        if (fd < 0 || fd >= MAX_FDS) {
            fprintf(stderr, "origin: listen: %s\n", strerror(-fd));
            return 1;
        }
        kinds[fd] = lk[i];
        ev.data.fd = fd;
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    if (write_ports(argv[1], ports) < 0) {
        perror("origin: ports file");
        return 1;
    }

    end = time(NULL) + (time_t)max_seconds;
    while (!stop_flag && time(NULL) < end) {
        int n = epoll_wait(ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            switch (kinds[fd]) {
            case K_LISTEN_HTTP:
                do_accept(ep, fd, K_HTTP);
                break;
            case K_LISTEN_SRC:
                do_accept(ep, fd, K_SRC);
                break;
            case K_LISTEN_SINK:
                do_accept(ep, fd, K_SINK);
                break;
            case K_HTTP:
                on_http(ep, fd, evs[i].events);
                break;
            case K_SRC:
                on_src(ep, fd);
                break;
            case K_SINK:
                on_sink(ep, fd);
                break;
            case K_NONE:
            default:
                break;
            }
        }
    }
    return 0;
}
