/*
 * The verbs on running (and stopped) bottles, through the state root (supervisor/state.h), the
 * per-bottle control socket (supervisor/control.h) and the audit reader (audit/reader.h):
 *   bot-bottle ls [--json] [-a]
 *   bot-bottle stop N [--time SECONDS]
 *   bot-bottle allow N PATTERN [--for DURATION]      bot-bottle deny N PATTERN
 *   bot-bottle logs N [--follow] [--json] [--denied] [--verify]
 * None needs the backend: they work the same for every backend (docs/cli.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit/reader.h"
#include "cli/cli.h"
#include "common/buf.h"
#include "common/log.h"
#include "common/str.h"
#include "policy/policy.h"
#include "supervisor/control.h"
#include "supervisor/state.h"

#define EXIT_NO_BOTTLE 1
#define MAX_LISTED 1024
#define CONTROL_TIMEOUT_MS 5000
#define FOLLOW_POLL_MS 200

typedef char name_t[BOTTLE_SPEC_MAX_NAME + 1];

static int no_such_bottle(const char *name, bool running_only)
{
    log_error("no %sbottle named '%s'; 'bot-bottle ls%s' lists them",
              running_only ? "running " : "", name, running_only ? "" : " -a");
    return EXIT_NO_BOTTLE;
}

/* The state root, or -ENOENT when nothing ever ran. */
static int open_state(struct state *st)
{
    int r = state_open(NULL, false, st);
    if (r < 0 && r != -ENOENT)
        log_errno(LOG_LVL_ERROR, r, "cannot open the state directory (BOT_BOTTLE_STATE_DIR)");
    return r;
}

/* The audit log of a bottle: info.json's path while it runs, else logs/NAME.audit.log. */
static int audit_path_of(const struct state *st, const char *name, const struct state_info *info,
                         char *buf, size_t size)
{
    if (info && info->audit[0])
        return str_printf(buf, size, "%s", info->audit);
    return str_printf(buf, size, "%s/%s.audit.log", st->logs, name);
}

static bool log_exists(const char *path)
{
    char old[1100];
    struct stat sb;
    if (lstat(path, &sb) == 0)
        return true;
    return str_printf(old, sizeof(old), "%s.1", path) >= 0 && lstat(old, &sb) == 0;
}

/* ---------------------------------------------------------------- ls */

#define PENDING_SLOTS 64 /* distinct held host:port tracked per log */

struct counts {
    uint64_t allowed, denied;
    /* Held requests (--hold-blocked) not yet decided: a "hold" record, and no later allow or
     * deny of the same kind, host and port. */
    struct {
        char key[BB_MAX_HOSTNAME + 16];
        uint64_t n;
    } held[PENDING_SLOTS];
    size_t n_held;
};

static void count_pending(struct counts *c, const struct audit_record *rec, bool hold)
{
    char key[sizeof(c->held[0].key)];
    size_t i;

    if (str_printf(key, sizeof(key), "%s %s:%d", rec->kind, rec->host, rec->port) < 0)
        return;
    for (i = 0; i < c->n_held; i++)
        if (strcmp(c->held[i].key, key) == 0)
            break;
    if (!hold) {
        /* decided: as many holds of it as this record stands for */
        if (i < c->n_held)
            c->held[i].n -= MIN(c->held[i].n, audit_record_weight(rec));
        return;
    }
    if (i == c->n_held) {
        if (c->n_held == PENDING_SLOTS)
            return;
        memcpy(c->held[c->n_held++].key, key, sizeof(key));
    }
    c->held[i].n += audit_record_weight(rec);
}

static uint64_t pending_total(const struct counts *c)
{
    uint64_t t = 0;
    for (size_t i = 0; i < c->n_held; i++)
        t += c->held[i].n;
    return t;
}

static void count_line(void *ud, const char *line, size_t len)
{
    struct counts *c = ud;
    struct audit_record rec;

    if (audit_record_parse(line, len, &rec) < 0 || !audit_record_is_decision(&rec))
        return;
    if (strcmp(rec.decision, "allow") == 0)
        c->allowed += audit_record_weight(&rec);
    else if (strcmp(rec.decision, "deny") == 0)
        c->denied += audit_record_weight(&rec);
    count_pending(c, &rec, strcmp(rec.decision, "hold") == 0);
}

/* Decisions in the log, counted from both files: the work is bounded by the daemon's size cap
 * (two files of at most --audit-max-size, 4 MiB by default). */
