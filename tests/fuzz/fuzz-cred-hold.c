/*
 * Fuzz what the WebSocket relay holds back (cred_scan_hold_prefix): only the bytes that begin
 * a value or one of its base64 forms, a "long" beginning never released on a timer. Input: a
 * byte for the cut size (1..128; bit 7: the data is WebSocket frames, whose joined payload is
 * searched too, so only the lower bounds below are checked), then the data, fed in cuts to a
 * value search. After each
 * feed with no finding, checked by brute force against every needle (the values and their
 * stable base64 at the three alignments):
 *   - every tail of the stream that is a proper prefix of a needle lies within the held bytes
 *     (so the bytes let out cannot be the start of a value the next feed completes);
 *   - the held bytes are within what cred_scan_hold() keeps;
 *   - "long" is said exactly when such a tail is CRED_PREFIX_LONG or more, or half its needle.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dlp/dlp.h"
#include "fuzz.h"
#include "proxy/cred.h"

static const char *const values[] = { "sk-REAL-fuzz-value-0123", "zzzzzzzzzz" };

static struct cred_store *store(void)
{
    static const char wire[] = "api api.example 443 x-api-key "
                               "bb-cred-api-0123456789abcdef0123456789abcdef "
                               "sk-REAL-fuzz-value-0123\n"
                               "tok tok.example 443 authorization "
                               "bb-cred-tok-00112233445566778899aabbccddeeff zzzzzzzzzz\n";
    struct cred_store *s = NULL;
    const char *err = NULL;
    if (cred_store_decode(wire, sizeof(wire) - 1, &s, &err) < 0)
        abort();
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char needles[8][64];
    size_t nlen[8], nn = 0;
    struct cred_store *s;
    struct cred_scan sc;
    size_t step, fed = 0;
    bool ws;

    if (size < 2 || size > 16384)
        return 0;
    ws = data[0] & 0x80; /* the data as WebSocket frames (cred_scan_set_websocket) */
    step = 1 + (data[0] & 0x7f);
    data++;
    size--;
    for (size_t v = 0; v < 2; v++) {
        const unsigned char *p = (const unsigned char *)values[v];
        nlen[nn] = strlen(values[v]);
        memcpy(needles[nn], p, nlen[nn]);
        nn++;
        for (unsigned k = 0; k < 3; k++) {
            nlen[nn] = dlp_b64_stable(p, strlen(values[v]), k, false, needles[nn]);
            if (nlen[nn] >= 8) /* CRED_B64_MIN: shorter forms are not searched */
                nn++;
        }
    }
    s = store();
    cred_scan_init(&sc);
    cred_scan_set_values(&sc);
    if (ws)
        cred_scan_set_websocket(&sc);
    while (fed < size) {
        size_t n = size - fed < step ? size - fed : step;
        bool lng = false, want_long = false;
        size_t best = 0, h;
        if (cred_scan_feed(s, &sc, (const char *)data + fed, n) != -1)
            break;
        fed += n;
        h = cred_scan_hold_prefix(s, &sc, &lng);
        if (h > cred_scan_hold(&sc))
            abort();
        for (size_t i = 0; i < nn; i++)
            for (size_t k = 1; k < nlen[i] && k <= fed; k++)
                if (memcmp(data + fed - k, needles[i], k) == 0) {
                    if (k > best)
                        best = k;
                    if (k >= CRED_PREFIX_LONG || 2 * k >= nlen[i])
                        want_long = true;
                }
        /* frames: the joined payload may hold more back than the bytes as they are */
        if (best > h || (!ws && (h != best || lng != want_long)) || (want_long && !lng))
            abort();
    }
    cred_scan_done(&sc);
    cred_store_free(s);
    return 0;
}
