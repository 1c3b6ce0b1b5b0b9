/*
 * Fuzz the DNS wire parser (src/dns/wire.c) with one input read two ways:
 *  - as a client query: dns_query_parse(), then the replies built from it must parse back;
 *  - as an upstream response to the question it carries: dns_resp_filter() with a keep()
 *    that drops records by an input-chosen rule; the filtered output must itself be a valid
 *    response that filters to exactly the same bytes, and dns_answer_finalize() must accept it.
 */
#include <stdlib.h>
#include <string.h>

#include "dns/wire.h"
#include "fuzz.h"

static bool keep_some(void *ud, enum dns_section sec, uint16_t type, const uint8_t *rd,
                      uint16_t rdlen)
{
    const uint8_t *mask = ud;
    (void)sec;
    return !(((*mask) >> (type & 7)) & 1) && !(rdlen && (rd[0] & 1) && (*mask & 0x80));
}

static void check_query(const uint8_t *data, size_t size)
{
    struct dns_query_info q;
    struct dns_query_info q2;
    uint8_t out[1024];
    char text[DNS_MAX_NAME_TEXT + 1];
    size_t tlen;
    int n;

    if (dns_query_parse(data, size, &q) < 0)
        return;
    if (dns_name_to_text(data + q.qname_off, q.qname_len, text, &tlen) == 0 && strlen(text) != tlen)
        abort();
    n = dns_reply_build(data, &q, DNS_RCODE_NXDOMAIN, out, sizeof(out));
    if (n < 0)
        abort();
    n = dns_query_build(q.hdr.id, q.hdr.flags, data + q.qname_off, q.qname_len, q.qtype, q.qclass,
                        q.has_opt, q.udp_size, q.do_bit, out, sizeof(out));
    if (n < 0 || dns_query_parse(out, (size_t)n, &q2) < 0 || q2.qname_len != q.qname_len ||
        q2.qtype != q.qtype)
        abort();
}

static void check_response(const uint8_t *data, size_t size)
{
    static uint8_t out[DNS_MAX_MSG], out2[DNS_MAX_MSG], fin[DNS_MAX_MSG + DNS_OPT_LEN];
    static struct dns_resp_info info, info2;
    uint8_t qname[DNS_MAX_NAME], mask;
    size_t off = DNS_HEADER_LEN, qlen;
    struct dns_hdr h;
    int n, n2;

    if (dns_hdr_parse(data, size, &h) < 0 || dns_name_read(data, size, &off, qname, &qlen) < 0)
        return;
    if (size - off < 4)
        return;
    uint16_t qtype = dns_get16(data + off), qclass = dns_get16(data + off + 2);
    mask = data[3];
    n = dns_resp_filter(data, size, h.id, qname, qlen, qtype, qclass, keep_some, &mask, out,
                        sizeof(out), &info);
    if (n < 0)
        return;
    n2 = dns_resp_filter(out, (size_t)n, h.id, qname, qlen, qtype, qclass, NULL, NULL, out2,
                         sizeof(out2), &info2);
    if (n2 != n || memcmp(out, out2, (size_t)n) != 0 || info2.n_ttl != info.n_ttl)
        abort();

    /* A client query for the same question gets the stored answer. */
    uint8_t qbuf[DNS_HEADER_LEN + DNS_MAX_NAME + 4 + DNS_OPT_LEN];
    struct dns_query_info q;
    int qn = dns_query_build(7, DNS_FLAG_RD, qname, qlen, qtype, qclass, true, 1232, false, qbuf,
                             sizeof(qbuf));
    if (qn < 0 || dns_query_parse(qbuf, (size_t)qn, &q) < 0)
        abort();
    if (dns_answer_finalize(out, (size_t)n, info.ttl_off, info.n_ttl, 3, qbuf, &q, 512, fin,
                            sizeof(fin)) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > DNS_MAX_MSG)
        return 0;
    check_query(data, size);
    check_response(data, size);
    return 0;
}
