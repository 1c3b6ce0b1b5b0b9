/*
 * Socket and address helpers shared by the daemon, the CLI and tests.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/str.h"

/* Big enough for "[ffff:...:ffff]:65535". */
#define NET_ADDRSTR_MAX 64

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/*
 * Parse a numeric "ADDR:PORT", "[V6]:PORT", or (when default_port != 0) "ADDR" / "[V6]".
 * No name resolution. Returns 0, or -EINVAL.
 */
int net_addr_parse(const char *s, uint16_t default_port, struct net_addr *ret);
/* Format as "1.2.3.4:80" or "[::1]:80". */
void net_addr_format(const struct sockaddr *sa, char out[NET_ADDRSTR_MAX]);
/* Port in host order (0 for other families). */
uint16_t net_addr_port(const struct sockaddr *sa);
void net_addr_set_port(struct sockaddr *sa, uint16_t port);
/* Same family, address, port (and IPv6 scope): true; an unknown family is never equal. */
bool net_addr_equal(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

/* Non-blocking, close-on-exec listening socket (SO_REUSEADDR for TCP). Returns fd or -errno. */
int net_listen_tcp(const struct net_addr *a, int backlog);
int net_bind_udp(const struct net_addr *a);
/* Non-blocking connect; returns fd (connect may be in progress) or -errno. */
int net_connect_tcp(const struct sockaddr *sa, socklen_t len);
int fd_set_nonblock(int fd, bool on);
/* The pending socket error (SO_ERROR) as -errno, or 0. */
int net_socket_error(int fd);

/* A descriptor a listener holds in reserve for net_accept() (/dev/null), or -errno. */
int net_spare_fd_open(void);
/*
 * accept4(lfd, flags | SOCK_CLOEXEC), for a level-triggered listener. Out of descriptors
 * (EMFILE, ENFILE), the pending connection would keep the listener readable and its loop
 * spinning: *spare (net_spare_fd_open) is closed, the connection accepted and closed at once,
 * and *spare reopened; that returns -ECONNREFUSED (count it, call again). Returns the new fd,
 * -EAGAIN when nothing is pending, or another -errno (stop for this event).
 */
int net_accept(int lfd, int flags, int *spare);