static struct counts count_log(const char *path)
{
    struct counts c = { 0 };
    struct audit_follow f;

    if (audit_follow_open(&f, path, true) == 0)
        (void)audit_follow_poll(&f, count_line, &c);
    audit_follow_close(&f);
    return c;
}

static void ls_usage(FILE *f)
{
    fprintf(f,
            "Usage: bot-bottle ls [--json] [-a]\n"
            "\n"
            "List the bottles: name, backend, loopback alias, state, uptime, the counts of\n"
            "allowed and denied egress decisions in its audit log, and the main command.\n"
            "state: running; stale (its supervisor was killed; the next 'run' removes it);\n"
            "stopped (with -a: only its audit log is left).\n"
            "\n"
            "Options:\n"
            "      --json   one JSON object: {\"version\":1, \"bottles\":[{name, state, backend,\n"
            "               alias, pid, started, uptime_s, command, allowed, denied, pending,\n"
            "               audit}]} (pending: requests held by --hold-blocked right now)\n"
            "  -a, --all    also the stopped bottles whose audit log is still there\n"
            "  -h, --help   this text\n");
}

struct row {
    name_t name;
    const char *state;
    struct state_info info;
    bool have_info;
    struct counts counts;
    char audit[1100];
};

static void fmt_uptime(int64_t secs, char *out, size_t size)
{
    if (secs < 0)
        snprintf(out, size, "-");
    else if (secs < 60)
        snprintf(out, size, "%llds", (long long)secs);
    else if (secs < 3600)
        snprintf(out, size, "%lldm%02llds", (long long)secs / 60, (long long)secs % 60);
    else
        snprintf(out, size, "%lldh%02lldm", (long long)secs / 3600, (long long)(secs / 60) % 60);
}

static bool listed(const struct row *rows, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(rows[i].name, name) == 0)
            return true;
    return false;
}

static int cmp_row(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->name, ((const struct row *)b)->name);
}

