/*
 * Fuzz the credential wire format (cred_store_decode) and, on a store that decoded, the body
 * search (plain and chunked) fed in two pieces: it must agree with a search of the whole input.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "proxy/cred.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cred_store *s = NULL;
    const char *err = NULL;
    const char *p = (const char *)data;
    const char *nl2;
    size_t wire;

    /* The input: wire bytes, then "\n\n", then a body to search. */
    nl2 = size >= 2 ? memmem(p, size, "\n\n", 2) : NULL;
    wire = nl2 ? (size_t)(nl2 - p) + 1 : size;
    if (cred_store_decode(p, wire, &s, &err) < 0) {
        if (!err)
            abort();
        return 0;
    }
    if (nl2) {
        const char *body = nl2 + 2;
        size_t blen = size - (size_t)(body - p);
        for (int chunked = 0; chunked < 2; chunked++) {
            struct cred_scan a, b;
            int whole, split;
            cred_scan_init(&a);
            cred_scan_init(&b);
            if (chunked) {
                cred_scan_set_chunked(&a);
                cred_scan_set_chunked(&b);
            }
            whole = cred_scan_feed(s, &a, body, blen) >= 0;
            split = cred_scan_feed(s, &b, body, blen / 2) >= 0 ||
                    cred_scan_feed(s, &b, body + blen / 2, blen - blen / 2) >= 0;
            cred_scan_done(&a);
            cred_scan_done(&b);
            if (whole != split)
                abort();
        }
    }
    cred_store_free(s);
    return 0;
}
