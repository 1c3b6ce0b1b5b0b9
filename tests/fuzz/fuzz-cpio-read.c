/*
 * Fuzz the guest's newc reader (guest/unpack.h: a microVM restored from a snapshot reads its
 * bottle's files with it). Properties: never crash or read past the input; every entry's name
 * is NUL-terminated within bounds and its data lies inside the input; each entry moves the
 * offset forward, so the walk ends.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "guest/unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (;;) {
        struct guest_cpio_entry e;
        size_t before = off;
        int r = guest_cpio_next(data, size, &off, &e);

        if (r <= 0)
            break;
        if (off <= before || off > size)
            abort();
        if (strnlen(e.name, sizeof(e.name)) >= sizeof(e.name))
            abort();
        if (e.data < data || e.len > size || (size_t)(e.data - data) > size - e.len)
            abort();
    }
    return 0;
}