int cmd_ls(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "json", no_argument, NULL, 'j' },
        { "all", no_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "ls", "ah", longopts, ls_usage, NULL };
    bool json = false, all = false;
    struct state st;
    struct row *rows = NULL;
    size_t n = 0;
    int opt, ret = 0, r;
    time_t now = time(NULL);
    DIR *d;
    struct dirent *de;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt == CLI_OPT_EXIT)
            return ret;
        if (opt == 'j')
            json = true;
        else if (opt == 'a')
            all = true;
    }
    if (optind != argc) {
        log_error("ls: no arguments expected; try 'bot-bottle ls --help'");
        return EXIT_BB_FAILURE;
    }
    rows = calloc(MAX_LISTED, sizeof(*rows));
    if (!rows)
        return EXIT_BB_FAILURE;
    r = open_state(&st);
    if (r < 0 && r != -ENOENT) {
        free(rows);
        return EXIT_BB_FAILURE;
    }
    if (r == 0) {
        /* ended bottles' logs do not pile up (rm --help, docs/cli.md "Retention") */
        unsigned keep, days;
        state_retention_policy(&keep, &days);
        (void)state_logs_retention(&st, keep, days, (int64_t)now);
    }
    if (r == 0 && (d = opendir(st.bottles))) {
        while ((de = readdir(d)) && n < MAX_LISTED) {
            struct row *w = &rows[n];
            if (de->d_name[0] == '.' || !state_name_valid(de->d_name))
                continue;
            (void)str_printf(w->name, sizeof(w->name), "%s", de->d_name);
            w->state = state_bottle_running(&st, w->name) == 1 ? "running" : "stale";
            w->have_info = state_info_read(&st, w->name, &w->info) == 0;
            n++;
        }
        closedir(d);
    }
    if (r == 0 && all && (d = opendir(st.logs))) {
        while ((de = readdir(d)) && n < MAX_LISTED) {
            size_t len = strlen(de->d_name), suf = strlen(".audit.log");
            name_t name;
            if (len <= suf || strcmp(de->d_name + len - suf, ".audit.log") != 0 ||
                len - suf > BOTTLE_SPEC_MAX_NAME)
                continue;
            memcpy(name, de->d_name, len - suf);
            name[len - suf] = '\0';
            if (!state_name_valid(name) || listed(rows, n, name))
                continue;
            (void)str_printf(rows[n].name, sizeof(rows[n].name), "%s", name);
            rows[n].state = "stopped";
            n++;
        }
        closedir(d);
    }
    qsort(rows, n, sizeof(*rows), cmp_row);
    for (size_t i = 0; i < n; i++) {
        if (audit_path_of(&st, rows[i].name, rows[i].have_info ? &rows[i].info : NULL,
                          rows[i].audit, sizeof(rows[i].audit)) == 0)
            rows[i].counts = count_log(rows[i].audit);
    }

    if (json) {
        json_t *o = json_object(), *arr = json_array();
        json_object_set_new(o, "version", json_integer(1));
        for (size_t i = 0; i < n; i++) {
            const struct row *w = &rows[i];
            json_t *b = json_object();
            bool live = strcmp(w->state, "running") == 0;
            json_object_set_new(b, "name", json_string(w->name));
            json_object_set_new(b, "state", json_string(w->state));
            json_object_set_new(b, "backend",
                                w->have_info ? json_string(w->info.backend) : json_null());
            json_object_set_new(b, "alias",
                                w->have_info ? json_string(w->info.alias) : json_null());
            json_object_set_new(b, "pid",
                                live && w->have_info ? json_integer(w->info.pid) : json_null());
            json_object_set_new(b, "started",
                                w->have_info && w->info.started ? json_integer(w->info.started)
                                                                : json_null());
            json_object_set_new(b, "uptime_s",
                                live && w->have_info && w->info.started
                                    ? json_integer(now - w->info.started)
                                    : json_null());
            json_object_set_new(b, "command",
                                w->have_info ? json_string(w->info.command) : json_null());
            json_object_set_new(b, "allowed", json_integer((json_int_t)w->counts.allowed));
            json_object_set_new(b, "denied", json_integer((json_int_t)w->counts.denied));
            json_object_set_new(b, "pending",
                                json_integer(live ? (json_int_t)pending_total(&w->counts) : 0));
            json_object_set_new(b, "audit", json_string(w->audit));
            json_array_append_new(arr, b);
        }
        json_object_set_new(o, "bottles", arr);
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("%-20s %-10s %-16s %-8s %-8s %8s %8s %8s  %s\n", "NAME", "BACKEND", "ALIAS", "STATE",
               "UPTIME", "ALLOWED", "DENIED", "PENDING", "COMMAND");
        for (size_t i = 0; i < n; i++) {
            const struct row *w = &rows[i];
            char up[32] = "-";
            if (strcmp(w->state, "running") == 0 && w->have_info && w->info.started)
                fmt_uptime(now - w->info.started, up, sizeof(up));
            bool live = strcmp(w->state, "running") == 0;
            printf("%-20s %-10s %-16s %-8s %-8s %8llu %8llu %8llu  %s\n", w->name,
                   w->have_info ? w->info.backend : "-", w->have_info ? w->info.alias : "-",
                   w->state, up, (unsigned long long)w->counts.allowed,
                   (unsigned long long)w->counts.denied,
                   (unsigned long long)(live ? pending_total(&w->counts) : 0),
                   w->have_info && w->info.command[0] ? w->info.command : "-");
        }
    }
    for (size_t i = 0; i < n; i++)
        state_info_done(&rows[i].info);
    free(rows);
    return fflush(stdout) == 0 ? 0 : EXIT_BB_FAILURE;
}

/* ---------------------------------------------------------------- control verbs */

/* A running bottle's state: 0, EXIT_NO_BOTTLE (said), or EXIT_BB_FAILURE (said). */
static int running_bottle(const char *name, struct state *st, char *dir, size_t size)
{
    int r;

    if (!state_name_valid(name))
        return no_such_bottle(name, true);
    r = open_state(st);
    if (r == -ENOENT)
        return no_such_bottle(name, true);
    if (r < 0)
        return EXIT_BB_FAILURE;
    r = state_bottle_running(st, name);
    if (r == 0)
        return no_such_bottle(name, true);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot tell whether bottle '%s' runs", name);
        return EXIT_BB_FAILURE;
    }
    if (state_bottle_path(st, name, NULL, dir, size) < 0)
        return EXIT_BB_FAILURE;
    return 0;
}

