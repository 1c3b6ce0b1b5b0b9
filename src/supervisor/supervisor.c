#include "supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "channel/relay.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "config/trust.h"
#include "guest/spec.h"
#include "supervisor/alias.h"
#include "supervisor/control.h"
#include "supervisor/daemon.h"
#include "supervisor/notice.h"
#include "supervisor/state.h"
#include "supervisor/stdio-relay.h"
#include "supervisor/protect.h"
#include "supervisor/tty.h"

#define STOP_GRACE_MS 5000
#define SV_MAX_GRANTS 32 /* timed grants (allow --for) in force at once */

struct sv;
/* A timed grant (`bot-bottle allow N P --for D`): its deny is sent when the timer fires. */
struct grant {
    struct loop_timer timer;
    struct sv *s;
    char pattern[CONTROL_MAX_PATTERN + 1];
};

struct sv {
    const struct supervisor_opts *o;
    struct state st;        /* the state root (state.h) */
    struct state_bottle sb; /* bottles/NAME, locked while we run */
    char audit[1024];
    char name[BOTTLE_SPEC_MAX_NAME + 1];
    struct alias_lease alias;
    struct loop *loop;

    struct egress_daemon daemon; /* daemon.h */
    struct loop_source daemon_src;

    const struct backend_ops *be;
    struct bottle *bottle;
    struct backend_started started;
    struct loop_source bottle_src;
    struct channel_host_relay *relay;

    bool use_tty;
    struct tty_relay tty;
    /* without -t: the bottle's stdio are pipes (supervisor/stdio-relay.h) */
    struct stdio_relay pipes;
    int devnull;

    struct notice notice;           /* the blocked-host notices (notice.h) */
    struct control_server *control; /* bottles/NAME/control (control.h) */

    struct protect_plan protect; /* read-only workspace paths and their placeholders */

    struct loop_timer kill_timer;
    int grace_ms; /* before the kill (stop's "time"; default STOP_GRACE_MS) */
    struct grant *grants[SV_MAX_GRANTS];
    int stop_signo; /* the signal that made us stop the bottle (0: none) */
    bool stopping;
    int status;
    bool done;
};

static int setup_state(struct sv *s)
{
    int r;

    r = state_open(NULL, true, &s->st);
    if (r == -ENAMETOOLONG)
        return log_errno(LOG_LVL_ERROR, r, "state directory path too long");
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r,
                         "cannot use the state directory %s (it and its bottles, logs and "
                         "aliases directories must be owned by you, mode 0700)",
                         s->st.root);
    if (s->o->name) {
        if (!state_name_valid(s->o->name)) {
            log_error("invalid bottle name '%s': use up to %d letters, digits, '-', '_' or '.', "
                      "starting with a letter or digit",
                      s->o->name, BOTTLE_SPEC_MAX_NAME);
            return -EINVAL;
        }
        snprintf(s->name, sizeof(s->name), "%s", s->o->name);
    } else {
        uint32_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
            rnd = (uint32_t)getpid();
        snprintf(s->name, sizeof(s->name), "bb-%06x", rnd & 0xffffff);
    }
    /* (reclaims the state of bottles whose supervisor is gone first) */
    r = state_bottle_create(&s->st, s->name, &s->sb);
    if (r == -EEXIST) {
        log_error("a bottle named '%s' is already running; choose another --name", s->name);
        return r;
    }
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot create the state of bottle '%s' in %s", s->name,
                         s->st.bottles);
    if (s->o->audit_path)
        snprintf(s->audit, sizeof(s->audit), "%s", s->o->audit_path);
    else
        snprintf(s->audit, sizeof(s->audit), "%s/%s.audit.log", s->st.logs, s->name);
    r = alias_acquire(s->st.aliases, BOTTLE_PROXY_PORT, &s->alias);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot allocate a loopback alias in 127.77.0.0/16");
    return 0;
}

