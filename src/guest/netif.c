/* Loopback setup inside the bottle (see netif.h). */
#include "guest/netif.h"

#include <errno.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/macro.h"

static int lo_up(int *ret_ifindex)
{
    _cleanup_close_ int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = { 0 };

    if (fd < 0)
        return -errno;
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
        return -errno;
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
        return -errno;
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0)
        return -errno;
    *ret_ifindex = ifr.ifr_ifindex;
    return 0;
}

static int add_addr(int ifindex, struct in_addr a)
{
    struct {
        struct nlmsghdr nh;
        struct ifaddrmsg ifa;
        char attrs[2 * RTA_SPACE(sizeof(struct in_addr))];
    } req;
    union {
        struct nlmsghdr nh;
        char raw[512];
    } resp;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    struct rtattr *rta;
    _cleanup_close_ int fd = -1;
    ssize_t n;

    memset(&req, 0, sizeof(req));
    req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
    req.nh.nlmsg_type = RTM_NEWADDR;
    req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    req.nh.nlmsg_seq = 1;
    req.ifa.ifa_family = AF_INET;
    req.ifa.ifa_prefixlen = 32;
    req.ifa.ifa_scope = RT_SCOPE_HOST;
    req.ifa.ifa_index = (unsigned)ifindex;
    for (unsigned short type = IFA_LOCAL;; type = IFA_ADDRESS) {
        rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
        rta->rta_type = type;
        rta->rta_len = RTA_LENGTH(sizeof(a));
        memcpy(RTA_DATA(rta), &a, sizeof(a));
        req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_SPACE(sizeof(a));
        if (type == IFA_ADDRESS)
            break;
    }

    fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0)
        return -errno;
    if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0)
        return -errno;
    n = RETRY_EINTR(recv(fd, &resp, sizeof(resp), 0));
    if (n < 0)
        return -errno;
    if ((size_t)n < NLMSG_LENGTH(sizeof(struct nlmsgerr)) || resp.nh.nlmsg_type != NLMSG_ERROR)
        return -EPROTO;
    {
        const struct nlmsgerr *e = NLMSG_DATA(&resp.nh);
        if (e->error == -EEXIST || e->error == 0)
            return 0;
        return e->error < 0 ? e->error : -EPROTO;
    }
}

int guest_net_setup(struct in_addr alias)
{
    int ifindex = 0, r;

    r = lo_up(&ifindex);
    if (r < 0)
        return r;
    return add_addr(ifindex, alias);
}
