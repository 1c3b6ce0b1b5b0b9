/*
 * Bounded DNS message parsing and building (see wire.h). No allocation; every read is checked
 * against the message length before it happens.
 */
#include "dns/wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/macro.h"
#include "common/str.h"

int dns_hdr_parse(const uint8_t *msg, size_t len, struct dns_hdr *ret)
{
    if (len < DNS_HEADER_LEN)
        return -EBADMSG;
    ret->id = dns_get16(msg);
    ret->flags = dns_get16(msg + 2);
    ret->qdcount = dns_get16(msg + 4);
    ret->ancount = dns_get16(msg + 6);
    ret->nscount = dns_get16(msg + 8);
    ret->arcount = dns_get16(msg + 10);
    return 0;
}

static void hdr_write(uint8_t *p, const struct dns_hdr *h)
{
    dns_put16(p, h->id);
    dns_put16(p + 2, h->flags);
    dns_put16(p + 4, h->qdcount);
    dns_put16(p + 6, h->ancount);
    dns_put16(p + 8, h->nscount);
    dns_put16(p + 10, h->arcount);
}

int dns_name_read(const uint8_t *msg, size_t len, size_t *off, uint8_t out[DNS_MAX_NAME],
                  size_t *ret_len)
{
    size_t pos = *off, next = 0, o = 0;
    /* A pointer must target an offset strictly before the start of the run of labels it sits
     * in; every jump lowers this limit, so following pointers always terminates. And whatever is
     * read after a jump must lie wholly before that pointer ("a prior occurrence", RFC 1035
     * 4.1.4): a name then never depends on bytes after itself, so a message can be cut after
     * any record. */
    size_t limit = pos, bound = len;
    unsigned hops = 0;
    bool jumped = false;

    for (;;) {
        if (pos >= bound)
            return -EBADMSG;
        uint8_t c = msg[pos];
        if ((c & 0xc0) == 0xc0) {
            if (pos + 1 >= bound)
                return -EBADMSG;
            size_t target = ((size_t)(c & 0x3f) << 8) | msg[pos + 1];
            /* Nothing in the header is a name (and the header is rewritten on the way out). */
            if (target < DNS_HEADER_LEN || target >= limit || ++hops > DNS_MAX_PTR_HOPS)
                return -EBADMSG;
            if (!jumped) {
                next = pos + 2;
                jumped = true;
            }
            limit = target;
            bound = pos;
            pos = target;
            continue;
        }
        if (c & 0xc0) /* 0x40 / 0x80: extended label types (RFC 6891 5) are not supported */
            return -EBADMSG;
        if (c == 0) {
            if (o + 1 > DNS_MAX_NAME)
                return -EBADMSG;
            out[o++] = 0;
            pos++;
            break;
        }
        if (c > bound - pos - 1 || o + 1 + c + 1 > DNS_MAX_NAME)
            return -EBADMSG;
        out[o++] = c;
        memcpy(out + o, msg + pos + 1, c);
        o += c;
        pos += 1 + (size_t)c;
    }
    *off = jumped ? next : pos;
    *ret_len = o;
    return 0;
}

bool dns_name_eq(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (alen != blen)
        return false;
    /* Length octets are < 64, so ASCII case folding leaves them alone. */
    for (size_t i = 0; i < alen; i++)
        if (ascii_tolower((char)a[i]) != ascii_tolower((char)b[i]))
            return false;
    return true;
}

static bool label_char_ok(uint8_t c)
{
    return ascii_isalnum((char)c) || c == '-' || c == '_';
}

int dns_name_to_text(const uint8_t *wire, size_t wlen, char out[DNS_MAX_NAME_TEXT + 1],
                     size_t *ret_len)
{
    size_t i = 0, o = 0;

    while (i < wlen) {
        uint8_t c = wire[i++];
        if (c == 0) {
            if (i != wlen)
                return -EINVAL;
            out[o] = '\0';
            *ret_len = o;
            return 0;
        }
        if (c > 63 || c > wlen - i)
            return -EINVAL;
        if (o && o + 1 > DNS_MAX_NAME_TEXT)
            return -EINVAL;
        if (o)
            out[o++] = '.';
        if (o + c > DNS_MAX_NAME_TEXT)
            return -EINVAL;
        for (size_t k = 0; k < c; k++) {
            if (!label_char_ok(wire[i + k]))
                return -EINVAL;
            out[o++] = (char)wire[i + k];
        }
        i += c;
    }
    return -EINVAL; /* no root label */
}