static void write_info(struct sv *s)
{
    struct state_info i = { .pid = getpid(),
                            .bottle_pid = s->started.pid,
                            .daemon_pid = s->daemon.pid,
                            .protect_roots = s->protect.roots };
    int r;

    snprintf(i.name, sizeof(i.name), "%s", s->name);
    snprintf(i.backend, sizeof(i.backend), "%s", s->be ? s->be->name : "");
    snprintf(i.alias, sizeof(i.alias), "%s", s->alias.text);
    snprintf(i.audit, sizeof(i.audit), "%s", s->audit);
    snprintf(i.workspace, sizeof(i.workspace), "%s", s->o->workspace);
    i.started = (int64_t)time(NULL);
    for (size_t k = 0, n = 0; s->o->argv && s->o->argv[k]; k++) {
        int w = snprintf(i.command + n, sizeof(i.command) - n, "%s%s", k ? " " : "", s->o->argv[k]);
        if (w < 0 || (size_t)w >= sizeof(i.command) - n)
            break; /* cut: `ls` shows a prefix */
        n += (size_t)w;
    }
    r = state_info_write(&s->sb, &i);
    if (r < 0)
        log_errno(LOG_LVL_WARN, r, "cannot write %s/info.json", s->sb.dir);
}

/* ---------------------------------------------------------------- events */

static void request_stop(struct sv *s)
{
    if (s->stopping || !s->started.pid)
        return;
    s->stopping = true;
    /* Never blocks (namespace: SIGTERM to bottle-init, which forwards it to the command); if
     * the bottle lingers, it is killed. */
    (void)s->be->request_stop(s->bottle);
    loop_timer_set_in(s->loop, &s->kill_timer, s->grace_ms);
}

static void on_kill_timer(struct loop_timer *t)
{
    struct sv *s = t->userdata;
    log_warn("the bottle did not stop within %d s; killing it", s->grace_ms / 1000);
    (void)s->be->kill(s->bottle);
}

static void on_bottle_exit(struct loop_source *src, uint32_t ev)
{
    struct sv *s = src->userdata;
    int status = 125;
    (void)ev;

    loop_del(s->loop, src);
    if (s->be->wait(s->bottle, &status) < 0)
        status = 125;
    /* Stopped because we got SIGINT (or SIGHUP): the command died of the SIGTERM we sent;
     * exit as a program killed by what we got would (130 for SIGINT, as shells do). */
    if (s->stop_signo && s->stop_signo != SIGTERM && status == 128 + SIGTERM)
        status = 128 + s->stop_signo;
    if (!s->done)
        s->status = status;
    s->done = true;
    /* Every byte the command wrote reaches our stdout/stderr first: the pipes end when the
     * bottle's last process is gone. */
    if (s->use_tty || stdio_relay_finished(&s->pipes))
        loop_quit(s->loop, 0);
}

static void on_stdio_done(void *userdata)
{
    struct sv *s = userdata;
    if (s->done)
        loop_quit(s->loop, 0);
}

static void on_daemon_exit(struct loop_source *src, uint32_t ev)
{
    struct sv *s = src->userdata;
    (void)ev;

    loop_del(s->loop, src);
    if (s->done)
        return;
    log_error("the egress daemon of bottle '%s' died; the bottle has no network without it and "
              "is being stopped",
              s->name);
    s->status = 125;
    s->done = true; /* keep 125 whatever the command returns now */
    request_stop(s);
}

static void on_channel_dead(void *ud, int err)
{
    struct sv *s = ud;
    if (s->stopping || s->done || err == 0 || err == -ECONNRESET || err == -EPIPE)
        return; /* (how it ends when the bottle exits) */
    log_debug("channel closed (%s)", strerror(-err));
}

/* ---------------------------------------------------------------- timed grants */

static struct grant **grant_find(struct sv *s, const char *pattern)
{
    for (size_t i = 0; i < SV_MAX_GRANTS; i++)
        if (s->grants[i] && strcmp(s->grants[i]->pattern, pattern) == 0)
            return &s->grants[i];
    return NULL;
}

static void grant_drop(struct sv *s, struct grant **g)
{
    if (!g || !*g)
        return;
    loop_timer_stop(s->loop, &(*g)->timer);
    free(*g);
    *g = NULL;
}

