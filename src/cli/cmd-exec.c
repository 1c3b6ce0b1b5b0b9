/*
 * bot-bottle exec, attach, rm: the verbs for bottles made by `bot-bottle start` (docs/cli.md).
 * exec and attach talk to the bottle's supervisor over its control socket
 * (docs/supervisor.md, "Detached bottles"); the supervisor passes them the host ends of the
 * command's pty or pipes, which they relay to our own terminal or stdio. The user's terminal
 * never leaves this process.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/str.h"
#include "supervisor/control.h"
#include "supervisor/state.h"
#include "supervisor/stdio-relay.h"
#include "supervisor/termfilter.h"
#include "supervisor/tty.h"

#define EXIT_NO_BOTTLE 1
#define CALL_TIMEOUT_MS 10000
#define START_RETRY_MS 10000 /* exec right after start: the bottle may still be setting up */

/* The control directory of running bottle name into dir. Returns 0, or an exit status after
 * saying why. */
static int find_running(const char *verb, const char *name, struct state *st, char *dir,
                        size_t size)
{
    int r;

    if (!state_name_valid(name) || (r = state_open(NULL, false, st)) == -ENOENT ||
        (r >= 0 && (r = state_bottle_running(st, name)) == 0)) {
        log_error("%s: no running bottle named '%s'; 'bot-bottle ls' lists them", verb, name);
        return EXIT_NO_BOTTLE;
    }
    if (r < 0 || state_bottle_path(st, name, NULL, dir, size) < 0) {
        log_errno(LOG_LVL_ERROR, r, "%s: cannot use the state of bottle '%s'", verb, name);
        return EXIT_BB_FAILURE;
    }
    return 0;
}

/* ---------------------------------------------------------------- the session */

struct session {
    struct loop *loop;
    int sock; /* the control connection (blocking) */
    struct loop_source sock_src;
    bool use_tty;
    struct tty_relay tty;
    struct stdio_relay pipes;
    bool have_exit, finished, detached, gone;
    int status;
    struct loop_timer linger; /* after the exit: the rest of the output, briefly */
};

#define LINGER_MS                                                                                  \
    500 /* output still in the pipes when the command exited (a background                         \
           process the command left may hold them open for good) */

static void on_linger(struct loop_timer *t)
{
    struct session *s = t->userdata;
    loop_quit(s->loop, 0);
}

static void maybe_done(struct session *s)
{
    if (s->detached || s->gone || (s->have_exit && (s->use_tty || s->finished)))
        loop_quit(s->loop, 0);
}

static void on_sock(struct loop_source *src, uint32_t ev)
{
    struct session *s = src->userdata;
    json_t *m = NULL;
    (void)ev;

    if (control_read_frame(s->sock, &m) < 0) {
        loop_del(s->loop, &s->sock_src);
        if (!s->have_exit)
            s->gone = true; /* the supervisor went away without a status */
        maybe_done(s);
        return;
    }
    if (json_is_integer(json_object_get(m, "exit"))) {
        s->have_exit = true;
        s->status = (int)json_integer_value(json_object_get(m, "exit"));
        if (s->use_tty)
            tty_relay_flush(&s->tty);
        else
            loop_timer_set_in(s->loop, &s->linger, LINGER_MS);
    }
    json_decref(m); /* (replies to our signal requests) */
    maybe_done(s);
}

static void on_pipes_done(void *ud)
{
    struct session *s = ud;
    s->finished = true;
    maybe_done(s);
}

static void on_detach(void *ud)
{
    struct session *s = ud;
    s->detached = true;
    maybe_done(s);
}

static void on_sig(struct loop *l, int signo, void *ud)
{
    struct session *s = ud;
    json_t *m;
    (void)l;

    if (signo == SIGWINCH) {
        if (s->use_tty)
            tty_relay_resize(&s->tty);
        return;
    }
    if (!s->tty.detach) {
        /* exec: the command gets it */
        m = json_pack("{s:s, s:i}", "cmd", "signal", "signal", signo);
        if (m && control_write_frame(s->sock, m) < 0)
            log_debug("cannot forward signal %d", signo);
        json_decref(m);
        return;
    }
    on_detach(s); /* attach: we leave, the bottle stays */
}