const char *dns_type_name(uint16_t type, char buf[16])
{
    switch (type) {
    case DNS_TYPE_A:
        return "A";
    case DNS_TYPE_NS:
        return "NS";
    case DNS_TYPE_CNAME:
        return "CNAME";
    case DNS_TYPE_SOA:
        return "SOA";
    case DNS_TYPE_PTR:
        return "PTR";
    case DNS_TYPE_MX:
        return "MX";
    case DNS_TYPE_TXT:
        return "TXT";
    case DNS_TYPE_AAAA:
        return "AAAA";
    case DNS_TYPE_SRV:
        return "SRV";
    case DNS_TYPE_DNAME:
        return "DNAME";
    case DNS_TYPE_OPT:
        return "OPT";
    case DNS_TYPE_SVCB:
        return "SVCB";
    case DNS_TYPE_HTTPS:
        return "HTTPS";
    case DNS_TYPE_IXFR:
        return "IXFR";
    case DNS_TYPE_AXFR:
        return "AXFR";
    case DNS_TYPE_ANY:
        return "ANY";
    default:
        snprintf(buf, 16, "TYPE%u", (unsigned)type);
        return buf;
    }
}

/* The OPT record of a query: root owner, TYPE 41, then well-formed option TLVs. */
static int parse_query_opt(const uint8_t *msg, size_t len, size_t *pos, struct dns_query_info *q)
{
    size_t p = *pos;

    if (len - p < DNS_OPT_LEN || msg[p] != 0)
        return -EPROTO;
    if (dns_get16(msg + p + 1) != DNS_TYPE_OPT)
        return -EPROTO;
    q->udp_size = dns_get16(msg + p + 3);
    q->edns_version = msg[p + 6];
    q->do_bit = (msg[p + 7] & 0x80) != 0;
    size_t rdlen = dns_get16(msg + p + 9);
    p += DNS_OPT_LEN;
    if (rdlen > len - p)
        return -EPROTO;
    size_t end = p + rdlen;
    while (p < end) {
        if (end - p < 4)
            return -EPROTO;
        size_t olen = dns_get16(msg + p + 2);
        p += 4;
        if (olen > end - p)
            return -EPROTO;
        p += olen;
    }
    q->has_opt = true;
    *pos = p;
    return 0;
}

int dns_query_parse(const uint8_t *msg, size_t len, struct dns_query_info *ret)
{
    struct dns_query_info q = { 0 };
    size_t p = DNS_HEADER_LEN;
    int r;

    r = dns_hdr_parse(msg, len, &q.hdr);
    if (r < 0)
        return r;
    if (q.hdr.flags & DNS_FLAG_QR) /* a response sent to the server port: never answer it */
        return -EBADMSG;
    if (DNS_OPCODE(q.hdr.flags) != 0)
        return -EOPNOTSUPP;
    if (q.hdr.qdcount != 1 || q.hdr.ancount || q.hdr.nscount || q.hdr.arcount > 1)
        return -EPROTO;

    /* The question name, uncompressed (there is nothing before it to point at). */
    q.qname_off = p;
    for (;;) {
        if (p >= len)
            return -EPROTO;
        uint8_t c = msg[p];
        if (c & 0xc0)
            return -EPROTO;
        if (c > len - p - 1)
            return -EPROTO;
        p += 1 + (size_t)c;
        if (p - q.qname_off > DNS_MAX_NAME)
            return -EPROTO;
        if (c == 0)
            break;
    }
    q.qname_len = p - q.qname_off;
    if (len - p < 4)
        return -EPROTO;
    q.qtype = dns_get16(msg + p);
    q.qclass = dns_get16(msg + p + 2);
    p += 4;
    q.question_end = p;
    q.udp_size = DNS_MIN_UDP;

    if (q.hdr.arcount == 1) {
        r = parse_query_opt(msg, len, &p, &q);
        if (r < 0)
            return r;
    }
    if (p != len)
        return -EPROTO;
    *ret = q;
    return 0;
}