static void on_grant_expired(struct loop_timer *t)
{
    struct grant *g = t->userdata;
    struct sv *s = g->s;
    char why[256];
    int r = daemon_policy_change(&s->daemon, "deny", g->pattern, why, sizeof(why));

    if (r < 0)
        log_warn("the grant for %s expired but could not be revoked: %s", g->pattern,
                 r == -EINVAL || r == -ENOENT ? why : strerror(-r));
    else
        log_info("the grant for %s expired", g->pattern);
    grant_drop(s, grant_find(s, g->pattern));
}

/* Arm (or re-arm) the expiry of pattern. Returns 0 or -ENOSPC. */
static int grant_arm(struct sv *s, const char *pattern, uint32_t seconds)
{
    struct grant **slot = grant_find(s, pattern);

    for (size_t i = 0; !slot && i < SV_MAX_GRANTS; i++)
        if (!s->grants[i])
            slot = &s->grants[i];
    if (!slot)
        return -ENOSPC;
    if (!*slot) {
        *slot = xcalloc(1, sizeof(**slot));
        (*slot)->s = s;
        snprintf((*slot)->pattern, sizeof((*slot)->pattern), "%s", pattern);
        loop_timer_init(&(*slot)->timer, on_grant_expired, *slot);
    }
    loop_timer_set_in(s->loop, &(*slot)->timer, (uint64_t)seconds * 1000);
    return 0;
}

/* A request on the control socket (control.h), from a process of our own user or root. */
static int on_control(void *ud, const struct control_request *req, json_t *reply)
{
    struct sv *s = ud;
    const char *state = !s->started.pid ? "starting"
                        : s->done       ? "exited"
                        : s->stopping   ? "stopping"
                                        : "running";

    switch (req->cmd) {
    case CONTROL_STATUS:
        json_object_set_new(reply, "name", json_string(s->name));
        json_object_set_new(reply, "backend", json_string(s->be ? s->be->name : ""));
        json_object_set_new(reply, "alias", json_string(s->alias.text));
        json_object_set_new(reply, "pid", json_integer(getpid()));
        json_object_set_new(reply, "bottle_pid", json_integer(s->started.pid));
        json_object_set_new(reply, "daemon_pid", json_integer(s->daemon.pid));
        json_object_set_new(reply, "state", json_string(state));
        json_object_set_new(reply, "shares_host_kernel",
                            json_boolean(s->be && (s->be->flags & BACKEND_SHARES_HOST_KERNEL)));
        return 0;
    case CONTROL_STOP:
        if (!s->started.pid) {
            json_object_set_new(reply, "error", json_string("the bottle is still starting"));
            return -EAGAIN;
        }
        log_info("stop requested through the control socket");
        if (req->has_seconds) {
            s->grace_ms = (int)req->seconds * 1000;
            if (s->stopping) /* a second stop shortens (or lengthens) the grace */
                loop_timer_set_in(s->loop, &s->kill_timer, s->grace_ms);
        }
        request_stop(s);
        return 0;
    case CONTROL_ALLOW:
    case CONTROL_DENY: {
        bool allow = req->cmd == CONTROL_ALLOW;
        char why[256];
        int r;

        if (allow && req->has_seconds && !grant_find(s, req->pattern)) {
            size_t used = 0;
            for (size_t i = 0; i < SV_MAX_GRANTS; i++)
                used += s->grants[i] != NULL;
            if (used == SV_MAX_GRANTS) {
                json_object_set_new(reply, "error",
                                    json_string("too many timed grants in force (32); revoke one "
                                                "with 'bot-bottle deny'"));
                return -ENOSPC;
            }
        }
        if (allow && grant_find(s, req->pattern)) {
            /* a timed grant in force: re-arm it, or (a plain allow) keep it for good */
            if (req->has_seconds)
                (void)grant_arm(s, req->pattern, req->seconds);
            else
                grant_drop(s, grant_find(s, req->pattern));
            log_info("allowed %s through the control socket (%s)", req->pattern,
                     req->has_seconds ? "timer re-armed" : "no longer timed");
            return 0;
        }
        r = daemon_policy_change(&s->daemon, allow ? "allow" : "deny", req->pattern, why,
                                 sizeof(why));
        if (r < 0) {
            json_object_set_new(reply, "error",
                                json_string(r == -EINVAL || r == -ENOENT ? why : strerror(-r)));
            return r;
        }
        /* a deny or a plain allow ends the pattern's timer; allow --for (re)arms it */
        if (allow && req->has_seconds)
            (void)grant_arm(s, req->pattern, req->seconds);
        else
            grant_drop(s, grant_find(s, req->pattern));
        if (allow && req->has_seconds)
            log_info("allowed %s for %u s through the control socket", req->pattern, req->seconds);
        else
            log_info("%s %s through the control socket", allow ? "allowed" : "denied",
                     req->pattern);
        return 0;
    }
    case CONTROL_CMD_MAX:
    default:
        return -EINVAL;
    }
}

