/*
 * Fuzz the bottle spec decoder (bottle-init parses it as PID 1). Properties: never crash or
 * leak; every accepted input is canonical (encode(decode(x)) == x byte for byte); the
 * environment can be built from every accepted spec and holds no reserved name twice; every
 * protect path lies strictly beneath the root bottle-init resolves it from.
 */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "fuzz.h"
#include "guest/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bottle_spec s;
    struct buf out = BUF_INIT(BOTTLE_SPEC_MAX_SIZE);
    char **env = NULL;

    if (bottle_spec_decode((const char *)data, size, &s, NULL) < 0)
        return 0;
    if (bottle_spec_encode(&s, &out) < 0)
        abort();
    if (out.len != size || memcmp(out.p, data, size) != 0)
        abort();
    if (bottle_spec_environ(&s, &env) < 0)
        abort();
    {
        size_t proxies = 0;
        for (char **e = env; *e; e++)
            if (strncmp(*e, "HTTP_PROXY=", 11) == 0)
                proxies++;
        if (proxies != 1)
            abort();
    }
    for (size_t i = 0; i < s.n_protect; i++) {
        const char *root = bottle_spec_protect_root(&s, s.protect[i]);
        size_t n = root ? strlen(root) : 0;
        if (!root || strncmp(s.protect[i], root, n) != 0 || s.protect[i][n] != '/')
            abort();
    }
    bottle_spec_free_strv(env);
    buf_done(&out);
    bottle_spec_done(&s);
    return 0;
}
