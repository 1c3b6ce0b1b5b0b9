/* bot-bottle trust: approve a project's config file (docs/config.md "Trust"). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/xalloc.h"

enum {
    OPT_LIST = 0x2200,
    OPT_REVOKE,
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle trust [FILE]          approve FILE (default: ./bottle.ini)\n"
            "       bot-bottle trust --list          list the approved files\n"
            "       bot-bottle trust --revoke FILE   withdraw the approval of FILE\n"
            "\n"
            "A config file a bottle could write (the project's ./bottle.ini, or any config file\n"
            "inside the workspace or a read-write --mount) is used by 'bot-bottle run' only\n"
            "while its content is exactly what you approved here: a bottle that rewrites it\n"
            "cannot widen the next bottle's policy. Review the file, then approve it; after\n"
            "any change, run refuses it and shows what changed until you approve it again.\n"
            "\n"
            "Approvals (canonical path, SHA-256 and a copy of the content) are kept in\n"
            "$XDG_CONFIG_HOME/bot-bottle/trusted/ (default ~/.config/bot-bottle/trusted/),\n"
            "which must lie outside every workspace.\n"
            "\n"
            "Options:\n"
            "      --list           list approvals and whether each file still matches\n"
            "      --revoke FILE    remove the approval of FILE\n"
            "  -h, --help           this text\n");
}

static int open_store(char **ret)
{
    _cleanup_free_ char *store = NULL;
    int r = trust_store_dir(&store);
    if (r < 0) {
        log_error("cannot locate the trust store: set HOME or XDG_CONFIG_HOME to an absolute "
                  "path");
        return r;
    }
    r = trust_canonicalize(store, ret);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "trust store %s", store);
    return 0;
}

static int do_trust(const char *file)
{
    _cleanup_free_ char *store = NULL, *data = NULL, *old = NULL, *dir = NULL;
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    char rp[PATH_MAX], hex[TRUST_HEX_LEN + 1], old_hex[TRUST_HEX_LEN + 1], eb[1024];
    size_t len = 0, old_len = 0;
    int r;

    if (!realpath(file, rp)) {
        log_errno(LOG_LVL_ERROR, -errno, "cannot trust %s", file);
        return EXIT_BB_FAILURE;
    }
    if (open_store(&store) < 0)
        return EXIT_BB_FAILURE;
    /* The project's directory is what a bottle working on it can write; approvals stored
     * there could be forged by that bottle. */
    dir = xstrdup(rp);
    if (trust_path_within(store, dirname(dir))) {
        log_error("the trust store %s lies inside %s, where a bottle working on this project "
                  "could write its own approvals; refusing to trust %s. Set XDG_CONFIG_HOME to "
                  "a directory outside the project",
                  store, dir, rp);
        return EXIT_BB_FAILURE;
    }
    r = config_read(rp, true, &data, &len, &err);
    if (r >= 0)
        r = config_load_string(rp, data, len, &cfg, &err);
    config_done(&cfg);
    if (r < 0) {
        log_error("%s; not trusted", config_error_str(&err, eb, sizeof(eb)));
        return EXIT_BB_FAILURE;
    }
    if (trust_sha256_hex(data, len, hex) < 0) {
        log_error("cannot hash %s", rp);
        return EXIT_BB_FAILURE;
    }
    if (trust_lookup(store, rp, old_hex, &old, &old_len) == 0) {
        if (strcmp(old_hex, hex) == 0) {
            printf("%s is already trusted (sha256 %s)\n", rp, hex);
            return 0;
        }
        struct buf d = BUF_INIT(16384);
        trust_diff(old, old_len, data, len, 40, &d);
        printf("changes since the previous approval:\n%s", buf_str(&d));
        buf_done(&d);
    }
    r = trust_save(store, rp, data, len);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot record the approval of %s in %s", rp, store);
        return EXIT_BB_FAILURE;
    }
    printf("trusted %s (sha256 %s)\n", rp, hex);
    return 0;
}

static int do_revoke(const char *file)
{
    _cleanup_free_ char *store = NULL, *canon = NULL;
    int r;

    if (open_store(&store) < 0)
        return EXIT_BB_FAILURE;
    /* The file may be gone already. */
    r = trust_canonicalize(file, &canon);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "%s", file);
        return EXIT_BB_FAILURE;
    }
    r = trust_revoke(store, canon);
    if (r == -ENOENT) {
        log_error("%s was not trusted (see bot-bottle trust --list)", canon);
        return EXIT_BB_FAILURE;
    }
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot revoke the approval of %s", canon);
        return EXIT_BB_FAILURE;
    }
    printf("revoked %s\n", canon);
    return 0;
}

static void list_one(const char *path, const char *hex, void *ud)
{
    _cleanup_free_ char *data = NULL;
    char now[TRUST_HEX_LEN + 1];
    size_t len = 0;
    const char *state = "trusted";
    (void)ud;

    if (config_read(path, true, &data, &len, NULL) < 0)
        state = "missing";
    else if (trust_sha256_hex(data, len, now) < 0 || strcmp(now, hex) != 0)
        state = "changed since approved (not used)";
    printf("%s  %.12s  %s\n", path, hex, state);
}

static int do_list(void)
{
    _cleanup_free_ char *store = NULL;
    int r;

    if (open_store(&store) < 0)
        return EXIT_BB_FAILURE;
    r = trust_list(store, list_one, NULL);
    if (r < 0 && r != -ENOENT) {
        log_errno(LOG_LVL_ERROR, r, "cannot read %s", store);
        return EXIT_BB_FAILURE;
    }
    return 0;
}

int cmd_trust(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "list", no_argument, NULL, OPT_LIST },
        { "revoke", required_argument, NULL, OPT_REVOKE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *revoke = NULL;
    bool list = false;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (opt) {
        case OPT_LIST:
            list = true;
            break;
        case OPT_REVOKE:
            revoke = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            fprintf(stderr, "Try 'bot-bottle trust --help'.\n");
            return EXIT_BB_FAILURE;
        }
    }
    if ((list || revoke) && optind < argc) {
        log_error("trust: unexpected argument '%s'", argv[optind]);
        return EXIT_BB_FAILURE;
    }
    if (list && revoke) {
        log_error("trust: give either --list or --revoke FILE");
        return EXIT_BB_FAILURE;
    }
    if (optind + 1 < argc) {
        log_error("trust: one FILE at a time");
        return EXIT_BB_FAILURE;
    }
    if (list)
        return do_list();
    if (revoke)
        return do_revoke(revoke);
    return do_trust(optind < argc ? argv[optind] : CONFIG_PROJECT_FILE);
}