static void on_signal(struct loop *l, int signo, void *ud)
{
    struct sv *s = ud;
    (void)l;

    if (signo == SIGWINCH) {
        if (s->use_tty)
            tty_relay_resize(&s->tty);
        return;
    }
    if (s->done) {
        loop_quit(s->loop, 0); /* the bottle is gone: stop waiting for a slow reader */
        return;
    }
    if (!s->stop_signo)
        s->stop_signo = signo;
    request_stop(s);
}

/* ---------------------------------------------------------------- the bottle */

/*
 * The bottle's user: ours; but as root started through sudo (SUDO_UID/SUDO_GID set), the
 * user who ran sudo, so that what the bottle writes on the host is theirs, not root's
 * (docs/namespace.md, "User and group ids").
 */
static int bottle_ids(uid_t *ret_uid, gid_t *ret_gid)
{
    const char *su = getenv("SUDO_UID"), *sg = getenv("SUDO_GID");
    uint64_t u, g;

    *ret_uid = getuid();
    *ret_gid = getgid();
    if (geteuid() != 0 || getuid() != 0 || !su || !sg)
        return 0;
    if (str_to_u64_cstr(su, UINT32_MAX - 1, &u) < 0 ||
        str_to_u64_cstr(sg, UINT32_MAX - 1, &g) < 0) {
        log_error("SUDO_UID '%s' / SUDO_GID '%s' are not ids; unset both to run the bottle "
                  "as root",
                  su, sg);
        return -EINVAL;
    }
    *ret_uid = (uid_t)u;
    *ret_gid = (gid_t)g;
    return 0;
}

/*
 * True when another live bottle of this state root runs on the same workspace: its
 * protections may sit on placeholders (removing one would detach its mount).
 */
static bool workspace_used_by_another(struct sv *s, const char *dir)
{
    char names[64][BOTTLE_SPEC_MAX_NAME + 1];
    int n;

    if (!s->st.root[0] || !s->o->workspace)
        return false;
    n = state_list(&s->st, names, ARRAY_SIZE(names));
    if (n < 0)
        return false;
    if ((size_t)n > ARRAY_SIZE(names))
        return true; /* too many to look at: keep the placeholders */
    for (int k = 0; k < n; k++) {
        struct state_info info;
        int r;
        if (strcmp(names[k], s->name) == 0)
            continue;
        r = state_info_read(&s->st, names[k], &info);
        /* no info yet: it is starting, and may have seen our placeholders */
        if (r < 0)
            return true;
        bool used = strcmp(info.workspace, dir) == 0;
        for (size_t i = 0; i < info.protect_roots.n; i++)
            if (strcmp(info.protect_roots.v[i], dir) == 0)
                used = true;
        state_info_done(&info);
        if (used)
            return true;
    }
    return false;
}

/*
 * A workspace that is a home directory, or holds one, gives the bottle the user's dotfiles
 * (~/.bashrc, ~/.profile, ~/.gitconfig, ~/.ssh, ~/.config/...), which the host runs or trusts
 * later: the bottle's private $HOME tmpfs lies beneath the workspace mount and is hidden.
 * Checked for the bottle's user and the invoking one (root without sudo: the same).
 */
static int refuse_home_workspace(const char *ws, const char *home)
{
    char real[PATH_MAX];
    size_t n = strlen(ws);

    if (!home || home[0] != '/' || !realpath(home, real))
        return 0;
    if (strcmp(real, ws) != 0 && !(strncmp(real, ws, n) == 0 && (n == 1 || real[n] == '/')))
        return 0;
    log_error("the workspace %s %s the home directory %s: the bottle could write the "
              "dotfiles the host runs later (~/.bashrc, ~/.gitconfig, ~/.ssh, ...). Run "
              "bot-bottle in a project directory (cd DIR, or --workspace DIR)",
              ws, strcmp(real, ws) == 0 ? "is" : "holds", real);
    return -EPERM;
}

