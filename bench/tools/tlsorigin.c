/* bench/tools/tlsorigin.c: a TLS origin for bench/intercept.sh (loopback only).
 *
 *   tlsorigin CERT KEY PORT_FILE [MAX_SECONDS]
 *
 * One thread, epoll (edge-triggered), non-blocking sockets, OpenSSL 3 (TLS 1.2/1.3, ALPN
 * http/1.1 when asked). Listens on an ephemeral 127.0.0.1 port and writes that port to
 * PORT_FILE. Every request head on a kept-alive connection is answered with
 *   GET /size/N  ->  200 with Content-Length N and N bytes of 'x' (the bulk body)
 *   anything else -> a fixed 200 with the 3-byte body "ok\n"
 * Heads are answered in order; a body is written out before the next head is read. It stops
 * on SIGTERM/SIGINT or after MAX_SECONDS (default 600). Not hardened: a bench tool. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, memmem */
#endif
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
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

#define MAX_FDS 65536
#define IN_CAP 16384
#define CHUNK 16384

static const char SMALL[] = "HTTP/1.1 200 OK\r\n"
                            "Content-Type: text/plain\r\n"
                            "Content-Length: 3\r\n"
                            "\r\n"
                            "ok\n";

struct conn {
    SSL *ssl;
    bool up; /* handshake done */
    size_t in_len;
    char head[160]; /* the answer head (or the whole small answer) being written */
    size_t head_len, head_off;
    unsigned long long body_left;
    char in[IN_CAP];
};

static struct conn *conns[MAX_FDS];
static char body[CHUNK];
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *o;

    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&o, outlen, h11, sizeof(h11) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = o;
    return SSL_TLSEXT_ERR_OK;
}

static void conn_close(int ep, int fd)
{
    struct conn *c = conns[fd];

    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    if (c) {
        SSL_free(c->ssl);
        free(c);
    }
    conns[fd] = NULL;
    close(fd);
}

/* Queue the answer to the head in c->in[0..len): small or /size/N. */
static void answer(struct conn *c, size_t len)
{
    unsigned long long n = 0;
    const char *p;

    if (len > 14 && memcmp(c->in, "GET /size/", 10) == 0) {
        for (p = c->in + 10; p < c->in + len && *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (unsigned)(*p - '0');
        c->head_len = (size_t)snprintf(c->head, sizeof(c->head),
                                       "HTTP/1.1 200 OK\r\nContent-Type: "
                                       "application/octet-stream\r\nContent-Length: %llu\r\n\r\n",
                                       n);
        c->body_left = n;
    } else {
        memcpy(c->head, SMALL, sizeof(SMALL) - 1);
        c->head_len = sizeof(SMALL) - 1;
        c->body_left = 0;
    }
    c->head_off = 0;
}

/* 1: progress possible, 0: wait for the socket, -1: close. */
static int ssl_result(SSL *ssl, int r)
{
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    default:
        ERR_clear_error();
        return -1;
    }
}

/* Drive one connection until OpenSSL wants the socket (edge-triggered: never stop earlier). */
static void drive(int ep, int fd)
{
    struct conn *c = conns[fd];

    if (!c->up) {
        int r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            if (ssl_result(c->ssl, r) < 0)
                conn_close(ep, fd);
            return;
        }
        c->up = true;
    }
    for (;;) {
        const char *end;
        size_t hl;
        int r;

        /* output first */
        if (c->head_off < c->head_len) {
            r = SSL_write(c->ssl, c->head + c->head_off, (int)(c->head_len - c->head_off));
            if (r <= 0)
                goto wait;
            c->head_off += (size_t)r;
            continue;
        }
        if (c->body_left > 0) {
            int want = c->body_left < CHUNK ? (int)c->body_left : CHUNK;
            r = SSL_write(c->ssl, body, want);
            if (r <= 0)
                goto wait;
            c->body_left -= (unsigned long long)r;
            continue;
        }
        /* a complete head already buffered? */
        end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (end) {
            hl = (size_t)(end - c->in) + 4;
            answer(c, hl);
            memmove(c->in, c->in + hl, c->in_len - hl);
            c->in_len -= hl;
            continue;
        }
        if (c->in_len == IN_CAP) {
            conn_close(ep, fd);
            return;
        }
        r = SSL_read(c->ssl, c->in + c->in_len, (int)(IN_CAP - c->in_len));
        if (r <= 0)
            goto wait;
        c->in_len += (size_t)r;
        continue;
    wait:
        if (ssl_result(c->ssl, r) < 0)
            conn_close(ep, fd);
        return;
    }
}

static void do_accept(int ep, int lfd, SSL_CTX *ctx)
{
    for (;;) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP };
        int one = 1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0)
            return;
        if (fd >= MAX_FDS) {
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (!c || !(c->ssl = SSL_new(ctx))) {
            free(c);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        conns[fd] = c;
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            conn_close(ep, fd);
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    struct sigaction sa = { .sa_handler = on_signal };
    struct epoll_event evs[256], lev = { .events = EPOLLIN };
    socklen_t alen = sizeof(a);
    unsigned long max_seconds = 600;
    SSL_CTX *ctx;
    FILE *f;
    time_t end;
    int lfd, ep, one = 1;

    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: tlsorigin CERT KEY PORT_FILE [MAX_SECONDS]\n");
        return 2;
    }
    if (argc == 5) {
        max_seconds = 0;
        for (const char *p = argv[4]; *p >= '0' && *p <= '9' && max_seconds < 100000; p++)
            max_seconds = max_seconds * 10 + (unsigned long)(*p - '0');
    }
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    memset(body, 'x', sizeof(body));

    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, argv[1]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "tlsorigin: cannot load %s / %s\n", argv[1], argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &alen) < 0) {
        perror("tlsorigin: listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    lev.data.fd = lfd;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    f = fopen(argv[3], "we");
    if (!f || fprintf(f, "%u\n", ntohs(a.sin_port)) < 0 || fclose(f) != 0) {
        perror("tlsorigin: port file");
        return 1;
    }

    end = time(NULL) + (time_t)max_seconds;
    while (!stop_flag && time(NULL) < end) {
        int n = epoll_wait(ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd)
                do_accept(ep, lfd, ctx);
            else if (conns[fd])
                drive(ep, fd);
        }
    }
    return 0;
}
