/*
 * `run`'s credentials (docs/credentials.md): each value is resolved here, on the host, from the
 * source the user's own config names (env:, file:, command:), given a fresh placeholder, and
 * encoded for the egress daemon (proxy/cred.h wire format). The bottle gets only the
 * placeholder, in the credential's variable.
 */
#include "cli/credentials.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "proxy/cred.h"

#define COMMAND_TIMEOUT_MS 30000

extern char **environ;

/* Trailing whitespace (a newline at the end of a file or of a command's output) is not part
 * of the value. */
static void trim_end(char *p, size_t *len)
{
    while (*len && (p[*len - 1] == '\n' || p[*len - 1] == '\r' || p[*len - 1] == ' ' ||
                    p[*len - 1] == '\t'))
        p[--*len] = '\0';
}

/* Read fd to its end into p (cap bytes at most). Returns bytes, -EFBIG, -ETIMEDOUT or -errno. */
static ssize_t read_all(int fd, char *p, size_t cap, int timeout_ms)
{
    size_t len = 0;

    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;
        if (timeout_ms >= 0) {
            int r = poll(&pfd, 1, timeout_ms);
            if (r == 0)
                return -ETIMEDOUT;
            if (r < 0 && errno != EINTR)
                return -errno;
            if (r < 0)
                continue;
        }
        n = read(fd, p + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return (ssize_t)len;
        len += (size_t)n;
        if (len == cap)
            return -EFBIG;
    }
}

/* command:CMD through /bin/sh -c on the host, stdin /dev/null, stderr ours; its stdout. */
static int run_command(const char *cmd, char *out, size_t cap, size_t *ret_len)
{
    int pfd[2], status = 0;
    pid_t pid;
    ssize_t n;

    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        int e = -errno;
        close(pfd[0]);
        close(pfd[1]);
        return e;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        char *const argv[] = { (char *)"sh", (char *)"-c", (char *)cmd, NULL };
        if (null < 0 || dup2(null, 0) < 0 || dup2(pfd[1], 1) < 0)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        execve("/bin/sh", argv, environ);
        _exit(127);
    }
    close(pfd[1]);
    n = read_all(pfd[0], out, cap, COMMAND_TIMEOUT_MS);
    close(pfd[0]);
    if (n < 0)
        kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (n < 0)
        return (int)n;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -ECHILD;
    *ret_len = (size_t)n;
    return 0;
}