/* -EPERM (said) when path contains the state root or lies inside it. */
static int check_state_hidden(const struct sv *s, const char *path, const char *what)
{
    char root[PATH_MAX], canon[PATH_MAX];

    if (!path || !realpath(s->st.root, root))
        return 0;
    if (!realpath(path, canon))
        (void)str_printf(canon, sizeof(canon), "%s", path);
    if (trust_path_within(root, canon) || trust_path_within(canon, root)) {
        log_error("%s %s would put the state directory %s (every bottle's control socket) "
                  "inside the bottle; choose another directory, or move the state with "
                  "BOT_BOTTLE_STATE_DIR",
                  what, path, root);
        return -EPERM;
    }
    return 0;
}

static int build_spec(struct sv *s, struct bottle_spec *spec)
{
    struct passwd *pw;
    const char *term = getenv("TERM");
    uid_t uid;
    gid_t gid;
    int r = 0;

    memset(spec, 0, sizeof(*spec));
    r = bottle_ids(&uid, &gid);
    if (r < 0)
        return r;
    pw = getpwuid(uid);
    spec->alias = s->alias.addr;
    spec->uid = uid;
    spec->gid = gid;
    spec->tty = s->use_tty;
    spec->tmpfs_size[BOTTLE_TMPFS_TMP] = s->o->tmp_size;
    spec->tmpfs_size[BOTTLE_TMPFS_HOME] = s->o->home_size;
    spec->tmpfs_size[BOTTLE_TMPFS_SHM] = s->o->shm_size;
    spec->rootfs = BOTTLE_ROOTFS_BIND;
    if ((r = bottle_spec_set_str(&spec->name, s->name)) < 0 ||
        (r = bottle_spec_set_str(&spec->hostname, s->name)) < 0 ||
        (r = bottle_spec_set_str(&spec->user, pw ? pw->pw_name : "user")) < 0 ||
        (r = bottle_spec_set_str(&spec->home,
                                 pw && pw->pw_dir[0] == '/' ? pw->pw_dir : "/home/user")) < 0 ||
        (r = bottle_spec_set_str(&spec->workspace, s->o->workspace)) < 0 ||
        (r = bottle_spec_set_str(&spec->channel, "fd:3")) < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot build the bottle spec");
    {
        struct passwd *me = getpwuid(geteuid());
        if ((r = refuse_home_workspace(s->o->workspace, spec->home)) < 0 ||
            (me && (r = refuse_home_workspace(s->o->workspace, me->pw_dir)) < 0))
            return r;
    }
    if (term && (r = bottle_spec_set_env(spec, "TERM", term)) < 0)
        return log_errno(LOG_LVL_ERROR, r, "TERM");
    for (size_t i = 0; i < s->o->env.n; i++) {
        const char *kv = s->o->env.v[i], *eq = strchr(kv, '=');
        char name[256];
        if (!eq || (size_t)(eq - kv) >= sizeof(name)) {
            log_error("--env '%s': expected NAME=VALUE", kv);
            return -EINVAL;
        }
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        r = bottle_spec_set_env(spec, name, eq + 1);
        if (r < 0) {
            log_error("--env %s: not a valid variable to pass (bot-bottle sets the proxy and "
                      "BOT_BOTTLE variables itself)",
                      name);
            return r;
        }
    }
    for (size_t i = 0; i < s->o->mounts.n; i++) {
        char at[PATH_MAX];
        r = bottle_spec_add_mount_arg(spec, s->o->mounts.v[i]);
        if (r < 0) {
            log_error("--mount '%s': expected SRC:DST[:ro] with absolute, canonical paths",
                      s->o->mounts.v[i]);
            return r;
        }
        /* bottle-init refuses it too (it opens the source without following symlinks); this
         * says so before anything starts */
        r = protect_check_nofollow(spec->mounts[spec->n_mounts - 1].src, at, sizeof(at));
        if (r == -ELOOP) {
            log_error("--mount %s: %s is a symbolic link (a bottle may have swapped it); "
                      "bot-bottle mounts no source through a symlink: check it, then give the "
                      "real path ($(realpath %s))",
                      s->o->mounts.v[i], at, spec->mounts[spec->n_mounts - 1].src);
            return r;
        }
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r, "--mount %s: %s", s->o->mounts.v[i], at);
    }
    /* The state root holds every bottle's control socket: a bottle that saw it could change
     * its own allowlist (or stop other bottles), since a socket on a read-only mount still
     * accepts connections and the peer check sees the invoking user. Neither the workspace nor
     * any --mount source may contain it or lie inside it. */
    r = check_state_hidden(s, s->o->workspace, "the workspace");
    for (size_t i = 0; r == 0 && i < spec->n_mounts; i++)
        r = check_state_hidden(s, spec->mounts[i].src, "--mount");
    if (r < 0)
        return r;
    /* The workspace paths the host runs later are read-only inside (docs/workspace.md). */
    r = protect_plan_build(s->o->workspace, &s->o->allow_write, &s->protect);
    for (size_t i = 0; r >= 0 && i < spec->n_mounts; i++)
        if (!spec->mounts[i].ro)
            r = protect_plan_add_mount(spec->mounts[i].src, spec->mounts[i].dst, &s->o->allow_write,
                                       &s->protect);
    if (r < 0)
        return r;
    {
        char reg[600];
        snprintf(reg, sizeof(reg), "%s/placeholders", s->st.root);
        r = protect_registry_add(reg, s->o->workspace, &s->protect);
        if (r < 0)
            log_errno(LOG_LVL_WARN, r, "cannot record the placeholders in %s", reg);
    }
    for (size_t i = 0; i < s->protect.paths.n; i++)
        if (bottle_spec_protect_ok(spec, s->protect.paths.v[i]) && /* not in a :ro mount */
            (r = bottle_spec_add_protect(spec, s->protect.paths.v[i])) < 0)
            return log_errno(LOG_LVL_ERROR, r, "too many protected paths");
    for (char **a = s->o->argv; *a; a++)
        if ((r = bottle_spec_add_arg(spec, *a)) < 0)
            return log_errno(LOG_LVL_ERROR, r, "command too long");
    return 0;
}