/* Send request to the bottle's supervisor. Returns 0, or EXIT_BB_FAILURE after saying why. */
/* note (may be NULL): the reply's "note" (what the change means for the bottle), else "". */
static int call(const char *verb, const char *name, const char *dir, json_t *req, char *note,
                size_t notesize)
{
    json_t *reply = NULL;
    int r;

    if (!req) {
        log_error("%s: the request is not valid JSON text (a pattern must be UTF-8)", verb);
        return EXIT_BB_FAILURE;
    }
    r = control_call(dir, req, CONTROL_TIMEOUT_MS, &reply);
    json_decref(req);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "%s: no answer from the supervisor of bottle '%s'", verb, name);
        return EXIT_BB_FAILURE;
    }
    if (!json_is_true(json_object_get(reply, "ok"))) {
        const char *err = json_string_value(json_object_get(reply, "error"));
        log_error("%s: bottle '%s' refused: %s", verb, name, err ? err : "(no reason given)");
        json_decref(reply);
        return EXIT_BB_FAILURE;
    }
    if (note) {
        const char *n = json_string_value(json_object_get(reply, "note"));
        (void)str_printf(note, notesize, "%s", n ? n : "");
    }
    json_decref(reply);
    return 0;
}

static void stop_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle stop NAME [--time SECONDS]\n"
               "\n"
               "Ask a running bottle to end (SIGTERM to its command, through its control\n"
               "socket), wait, and kill it after the grace period. Exits 0 once it stopped and\n"
               "its state is cleaned up, 1 when no bottle of that name runs, 125 on other\n"
               "failures.\n"
               "\n"
               "Options:\n"
               "  -t, --time SECONDS  grace before the kill (default 5, at most 3600)\n"
               "  -h, --help          this text\n");
}

int cmd_stop(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "time", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "stop", "t:h", longopts, stop_usage, NULL };
    struct state st;
    char dir[STATE_PATH_MAX + 128];
    long grace = -1;
    int opt, ret = 0;
    json_t *req;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt == CLI_OPT_EXIT)
            return ret;
        if (opt == 't') {
            uint64_t v;
            if (str_to_u64_cstr(optarg, CONTROL_MAX_STOP_TIME, &v) < 0) {
                log_error("stop: --time '%s': expected whole seconds from 0 to 3600", optarg);
                return EXIT_BB_FAILURE;
            }
            grace = (long)v;
        }
    }
    if (optind != argc - 1) {
        log_error("stop: expected one bottle NAME; 'bot-bottle ls' lists them");
        return EXIT_BB_FAILURE;
    }
    if ((ret = running_bottle(argv[optind], &st, dir, sizeof(dir))) != 0)
        return ret;
    req = json_pack("{s:s}", "cmd", "stop");
    if (req && grace >= 0)
        json_object_set_new(req, "time", json_integer(grace));
    if ((ret = call("stop", argv[optind], dir, req, NULL, 0)) != 0)
        return ret;
    /* The bottle is gone once its supervisor dropped the lock: after the grace, the kill, and
     * the teardown (the daemon's stop takes up to 3 s more). */
    {
        long wait_ms = ((grace >= 0 ? grace : 5) + 15) * 1000;
        for (long t = 0; t < wait_ms; t += 50) {
            if (state_bottle_running(&st, argv[optind]) == 0) {
                printf("stopped %s\n", argv[optind]);
                return fflush(stdout) == 0 ? 0 : EXIT_BB_FAILURE;
            }
            usleep(50 * 1000);
        }
    }
    log_error("stop: bottle '%s' is still running %ld s after the stop request; its supervisor "
              "(pid in %s/info.json) may be stuck",
              argv[optind], (grace >= 0 ? grace : 5) + 15, dir);
    return EXIT_BB_FAILURE;
}

/* The same parser as -a/--allow. Returns 0 or EXIT_BB_FAILURE after saying why. */
static int check_pattern(const char *verb, const char *pattern)
{
    struct policy *p = policy_new();
    const char *why = NULL;
    int r = policy_add_allow(p, pattern, strlen(pattern), &why);

    policy_free(p);
    if (r < 0) {
        log_error("%s: '%s': %s; a pattern is example.com, *.example.com or example.com:8443 "
                  "(as for --allow)",
                  verb, pattern, why ? why : "not a host pattern");
        return EXIT_BB_FAILURE;
    }
    return 0;
}

