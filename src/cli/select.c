/* Backend selection for run and doctor (cli.h): precedence, then backend_choose(). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/str.h"

void cli_backend_select(const char *flag, const char *config, const struct backend_paths *paths,
                        struct cli_backend_sel *ret)
{
    size_t n = 0;
    const struct backend_ops *const *list = backend_list(&n);

    ret->name = backend_resolve_name(flag, getenv("BOT_BOTTLE_BACKEND"), config, &ret->source);
    ret->r = backend_choose(list, n, ret->name, paths, &ret->choice);
}

/* " (from BOT_BOTTLE_BACKEND)", " (from --backend)", ... */
static const char *from(const struct cli_backend_sel *s, char *buf, size_t size)
{
    if (s->source == BACKEND_SRC_DEFAULT)
        (void)str_printf(buf, size, " (the default)");
    else
        (void)str_printf(buf, size, " (from %s)", backend_source_name(s->source));
    return buf;
}

void cli_backend_explain(const struct cli_backend_sel *s, char *buf, size_t size)
{
    bool is_auto = strcmp(s->name, "auto") == 0;
    char names[256], src[64];

    (void)from(s, src, sizeof(src));
    if (s->r == 0 && is_auto)
        (void)str_printf(buf, size, "backend auto%s chose %s: %s", src, s->choice.ops->name,
                         s->choice.why);
    else if (s->r == 0)
        (void)str_printf(buf, size, "backend %s%s: %s", s->choice.ops->name, src,
                         s->choice.probe.reason);
    else if (s->r == -ENOENT) {
        backend_names(names, sizeof(names));
        /* --backend's wording stays short: the user just typed it */
        if (s->source == BACKEND_SRC_FLAG)
            (void)str_printf(buf, size, "unknown backend '%s' (known: %s)", s->name, names);
        else
            (void)str_printf(buf, size,
                             "unknown backend '%s'%s (known: %s); fix it, or override it with "
                             "--backend NAME",
                             s->name, src, names);
    } else if (s->r == -EOPNOTSUPP && is_auto)
        (void)str_printf(buf, size,
                         "no backend can run here (backend auto%s): %s; 'bot-bottle doctor' "
                         "shows what each one needs",
                         src, s->choice.why);
    else if (s->r == -EOPNOTSUPP) {
        size_t n = 0, len = 0;
        const struct backend_ops *const *list = backend_list(&n);

        names[0] = '\0';
        for (size_t i = 0; i < n; i++)
            if (strcmp(list[i]->name, s->name) != 0) {
                (void)str_printf(names + len, sizeof(names) - len, " or --backend %s",
                                 list[i]->name);
                len = strlen(names);
            }
        (void)str_printf(buf, size,
                         "the %s backend%s cannot run here: %s; or pick another: --backend "
                         "auto%s ('bot-bottle doctor' says which can run here)",
                         s->name, src, s->choice.probe.reason, names);
    } else
        (void)str_printf(buf, size, "probing the %s backend%s failed: %s", s->name, src,
                         strerror(-s->r));
}