static int session_loop(struct session *s)
{
    static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGWINCH };
    int r;

    loop_timer_init(&s->linger, on_linger, s);
    if ((r = loop_add(s->loop, &s->sock_src, s->sock, EPOLLIN, on_sock, s)) < 0)
        return r;
    for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
        if ((r = loop_add_signal(s->loop, sigs[i], on_sig, s)) < 0)
            return r;
    return loop_run(s->loop);
}

/* The signals exec passes to its command (session_loop), held from before the request. */
static const int forwarded_sigs[] = { SIGINT, SIGTERM, SIGHUP };

/* Block them: one that arrives while the request is under way waits for the session to pass
 * it on once the command runs, instead of ending exec alone (SIGTERM, SIGHUP) or being lost
 * (SIGINT, which a background job ignores). */
static void hold_forwarded(void)
{
    sigset_t set;

    sigemptyset(&set);
    for (size_t i = 0; i < ARRAY_SIZE(forwarded_sigs); i++)
        sigaddset(&set, forwarded_sigs[i]);
    (void)sigprocmask(SIG_BLOCK, &set, NULL);
}

static bool forwarded_pending(void)
{
    sigset_t set;

    if (sigpending(&set) < 0)
        return false;
    for (size_t i = 0; i < ARRAY_SIZE(forwarded_sigs); i++)
        if (sigismember(&set, forwarded_sigs[i]) == 1)
            return true;
    return false;
}

/* Call the supervisor; retry while it says the bottle is still starting (not once a signal for
 * the command is held: the user wants it to end). Returns 0 with the reply and the connection,
 * or an exit status after saying why. */
static int call_keep(const char *verb, const char *name, const char *dir, json_t *req, int *fds,
                     size_t max, size_t *nfds, int *sock)
{
    json_t *reply = NULL;
    const char *err;
    int r, status;

    for (int waited = 0;; waited += 100) {
        r = control_call_keep(dir, req, CALL_TIMEOUT_MS, &reply, fds, max, nfds, sock);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "%s: no answer from the supervisor of bottle '%s'", verb,
                      name);
            return EXIT_BB_FAILURE;
        }
        if (json_is_true(json_object_get(reply, "ok")))
            break;
        if (json_is_true(json_object_get(reply, "retry")) && waited < START_RETRY_MS &&
            !forwarded_pending()) {
            json_decref(reply);
            close(*sock);
            usleep(100 * 1000);
            continue;
        }
        err = json_string_value(json_object_get(reply, "error"));
        status = json_is_integer(json_object_get(reply, "status"))
                     ? (int)json_integer_value(json_object_get(reply, "status"))
                     : EXIT_BB_FAILURE;
        log_error("%s: bottle '%s': %s", verb, name, err ? err : "refused (no reason given)");
        json_decref(reply);
        close(*sock);
        return status;
    }
    json_decref(reply);
    return 0;
}

/* ---------------------------------------------------------------- exec */

static void exec_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle exec NAME [-t] [-i] [-e VAR[=VALUE]]... [--] COMMAND [ARG...]\n"
               "\n"
               "Run COMMAND in the running bottle NAME, with the bottle's confinement, user,\n"
               "environment and workspace as working directory. Exits with COMMAND's status\n"
               "(125: bot-bottle failed, or the bottle's backend cannot exec yet; 126: COMMAND\n"
               "not executable; 127: COMMAND not found). SIGINT, SIGTERM and SIGHUP sent to exec\n"
               "are passed to COMMAND; COMMAND ends when exec does.\n"
               "\n"
               "Options:\n"
               "  -t, --tty              a terminal of its own (a pty the supervisor makes,\n"
               "                         relayed to yours; needs a terminal on stdin)\n"
               "  -i, --interactive      pass stdin to COMMAND (default: /dev/null)\n"
               "  -e, --env VAR[=VALUE]  pass a variable (without VALUE: this shell's value)\n"
               "  -v, --verbose          debug logging\n"
               "  -h, --help             this text\n");
}

