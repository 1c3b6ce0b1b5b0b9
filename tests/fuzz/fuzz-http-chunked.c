/*
 * Differential fuzzing of the chunked framing scanner: the input fed whole, byte by byte and in
 * pieces whose sizes come from the input must give the same outcome (body length, whether it
 * ended, or an error).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy/http1.h"

struct outcome {
    int64_t body; /* -1: malformed */
    bool done;
};

static struct outcome run(const char *p, size_t len, const uint8_t *sizes, size_t n_sizes)
{
    struct http_chunked c;
    struct outcome o = { 0, false };
    size_t off = 0, k = 0;

    http_chunked_init(&c);
    while (off < len) {
        size_t n = len - off;
        bool done = false;
        int64_t r;

        if (n_sizes) {
            size_t want = (size_t)sizes[k++ % n_sizes] + 1; /* not inside MIN(): k++ */
            n = MIN(n, want);
        } else if (sizes)
            n = 1;
        /* an exact-size copy so ASan catches reads past each piece */
        char *piece = malloc(n);
        if (!piece)
            abort();
        memcpy(piece, p + off, n);
        r = http_chunked_feed(&c, piece, n, &done);
        free(piece);
        if (r < 0) {
            o.body = -1;
            return o;
        }
        if (r > (int64_t)n || (!done && r != (int64_t)n))
            abort();
        o.body += r;
        off += (size_t)r;
        if (done) {
            o.done = true;
            /* once done, it stays done and takes nothing more */
            if (http_chunked_feed(&c, "0\r\n\r\n", 5, &done) != 0 || !done)
                abort();
            return o;
        }
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* first 8 bytes: piece sizes for the third run */
    size_t n_sizes = MIN(size, (size_t)8);
    const char *p = (const char *)data + n_sizes;
    size_t len = size - n_sizes;
    static const uint8_t one = 0;
    struct outcome whole = run(p, len, NULL, 0);
    struct outcome bytes = run(p, len, &one, 0);
    struct outcome pieces = run(p, len, data, n_sizes);

    if (whole.body != bytes.body || whole.done != bytes.done || whole.body != pieces.body ||
        whole.done != pieces.done)
        abort();
    if (whole.body > (int64_t)len)
        abort();
    return 0;
}