/* "90", "90s", "10m", "2h", "1d" -> seconds. Returns 0 or -EINVAL. */
static int parse_duration(const char *s, uint32_t *ret)
{
    char num[16];
    size_t len = strlen(s);
    uint64_t n, mul = 1;

    if (len == 0 || len >= sizeof(num))
        return -EINVAL;
    switch (s[len - 1]) {
    case 's':
        len--;
        break;
    case 'm':
        mul = 60;
        len--;
        break;
    case 'h':
        mul = 3600;
        len--;
        break;
    case 'd':
        mul = 86400;
        len--;
        break;
    default:
        break;
    }
    memcpy(num, s, len);
    num[len] = '\0';
    if (str_to_u64_cstr(num, CONTROL_MAX_GRANT / mul, &n) < 0 || n == 0)
        return -EINVAL;
    *ret = (uint32_t)(n * mul);
    return 0;
}

static void allow_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle allow NAME PATTERN [--for DURATION]\n"
               "\n"
               "Add PATTERN to a running bottle's allowlist at once (no restart; connections\n"
               "already open are kept). PATTERN is what --allow takes: example.com,\n"
               "*.example.com, example.com:8443. The change is recorded in the audit log\n"
               "(kind \"policy\"). Exits 0, 1 when no bottle of that name runs, 125 when the\n"
               "pattern is refused or the bottle did not answer.\n"
               "\n"
               "Options:\n"
               "      --for DURATION  the grant ends by itself after DURATION: 90, 90s, 10m,\n"
               "                      2h, 1d (at most 30 days)\n"
               "  -h, --help          this text\n");
}

static void deny_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle deny NAME PATTERN\n"
               "\n"
               "Remove PATTERN (as given to --allow or 'bot-bottle allow') from a running\n"
               "bottle's allowlist at once; a timed grant's timer is cancelled. New connections\n"
               "and requests are judged by the new list. Recorded in the audit log (kind\n"
               "\"policy\"). Exits 0, 1 when no bottle of that name runs, 125 when the pattern\n"
               "is not in force or the bottle did not answer.\n"
               "\n"
               "Options:\n"
               "  -h, --help  this text\n");
}

static int allow_deny(int argc, char **argv, bool allow)
{
    static const struct option longopts[] = {
        { "for", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const struct option deny_longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *verb = allow ? "allow" : "deny";
    const struct cli_parser parser = { verb, "h", allow ? longopts : deny_longopts,
                                       allow ? allow_usage : deny_usage, NULL };
    struct state st;
    char dir[STATE_PATH_MAX + 128];
    char note[1024];
    uint32_t secs = 0;
    int opt, ret = 0;
    json_t *req;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt == CLI_OPT_EXIT)
            return ret;
        if (opt == 'f' && parse_duration(optarg, &secs) < 0) {
            log_error("allow: --for '%s': expected a duration: 90, 90s, 10m, 2h or 1d (at most "
                      "30 days)",
                      optarg);
            return EXIT_BB_FAILURE;
        }
    }
    if (optind != argc - 2) {
        log_error("%s: expected NAME PATTERN; try 'bot-bottle %s --help'", verb, verb);
        return EXIT_BB_FAILURE;
    }
    if ((ret = check_pattern(verb, argv[optind + 1])) != 0)
        return ret;
    if ((ret = running_bottle(argv[optind], &st, dir, sizeof(dir))) != 0)
        return ret;
    req = json_pack("{s:s, s:s}", "cmd", verb, "pattern", argv[optind + 1]);
    if (req && secs)
        json_object_set_new(req, "for", json_integer(secs));
    if ((ret = call(verb, argv[optind], dir, req, note, sizeof(note))) != 0)
        return ret;
    if (secs)
        printf("allowed %s in bottle %s for %u s\n", argv[optind + 1], argv[optind], secs);
    else
        printf("%s %s in bottle %s\n", allow ? "allowed" : "denied", argv[optind + 1],
               argv[optind]);
    if (note[0])
        printf("%s\n", note);
    return fflush(stdout) == 0 ? 0 : EXIT_BB_FAILURE;
}

int cmd_allow(int argc, char **argv)
{
    return allow_deny(argc, argv, true);
}

int cmd_deny(int argc, char **argv)
{
    return allow_deny(argc, argv, false);
}

/* ---------------------------------------------------------------- logs */

