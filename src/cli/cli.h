/*
 * Command-line front end: one file per verb (cmd-<verb>.c), dispatched from the table in
 * main.c. Each verb parses its own options with getopt_long, prints its own --help, and
 * returns an exit status (0, 1 for policy denials, 125 for bot-bottle's own failures).
 */
#pragma once

#include <stddef.h>

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
int cmd_start(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_attach(int argc, char **argv);
int cmd_rm(int argc, char **argv);

int cmd_trust(int argc, char **argv);
/* cmd-bottle.c: the verbs on running and stopped bottles */
int cmd_ls(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_allow(int argc, char **argv);
int cmd_deny(int argc, char **argv);
int cmd_logs(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_agent(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
/* The compiled-in help topics (cmd-help.c): the text of NAME or NULL; the i-th name or NULL. */
const char *help_topic_text(const char *name);
const char *help_topic_name(size_t i);

/* Shared handling of the policy options (-a/--allow, --allow-cidr, -c/--config,
 * --upstream-dns, --audit) for verbs that build a policy. See args.c. */
#include <getopt.h>
#include <stdio.h>

#include "config/config.h"
#include "config/trust.h"

/* A config file of a policy. */
struct policy_file {
    char *path;                     /* as given by -c or found; canonical once resolved */
    char sha256[TRUST_HEX_LEN + 1]; /* "" or the content it must have (pinned) */
    bool project;                   /* ./bottle.ini found by the search */
    bool needs_trust;               /* a bottle could write it: used only when approved */
    bool trusted;                   /* ... and it was, at start (said in the loaded line) */
};

struct policy_args {
    struct policy_file *files; /* -c FILE (repeatable), then the list resolved at start */
    size_t n_files;
    bool no_default_config;   /* --no-default-config: no search, only the -c files */
    bool allow_public_suffix; /* --allow-public-suffix: a pattern may cover *.com */
    bool resolved;            /* the file list is fixed (after the first finish) */
    /* Canonical directories a bottle can write (run: the workspace and rw mount sources);
     * a config file in one of them needs trust like the project file. NULL: none known. */
    const struct strv *writable_roots;
    struct bb_config cli; /* values given on the command line */
    /* What only a start reads ("credential NAME HOST:PORT", "inspect HOST[:PORT]"), as the
     * first finish found it: a reload says what it cannot apply (policy_args_reload). */
    struct strv at_start;
};

/* getopt_long option entries for the policy options; ids are >= 0x1000 or the short letters. */
#define POLICY_OPTS_SHORT "a:c:"
#define POLICY_LONG_OPTIONS                                                                        \
    { "allow", required_argument, NULL, 'a' }, { "allow-cidr", required_argument, NULL, 0x1001 },  \
        { "config", required_argument, NULL, 'c' },                                                \
        { "upstream-dns", required_argument, NULL, 0x1002 },                                       \
        { "audit", required_argument, NULL, 0x1003 },                                              \
        { "config-sha256", required_argument, NULL, 0x1004 },                                      \
        { "allow-public-suffix", no_argument, NULL, 0x1006 },                                      \
        { "dlp-disable", required_argument, NULL, 0x1008 },                                        \
    {                                                                                              \
        "no-default-config", no_argument, NULL, 0x1005                                             \
    }
#define POLICY_OPTS_HELP POLICY_OPTS_HELP_BASE POLICY_OPTS_HELP_AUDIT
#define POLICY_OPTS_HELP_AUDIT                                                                     \
    "      --audit FILE         append audit records (JSON lines) to FILE ('-' = stdout)\n"
#define POLICY_OPTS_HELP_BASE                                                                      \
    "  -a, --allow PATTERN      allow a host: example.com, *.example.com, example.com:8443\n"      \
    "                           (repeatable; ports 80 and 443 when none is given; a host\n"        \
    "                           name, not a URL); or a method/path rule:\n"                        \
    "                           'api.github.com GET,HEAD /repos/myorg/*'\n"                        \
    "      --dlp-disable RULES  turn DLP rules off by name (jwt,card,...; all)\n"                  \
    "      --allow-public-suffix  let a pattern cover a whole public suffix (*.com, *.co.uk)\n"    \
    "      --allow-cidr CIDR    allow IP-literal targets in CIDR (optionally :PORT), and let\n"    \
    "                           allowlisted names resolve into it (repeatable)\n"                  \
    "  -c, --config FILE        config file, repeatable (default: $XDG_CONFIG_HOME/bot-bottle/\n"  \
    "                           config.ini, plus ./bottle.ini once approved with\n"                \
    "                           'bot-bottle trust'; bot-bottle help config)\n"                     \
    "      --upstream-dns ADDR[:PORT]  resolver for allowlisted names (default: the host's)\n"

/* --hold-blocked: only the verbs that run a daemon (run, egress) list it in their options. */
#define POLICY_OPT_HOLD_BLOCKED                                                                    \
    {                                                                                              \
        "hold-blocked", required_argument, NULL, 0x1007                                            \
    }
#define POLICY_OPTS_HELP_HOLD                                                                      \
    "      --hold-blocked SECONDS  hold a request for a host that is not allowlisted for up\n"     \
    "                           to SECONDS (at most 3600) instead of refusing it at once: a\n"     \
    "                           'bot-bottle allow' meanwhile lets it through (default 0: off)\n"

/* Returns 1 when opt was a policy option (consumed), 0 when not, or a negative errno after
 * printing an error. */
int policy_args_handle(struct policy_args *a, int opt, const char *optarg_);

/* The option loop the verbs share (getopt_long; the caller sets optind = 1 first). */
struct cli_parser {
    const char *verb;              /* as typed after bot-bottle: "run", "policy check" */
    const char *shortopts;         /* starting with "+" (options end at the command) */
    const struct option *longopts; /* needs <getopt.h> */
    void (*usage)(FILE *f);        /* the verb's --help text */
    struct policy_args *policy;    /* the policy options go here; NULL: the verb has none */
};
#define CLI_OPT_EXIT (-2)
/*
 * Returns the next option the verb handles itself (optarg set), -1 when the options end, or
 * CLI_OPT_EXIT with *ret_status: 0 after -h/--help (usage on stdout), EXIT_BB_FAILURE after an
 * unknown option ("Try 'bot-bottle VERB --help'.") or a bad policy option (said on stderr).
 * Handles the policy options and -v/--verbose (debug logging) when the verb has them.
 */
int cli_getopt(const struct cli_parser *p, int argc, char **argv, int *ret_status);
/*
 * The first call fixes the list of config files (the -c files, or the search), checks that
 * every file a bottle could write is approved (config/trust.h; an unapproved or changed one is
 * refused with what changed and the `bot-bottle trust` command), pins the hash of what it
 * read, loads them, merges the command line over them and builds the policy. It says on
 * stderr which files it loaded (always when one was approved; else with -v).
 * Later calls (reloads) read exactly the same files, never search, and refuse a pinned file
 * whose content changed. On failure prints a message naming file:line or the bad option and
 * returns -EINVAL/-EPERM/-errno. *ret_cfg gets the merged configuration.
 */
int policy_args_finish(struct policy_args *a, struct bb_config *ret_cfg,
                       struct policy **ret_policy);
void policy_args_done(struct policy_args *a);
/* A reload function for the daemon's SIGHUP: userdata is the struct policy_args. */
int policy_args_reload(void *userdata, struct policy **ret);
/*
 * After policy_args_finish: the arguments that give `bot-bottle egress` the same policy
 * without any environment: the files with their pinned hashes (-c F [--config-sha256 H]),
 * --no-default-config, the command line's --allow/--allow-cidr, and cfg's upstream_dns.
 */
void policy_args_daemon_argv(const struct policy_args *a, const struct bb_config *cfg,
                             struct strv *out);

/*
 * What an agent profile adds to `run` (cmd-agent.c; docs/agents.md): its command, variables
 * (NAME=VALUE: fixed ones, the host's API keys when set, PATH with the cached agent first, the
 * state directory's variable) and mounts (SRC:DST[:ro]: the cache read-only, the state
 * directory read-write). Its hosts go straight into the policy and args->cli.allow.
 */
struct agent_run {
    char *command;
    char *state; /* the state directory (canonical), or NULL */
    struct strv env;
    struct strv mounts;
    struct bb_config creds; /* the profile's API keys set on the host, as credentials */
    struct strv left_out;   /* "HOST WHY": hosts the profile leaves out (supervisor notices) */
};
/* Whether name is an agent profile (built-in or in cfg). */
bool agent_run_known(const struct bb_config *cfg, const char *name);
/*
 * For `run NAME` / `run --agent NAME` in workspace (canonical), after policy_args_finish:
 * looks the profile up, finds the agent (the cache, else the host's /usr), allows its hosts in
 * policy and args, creates its state directory (refused where a bottle can write, writable)
 * and fills *ret. Logs and returns -errno on failure.
 */
int agent_run_prepare(const char *name, const char *workspace, struct policy_args *args,
                      const struct bb_config *cfg, struct policy *policy,
                      const struct strv *writable, struct agent_run *ret);
void agent_run_done(struct agent_run *ar);
/* Adds ar's credentials to cfg, but where cfg has one of the same name or variable (the
 * user's own wins); says once for each that its key stays on the host. */
void agent_run_add_credentials(struct agent_run *ar, struct bb_config *cfg);
/*
 * Every run: refuses (logged, -EPERM) when a path the bottle can write (writable: the workspace
 * and read-write mount sources, canonical) lies inside or holds the agent cache or the state
 * root, but for ar's own state directory (ar may be NULL).
 */
int agent_run_check_roots(const struct strv *writable, const struct agent_run *ar);

/* ---- backend selection (select.c), shared by run and doctor ---- */
#include "backend/backend.h"

struct cli_backend_sel {
    const char *name;           /* what was asked for ("auto" included) */
    enum backend_source source; /* where that came from */
    int r;                      /* backend_choose's result: 0, -ENOENT, -EOPNOTSUPP, -errno */
    struct backend_choice choice;
};

/*
 * The choice run makes: the name from --backend (flag, may be NULL), then
 * $BOT_BOTTLE_BACKEND, then [bottle] backend (config, may be NULL), then the default; then
 * backend_choose() over backend_list(). Never prompts, never falls back.
 */
void cli_backend_select(const char *flag, const char *config, const struct backend_paths *paths,
                        struct cli_backend_sel *ret);
/*
 * One sentence for the outcome: r == 0: which backend and why (for auto, the line run
 * prints); otherwise what is missing and the option or command that fixes it or picks another
 * backend (the error run prints before exiting 125).
 */
void cli_backend_explain(const struct cli_backend_sel *s, char *buf, size_t size);
