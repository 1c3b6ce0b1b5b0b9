/*
 * Command-line front end: one file per verb (cmd-<verb>.c), dispatched from the table in
 * main.c. Each verb parses its own options with getopt_long, prints its own --help, and
 * returns an exit status (0, 1 for policy denials, 125 for bot-bottle's own failures).
 */
#pragma once

#define EXIT_BB_FAILURE 125 /* bot-bottle itself failed: bad option, backend, daemon */
#define EXIT_NOT_EXECUTABLE 126
#define EXIT_NOT_FOUND 127

struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

int cmd_version(int argc, char **argv);
int cmd_egress(int argc, char **argv);
int cmd_policy(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* Shared handling of the policy options (-a/--allow, --allow-cidr, -c/--config,
 * --upstream-dns, --audit) for verbs that build a policy. See args.c. */
#include "config/config.h"

struct policy_args {
    const char *config_path; /* -c */
    struct bb_config cli;    /* values given on the command line */
};

/* getopt_long option entries for the policy options; ids are >= 0x1000 or the short letters. */
#define POLICY_OPTS_SHORT "a:c:"
#define POLICY_LONG_OPTIONS                                                                        \
    { "allow", required_argument, NULL, 'a' }, { "allow-cidr", required_argument, NULL, 0x1001 },  \
        { "config", required_argument, NULL, 'c' },                                                \
        { "upstream-dns", required_argument, NULL, 0x1002 },                                       \
    {                                                                                              \
        "audit", required_argument, NULL, 0x1003                                                   \
    }
#define POLICY_OPTS_HELP                                                                           \
    "  -a, --allow PATTERN      allow a host: example.com, *.example.com, example.com:8443\n"      \
    "                           (repeatable; ports 80 and 443 when none is given)\n"               \
    "      --allow-cidr CIDR    allow IP-literal targets in CIDR (optionally :PORT), and let\n"    \
    "                           allowlisted names resolve into it (repeatable)\n"                  \
    "  -c, --config FILE        config file (default ./bottle.ini, then\n"                         \
    "                           $XDG_CONFIG_HOME/bot-bottle/config.ini)\n"                         \
    "      --upstream-dns ADDR[:PORT]  resolver for allowlisted names (default: the host's)\n"     \
    "      --audit FILE         append audit records (JSON lines) to FILE ('-' = stdout)\n"

/* Returns 1 when opt was a policy option (consumed), 0 when not, or a negative errno after
 * printing an error. */
int policy_args_handle(struct policy_args *a, int opt, const char *optarg_);
/*
 * Load the config file (explicit, or the default one), merge the command line over it, and
 * build the policy. On failure prints a message naming file:line or the bad option and
 * returns -EINVAL/-errno. *ret_cfg gets the merged configuration.
 */
int policy_args_finish(struct policy_args *a, struct bb_config *ret_cfg,
                       struct policy **ret_policy);
void policy_args_done(struct policy_args *a);
/* A reload function for the daemon's SIGHUP: userdata is the struct policy_args; the config
 * file is read again and the command line merged over it, as at start. */
int policy_args_reload(void *userdata, struct policy **ret);