/* Choose the backend (before the daemon: its flags say what the daemon needs). */
static int select_backend(struct sv *s)
{
    struct backend_probe probe = { 0 };
    int r;

    r = backend_select(s->o->backend, NULL, &s->be, &probe);
    if (r == -ENOENT) {
        log_error("unknown backend '%s'; 'bot-bottle run --help' lists the backends",
                  s->o->backend);
        return r;
    }
    if (r < 0) {
        log_error("the %s backend cannot run here: %s", s->o->backend, probe.reason);
        return r;
    }
    if (s->be->flags & BACKEND_DAEMON_ELSEWHERE) {
        log_error("the %s backend runs its egress daemon elsewhere, which 'run' does not "
                  "support yet; use --backend namespace",
                  s->be->name);
        return -EOPNOTSUPP;
    }
    if ((s->be->flags & BACKEND_STDIO_CONSOLE) && (s->o->tty || s->o->interactive)) {
        log_error("the %s backend does not support %s yet (the command's output comes over the "
                  "VM's console, its stdin is /dev/null); run with --backend namespace",
                  s->be->name, s->o->tty ? "-t" : "-i");
        return -EOPNOTSUPP;
    }
    return 0;
}

static int start_bottle(struct sv *s)
{
    struct bottle_spec spec;
    struct backend_create_args ca = { 0 };
    struct channel_host_config hc = { 0 };
    char addr[64];
    int r;

    r = build_spec(s, &spec);
    if (r < 0) {
        bottle_spec_done(&spec);
        return r;
    }
    ca.spec = &spec;
    ca.paths.init = s->o->init_path;
    ca.vm.accel = s->o->accel;
    ca.vm.kernel = s->o->kernel;
    ca.vm.memory_given = s->o->memory_given;
    ca.cpus_milli = s->o->cpus_milli;
    ca.handoff_fd = s->be->flags & BACKEND_NEEDS_HANDOFF ? s->daemon.handoff : -1;
    ca.memory_bytes = s->o->memory_bytes;
    ca.pids_max = s->o->pids_max;
    if (s->use_tty) {
        ca.stdio[0] = ca.stdio[1] = ca.stdio[2] = s->tty.slave;
    } else {
        /* Never our own stdio: pipes relayed by the loop (S11). */
        for (size_t i = 0; i < 3; i++)
            ca.stdio[i] = s->pipes.child[i];
    }
    r = s->be->create(&ca, &s->bottle);
    bottle_spec_done(&spec);
    if (r < 0)
        return r;
    r = s->be->start(s->bottle, &s->started);
    if (r < 0)
        return r;
    /* bottle-init has its copy; ours would keep the socket open after the bottle is gone. */
    if (s->daemon.handoff >= 0)
        close(s->daemon.handoff);
    s->daemon.handoff = -1;
    if (s->use_tty) {
        /* Only the bottle holds the slave now: its exit shows as EIO/HUP on the master. */
        close(s->tty.slave);
        s->tty.slave = -1;
    } else {
        stdio_relay_close_child(&s->pipes); /* EOF on the pipes = the bottle is gone */
    }
    if (!(s->be->flags & BACKEND_HAS_CHANNEL))
        goto watch;
    snprintf(addr, sizeof(addr), "%s:%d", s->alias.text, BOTTLE_PROXY_PORT);
    net_addr_parse(addr, 0, &hc.proxy);
    snprintf(addr, sizeof(addr), "%s:%d", s->alias.text, daemon_host_dns_port());
    net_addr_parse(addr, 0, &hc.dns);
    hc.dead = on_channel_dead;
    hc.userdata = s;
    r = channel_host_relay_start(s->loop, s->started.channel_fd, &hc, &s->relay);
    s->started.channel_fd = -1;
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot start the channel relay");
watch:
    r = loop_add(s->loop, &s->bottle_src, s->started.pidfd, EPOLLIN, on_bottle_exit, s);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot watch the bottle");
    return 0;
}

