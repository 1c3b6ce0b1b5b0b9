/*
 * Fuzz the reflection search over gzip/deflate bodies (cred_scan_set_inflate). Input: a flags
 * byte, two bytes for the cut size (1..4096), then the data.
 *   flags bit 0 clear: the data is plain text; the harness compresses it (gzip or zlib by bit
 *     1, level by bits 2-5), feeds the compressed bytes in cuts, and checks that the inflating
 *     search finds a value exactly when a search of the plain text does, and that after each
 *     feed with no finding, the bytes the hold-back lets out never inflate to a value.
 *   flags bit 0 set: the data is fed as compressed bytes as it is (garbage, truncated or
 *     crafted streams): no crash, the inflated amount stays within the bounds, and the bytes
 *     the hold-back lets out hold no value as they are (a gzip header's file name).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "common/buf.h"
#include "fuzz.h"
#include "proxy/cred.h"

static struct cred_store *store(void)
{
    static const char wire[] = "api api.example 443 x-api-key "
                               "bb-cred-api-0123456789abcdef0123456789abcdef sk-REAL-fuzz\n"
                               "tok tok.example 443 authorization "
                               "bb-cred-tok-00112233445566778899aabbccddeeff zz\n";
    struct cred_store *s = NULL;
    const char *err = NULL;
    if (cred_store_decode(wire, sizeof(wire) - 1, &s, &err) < 0)
        abort();
    return s;
}

/* The plain search of p (the reference). */
static int plain_hit(const struct cred_store *s, const void *p, size_t n)
{
    struct cred_scan sc;
    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    int hit = cred_scan_feed(s, &sc, p, n);
    cred_scan_done(&sc);
    return hit;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cred_store *s;
    struct cred_scan sc;
    unsigned flags;
    size_t step, zn;
    unsigned char *z;
    int hit = -1;

    if (size < 3 || size > 65536)
        return 0;
    flags = data[0];
    step = 1 + ((size_t)data[1] << 8 | data[2]) % 4096;
    data += 3;
    size -= 3;
    s = store();
    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    if (cred_scan_set_inflate(&sc) < 0)
        abort();
    if (flags & 1) {
        for (size_t i = 0; i < size && hit == -1; i += step) {
            size_t n = size - i < step ? size - i : step;
            hit = cred_scan_feed(s, &sc, (const char *)data + i, n);
            /* the compressed bytes let out hold no value as they are either (a gzip header's
             * name or comment is not inflated output) */
            size_t out = i + n - cred_scan_hold(&sc);
            if (hit == -1 && memmem(data, out, "sk-REAL-fuzz", 12))
                abort();
        }
        if (sc.z_out > (uint64_t)CRED_INFLATE_MAX + 16384)
            abort();
        goto out;
    }
    /* compress the text */
    {
        z_stream d = { 0 };
        int wbits = flags & 2 ? 31 : 15, level = (int)((flags >> 2) & 15) % 10;
        if (deflateInit2(&d, level, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            abort();
        zn = deflateBound(&d, (uLong)size) + 64;
        z = malloc(zn);
        d.next_in = (Bytef *)(uintptr_t)data;
        d.avail_in = (uInt)size;
        d.next_out = z;
        d.avail_out = (uInt)zn;
        if (deflate(&d, Z_FINISH) != Z_STREAM_END)
            abort();
        zn = d.total_out;
        deflateEnd(&d);
    }
    size_t fed = 0;
    while (fed < zn && hit == -1) {
        size_t n = zn - fed < step ? zn - fed : step;
        hit = cred_scan_feed(s, &sc, (const char *)z + fed, n);
        fed += n;
        if (hit != -1)
            break;
        /* what a client would have from the bytes let out: no value in it */
        size_t out_len = fed - cred_scan_hold(&sc);
        z_stream in = { 0 };
        unsigned char *plain = malloc(size + 1);
        if (inflateInit2(&in, 15 + 32) != Z_OK)
            abort();
        in.next_in = z;
        in.avail_in = (uInt)out_len;
        in.next_out = plain;
        in.avail_out = (uInt)size + 1;
        (void)inflate(&in, Z_SYNC_FLUSH);
        if (plain_hit(s, plain, in.total_out) >= 0)
            abort(); /* a value got out before the search saw it */
        inflateEnd(&in);
        free(plain);
    }
    if ((hit >= 0) != (plain_hit(s, data, size) >= 0))
        abort();
    free(z);
out:
    cred_scan_done(&sc);
    cred_store_free(s);
    return 0;
}
