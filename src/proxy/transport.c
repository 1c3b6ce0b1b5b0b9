/*
 * Plain TCP, the one transport so far (proxy-int.h, struct transport_ops): each op is the single
 * syscall the state machine used to make itself.
 */
#include "proxy/proxy-int.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static ssize_t tcp_recv(struct side *s, void *p, size_t len)
{
    ssize_t n = recv(s->fd, p, len, 0);

    if (n > 0)
        return n;
    if (n == 0)
        return -EPIPE;
    return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
}

static ssize_t tcp_send(struct side *s, const void *p, size_t len)
{
    ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);

    if (n >= 0)
        return n;
    return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
}

static int tcp_shutdown(struct side *s)
{
    return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void tcp_close(struct side *s)
{
    close(s->fd);
}

const struct transport_ops transport_tcp = {
    .name = "tcp",
    .recv = tcp_recv,
    .send = tcp_send,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .pending = NULL,
    .can_splice = true,
};