int supervisor_run(const struct supervisor_opts *o, struct policy *policy)
{
    struct sv s = { .o = o,
                    .status = 125,
                    .daemon = { .pidfd = -1, .handoff = -1, .control = -1 },
                    .notice = { .f = { .fd = -1 } } };
    int r;

    s.alias.lock_fd = -1;
    s.started.channel_fd = -1;
    s.started.pidfd = -1;
    s.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    s.sb.lock_fd = -1;
    signal(SIGPIPE, SIG_IGN);

    r = setup_state(&s);
    if (r < 0)
        goto out;
    r = loop_new(&s.loop);
    if (r < 0)
        goto out;
    loop_timer_init(&s.kill_timer, on_kill_timer, &s);
    s.grace_ms = STOP_GRACE_MS;
    /* The control socket lives in the state directory, which no bottle ever sees (the state
     * root is not mounted into any bottle). */
    r = control_listen(s.sb.dir);
    if (r < 0 || (r = control_server_new(s.loop, r, on_control, &s, &s.control)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot create the control socket in %s", s.sb.dir);
        goto out;
    }

    r = select_backend(&s);
    if (r < 0)
        goto out;

    /* The audit log: created now so we can follow it from the start. */
    r = notice_open(&s.notice, s.audit);
    if (r == -ELOOP) {
        log_error("the audit log %s is a symbolic link; bot-bottle does not follow it "
                  "(name the file itself with --audit)",
                  s.audit);
        r = -EPERM;
        goto out;
    }
    if (r < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot create the audit log %s", s.audit);
        r = -EPERM;
        goto out;
    }
    s.notice.hold = o->tty; /* never drawn over the program's screen: said when it exits */
    s.notice.quiet = o->quiet;
    s.notice.bottle = s.name;

    /* the daemon builds the same policy from the same arguments */
    policy = policy_free(policy);
    {
        struct daemon_config dc = { .alias = s.alias.text,
                                    .proxy_port = BOTTLE_PROXY_PORT,
                                    .name = s.name,
                                    .audit = s.audit,
                                    .extra = &o->daemon_args,
                                    .devnull = s.devnull,
                                    .handoff = s.be->flags & BACKEND_NEEDS_HANDOFF };
        r = daemon_start(&dc, &s.daemon);
    }
    if (r < 0)
        goto out;
    r = loop_add(s.loop, &s.daemon_src, s.daemon.pidfd, EPOLLIN, on_daemon_exit, &s);
    if (r < 0)
        goto out;

    s.use_tty = o->tty;
    if (s.use_tty) {
        if (!isatty(STDIN_FILENO)) {
            log_error("-t needs a terminal on stdin; run without -t (with -i to pass stdin)");
            r = -ENOTTY;
            goto out;
        }
        r = tty_relay_open(&s.tty, s.loop, STDIN_FILENO, STDOUT_FILENO);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "cannot open a pseudo-terminal");
            s.use_tty = false;
            goto out;
        }
    } else {
        r = stdio_relay_open(&s.pipes, s.loop, o->interactive, s.devnull, STDIN_FILENO,
                             STDOUT_FILENO, STDERR_FILENO);
        if (r < 0) {
            log_errno(LOG_LVL_ERROR, r, "cannot create the pipes for the command's stdio");
            goto out;
        }
    }
    if ((r = loop_add_signal(s.loop, SIGINT, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGTERM, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGHUP, on_signal, &s)) < 0 ||
        (r = loop_add_signal(s.loop, SIGWINCH, on_signal, &s)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "signal setup");
        goto out;
    }
    r = start_bottle(&s);
    if (r < 0)
        goto out;
    write_info(&s);
    log_debug("bottle %s started (backend %s); audit log %s", s.name, s.be->name, s.audit);
    if (s.use_tty && (r = tty_relay_start(&s.tty)) < 0)
        goto out;
    if (!s.use_tty && (r = stdio_relay_start(&s.pipes, on_stdio_done, &s)) < 0) {
        log_errno(LOG_LVL_ERROR, r, "cannot relay the command's stdio");
        goto out;
    }
    notice_start(&s.notice, s.loop);
    r = loop_run(s.loop);
    if (s.use_tty)
        tty_relay_flush(&s.tty);
    notice_poll(&s.notice);
