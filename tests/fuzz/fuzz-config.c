/*
 * Fuzz config_load_string() on arbitrary text. Invariant: a config that loads builds its
 * policy without error (every value was validated at load time), agent profiles' allow
 * patterns included.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    int r = config_load_string("fuzz.ini", (const char *)data, size, &cfg, &err);

    if (r == 0) {
        struct policy *p = NULL;
        const char *msg = NULL, *item = NULL;
        if (config_build_policy(&cfg, &p, &msg, &item) != 0)
            abort();
        /* [agent "NAME"] allow patterns were validated the same way */
        for (size_t i = 0; i < cfg.n_agents; i++) {
            if (!config_agent_name_valid(cfg.agents[i].name))
                abort();
            for (size_t k = 0; k < cfg.agents[i].allow.n; k++)
                if (policy_add_allow(p, cfg.agents[i].allow.v[k], strlen(cfg.agents[i].allow.v[k]),
                                     &msg) != 0)
                    abort();
        }
        policy_free(p);
    } else if (err.msg[0] == '\0') {
        abort();
    }
    config_done(&cfg);
    return 0;
}
