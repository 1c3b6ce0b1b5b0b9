/*
 * DNS wire format (RFC 1035, RFC 6891): a bounded, allocation-free parser and the few message
 * builders the DNS filter needs. Every function takes a message and its length and never reads
 * outside it; names are at most 255 octets, compression pointers must point strictly backward
 * (so loops are impossible) and at most DNS_MAX_PTR_HOPS are followed.
 *
 * Error convention (all functions): -EBADMSG for a message that cannot be trusted at all,
 * -EPROTO for a well-framed message that breaks a rule (answer FORMERR), -EOPNOTSUPP for
 * something valid we do not implement (answer NOTIMP), -ENOSPC when the output does not fit.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

/* Sizes fixed by the protocol, not caps of ours (those, DNS_MAX_RRS, DNS_MAX_PTR_HOPS and
 * DNS_MAX_CLIENT_UDP among them, are in common/limits.h): a peer cannot push past them because
 * the wire format cannot express more. */
#define DNS_HEADER_LEN 12
#define DNS_MAX_NAME 255      /* wire octets of a name, root label included (RFC 1035 2.3.4) */
#define DNS_MAX_NAME_TEXT 253 /* presentation form without the trailing dot */
#define DNS_MAX_MSG 65535     /* a 16-bit length (RFC 1035 4.2.2) */
#define DNS_MIN_UDP 512       /* UDP payload every client accepts (RFC 1035 4.2.1) */
#define DNS_EDNS_UDP 1232     /* payload size we advertise (DNS flag day 2020) */
#define DNS_OPT_LEN 11        /* an OPT record without options */

/* Header flag bits (RFC 1035 4.1.1, RFC 4035 3.2). */
enum {
    DNS_FLAG_QR = 1u << 15,
    DNS_FLAG_AA = 1u << 10,
    DNS_FLAG_TC = 1u << 9,
    DNS_FLAG_RD = 1u << 8,
    DNS_FLAG_RA = 1u << 7,
    DNS_FLAG_AD = 1u << 5,
    DNS_FLAG_CD = 1u << 4,
};
#define DNS_OPCODE(flags) (((flags) >> 11) & 0xfu)
#define DNS_RCODE(flags) ((flags)&0xfu)

enum dns_rcode {
    DNS_RCODE_NOERROR = 0,
    DNS_RCODE_FORMERR = 1,
    DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4,
    DNS_RCODE_REFUSED = 5,
    DNS_RCODE_BADVERS = 16, /* extended: needs an OPT record (RFC 6891 6.1.3) */
};

enum dns_type {
    DNS_TYPE_A = 1,
    DNS_TYPE_NS = 2,
    DNS_TYPE_MD = 3,
    DNS_TYPE_MF = 4,
    DNS_TYPE_CNAME = 5,
    DNS_TYPE_SOA = 6,
    DNS_TYPE_MB = 7,
    DNS_TYPE_MG = 8,
    DNS_TYPE_MR = 9,
    DNS_TYPE_PTR = 12,
    DNS_TYPE_MINFO = 14,
    DNS_TYPE_MX = 15,
    DNS_TYPE_TXT = 16,
    DNS_TYPE_RP = 17,
    DNS_TYPE_AFSDB = 18,
    DNS_TYPE_RT = 21,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_SRV = 33,
    DNS_TYPE_KX = 36,
    DNS_TYPE_DNAME = 39,
    DNS_TYPE_OPT = 41,
    DNS_TYPE_SVCB = 64,
    DNS_TYPE_HTTPS = 65,
    DNS_TYPE_TSIG = 250,
    DNS_TYPE_IXFR = 251,
    DNS_TYPE_AXFR = 252,
    DNS_TYPE_MAILB = 253,
    DNS_TYPE_MAILA = 254,
    DNS_TYPE_ANY = 255,
};
#define DNS_CLASS_IN 1

enum dns_section { DNS_SEC_ANSWER, DNS_SEC_AUTHORITY, DNS_SEC_ADDITIONAL, DNS_SEC_MAX };

struct dns_hdr {
    uint16_t id, flags, qdcount, ancount, nscount, arcount;
};

static inline uint16_t dns_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t dns_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void dns_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void dns_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Parse the 12-byte header. Returns 0, or -EBADMSG when len < 12. */
int dns_hdr_parse(const uint8_t *msg, size_t len, struct dns_hdr *ret);

/*
 * Read the (possibly compressed) name at *off of msg. Writes its uncompressed wire form
 * (labels as sent, root label included) to out[DNS_MAX_NAME] and its length to *ret_len, and
 * advances *off past the name's bytes at *off (a pointer counts 2). Returns 0 or -EBADMSG
 * (overrun, pointer not strictly backward, too many hops, reserved label type, > 255 octets).
 */
int dns_name_read(const uint8_t *msg, size_t len, size_t *off, uint8_t out[DNS_MAX_NAME],
                  size_t *ret_len);

/* Case-insensitive (ASCII only, RFC 4343) comparison of two uncompressed wire names. */
bool dns_name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/*
 * Presentation form of an uncompressed wire name: labels joined by '.', no trailing dot, the
 * root name is "". Only letters, digits, '-' and '_' are accepted in labels: anything else
 * (a '.', '\\', a byte >= 0x80, a control byte) returns -EINVAL, because such a name cannot be
 * checked against the allowlist without ambiguity. out must hold DNS_MAX_NAME_TEXT + 1 bytes;
 * *ret_len excludes the NUL.
 */
int dns_name_to_text(const uint8_t *wire, size_t wlen, char out[DNS_MAX_NAME_TEXT + 1],
                     size_t *ret_len);