size_t dns_query_max_udp(const struct dns_query_info *q)
{
    if (!q->has_opt || q->udp_size < DNS_MIN_UDP)
        return DNS_MIN_UDP;
    return MIN((size_t)q->udp_size, (size_t)DNS_MAX_CLIENT_UDP);
}

static void write_opt(uint8_t *p, unsigned ext_rcode, bool do_bit)
{
    p[0] = 0;
    dns_put16(p + 1, DNS_TYPE_OPT);
    dns_put16(p + 3, DNS_EDNS_UDP);
    p[5] = (uint8_t)ext_rcode;
    p[6] = 0; /* version */
    p[7] = do_bit ? 0x80 : 0;
    p[8] = 0;
    dns_put16(p + 9, 0);
}

static uint16_t reply_flags(const struct dns_query_info *q, unsigned rcode)
{
    return (uint16_t)(DNS_FLAG_QR | DNS_FLAG_RA | (q->hdr.flags & (DNS_FLAG_RD | DNS_FLAG_CD)) |
                      (rcode & 0xfu));
}

int dns_reply_build(const uint8_t *query, const struct dns_query_info *q, unsigned rcode,
                    uint8_t *out, size_t outsize)
{
    size_t qlen = q->question_end - DNS_HEADER_LEN;
    size_t need = DNS_HEADER_LEN + qlen + (q->has_opt ? DNS_OPT_LEN : 0);

    if (need > outsize)
        return -ENOSPC;
    if (rcode > 15 && !q->has_opt)
        rcode = DNS_RCODE_SERVFAIL;
    struct dns_hdr h = {
        .id = q->hdr.id,
        .flags = reply_flags(q, rcode),
        .qdcount = 1,
        .arcount = q->has_opt ? 1 : 0,
    };
    hdr_write(out, &h);
    memcpy(out + DNS_HEADER_LEN, query + DNS_HEADER_LEN, qlen);
    if (q->has_opt)
        write_opt(out + DNS_HEADER_LEN + qlen, rcode >> 4, q->do_bit);
    return (int)need;
}

int dns_reply_header_only(const struct dns_hdr *qh, unsigned rcode, uint8_t *out, size_t outsize)
{
    if (outsize < DNS_HEADER_LEN)
        return -ENOSPC;
    struct dns_hdr h = {
        .id = qh->id,
        .flags = (uint16_t)(DNS_FLAG_QR | (qh->flags & (0xfu << 11)) | (qh->flags & DNS_FLAG_RD) |
                            (rcode & 0xfu)),
    };
    hdr_write(out, &h);
    return DNS_HEADER_LEN;
}

int dns_query_build(uint16_t id, uint16_t flags, const uint8_t *qname, size_t qname_len,
                    uint16_t qtype, uint16_t qclass, bool edns, uint16_t udp_size, bool do_bit,
                    uint8_t *out, size_t outsize)
{
    size_t need = DNS_HEADER_LEN + qname_len + 4 + (edns ? DNS_OPT_LEN : 0);

    if (need > outsize)
        return -ENOSPC;
    struct dns_hdr h = {
        .id = id,
        .flags = (uint16_t)(flags & (DNS_FLAG_RD | DNS_FLAG_CD)),
        .qdcount = 1,
        .arcount = edns ? 1 : 0,
    };
    hdr_write(out, &h);
    memcpy(out + DNS_HEADER_LEN, qname, qname_len);
    dns_put16(out + DNS_HEADER_LEN + qname_len, qtype);
    dns_put16(out + DNS_HEADER_LEN + qname_len + 2, qclass);
    if (edns) {
        uint8_t *o = out + DNS_HEADER_LEN + qname_len + 4;
        write_opt(o, 0, do_bit);
        dns_put16(o + 3, udp_size);
    }
    return (int)need;
}

/* ---- responses ---- */

/* RDATA made of a fixed prefix, names (which may be compressed: RFC 1035 3.3, RFC 3597 4) and a
 * fixed suffix. Returns false for types whose RDATA is opaque to us. */