static void logs_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle logs NAME [--follow] [--json] [--denied] [--kind KIND] "
               "[--verify]\n"
               "\n"
               "The egress decisions of a bottle (running, or stopped while its audit log is\n"
               "still there), oldest first, across the rotated NAME.audit.log.1: a table\n"
               "(time, kind, host:port, decision, reason, bytes up/down, count) or the JSON\n"
               "lines as written. Policy changes (allow/deny) appear with kind \"policy\".\n"
               "\n"
               "Options:\n"
               "  -f, --follow  keep printing new records until interrupted (Ctrl-C)\n"
               "      --json    the raw JSON lines, as the daemon wrote them\n"
               "      --denied  only denied decisions\n"
               "      --kind KIND  only records of KIND: connect, http, dns, policy, end\n"
               "      --verify  check the log's hash chain: exit 0 when intact, 1 when a line\n"
               "                was altered, removed or the file truncated (the first bad line\n"
               "                is named)\n"
               "  -h, --help    this text\n"
               "Exit status: 0; 1 no such bottle or log (or --verify found a bad line); 125.\n");
}

struct logs_ctx {
    bool json;
    struct audit_filter filter;
    bool filtered; /* --denied or --kind: unparsable lines are left out too */
    bool out_failed;
};

static void print_line(void *ud, const char *line, size_t len)
{
    struct logs_ctx *c = ud;
    struct audit_record rec;
    char hp[300], bytes[48];

    if (c->out_failed)
        return;
    if (audit_record_parse(line, len, &rec) < 0) {
        if (!c->filtered && c->json) { /* --json passes every line on, as written */
            fwrite(line, 1, len, stdout);
            fputc('\n', stdout);
        }
        return;
    }
    if ((strcmp(rec.kind, "end") == 0 && !c->json) || !audit_record_match(&rec, &c->filter))
        return;
    if (c->json) {
        fwrite(line, 1, len, stdout);
        fputc('\n', stdout);
    } else {
        if (rec.port)
            snprintf(hp, sizeof(hp), "%s%s:%u", rec.host, rec.host_cut ? "..." : "", rec.port);
        else
            snprintf(hp, sizeof(hp), "%s%s", rec.host, rec.host_cut ? "..." : "");
        snprintf(bytes, sizeof(bytes), "%llu/%llu", (unsigned long long)rec.bytes_up,
                 (unsigned long long)rec.bytes_down);
        printf("%-24s %-7s %-40s %-8s %-24s %15s %5llu\n", rec.ts, rec.kind, hp, rec.decision,
               rec.reason, bytes, (unsigned long long)audit_record_weight(&rec));
    }
    if (ferror(stdout))
        c->out_failed = true;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Verify one file's lines into v. Returns 0, -EBADMSG (v says where), or -errno. */
static int verify_file(const char *path, struct audit_verify *v, uint64_t *ret_lines, bool *ret_cut)
{
    struct buf b = BUF_INIT(AUDIT_LINE_MAX + 1);
    char tmp[8192];
    ssize_t k;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY), r = 0;

    *ret_lines = 0;
    *ret_cut = false;
    if (fd < 0)
        return -errno;
    while (r == 0 && (k = read(fd, tmp, sizeof(tmp))) > 0) {
        char *nl;
        if (buf_append(&b, tmp, (size_t)k) < 0) {
            v->lines++;
            v->bad_line = v->lines;
            snprintf(v->why, sizeof(v->why), "a line longer than %d bytes", AUDIT_LINE_MAX);
            r = -EBADMSG;
            break;
        }
        while (r == 0 && b.len && (nl = memchr(b.p, '\n', b.len))) {
            size_t len = (size_t)(nl - b.p);
            (*ret_lines)++;
            r = audit_verify_line(v, b.p, len);
            buf_consume(&b, len + 1);
        }
    }
    if (r == 0 && b.len) {
        *ret_cut = true;
        v->lines++;
        v->bad_line = v->lines;
        (*ret_lines)++;
        snprintf(v->why, sizeof(v->why),
                 "the last line is cut (no newline): the file was "
                 "truncated");
        r = -EBADMSG;
    }
    buf_done(&b);
    close(fd);
    return r;
}

