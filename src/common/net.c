#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"

int net_addr_parse(const char *s, uint16_t default_port, struct net_addr *ret)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port_s = NULL, *hend;
    uint16_t port = default_port;
    struct net_addr a = { 0 };

    if (!s || !*s)
        return -EINVAL;
    if (s[0] == '[') {
        hend = strchr(s, ']');
        if (!hend)
            return -EINVAL;
        if (hend[1] == ':')
            port_s = hend + 2;
        else if (hend[1] != '\0')
            return -EINVAL;
        s++;
    } else {
        hend = strrchr(s, ':');
        if (hend) {
            if (strchr(s, ':') != hend) /* bare IPv6 must be bracketed */
                return -EINVAL;
            port_s = hend + 1;
        } else {
            hend = s + strlen(s);
        }
    }
    if ((size_t)(hend - s) >= sizeof(host) || hend == s)
        return -EINVAL;
    memcpy(host, s, (size_t)(hend - s));
    host[hend - s] = '\0';
    if (port_s) {
        if (str_to_port(slice_cstr(port_s), &port) < 0)
            return -EINVAL;
    } else if (!default_port) {
        return -EINVAL;
    }

    struct sockaddr_in *in4 = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;
    if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        a.len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        a.len = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    *ret = a;
    return 0;
}

void net_addr_format(const struct sockaddr *sa, char out[NET_ADDRSTR_MAX])
{
    char host[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
        snprintf(out, NET_ADDRSTR_MAX, "%s:%u", host, ntohs(in4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, NET_ADDRSTR_MAX, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, NET_ADDRSTR_MAX, "(family %d)", sa->sa_family);
    }
}

uint16_t net_addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void net_addr_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

int fd_set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    if (fcntl(fd, F_SETFL, fl) < 0)
        return -errno;
    return 0;
}

int net_listen_tcp(const struct net_addr *a, int backlog)
{
    _cleanup_close_ int fd = -1;
    int one = 1;

    fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        return -errno;
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        return -errno;
    if (listen(fd, backlog) < 0)
        return -errno;
    return TAKE_FD(fd);
}

int net_bind_udp(const struct net_addr *a)
{
    _cleanup_close_ int fd = -1;

    fd = socket(a->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        return -errno;
    return TAKE_FD(fd);
}

int net_connect_tcp(const struct sockaddr *sa, socklen_t len)
{
    _cleanup_close_ int fd = -1;
    int one = 1;

    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS)
        return -errno;
    return TAKE_FD(fd);
}

int net_socket_error(int fd)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        return -errno;
    return -err;
}

bool net_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    return false;
}

int net_spare_fd_open(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    return fd < 0 ? -errno : fd;
}

int net_accept(int lfd, int flags, int *spare)
{
    int fd = accept4(lfd, NULL, NULL, flags | SOCK_CLOEXEC), e;

    if (fd >= 0)
        return fd;
    e = errno;
    if (e != EMFILE && e != ENFILE)
        return -e;
    if (*spare < 0)
        *spare = net_spare_fd_open(); /* (its reopen failed last time) */
    if (*spare < 0)
        return -e; /* nothing to make room with */
    close(*spare);
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
        close(fd);
    *spare = net_spare_fd_open();
    return fd >= 0 ? -ECONNREFUSED : -errno;
}