static bool rdata_layout(uint16_t type, unsigned *prefix, unsigned *names, unsigned *suffix)
{
    *prefix = 0;
    *names = 1;
    *suffix = 0;
    switch (type) {
    case DNS_TYPE_NS:
    case DNS_TYPE_MD:
    case DNS_TYPE_MF:
    case DNS_TYPE_CNAME:
    case DNS_TYPE_MB:
    case DNS_TYPE_MG:
    case DNS_TYPE_MR:
    case DNS_TYPE_PTR:
    case DNS_TYPE_DNAME:
        return true;
    case DNS_TYPE_SOA:
        *names = 2;
        *suffix = 20;
        return true;
    case DNS_TYPE_MINFO:
    case DNS_TYPE_RP:
        *names = 2;
        return true;
    case DNS_TYPE_MX:
    case DNS_TYPE_AFSDB:
    case DNS_TYPE_RT:
    case DNS_TYPE_KX:
        *prefix = 2;
        return true;
    case DNS_TYPE_SRV:
        *prefix = 6;
        return true;
    default:
        return false;
    }
}

struct rr_pos {
    uint32_t start; /* owner name */
    uint32_t fixed; /* TYPE CLASS TTL RDLENGTH */
    uint32_t rdata;
    uint32_t end;
    uint16_t type;
    uint8_t sec;
    bool keep;
};

/* Validate the RDATA of a record whose layout we know. */
static int check_rdata(const uint8_t *msg, const struct rr_pos *rr)
{
    unsigned prefix, names, suffix;
    uint8_t tmp[DNS_MAX_NAME];
    size_t nlen, p = rr->rdata;
    size_t rdlen = rr->end - rr->rdata;

    if (rr->type == DNS_TYPE_A)
        return rdlen == 4 ? 0 : -EBADMSG;
    if (rr->type == DNS_TYPE_AAAA)
        return rdlen == 16 ? 0 : -EBADMSG;
    if (!rdata_layout(rr->type, &prefix, &names, &suffix))
        return 0;
    if (rdlen < prefix)
        return -EBADMSG;
    p += prefix;
    for (unsigned i = 0; i < names; i++) {
        /* Bounded by the RDATA end: a name must not run into the next record. */
        if (dns_name_read(msg, rr->end, &p, tmp, &nlen) < 0)
            return -EBADMSG;
    }
    if (rr->end - p != suffix)
        return -EBADMSG;
    return 0;
}

/* Append bytes to the output, bounded. */
static int emit(uint8_t *out, size_t outsize, size_t *o, const void *p, size_t n)
{
    if (n > outsize - *o)
        return -ENOSPC;
    memcpy(out + *o, p, n);
    *o += n;
    return 0;
}

static int emit_name(const uint8_t *msg, size_t len, size_t *p, uint8_t *out, size_t outsize,
                     size_t *o)
{
    uint8_t name[DNS_MAX_NAME];
    size_t nlen;

    if (dns_name_read(msg, len, p, name, &nlen) < 0)
        return -EBADMSG;
    return emit(out, outsize, o, name, nlen);
}

/* Re-encode one kept record with every name uncompressed. */
static int emit_rr(const uint8_t *msg, size_t len, const struct rr_pos *rr, uint8_t *out,
                   size_t outsize, size_t *o, uint16_t *ret_ttl_off)
{
    unsigned prefix, names, suffix;
    size_t p = rr->start;
    int r;

    r = emit_name(msg, len, &p, out, outsize, o);
    if (r < 0)
        return r;
    *ret_ttl_off = (uint16_t)(*o + 4);
    r = emit(out, outsize, o, msg + rr->fixed, 8); /* TYPE CLASS TTL */
    if (r < 0)
        return r;
    size_t rdlen_at = *o;
    r = emit(out, outsize, o, "\0\0", 2);
    if (r < 0)
        return r;
    size_t rd_start = *o;
    if (!rdata_layout(rr->type, &prefix, &names, &suffix)) {
        r = emit(out, outsize, o, msg + rr->rdata, rr->end - rr->rdata);
    } else {
        p = rr->rdata;
        r = emit(out, outsize, o, msg + p, prefix);
        p += prefix;
        for (unsigned i = 0; r >= 0 && i < names; i++)
            r = emit_name(msg, rr->end, &p, out, outsize, o);
        if (r >= 0)
            r = emit(out, outsize, o, msg + p, suffix);
    }
    if (r < 0)
        return r;
    if (*o - rd_start > UINT16_MAX)
        return -ENOSPC;
    dns_put16(out + rdlen_at, (uint16_t)(*o - rd_start));
    return 0;
}

