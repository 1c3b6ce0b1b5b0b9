/* bench/tools/run-source.c: a loopback HTTP origin that serves N bytes, for bench/run.sh.
 *
 * Listens on 127.0.0.1 (ephemeral port). Every request head ("...\r\n\r\n") is answered with
 * "200 OK", "Content-Length: N" and N bytes of 'x', where N is the decimal number in the
 * request path ("GET /1073741824 HTTP/1.1", also absolute-URI "GET http://h:p/N ..."),
 * capped at 64 GiB; a path without a number gets 0 bytes. One request per connection
 * ("Connection: close"). Each connection is served by a forked child, so a slow reader never
 * stalls another one.
 *
 * Usage: run-source PORT_FILE [MAX_SECONDS]
 * Writes "PORT\n" to PORT_FILE (via rename, so a reader never sees half of it) once listening;
 * exits on SIGTERM/SIGINT or after MAX_SECONDS (default 600), and so do its children.
 * Benchmark tool only: binds loopback, bounds what it reads, but it is not hardened. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* accept4, memmem */
#endif
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_CAP 8192
#define CHUNK (256 * 1024)
#define MAX_BODY (64ULL << 30)

static char chunk[CHUNK];

static uint64_t path_number(const char *head, size_t len)
{
    /* the request target is the second word; take the digits after its last '/' */
    const char *sp = memchr(head, ' ', len);
    if (sp == NULL)
        return 0;
    const char *t = sp + 1, *end = head + len;
    const char *t_end = memchr(t, ' ', (size_t)(end - t));
    if (t_end == NULL)
        return 0;
    const char *slash = NULL;
    for (const char *p = t; p < t_end; p++)
        if (*p == '/')
            slash = p;
    if (slash == NULL)
        return 0;
    uint64_t n = 0;
    for (const char *p = slash + 1; p < t_end && *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > MAX_BODY)
            return MAX_BODY;
    }
    return n;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void serve(int fd)
{
    char head[HEAD_CAP];
    size_t len = 0;
    for (;;) {
        if (len == sizeof(head))
            return;
        ssize_t r = recv(fd, head + len, sizeof(head) - len, 0);
        if (r <= 0)
            return;
        len += (size_t)r;
        if (memmem(head, len, "\r\n\r\n", 4) != NULL)
            break;
    }
    uint64_t n = path_number(head, len);
    char resp[256];
    int hl = snprintf(resp, sizeof(resp),
                      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %llu\r\nConnection: close\r\n\r\n",
                      (unsigned long long)n);
    if (hl < 0 || send_all(fd, resp, (size_t)hl) < 0)
        return;
    while (n > 0) {
        size_t k = n < CHUNK ? (size_t)n : CHUNK;
        if (send_all(fd, chunk, k) < 0)
            return;
        n -= k;
    }
    shutdown(fd, SHUT_WR);
    /* let the peer read everything before the close (no RST on unread input) */
    while (recv(fd, head, sizeof(head), 0) > 0)
        ;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: run-source PORT_FILE [MAX_SECONDS]\n");
        return 2;
    }
    unsigned max_secs = 600;
    if (argc == 3) {
        uint64_t v = 0;
        for (const char *p = argv[2]; *p != '\0' && v <= 86400; p++) {
            if (*p < '0' || *p > '9')
                v = UINT64_MAX;
            else
                v = v * 10 + (uint64_t)(*p - '0');
        }
        if (v == 0 || v > 86400) {
            fprintf(stderr, "run-source: bad MAX_SECONDS\n");
            return 2;
        }
        max_secs = (unsigned)v;
    }
    memset(chunk, 'x', sizeof(chunk));
    signal(SIGCHLD, SIG_IGN); /* no zombies */

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) {
        perror("socket");
        return 1;
    }
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(ls, 128) < 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
        perror("bind/listen");
        return 1;
    }
    char tmp_path[4096];
    snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", argv[1]);
    FILE *f = fopen(tmp_path, "w");
    if (f == NULL || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0 ||
        rename(tmp_path, argv[1]) < 0) {
        perror("port file");
        return 1;
    }
    alarm(max_secs);
    pid_t parent = getpid();
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            return 1;
        }
        pid_t pid = fork();
        if (pid == 0) {
            /* die with the parent (SIGTERM, alarm) */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
            close(ls);
            serve(c);
            _exit(0);
        }
        close(c);
    }
}
