/* What several unit tests share: see unit-util.h. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cmocka.h>

#include "common/macro.h"
#include "common/str.h"
#include "unit-util.h"

void loopback_any(struct net_addr *a)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)&a->ss;
    memset(a, 0, sizeof(*a));
    in4->sin_family = AF_INET;
    in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a->len = sizeof(*in4);
}

int listen_loopback(int backlog, uint16_t *ret_port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET };
    socklen_t sl = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    *ret_port = ntohs(sin.sin_port);
    return fd;
}

int connect_loopback(uint16_t port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(fd_set_nonblock(fd, true), 0);
    return fd;
}

int rm_rf(const char *path)
{
    char cmd[PATH_MAX + 16];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd) == 0 ? 0 : -1;
}

int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t audit_line_count(const char *line)
{
    const char *c = strstr(line, "\"count\":");
    uint64_t v;

    if (!c)
        return 1;
    assert_int_equal(str_to_u64(slice_make(c + 8, strspn(c + 8, "0123456789")), UINT32_MAX, &v), 0);
    return v;
}

uint64_t audit_decisions(const char *log, const char *needle, size_t *ret_lines)
{
    uint64_t total = 0;
    size_t lines = 0;

    for (const char *p = log; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)MIN(len, sizeof(line) - 1), p);
        if (strstr(line, needle)) {
            lines++;
            total += audit_line_count(line);
        }
        p += len + (nl ? 1 : 0);
    }
    *ret_lines = lines;
    return total;
}