int cmd_exec(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "tty", no_argument, NULL, 't' },       { "interactive", no_argument, NULL, 'i' },
        { "env", required_argument, NULL, 'e' }, { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },      { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "exec", "+tie:vh", longopts, exec_usage, NULL };
    struct session s = { .sock = -1, .status = EXIT_BB_FAILURE };
    bool tty = false, inter = false;
    json_t *req = NULL, *av, *env;
    const char *name = NULL;
    struct state st;
    char dir[STATE_PATH_MAX + 128];
    int fds[CONTROL_MAX_FDS], opt, ret = 0, r;
    size_t nfds = 0;

    env = json_array();
    /* options before NAME, and after it (exec NAME -t -- CMD) */
    for (int pass = 0, base = 0; pass < 2; pass++) {
        optind = 1;
        while ((opt = cli_getopt(&parser, argc - base, argv + base, &ret)) != -1) {
            if (opt == CLI_OPT_EXIT) {
                json_decref(env);
                return ret;
            }
            if (opt == 't')
                tty = true;
            else if (opt == 'i')
                inter = true;
            else if (opt == 'e') {
                const char *v = strchr(optarg, '=') ? NULL : getenv(optarg);
                char kv[4096];
                if (!strchr(optarg, '=') && !v) {
                    log_warn("exec: -e %s: not set here; not passed", optarg);
                    continue;
                }
                if (str_printf(kv, sizeof(kv), "%s%s%s", optarg, v ? "=" : "", v ? v : "") < 0) {
                    log_error("exec: -e %s: too long (the request is at most %d bytes)", optarg,
                              BB_MAX_CONTROL_FRAME);
                    json_decref(env);
                    return EXIT_BB_FAILURE;
                }
                json_array_append_new(env, json_string(kv));
            }
        }
        optind += base;
        if (pass == 0) {
            if (optind >= argc)
                break;
            name = argv[optind];
            base = optind; /* argv[base] = NAME takes the place of argv[0] */
        }
    }
    if (!name || optind >= argc) {
        log_error("exec: expected NAME and COMMAND (e.g. bot-bottle exec NAME -- ls); "
                  "'bot-bottle ls' lists the bottles");
        json_decref(env);
        return EXIT_BB_FAILURE;
    }
    if (tty && !isatty(STDIN_FILENO)) {
        log_error("exec: -t needs a terminal on stdin; run without -t (with -i to pass stdin)");
        json_decref(env);
        return EXIT_BB_FAILURE;
    }
    if ((ret = find_running("exec", name, &st, dir, sizeof(dir))) != 0) {
        json_decref(env);
        return ret;
    }
    av = json_array();
    for (int i = optind; i < argc; i++)
        json_array_append_new(av, json_string(argv[i]));
    req = json_pack("{s:s, s:o, s:o, s:b, s:b}", "cmd", "exec", "argv", av, "env", env, "tty", tty,
                    "interactive", inter);
    if (req && tty) {
        struct winsize ws;
        if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
            json_object_set_new(req, "rows", json_integer(ws.ws_row));
            json_object_set_new(req, "cols", json_integer(ws.ws_col));
        }
    }
    if (!req || json_array_size(av) != (size_t)(argc - optind)) {
        log_error("exec: the command and variables must be UTF-8 text");
        json_decref(req);
        return EXIT_BB_FAILURE;
    }
    {
        char *text = json_dumps(req, JSON_COMPACT);
        size_t len = text ? strlen(text) : 0;
        free(text);
        if (len > BB_MAX_CONTROL_FRAME) {
            log_error("exec: the command and its variables are %zu bytes; at most %d fit in a "
                      "request (put a long script in a file in the workspace and exec that)",
                      len, BB_MAX_CONTROL_FRAME);
            json_decref(req);
            return EXIT_BB_FAILURE;
        }
    }
    hold_forwarded();
    ret = call_keep("exec", name, dir, req, fds, ARRAY_SIZE(fds), &nfds, &s.sock);
    json_decref(req);
    if (ret != 0)
        return ret;
    if ((r = loop_new(&s.loop)) < 0)
        goto fail;
    s.use_tty = tty;
    if (tty) {
        if (nfds != 1) {
            r = -EBADMSG;
            goto fail;
        }
        tty_relay_adopt(&s.tty, s.loop, fds[0], STDIN_FILENO, STDOUT_FILENO);
        nfds = 0;
        if ((r = tty_relay_start(&s.tty)) < 0)
            goto fail;
    } else {
        int host[STDIO_MAX] = { -1, -1, -1 };
        if (nfds != (inter ? 3u : 2u)) {
            r = -EBADMSG;
            goto fail;
        }
        for (size_t i = 0; i < nfds; i++)
            host[inter ? i : i + 1] = fds[i];
        nfds = 0;
        if ((r = stdio_relay_adopt(&s.pipes, s.loop, host, STDIN_FILENO, STDOUT_FILENO,
                                   STDERR_FILENO)) < 0 ||
            (r = stdio_relay_start(&s.pipes, on_pipes_done, &s)) < 0)
            goto fail;
    }
    r = session_loop(&s);
    if (r < 0)
        goto fail;
    if (s.gone) {
        log_error("exec: the supervisor of bottle '%s' went away before the command ended", name);
        s.status = EXIT_BB_FAILURE;
    }
    ret = s.status;
    goto out;
