/* A growable array of uint64_t (latency samples) and its qsort comparator, for the bench
 * load tools (bbload.c, bbtls.c). A failed realloc drops the sample: the tools report
 * percentiles, not counts, from it. */
#pragma once

#include <stdint.h>
#include <stdlib.h>

struct u64_vec {
    uint64_t *v;
    size_t len, cap;
};

static inline void vec_push(struct u64_vec *a, uint64_t x)
{
    if (a->len == a->cap) {
        size_t ncap = a->cap ? a->cap * 2 : 4096;
        uint64_t *nv = realloc(a->v, ncap * sizeof(*nv));
        if (!nv)
            return;
        a->v = nv;
        a->cap = ncap;
    }
    a->v[a->len++] = x;
}

static inline int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}
