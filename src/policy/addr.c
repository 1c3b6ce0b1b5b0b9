/*
 * The SSRF guard's address classes (DESIGN.md S5): which resolved addresses an allowlisted
 * name may not reach unless an allow_cidr entry opens them. The tables and the reason for
 * each row are in docs/policy.md; tests/unit/test-policy.c checks both edges of every row.
 */
#include <arpa/inet.h>
#include <string.h>

#include "common/macro.h"
#include "policy/policy.h"

struct range4 {
    uint32_t net; /* host order */
    unsigned prefix;
};

/* Refused by default. IANA IPv4 Special-Purpose Address Registry plus multicast and 240/4;
 * we also refuse the documentation and benchmarking nets (never a real upstream) and the
 * deprecated 6to4 relay anycast. */
static const struct range4 restricted4[] = {
    { 0x00000000, 8 },  /* 0.0.0.0/8 "this network" (0.0.0.0 reaches the host on Linux) */
    { 0x0a000000, 8 },  /* 10.0.0.0/8 RFC 1918 */
    { 0x64400000, 10 }, /* 100.64.0.0/10 CGNAT, RFC 6598 (also Alibaba metadata) */
    { 0x7f000000, 8 },  /* 127.0.0.0/8 loopback */
    { 0xa9fe0000, 16 }, /* 169.254.0.0/16 link-local (cloud metadata lives here) */
    { 0xac100000, 12 }, /* 172.16.0.0/12 RFC 1918 */
    { 0xc0000000, 24 }, /* 192.0.0.0/24 IETF protocol assignments, RFC 6890 */
    { 0xc0000200, 24 }, /* 192.0.2.0/24 TEST-NET-1 */
    { 0xc0586300, 24 }, /* 192.88.99.0/24 6to4 relay anycast (deprecated, RFC 7526) */
    { 0xc0a80000, 16 }, /* 192.168.0.0/16 RFC 1918 */
    { 0xc6120000, 15 }, /* 198.18.0.0/15 benchmarking, RFC 2544 */
    { 0xc6336400, 24 }, /* 198.51.100.0/24 TEST-NET-2 */
    { 0xcb007100, 24 }, /* 203.0.113.0/24 TEST-NET-3 */
    { 0xe0000000, 4 },  /* 224.0.0.0/4 multicast */
    { 0xf0000000, 4 },  /* 240.0.0.0/4 reserved, includes 255.255.255.255 broadcast */
};

static const uint32_t metadata4[] = {
    0xa9fea9fe, /* 169.254.169.254 AWS, GCP, Azure, OCI, OpenStack, DigitalOcean */
    0xa9feaa02, /* 169.254.170.2 AWS ECS task credentials */
    0xa9feaa17, /* 169.254.170.23 AWS EKS pod identity agent */
};

static const struct in6_addr metadata6[] = {
    /* fd00:ec2::254 AWS IMDS over IPv6 */
    { .s6_addr = { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54 } },
    /* fd00:ec2::23 AWS EKS pod identity agent over IPv6 */
    { .s6_addr = { 0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x23 } },
};

struct range6 {
    uint8_t net[16];
    unsigned prefix;
};

/* Inside 2000::/3 (global unicast) but refused. Everything outside 2000::/3 is refused anyway
 * (::, ::1, fc00::/7 ULA, fe80::/10, fec0::/10, ff00::/8, 100::/64, 64:ff9b:1::/48, ...),
 * except the IPv4-embedding forms, which are judged by their IPv4 address. */
static const struct range6 restricted6[] = {
    { { 0x20, 0x01, 0x00, 0x00 }, 23 }, /* 2001::/23 IETF protocol assignments (Teredo...) */
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32 }, /* 2001:db8::/32 documentation */
    { { 0x3f, 0xff, 0x00, 0x00 }, 20 }, /* 3fff::/20 documentation, RFC 9637 */
};

static bool in_range4(uint32_t a, uint32_t net, unsigned prefix)
{
    uint32_t mask = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    return (a & mask) == net;
}

bool addr_prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;

    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

