/*
 * Fuzz the terminal filter (src/supervisor/termfilter.c). Properties: never crash; each call
 * writes at most len + TERMFILTER_HOLD bytes; the output does not depend on the read
 * boundaries (the input is fed whole, then cut where its first bytes say, then byte by byte);
 * and what comes out (with a newline after it) passes through the filter again unchanged, so
 * nothing the filter drops
 * (OSC 52, DCS, C1 controls, ...) can be assembled by it.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "supervisor/termfilter.h"

#define MAX_IN 65536

static size_t feed_cut(const uint8_t *in, size_t len, uint8_t *out, const uint8_t *cuts,
                       size_t ncuts)
{
    struct termfilter f;
    size_t at = 0, o = 0, k = 0;

    termfilter_init(&f);
    while (at < len) {
        size_t step = ncuts ? (size_t)cuts[k++ % ncuts] % 17 + 1 : len - at;
        size_t n;
        if (step > len - at)
            step = len - at;
        n = termfilter_feed(&f, in + at, step, out + o);
        if (n > step + TERMFILTER_HOLD)
            abort();
        o += n;
        at += step;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t a[MAX_IN + TERMFILTER_HOLD + 1], b[MAX_IN + 17 * TERMFILTER_HOLD * 4],
        c[MAX_IN + 2 * TERMFILTER_HOLD];
    static uint8_t ones[1] = { 0 };
    size_t na, nb, nc;

    if (size > MAX_IN / 4)
        return 0;
    na = feed_cut(data, size, a, NULL, 0);
    nb = feed_cut(data, size, b, data, size < 8 ? size : 8);
    if (na != nb || memcmp(a, b, na) != 0)
        abort();
    nb = feed_cut(data, size, b, ones, 1);
    if (na != nb || memcmp(a, b, na) != 0)
        abort();
    /* a newline ends what the output may leave open (a lone 0xc2 the filter would hold) */
    a[na++] = '\n';
    nc = feed_cut(a, na, c, NULL, 0);
    if (nc != na || memcmp(a, c, na) != 0)
        abort();
    return 0;
}
