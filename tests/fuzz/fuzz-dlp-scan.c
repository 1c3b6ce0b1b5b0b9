/*
 * Fuzz the DLP scanner: the input is scanned whole, then as a stream cut where its first bytes
 * say, then checked as a host name. Invariants: no crash, no read out of bounds, and the
 * stream finds a match whenever the whole buffer has one (rules never need more than
 * DLP_MAX_MATCH bytes, so a cut cannot hide a match), and vice versa.
 *
 * Input: two bytes for the first cut size (1..2048), one flags byte (bit 0: the destination
 * is not the credentials' own host, so they fire; bits 1-2: a second cut size for every other
 * piece, small/equal/large, so the junction's carry sees both short and long pieces; bit 3:
 * rule formats off but credential), then the data.
 */
#include <stdlib.h>
#include <string.h>

#include "dlp/dlp.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char long_secret[] = "L0ng-secret/value+with=every*kind.of~byte_0123456789abcdef"
                                      "ghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!@#$%^&*()";
    struct dlp *d = dlp_new();
    struct dlp_ctx x = { d, 0, "own.example", 443 };
    struct dlp_stream s;
    size_t step, step2;
    unsigned flags;
    int whole, streamed = DLP_NONE;

    if (size < 3) {
        dlp_free(d);
        return 0;
    }
    step = 1 + ((size_t)data[0] << 8 | data[1]) % 2048;
    flags = data[2];
    data += 3;
    size -= 3;
    switch ((flags >> 1) & 3) {
    case 0:
        step2 = step;
        break;
    case 1:
        step2 = 1 + step % 17;
        break;
    case 2:
        step2 = 1 + (step * 7) % 700;
        break;
    default:
        step2 = 4096 + step;
        break;
    }
    if (flags & 1)
        x.host = "elsewhere.example";
    if (flags & 8)
        x.disabled = DLP_ALL_RULES & ~DLP_BIT(DLP_CREDENTIAL);
    (void)dlp_add_secret(d, "own.example", 443, "fuzz-secret-value", 17);
    (void)dlp_add_secret(d, "own.example", 443, long_secret, sizeof(long_secret) - 1);
    whole = dlp_scan_buf(&x, data, size);
    dlp_stream_init(&s);
    for (size_t i = 0, k = 0; i < size && streamed == DLP_NONE; k++) {
        size_t n = k & 1 ? step2 : step;
        n = size - i < n ? size - i : n;
        streamed = dlp_stream_feed(&s, &x, data + i, n);
        i += n;
    }
    if (streamed == DLP_NONE)
        streamed = dlp_stream_end(&s, &x);
    if ((whole == DLP_NONE) != (streamed == DLP_NONE))
        abort();
    (void)dlp_check_host(&x, (const char *)data, size);
    dlp_free(d);
    return 0;
}