int dns_resp_filter(const uint8_t *msg, size_t len, uint16_t id, const uint8_t *qname,
                    size_t qname_len, uint16_t qtype, uint16_t qclass, dns_rr_keep_fn keep,
                    void *userdata, uint8_t *out, size_t outsize, struct dns_resp_info *ret)
{
    struct rr_pos rrs[DNS_MAX_RRS];
    struct dns_hdr h;
    uint8_t tmp[DNS_MAX_NAME];
    size_t nlen, p, nrr, question_end, last_keep_end;
    unsigned ext_rcode = 0;
    bool have_opt = false, verbatim = true, any_dropped = false;
    int r;

    if (len > DNS_MAX_MSG || dns_hdr_parse(msg, len, &h) < 0)
        return -EBADMSG;
    if (!(h.flags & DNS_FLAG_QR) || DNS_OPCODE(h.flags) != 0 || h.id != id || h.qdcount != 1)
        return -EBADMSG;
    /* The question must be ours, uncompressed (dns_answer_finalize() puts the client's bytes
     * in its place). */
    p = DNS_HEADER_LEN;
    if (len - p < qname_len + 4 || !dns_name_eq(msg + p, qname_len, qname, qname_len))
        return -EBADMSG;
    p += qname_len;
    if (dns_get16(msg + p) != qtype || dns_get16(msg + p + 2) != qclass)
        return -EBADMSG;
    p += 4;
    question_end = p;

    size_t total = (size_t)h.ancount + h.nscount + h.arcount;
    if (total > DNS_MAX_RRS)
        return -E2BIG;
    struct dns_resp_info *info = ret;
    memset(info, 0, offsetof(struct dns_resp_info, ttl_off));
    info->flags = h.flags;
    info->min_ttl = UINT32_MAX;

    nrr = 0;
    for (unsigned sec = 0; sec < DNS_SEC_MAX; sec++) {
        unsigned n = sec == DNS_SEC_ANSWER      ? h.ancount
                     : sec == DNS_SEC_AUTHORITY ? h.nscount
                                                : h.arcount;
        for (unsigned i = 0; i < n; i++) {
            struct rr_pos *rr = &rrs[nrr++];
            rr->start = (uint32_t)p;
            if (dns_name_read(msg, len, &p, tmp, &nlen) < 0)
                return -EBADMSG;
            if (len - p < 10)
                return -EBADMSG;
            rr->fixed = (uint32_t)p;
            rr->type = dns_get16(msg + p);
            rr->sec = (uint8_t)sec;
            uint32_t ttl = dns_get32(msg + p + 4);
            size_t rdlen = dns_get16(msg + p + 8);
            p += 10;
            if (rdlen > len - p)
                return -EBADMSG;
            rr->rdata = (uint32_t)p;
            rr->end = (uint32_t)(p + rdlen);
            p = rr->end;
            if (rr->type == DNS_TYPE_OPT) {
                /* RFC 6891 6.1.1: one OPT, root owner, additional section only. */
                if (sec != DNS_SEC_ADDITIONAL || have_opt || nlen != 1)
                    return -EBADMSG;
                have_opt = true;
                ext_rcode = ttl >> 24;
                rr->keep = false;
                continue;
            }
            if (check_rdata(msg, rr) < 0)
                return -EBADMSG;
            rr->keep = keep ? keep(userdata, (enum dns_section)sec, rr->type, msg + rr->rdata,
                                   (uint16_t)rdlen)
                            : true;
            if (!rr->keep) {
                info->removed++;
                continue;
            }
            if (ttl > INT32_MAX) /* RFC 2181 8 */
                ttl = 0;
            info->has_ttl = true;
            info->min_ttl = MIN(info->min_ttl, ttl);
            info->counts[sec]++;
            if (sec == DNS_SEC_AUTHORITY && rr->type == DNS_TYPE_SOA && !info->has_soa) {
                uint32_t minimum = dns_get32(msg + rr->end - 4);
                if (minimum > INT32_MAX)
                    minimum = 0;
                info->has_soa = true;
                info->neg_ttl = MIN(ttl, minimum);
            }
        }
    }
    if (!info->has_ttl)
        info->min_ttl = 0;
    info->rcode = (ext_rcode << 4) | DNS_RCODE(h.flags);

    /* Verbatim copy is safe when every removed record comes after every kept one: compression
     * pointers only point backward, so nothing kept can refer to what is cut. */
    last_keep_end = question_end;
    for (size_t i = 0; i < nrr; i++) {
        if (rrs[i].keep) {
            if (any_dropped)
                verbatim = false;
            last_keep_end = rrs[i].end;
        } else {
            any_dropped = true;
        }
    }

    size_t o = 0;
    if (verbatim) {
        r = emit(out, outsize, &o, msg, last_keep_end);
        if (r < 0)
            return r;
        info->n_ttl = 0;
        for (size_t i = 0; i < nrr; i++)
            if (rrs[i].keep)
                info->ttl_off[info->n_ttl++] = (uint16_t)(rrs[i].fixed + 4);
    } else {
        r = emit(out, outsize, &o, msg, question_end);
        if (r < 0)
            return r;
        info->n_ttl = 0;
        for (size_t i = 0; i < nrr; i++) {
            if (!rrs[i].keep)
                continue;
            r = emit_rr(msg, len, &rrs[i], out, outsize, &o, &info->ttl_off[info->n_ttl]);
            if (r < 0)
                return r;
            info->n_ttl++;
        }
    }
    if (o > DNS_MAX_MSG)
        return -ENOSPC;
    dns_put16(out + 6, info->counts[DNS_SEC_ANSWER]);
    dns_put16(out + 8, info->counts[DNS_SEC_AUTHORITY]);
    dns_put16(out + 10, info->counts[DNS_SEC_ADDITIONAL]);
    return (int)o;
}