fail:
    log_errno(LOG_LVL_ERROR, r, "exec: cannot relay the command's stdio");
    ret = EXIT_BB_FAILURE;
out:
    for (size_t i = 0; i < nfds; i++)
        close(fds[i]);
    if (s.loop)
        loop_timer_stop(s.loop, &s.linger);
    if (s.use_tty)
        tty_relay_done(&s.tty);
    stdio_relay_done(&s.pipes);
    if (s.sock >= 0)
        close(s.sock);
    loop_free(s.loop);
    return ret;
}

/* ---------------------------------------------------------------- attach */

static void attach_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle attach NAME\n"
               "\n"
               "Connect this terminal to the terminal of the main command of bottle NAME (made\n"
               "by 'bot-bottle start'): first the output kept while nobody was attached (at\n"
               "most the last 64 KiB), then the live terminal, through the terminal filter.\n"
               "Detach with ctrl-p ctrl-q (the bottle keeps running); a signal to attach also\n"
               "detaches. One attach at a time. Exits 0 after a detach, the command's status\n"
               "when it ends while attached, 1 when no bottle of that name runs, 125 on other\n"
               "failures.\n"
               "\n"
               "Options:\n"
               "  -h, --help  this text\n");
}

/* What the bottle printed while nobody was attached, through the filter when we write to a
 * terminal. */
static void replay(int memfd, int out)
{
    struct termfilter f;
    char in[16384], buf[sizeof(in) + TERMFILTER_HOLD];
    bool filtered = isatty(out);
    ssize_t n;

    termfilter_init(&f);
    (void)lseek(memfd, 0, SEEK_SET);
    while ((n = read(memfd, in, sizeof(in))) > 0) {
        size_t k = filtered ? termfilter_feed(&f, in, (size_t)n, buf) : (size_t)n;
        const char *p = filtered ? buf : in;
        for (size_t off = 0; off < k;) {
            ssize_t w = write(out, p + off, k - off);
            if (w <= 0 && errno != EINTR && errno != EAGAIN)
                return;
            if (w > 0)
                off += (size_t)w;
        }
    }
}

int cmd_attach(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "attach", "vh", longopts, attach_usage, NULL };
    struct session s = { .sock = -1, .status = 0 };
    const char *name;
    struct state st;
    char dir[STATE_PATH_MAX + 128];
    int fds[CONTROL_MAX_FDS], opt, ret = 0, r;
    size_t nfds = 0;
    json_t *req;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1)
        if (opt == CLI_OPT_EXIT)
            return ret;
    if (optind != argc - 1) {
        log_error("attach: expected one bottle NAME; 'bot-bottle ls' lists them");
        return EXIT_BB_FAILURE;
    }
    name = argv[optind];
    if (!isatty(STDIN_FILENO)) {
        log_error("attach: needs a terminal on stdin (use 'bot-bottle exec NAME -i' to pipe "
                  "into a bottle)");
        return EXIT_BB_FAILURE;
    }
    if ((ret = find_running("attach", name, &st, dir, sizeof(dir))) != 0)
        return ret;
    req = json_pack("{s:s}", "cmd", "attach");
    ret = call_keep("attach", name, dir, req, fds, ARRAY_SIZE(fds), &nfds, &s.sock);
    json_decref(req);
    if (ret != 0)
        return ret;
    if (nfds != 2) {
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        close(s.sock);
        log_error("attach: the supervisor of bottle '%s' did not pass its terminal", name);
        return EXIT_BB_FAILURE;
    }
    if ((r = loop_new(&s.loop)) < 0)
        goto fail;
    s.use_tty = true;
    fprintf(stderr, "bot-bottle: attached to %s; detach with ctrl-p ctrl-q\n", name);
    replay(fds[1], STDOUT_FILENO);
    close(fds[1]);
    tty_relay_adopt(&s.tty, s.loop, fds[0], STDIN_FILENO, STDOUT_FILENO);
    s.tty.detach = on_detach;
    s.tty.detach_ud = &s;
    if ((r = tty_relay_start(&s.tty)) < 0 || (r = session_loop(&s)) < 0)
        goto fail;
    tty_relay_done(&s.tty);
    s.use_tty = false;
    if (s.detached)
        fprintf(stderr,
                "\r\nbot-bottle: detached from %s; it still runs ('bot-bottle attach %s' to "
                "come back, 'bot-bottle stop %s' to end it)\n",
                name, name, name);
    else if (s.gone)
        log_error("attach: the supervisor of bottle '%s' went away", name);
    ret = s.detached ? 0 : s.gone ? EXIT_BB_FAILURE : s.status;
    goto out;