out:
    if (s.use_tty)
        tty_relay_done(&s.tty);
    stdio_relay_done(&s.pipes);
    channel_host_relay_free(s.relay);
    s.control = control_server_free(s.control);
    if (s.bottle)
        s.be->destroy(s.bottle); /* kills and reaps what is still running */
    {
        /* The last bottle to leave a workspace (or a --mount source) removes every
         * placeholder made for it. */
        bool shared = workspace_used_by_another(&s, s.o->workspace);
        char reg[600];
        snprintf(reg, sizeof(reg), "%s/placeholders", s.st.root);
        for (size_t i = 0; s.o->workspace && i < s.protect.roots.n; i++) {
            const char *root = s.protect.roots.v[i];
            if (strcmp(root, s.o->workspace) == 0)
                continue;
            if (workspace_used_by_another(&s, root))
                shared = true; /* keeps this bottle's own too: simpler, errs on the safe side */
            else if (s.st.root[0])
                protect_registry_clean(reg, root);
        }
        if (!shared && s.st.root[0] && s.o->workspace)
            protect_registry_clean(reg, s.o->workspace);
        protect_plan_done(&s.protect, !shared);
    }
    if (s.started.channel_fd >= 0)
        close(s.started.channel_fd);
    daemon_stop(&s.daemon);
    /* The daemon wrote its last records (connections it closed on the way out); the terminal
     * is ours again: the held lines and what is new, then where the log is. */
    notice_poll(&s.notice);
    notice_finish(&s.notice);
    notice_done(&s.notice);
    if (s.loop) {
        loop_timer_stop(s.loop, &s.kill_timer);
        for (size_t i = 0; i < SV_MAX_GRANTS; i++)
            grant_drop(&s, &s.grants[i]);
    }
    loop_free(s.loop);
    alias_release(s.st.aliases, &s.alias);
    if (s.sb.lock_fd >= 0)
        state_bottle_remove(&s.st, &s.sb);
    if (s.devnull >= 0)
        close(s.devnull);
    policy_free(policy);
    return s.done ? s.status : 125;
}
