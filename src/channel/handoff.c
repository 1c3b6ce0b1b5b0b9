#include "channel/handoff.h"

#include <errno.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HANDOFF_BYTE 'C'

/* One hand-off message, either way: one byte and room for exactly one descriptor. */
struct handoff_msg {
    char byte;
    struct iovec iov;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg;
};

static void handoff_msg_init(struct handoff_msg *m, char byte)
{
    memset(m, 0, sizeof(*m));
    m->byte = byte;
    m->iov = (struct iovec){ .iov_base = &m->byte, .iov_len = 1 };
    m->msg = (struct msghdr){
        .msg_iov = &m->iov,
        .msg_iovlen = 1,
        .msg_control = m->u.buf,
        .msg_controllen = sizeof(m->u.buf),
    };
}

int handoff_send(int sock, int fd)
{
    struct handoff_msg m;
    struct cmsghdr *cm;

    handoff_msg_init(&m, HANDOFF_BYTE);
    cm = CMSG_FIRSTHDR(&m.msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    if (sendmsg(sock, &m.msg, MSG_NOSIGNAL | MSG_DONTWAIT) != 1)
        return errno ? -errno : -EIO;
    return 0;
}

static int sockopt_int(int fd, int level, int name, int *ret)
{
    socklen_t l = sizeof(*ret);
    if (getsockopt(fd, level, name, ret, &l) < 0)
        return -errno;
    return 0;
}

static bool is_connected_tcp(int fd)
{
    int domain, type, proto, listening;

    if (sockopt_int(fd, SOL_SOCKET, SO_DOMAIN, &domain) < 0 ||
        sockopt_int(fd, SOL_SOCKET, SO_TYPE, &type) < 0 ||
        sockopt_int(fd, SOL_SOCKET, SO_PROTOCOL, &proto) < 0 ||
        sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening) < 0)
        return false;
    struct sockaddr_storage peer;
    socklen_t pl = sizeof(peer);

    if (!((domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM &&
          proto == IPPROTO_TCP && !listening))
        return false;
    return getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
}

/* A connected unix stream socket (from the supervisor's own socketpair). */
static bool is_connected_unix_stream(int fd)
{
    int domain, type, listening;

    if (sockopt_int(fd, SOL_SOCKET, SO_DOMAIN, &domain) < 0 ||
        sockopt_int(fd, SOL_SOCKET, SO_TYPE, &type) < 0 ||
        sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening) < 0)
        return false;
    return domain == AF_UNIX && type == SOCK_STREAM && !listening;
}

static int recv_one(int sock, bool allow_unix, int *ret_fd);

int handoff_recv(int sock, int *ret_fd)
{
    return recv_one(sock, false, ret_fd);
}

int handoff_recv_relay(int sock, int *ret_fd)
{
    return recv_one(sock, true, ret_fd);
}

static int recv_one(int sock, bool allow_unix, int *ret_fd)
{
    struct handoff_msg m;
    struct msghdr *msg = &m.msg;
    int fd = -1, nfds = 0, r = 0;
    ssize_t n;

    handoff_msg_init(&m, 0);
    n = recvmsg(sock, msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    if (n == 0)
        return -EPIPE;
    /* Collect whatever descriptors arrived, so none leaks whatever else is wrong. */
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int one;
            memcpy(&one, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (nfds++ == 0)
                fd = one;
            else
                close(one);
        }
    }
    if (n != 1 || m.byte != HANDOFF_BYTE || (msg->msg_flags & (MSG_CTRUNC | MSG_TRUNC)) ||
        nfds != 1)
        r = -EBADMSG;
    else if (!is_connected_tcp(fd) && !(allow_unix && is_connected_unix_stream(fd)))
        r = -EBADMSG;
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    *ret_fd = fd;
    return 1;
}