int dns_answer_finalize(const uint8_t *stored, size_t stored_len, const uint16_t *ttl_off,
                        size_t n_ttl, uint32_t elapsed, const uint8_t *query,
                        const struct dns_query_info *q, size_t max_size, uint8_t *out,
                        size_t outsize)
{
    size_t qend = q->question_end;
    size_t need = stored_len + (q->has_opt ? DNS_OPT_LEN : 0);
    uint16_t sflags, flags;

    if (stored_len < qend || stored_len > DNS_MAX_MSG ||
        !dns_name_eq(stored + DNS_HEADER_LEN, q->qname_len, query + DNS_HEADER_LEN, q->qname_len) ||
        memcmp(stored + qend - 4, query + qend - 4, 4) != 0 || dns_get16(stored + 4) != 1)
        return -EINVAL;
    sflags = dns_get16(stored + 2);
    if (need > max_size) {
        /* RFC 1035 4.2.1 / RFC 7766: tell the client to retry over TCP. */
        int r = dns_reply_build(query, q, DNS_RCODE(sflags), out, outsize);
        if (r < 0)
            return r;
        dns_put16(out + 2, (uint16_t)(dns_get16(out + 2) | DNS_FLAG_TC));
        return r;
    }
    if (need > outsize)
        return -ENOSPC;
    memcpy(out, stored, stored_len);
    flags = reply_flags(q, DNS_RCODE(sflags));
    if ((sflags & DNS_FLAG_AD) && ((q->hdr.flags & DNS_FLAG_AD) || q->do_bit))
        flags |= DNS_FLAG_AD;
    dns_put16(out, q->hdr.id);
    dns_put16(out + 2, flags);
    memcpy(out + DNS_HEADER_LEN, query + DNS_HEADER_LEN, q->qname_len);
    for (size_t i = 0; i < n_ttl; i++) {
        if ((size_t)ttl_off[i] + 4 > stored_len)
            return -EINVAL;
        uint32_t t = dns_get32(out + ttl_off[i]);
        dns_put32(out + ttl_off[i], t > elapsed ? t - elapsed : 0);
    }
    if (q->has_opt) {
        write_opt(out + stored_len, 0, q->do_bit);
        dns_put16(out + 10, (uint16_t)(dns_get16(out + 10) + 1));
    }
    return (int)need;
}