fail:
    log_errno(LOG_LVL_ERROR, r, "attach: cannot relay the terminal");
    ret = EXIT_BB_FAILURE;
out:
    if (s.use_tty)
        tty_relay_done(&s.tty);
    if (s.sock >= 0)
        close(s.sock);
    loop_free(s.loop);
    return ret;
}

/* ---------------------------------------------------------------- rm */

static void rm_usage(FILE *f)
{
    fprintf(f, "Usage: bot-bottle rm NAME... [-f]\n"
               "\n"
               "Remove what is left of an ended bottle: its audit log (NAME.audit.log and the\n"
               "rotated .1) and its supervisor's log (NAME.log) in <state>/logs. A running\n"
               "bottle is refused unless -f, which stops it first (as 'bot-bottle stop NAME').\n"
               "Ended bottles' logs are also removed by themselves: the newest 50 are kept, for\n"
               "at most 14 days (env BOT_BOTTLE_KEEP_LOGS, BOT_BOTTLE_KEEP_DAYS), checked when\n"
               "a bottle starts and by 'bot-bottle ls'. Exits 0, 1 when there is no such\n"
               "bottle, 125 on other failures.\n"
               "\n"
               "Options:\n"
               "  -f, --force  stop a running bottle first\n"
               "  -h, --help   this text\n");
}

int cmd_rm(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "force", no_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const struct cli_parser parser = { "rm", "fh", longopts, rm_usage, NULL };
    bool force = false;
    struct state st;
    int opt, ret = 0, r;

    optind = 1;
    while ((opt = cli_getopt(&parser, argc, argv, &ret)) != -1) {
        if (opt == CLI_OPT_EXIT)
            return ret;
        if (opt == 'f')
            force = true;
    }
    if (optind >= argc) {
        log_error("rm: expected a bottle NAME; 'bot-bottle ls -a' lists them");
        return EXIT_BB_FAILURE;
    }
    for (int i = optind; i < argc; i++) {
        const char *name = argv[i];
        r = state_name_valid(name) ? state_open(NULL, false, &st) : -EINVAL;
        if (r == -ENOENT || r == -EINVAL) {
            log_error("rm: no bottle named '%s'; 'bot-bottle ls -a' lists them", name);
            ret = ret ? ret : EXIT_NO_BOTTLE;
            continue;
        }
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "rm: cannot open the state directory");
            return EXIT_BB_FAILURE;
        }
        if (state_bottle_running(&st, name) == 1) {
            char *stop_argv[] = { "stop", (char *)name, NULL };
            if (!force) {
                log_error("rm: bottle '%s' is running; stop it first ('bot-bottle stop %s') or "
                          "use 'bot-bottle rm -f %s'",
                          name, name, name);
                ret = EXIT_BB_FAILURE;
                continue;
            }
            r = cmd_stop(2, stop_argv);
            if (r != 0) {
                ret = r;
                continue;
            }
        }
        (void)state_reclaim_stale(&st);
        r = state_logs_remove(&st, name);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "rm: cannot remove the logs of bottle '%s' in %s", name,
                      st.logs);
            ret = EXIT_BB_FAILURE;
        } else if (r == 0) {
            log_error("rm: no bottle named '%s'; 'bot-bottle ls -a' lists them", name);
            ret = ret ? ret : EXIT_NO_BOTTLE;
        } else {
            printf("removed %s\n", name);
        }
    }
    return fflush(stdout) == 0 ? ret : EXIT_BB_FAILURE;
}
