/*
 * Fuzz the DLP scanner: the input is scanned whole, then as a stream cut where its first two
 * bytes say, then checked as a host name. Invariants: no crash, no read out of bounds, and the
 * stream finds a match whenever the whole buffer has one (rules never need more than
 * DLP_MAX_MATCH bytes, so a cut cannot hide a match), and vice versa.
 */
#include <stdlib.h>
#include <string.h>

#include "dlp/dlp.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dlp *d = dlp_new();
    struct dlp_ctx x = { d, 0, "own.example", 443 };
    struct dlp_stream s;
    size_t step;
    int whole, streamed = DLP_NONE;

    if (size < 2) {
        dlp_free(d);
        return 0;
    }
    step = 1 + ((size_t)data[0] << 8 | data[1]) % 2048;
    data += 2;
    size -= 2;
    (void)dlp_add_secret(d, "own.example", 443, "fuzz-secret-value", 17);
    whole = dlp_scan_buf(&x, data, size);
    dlp_stream_init(&s);
    for (size_t i = 0; i < size && streamed == DLP_NONE; i += step)
        streamed = dlp_stream_feed(&s, &x, data + i, size - i < step ? size - i : step);
    if (streamed == DLP_NONE)
        streamed = dlp_stream_end(&s, &x);
    if ((whole == DLP_NONE) != (streamed == DLP_NONE))
        abort();
    (void)dlp_check_host(&x, (const char *)data, size);
    dlp_free(d);
    return 0;
}