/* Short name of a type ("A", "AAAA", "HTTPS", ...), or "TYPE<n>" formatted into buf. */
const char *dns_type_name(uint16_t type, char buf[16]);

/* A client query parsed in place. */
struct dns_query_info {
    struct dns_hdr hdr;
    size_t qname_off; /* always DNS_HEADER_LEN: the question name is never compressed */
    size_t qname_len; /* wire length, root label included */
    uint16_t qtype, qclass;
    size_t question_end; /* offset just past QCLASS */
    bool has_opt;
    uint8_t edns_version;
    bool do_bit;       /* DNSSEC OK */
    uint16_t udp_size; /* the client's advertised payload size (512 without OPT) */
};

/*
 * Parse a query received from a client: QR=0, OPCODE=QUERY, QDCOUNT=1, ANCOUNT=NSCOUNT=0,
 * one uncompressed question, at most one additional record which must be an OPT for the root
 * name with well-formed options. Bytes after the last record are refused.
 * Returns 0; -EBADMSG (shorter than a header, or a response: drop it); -EOPNOTSUPP (opcode is
 * not QUERY: NOTIMP); -EPROTO (anything else malformed: FORMERR).
 */
int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query_info *ret);

/*
 * Write a reply without records to a parsed query q (the original message in query): the
 * header (ID, RD and CD kept; QR, RA set; rcode) and the question copied, plus our own OPT record
 * (DO echoed, no options) when the query had one. An extended rcode (> 15) needs that OPT; without
 * one it is sent as SERVFAIL. Returns the length or -ENOSPC.
 */
int dns_reply_build(const uint8_t *query, const struct dns_query_info *q, unsigned rcode,
                    uint8_t *out, size_t outsize);

/* A header-only reply (no question) for queries whose question cannot be trusted (FORMERR,
 * NOTIMP). Returns DNS_HEADER_LEN or -ENOSPC. */
int dns_reply_header_only(const struct dns_hdr *qh, unsigned rcode, uint8_t *out, size_t outsize);

/*
 * Build a query: the given ID and flags (only RD and CD are kept), one question, and an OPT
 * record advertising udp_size (with DO when do_bit) when edns. qname is an uncompressed wire name.
 * Returns the length or -ENOSPC.
 */
int dns_query_build(uint16_t id, uint16_t flags, const uint8_t *qname, size_t qname_len,
                    uint16_t qtype, uint16_t qclass, bool edns, uint16_t udp_size, bool do_bit,
                    uint8_t *out, size_t outsize);

/*
 * Decide whether one record of an upstream response is kept (true) or removed. Called for
 * every record except OPT (which is always removed: the filter adds its own for the client).
 */
typedef bool (*dns_rr_keep_fn)(void *userdata, enum dns_section sec, uint16_t type,
                               const uint8_t *rdata, uint16_t rdlen);

/* What dns_resp_filter() learnt about a response. */
struct dns_resp_info {
    uint16_t flags;               /* header flags as received */
    unsigned rcode;               /* including the extended bits from the OPT record */
    uint16_t counts[DNS_SEC_MAX]; /* records kept per section */
    unsigned removed;             /* records removed by keep() (OPT not counted) */
    bool has_ttl;                 /* at least one kept record */
    uint32_t min_ttl;             /* smallest TTL of the kept records (RFC 2181 8: > 2^31-1 is 0) */
    bool has_soa;                 /* an SOA in the authority section (negative caching, RFC 2308) */
    uint32_t neg_ttl;             /* min(SOA TTL, SOA MINIMUM) of that SOA */
    size_t n_ttl;                 /* offsets (in out) of the TTL fields of the kept records */
    uint16_t ttl_off[DNS_MAX_RRS];
};

/*
 * Check that msg answers our question (QR=1, OPCODE=QUERY, the ID, QDCOUNT=1, and the question
 * equal to qname/qtype/qclass, the name compared case-insensitively), walk and validate every
 * record (names in the RDATA of the RFC 1035/3597 compressible types are followed too; A and
 * AAAA must have 4 and 16 bytes), ask keep() about each, and write the response without the
 * removed records and without OPT to out (ID as received; trailing bytes dropped). When only
 * trailing records go, the kept prefix is copied verbatim; otherwise the message is re-encoded
 * with every name uncompressed. Returns the length of out, -EBADMSG (not our answer or
 * malformed: ignore / SERVFAIL), -E2BIG (more than DNS_MAX_RRS records) or -ENOSPC.
 * ret is filled on success.
 */
int dns_resp_filter(const uint8_t *msg, size_t len, uint16_t id, const uint8_t *qname,
                    size_t qname_len, uint16_t qtype, uint16_t qclass, dns_rr_keep_fn keep,
                    void *userdata, uint8_t *out, size_t outsize, struct dns_resp_info *ret);

/*
 * Turn a stored answer (as written by dns_resp_filter) into the reply to one client query:
 * the ID and the question bytes of the query (same name, the client's letter case), RD/CD from
 * the query, AD only when the query set AD or DO, AA and TC cleared, every TTL listed in
 * ttl_off lowered by elapsed seconds (not below 0), and an OPT record when the query had one.
 * When the result is longer than max_size, a truncated reply (TC, question only) is written
 * instead so the client retries over TCP. Returns the length, or -EINVAL (the stored answer does
 * not match the query), -ENOSPC.
 */
int dns_answer_finalize(const uint8_t *stored, size_t stored_len, const uint16_t *ttl_off,
                        size_t n_ttl, uint32_t elapsed, const uint8_t *query,
                        const struct dns_query_info *q, size_t max_size, uint8_t *out,
                        size_t outsize);

/* Largest UDP reply for a parsed query: 512 without EDNS, else its size in [512, 4096]. */
size_t dns_query_max_udp(const struct dns_query_info *q);