/* The value of c into out (cap bytes, NUL-terminated). Logs why on failure, never the value. */
static int resolve(const struct bb_credential *c, char *out, size_t cap, size_t *ret_len)
{
    size_t len = 0;
    int r;

    if (strncmp(c->value, "env:", 4) == 0) {
        const char *v = getenv(c->value + 4);
        if (!v || !*v) {
            log_error("credential %s: %s is not set in the environment of bot-bottle run; "
                      "export it, or change the credential's value",
                      c->name, c->value + 4);
            return -ENOENT;
        }
        len = strlen(v);
        if (len >= cap) {
            log_error("credential %s: the value of %s is longer than %d bytes", c->name,
                      c->value + 4, CRED_VALUE_MAX);
            return -E2BIG;
        }
        memcpy(out, v, len);
    } else if (strncmp(c->value, "file:", 5) == 0) {
        _cleanup_close_ int fd = open(c->value + 5, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        ssize_t n;
        if (fd < 0)
            return log_errno(LOG_LVL_ERROR, -errno, "credential %s: cannot read %s", c->name,
                             c->value + 5);
        n = read_all(fd, out, cap, -1);
        if (n < 0)
            return log_errno(LOG_LVL_ERROR, (int)n,
                             "credential %s: cannot read %s (at most %d bytes)", c->name,
                             c->value + 5, CRED_VALUE_MAX);
        len = (size_t)n;
    } else if (strncmp(c->value, "command:", 8) == 0) {
        r = run_command(c->value + 8, out, cap, &len);
        if (r == -ECHILD) {
            log_error("credential %s: the command '%s' failed (see its message above); fix it or "
                      "change the credential's value",
                      c->name, c->value + 8);
            return r;
        }
        if (r < 0)
            return log_errno(LOG_LVL_ERROR, r,
                             "credential %s: cannot get the value from the command '%s'%s", c->name,
                             c->value + 8, r == -ETIMEDOUT ? " (it took longer than 30 s)" : "");
    } else {
        log_error("credential %s: unknown value source", c->name);
        return -EINVAL;
    }
    out[len] = '\0';
    trim_end(out, &len);
    if (!cred_value_valid(out, len)) {
        log_error("credential %s: the value from %s is empty, longer than %d bytes, or holds "
                  "control characters (a header value cannot)",
                  c->name, c->value, CRED_VALUE_MAX);
        return -EINVAL;
    }
    *ret_len = len;
    return 0;
}

/* Drop NAME=... from env (the credential's placeholder takes its place). */
static bool env_drop(struct strv *env, const char *name)
{
    size_t n = strlen(name), k = 0;
    bool dropped = false;

    for (size_t i = 0; i < env->n; i++) {
        if (strncmp(env->v[i], name, n) == 0 && env->v[i][n] == '=') {
            /* it may be the host's real secret: wipe it */
            explicit_bzero(env->v[i], strlen(env->v[i]));
            free(env->v[i]);
            dropped = true;
            continue;
        }
        env->v[k++] = env->v[i];
    }
    env->n = k;
    if (env->v)
        env->v[k] = NULL;
    return dropped;
}

/*
 * The real value under any other variable of the bottle's environment (-e VAR for the env:VAR
 * source when `env =` names another variable, an agent profile's or [env] pass's variables,
 * -e NAME=VALUE): exactly the value becomes the placeholder, a value that holds it is dropped.
 */
static void env_scrub(struct strv *env, const struct bb_credential *c, const char *value,
                      size_t len, const char *ph)
{
    size_t k = 0;

    for (size_t i = 0; i < env->n; i++) {
        char *kv = env->v[i], *eq = strchr(kv, '=');
        size_t nlen = eq ? (size_t)(eq - kv) : 0;
        bool own = c->env && strlen(c->env) == nlen && strncmp(kv, c->env, nlen) == 0;

        if (!eq || own || !memmem(eq + 1, strlen(eq + 1), value, len)) {
            env->v[k++] = kv;
            continue;
        }
        if (strlen(eq + 1) == len) {
            char *rep = xmalloc(nlen + 1 + strlen(ph) + 1);
            memcpy(rep, kv, nlen + 1);
            memcpy(rep + nlen + 1, ph, strlen(ph) + 1);
            log_warn("credential %s: %.*s held its value; the bottle gets the placeholder there",
                     c->name, (int)nlen, kv);
            env->v[k++] = rep;
        } else {
            log_warn("credential %s: %.*s holds its value; the variable is not passed", c->name,
                     (int)nlen, kv);
        }
        explicit_bzero(kv, strlen(kv));
        free(kv);
    }
    env->n = k;
    if (env->v)
        env->v[k] = NULL;
}

int credentials_prepare(const struct bb_config *cfg, struct strv *env, struct buf *wire)
{
    char *value = malloc(CRED_VALUE_MAX + 2);
    int r = 0;

    if (!value)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->n_creds && r == 0; i++) {
        const struct bb_credential *c = &cfg->creds[i];
        unsigned char rnd[16];
        char ph[CRED_PLACEHOLDER_MAX + 1], kv[512];
        size_t len = 0, o;

        r = resolve(c, value, CRED_VALUE_MAX + 2, &len);
        if (r < 0)
            break;
        if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
            r = log_errno(LOG_LVL_ERROR, -errno, "getrandom");
            break;
        }
        o = (size_t)snprintf(ph, sizeof(ph), "%s%s-", CRED_PLACEHOLDER_PREFIX, c->name);
        for (size_t k = 0; k < sizeof(rnd) && o + 2 < sizeof(ph); k++)
            o += (size_t)snprintf(ph + o, sizeof(ph) - o, "%02x", rnd[k]);
        r = cred_wire_append(wire, c->name, c->host, c->port, c->header, ph, value);
        if (r == 0)
            env_scrub(env, c, value, len, ph);
        explicit_bzero(value, CRED_VALUE_MAX + 2);
        if (r < 0) {
            log_error("credential %s: cannot encode it for the egress daemon", c->name);
            break;
        }
        if (c->env) {
            if (env_drop(env, c->env))
                log_warn("credential %s: the bottle gets its placeholder in %s, not the value "
                         "--env or [env] pass named",
                         c->name, c->env);
            (void)snprintf(kv, sizeof(kv), "%s=%s", c->env, ph);
            strv_push(env, kv);
        }
        log_debug("credential %s: for %s:%u in %s%s%s", c->name, c->host, (unsigned)c->port,
                  c->header, c->env ? ", placeholder in $" : "", c->env ? c->env : "");
    }
    explicit_bzero(value, CRED_VALUE_MAX + 2);
    free(value);
    return r;
}