static int logs_verify(const char *name, const char *path, bool running)
{
    struct audit_verify v;
    char old[1100];
    const char *files[2];
    uint64_t before = 0, lines;
    size_t nf = 0;
    struct stat sb;
    bool cut;
    int r = 0;

    audit_verify_init(&v);
    if (str_printf(old, sizeof(old), "%s.1", path) >= 0 && lstat(old, &sb) == 0)
        files[nf++] = old;
    files[nf++] = path;
    for (size_t i = 0; i < nf && r == 0; i++) {
        r = verify_file(files[i], &v, &lines, &cut);
        if (r == -EBADMSG) {
            printf("altered: %s line %llu: %s\n", files[i],
                   (unsigned long long)(v.bad_line - before), v.why);
            return 1;
        }
        if (r < 0 && !(r == -ENOENT && i == nf - 1 && nf == 2)) {
            log_errno(LOG_LVL_ERROR, r, "logs: cannot read %s", files[i]);
            return EXIT_BB_FAILURE;
        }
        before += lines;
    }
    if (v.lines == 0) {
        printf("altered: %s is empty: every record was removed (or none was ever written)\n", path);
        return 1;
    }
    if (!running && !v.last_is_end) {
        printf("altered: %s line %llu: the log ends without the daemon's closing record: it was "
               "truncated (or the daemon was killed)\n",
               path, (unsigned long long)before);
        return 1;
    }
    printf("intact: %llu records of bottle %s%s%s\n", (unsigned long long)v.lines, name,
           v.starts_rotated ? " (the oldest ones were rotated away)" : "",
           running ? " (running: its last records are not sealed yet)" : "");
    return 0;
}

int cmd_logs(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "follow", no_argument, NULL, 'f' },
        { "json", no_argument, NULL, 'j' },
        { "denied", no_argument, NULL, 'd' },
        { "verify", no_argument, NULL, 'V' },
        { "kind", required_argument, NULL, 'k' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "logs", "fh", longopts, logs_usage, NULL };
    struct logs_ctx c = { 0 };
    bool follow = false, verify = false;
    struct state st;
    struct state_info info;
    struct audit_follow f;
    char path[1100];
    const char *name;
    int opt, ret = 0, r, running = 0;
    bool have_state, have_info = false;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt == CLI_OPT_EXIT)
            return ret;
        if (opt == 'f')
            follow = true;
        else if (opt == 'j')
            c.json = true;
        else if (opt == 'd') {
            c.filter.decision = "deny";
            c.filter.decisions_only = true;
            c.filtered = true;
        } else if (opt == 'k') {
            static const char *const kinds[] = { "connect", "http", "dns", "policy", "end" };
            bool known = false;
            for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                known |= strcmp(optarg, kinds[i]) == 0;
            if (!known) {
                log_error("logs: --kind '%s': expected connect, http, dns, policy or end", optarg);
                return EXIT_BB_FAILURE;
            }
            c.filter.kind = optarg;
            c.filtered = true;
        } else if (opt == 'V')
            verify = true;
    }
    if (optind != argc - 1) {
        log_error("logs: expected one bottle NAME; 'bot-bottle ls -a' lists them");
        return EXIT_BB_FAILURE;
    }
    name = argv[optind];
    if (!state_name_valid(name))
        return no_such_bottle(name, false);
    r = open_state(&st);
    if (r < 0 && r != -ENOENT)
        return EXIT_BB_FAILURE;
    have_state = r == 0;
    if (!have_state)
        return no_such_bottle(name, false);
    running = state_bottle_running(&st, name) == 1;
    if (running)
        have_info = state_info_read(&st, name, &info) == 0;
    r = audit_path_of(&st, name, have_info ? &info : NULL, path, sizeof(path));
    if (have_info)
        state_info_done(&info);
    if (r < 0 || !log_exists(path))
        return no_such_bottle(name, false);
    if (verify)
        return logs_verify(name, path, running);

    r = audit_follow_open(&f, path, true);
    if (r < 0) {
        audit_follow_close(&f);
        log_errno(LOG_LVL_ERROR, r, "logs: cannot open %s", path);
        return EXIT_BB_FAILURE;
    }
    if (!c.json)
        printf("%-24s %-7s %-40s %-8s %-24s %15s %5s\n", "TIME", "KIND", "HOST:PORT", "DECISION",
               "REASON", "BYTES(UP/DOWN)", "COUNT");
    r = audit_follow_poll(&f, print_line, &c);
    if (follow) {
        struct sigaction sa = { .sa_handler = on_interrupt };
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        while (!interrupted && !c.out_failed && r == 0) {
            if (fflush(stdout) != 0)
                break;
            usleep(FOLLOW_POLL_MS * 1000);
            r = audit_follow_poll(&f, print_line, &c);
        }
    }
    audit_follow_close(&f);
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "logs: cannot read %s", path);
        return EXIT_BB_FAILURE;
    }
    return fflush(stdout) == 0 && !c.out_failed ? 0 : EXIT_BB_FAILURE;
}
