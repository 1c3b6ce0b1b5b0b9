/* Backend registry: select by name, list, probe. */
#include "backend/backend.h"

#include <errno.h>
#include <string.h>

#include "backend/docker/docker.h"
#include "backend/microvm/microvm.h"
#include "backend/namespace/ns.h"
#include "backend/smolmachines/smolvm.h"
#include "common/macro.h"
#include "common/str.h"

/* Strongest isolation first: the first is the default, and `auto` tries them in order. */
static const struct backend_ops *const backends[] = {
    &backend_microvm_ops,
    &backend_namespace_ops,
    /* BACKEND_NOT_AUTO: only by name */
    &backend_smolmachines_ops,
    &backend_docker_ops,
};

const struct backend_ops *const *backend_list(size_t *ret_n)
{
    *ret_n = ARRAY_SIZE(backends);
    return backends;
}

const struct backend_ops *backend_find(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
        if (strcmp(backends[i]->name, name) == 0)
            return backends[i];
    return NULL;
}

int backend_select(const char *name, const struct backend_paths *paths,
                   const struct backend_ops **ret, struct backend_probe *reterr_probe)
{
    struct backend_probe probe = { 0 };
    int r;

    if (strcmp(name, "auto") == 0) {
        struct backend_probe first = { 0 };
        for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
            if (backends[i]->flags & BACKEND_NOT_AUTO)
                continue;
            r = backends[i]->probe(paths, &probe);
            if (r >= 0 && probe.available) {
                *ret = backends[i];
                if (reterr_probe)
                    *reterr_probe = probe;
                return 0;
            }
            if (i == 0)
                first = probe;
        }
        if (reterr_probe) {
            *reterr_probe = first;
            (void)str_printf(reterr_probe->reason, sizeof(reterr_probe->reason),
                             "no backend is available here (%s: %s)", backends[0]->name,
                             first.reason);
        }
        return -EOPNOTSUPP;
    }
    const struct backend_ops *ops = backend_find(name);
    if (!ops)
        return -ENOENT;
    r = ops->probe(paths, &probe);
    if (r < 0)
        return r;
    if (reterr_probe)
        *reterr_probe = probe;
    if (!probe.available)
        return -EOPNOTSUPP;
    *ret = ops;
    return 0;
}