bool addr_unmap_v4(const struct sockaddr *sa, struct sockaddr_in *ret)
{
    static const uint8_t zero12[12] = { 0 };
    static const uint8_t mapped12[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    const struct sockaddr_in6 *in6;
    const uint8_t *b;

    if (!sa || sa->sa_family != AF_INET6)
        return false;
    in6 = (const struct sockaddr_in6 *)sa;
    b = in6->sin6_addr.s6_addr;
    if (memcmp(b, mapped12, 12) != 0) {
        if (memcmp(b, zero12, 12) != 0)
            return false;
        /* :: and ::1 are IPv6's own unspecified and loopback addresses, not IPv4-compatible. */
        if (b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1)
            return false;
    }
    memset(ret, 0, sizeof(*ret));
    ret->sin_family = AF_INET;
    ret->sin_port = in6->sin6_port;
    memcpy(&ret->sin_addr, b + 12, 4);
    return true;
}

/* IPv4 address embedded in NAT64 (64:ff9b::/96, RFC 6052) or 6to4 (2002::/16, RFC 3056),
 * in host order. */
static bool embedded_v4(const uint8_t *b, uint32_t *ret)
{
    static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };

    if (memcmp(b, nat64, 12) == 0) {
        *ret = (uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15];
        return true;
    }
    if (b[0] == 0x20 && b[1] == 0x02) {
        *ret = (uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5];
        return true;
    }
    return false;
}

static bool v4_is_metadata(uint32_t a)
{
    for (size_t i = 0; i < ARRAY_SIZE(metadata4); i++)
        if (a == metadata4[i])
            return true;
    return false;
}

static bool v4_is_restricted(uint32_t a)
{
    for (size_t i = 0; i < ARRAY_SIZE(restricted4); i++)
        if (in_range4(a, restricted4[i].net, restricted4[i].prefix))
            return true;
    return false;
}

/* Returns the IPv4 address (host order) an address is judged by, if any. */
static bool judge_as_v4(const struct sockaddr *sa, uint32_t *ret)
{
    struct sockaddr_in in4;

    if (sa->sa_family == AF_INET) {
        *ret = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
        return true;
    }
    if (addr_unmap_v4(sa, &in4)) {
        *ret = ntohl(in4.sin_addr.s_addr);
        return true;
    }
    return false;
}

bool addr_is_metadata(const struct sockaddr *sa)
{
    uint32_t v4;

    if (!sa)
        return false;
    if (judge_as_v4(sa, &v4))
        return v4_is_metadata(v4);
    if (sa->sa_family != AF_INET6)
        return false;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (embedded_v4(b, &v4) && v4_is_metadata(v4))
        return true;
    for (size_t i = 0; i < ARRAY_SIZE(metadata6); i++)
        if (memcmp(b, metadata6[i].s6_addr, 16) == 0)
            return true;
    return false;
}

bool addr_is_restricted(const struct sockaddr *sa)
{
    struct sockaddr_in in4;
    uint32_t v4;

    if (!sa)
        return true;
    if (sa->sa_family == AF_INET)
        return v4_is_restricted(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (addr_unmap_v4(sa, &in4)) {
        /* IPv4-compatible ::a.b.c.d is deprecated (RFC 4291 2.5.5.1) and never a real
         * upstream: refused whatever it embeds. IPv4-mapped is judged as its IPv4 address. */
        if (((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[11] != 0xff)
            return true;
        return v4_is_restricted(ntohl(in4.sin_addr.s_addr));
    }
    if (sa->sa_family != AF_INET6)
        return true; /* fail closed on anything we do not understand */
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (embedded_v4(b, &v4) && v4_is_restricted(v4))
        return true;
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b) {
        /* 64:ff9b::/96 with a public IPv4 is fine; the rest of 64:ff9b::/32 is not. */
        static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b };
        return memcmp(b, nat64, 12) != 0;
    }
    if ((b[0] & 0xe0) != 0x20) /* outside 2000::/3 global unicast */
        return true;
    for (size_t i = 0; i < ARRAY_SIZE(restricted6); i++)
        if (addr_prefix_match(b, restricted6[i].net, restricted6[i].prefix))
            return true;
    return false;
}
