/* The policy options shared by `egress`, `policy check` and (later) `run`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"

int policy_args_handle(struct policy_args *a, int opt, const char *arg)
{
    switch (opt) {
    case 'a':
        strv_push(&a->cli.allow, arg);
        return 1;
    case 0x1001:
        strv_push(&a->cli.allow_cidr, arg);
        return 1;
    case 'c':
        a->config_path = arg;
        return 1;
    case 0x1002: {
        struct net_addr na;
        if (net_addr_parse(arg, 53, &na) < 0) {
            log_error("--upstream-dns '%s': expected a numeric ADDR[:PORT], e.g. 127.0.0.1:5353 "
                      "or [::1]:53",
                      arg);
            return -EINVAL;
        }
        free(a->cli.upstream_dns);
        a->cli.upstream_dns = xstrdup(arg);
        return 1;
    }
    case 0x1003:
        free(a->cli.audit);
        a->cli.audit = xstrdup(arg);
        return 1;
    default:
        return 0;
    }
}

static void merge_strv(struct strv *dst, const struct strv *src)
{
    for (size_t i = 0; i < src->n; i++)
        strv_push(dst, src->v[i]);
}

static void merge_str(char **dst, const char *src)
{
    if (src) {
        free(*dst);
        *dst = xstrdup(src);
    }
}

int policy_args_finish(struct policy_args *a, struct bb_config *ret_cfg, struct policy **ret_policy)
{
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    _cleanup_free_ char *path = NULL;
    const char *msg = NULL, *item = NULL;
    int r;

    if (a->config_path) {
        path = xstrdup(a->config_path);
    } else {
        r = config_default_path(&path);
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "cannot look for a config file");
    }
    if (path) {
        r = config_load(path, &cfg, &err);
        if (r < 0) {
            if (err.line)
                log_error("%s:%u: %s", err.path, err.line, err.msg);
            else
                log_error("%s: %s", err.path[0] ? err.path : path, err.msg);
            config_done(&cfg);
            return r;
        }
    }
    /* Command line over the file: lists add, scalars replace. */
    merge_strv(&cfg.allow, &a->cli.allow);
    merge_strv(&cfg.allow_cidr, &a->cli.allow_cidr);
    merge_strv(&cfg.env_pass, &a->cli.env_pass);
    merge_str(&cfg.upstream_dns, a->cli.upstream_dns);
    merge_str(&cfg.audit, a->cli.audit);
    merge_str(&cfg.listen, a->cli.listen);
    merge_str(&cfg.dns, a->cli.dns);
    merge_str(&cfg.backend, a->cli.backend);
    merge_str(&cfg.name, a->cli.name);
    if (a->cli.cpus)
        cfg.cpus = a->cli.cpus;
    if (a->cli.memory)
        cfg.memory = a->cli.memory;

    if (ret_policy) {
        r = config_build_policy(&cfg, ret_policy, &msg, &item);
        if (r < 0) {
            log_error("'%s': %s", item ? item : "?", msg ? msg : "invalid");
            config_done(&cfg);
            return r;
        }
    }
    *ret_cfg = cfg;
    return 0;
}

void policy_args_done(struct policy_args *a)
{
    config_done(&a->cli);
}

int policy_args_reload(void *userdata, struct policy **ret)
{
    struct bb_config cfg;
    int r = policy_args_finish(userdata, &cfg, ret);
    if (r >= 0)
        config_done(&cfg);
    return r;
}
