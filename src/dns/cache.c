/*
 * The answer cache of the DNS filter (see filter-int.h and docs/dns.md, "Cache"): forwarded
 * answers after SSRF filtering, keyed by (name case-insensitively, qtype, qclass, DO, CD), in a
 * hash table with an LRU list; bounded by DNS_CACHE_MAX_ENTRIES and DNS_CACHE_MAX_BYTES.
 */
#include <stdlib.h>
#include <string.h>

#include "common/str.h"
#include "common/xalloc.h"
#include "dns/filter-int.h"

static uint32_t cache_hash(const uint8_t *name, size_t len, uint16_t qtype, uint16_t qclass,
                           uint8_t flags)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)ascii_tolower((char)name[i])) * 16777619u;
    h = (h ^ (qtype >> 8)) * 16777619u;
    h = (h ^ (qtype & 0xff)) * 16777619u;
    h = (h ^ (qclass & 0xff)) * 16777619u;
    h = (h ^ flags) * 16777619u;
    return h;
}

static uint8_t cache_key_flags(const struct dns_query_info *q)
{
    return (uint8_t)((q->do_bit ? 1 : 0) | ((q->hdr.flags & DNS_FLAG_CD) ? 2 : 0));
}

static void cache_unlink(struct dns_cache *c, struct dns_cache_entry *e)
{
    struct dns_cache_entry **pp = &c->buckets[e->hash & (DNS_CACHE_BUCKETS - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    c->n--;
    c->bytes -= e->bytes;
    free(e);
}

void dns_cache_clear(struct dns_cache *c)
{
    while (c->lru_head)
        cache_unlink(c, c->lru_head);
}

static void lru_push_front(struct dns_cache *c, struct dns_cache_entry *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

struct dns_cache_entry *dns_cache_find(struct dns_cache *c, uint64_t now, const uint8_t *query,
                                       const struct dns_query_info *q)
{
    uint8_t kf = cache_key_flags(q);
    uint32_t h = cache_hash(query + DNS_HEADER_LEN, q->qname_len, q->qtype, q->qclass, kf);
    struct dns_cache_entry *e = c->buckets[h & (DNS_CACHE_BUCKETS - 1)];

    for (; e; e = e->hnext) {
        if (e->hash != h || e->key_flags != kf ||
            !dns_name_eq(e->msg + DNS_HEADER_LEN, q->qname_len, query + DNS_HEADER_LEN,
                         q->qname_len) ||
            memcmp(e->msg + q->question_end - 4, query + q->question_end - 4, 4) != 0)
            continue;
        if (e->expires <= now) {
            cache_unlink(c, e);
            return NULL;
        }
        if (c->lru_head != e) { /* move to front */
            e->lru_prev->lru_next = e->lru_next;
            if (e->lru_next)
                e->lru_next->lru_prev = e->lru_prev;
            else
                c->lru_tail = e->lru_prev;
            lru_push_front(c, e);
        }
        return e;
    }
    return NULL;
}

void dns_cache_store(struct dns_cache *c, uint64_t now, const uint8_t *query,
                     const struct dns_query_info *q, const uint8_t *msg, size_t len,
                     const struct dns_resp_info *info, uint32_t ttl)
{
    size_t bytes = sizeof(struct dns_cache_entry) + len + info->n_ttl * sizeof(uint16_t);
    struct dns_cache_entry *old;

    if (ttl == 0 || bytes > DNS_CACHE_MAX_ENTRY_BYTES)
        return;
    old = dns_cache_find(c, now, query, q);
    if (old)
        cache_unlink(c, old);
    while (c->lru_tail && (c->n >= DNS_CACHE_MAX_ENTRIES || c->bytes + bytes > DNS_CACHE_MAX_BYTES))
        /* the tail has no lru_next, so cache_unlink() moves lru_tail to its lru_prev */
        /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
        cache_unlink(c, c->lru_tail);

    struct dns_cache_entry *e = xmalloc(bytes);
    e->key_flags = cache_key_flags(q);
    e->hash = cache_hash(query + DNS_HEADER_LEN, q->qname_len, q->qtype, q->qclass, e->key_flags);
    e->stored_at = now;
    e->expires = now + (uint64_t)ttl * NS_PER_SEC;
    e->len = len;
    e->n_ttl = info->n_ttl;
    e->bytes = bytes;
    memcpy(e->ttl_off, info->ttl_off, info->n_ttl * sizeof(uint16_t));
    e->msg = (uint8_t *)(e->ttl_off + info->n_ttl);
    memcpy(e->msg, msg, len);
    struct dns_cache_entry **b = &c->buckets[e->hash & (DNS_CACHE_BUCKETS - 1)];
    e->hnext = *b;
    *b = e;
    lru_push_front(c, e);
    c->n++;
    c->bytes += bytes;
}
