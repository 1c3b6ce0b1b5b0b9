/* The supervisor's control socket (control.h). */
#include "supervisor/control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/net.h"
#include "common/str.h"
#include "common/xalloc.h"

#define FRAME_MAX (CONTROL_HDR_LEN + BB_MAX_CONTROL_FRAME)

int control_frame_decode(const uint8_t **cursor, const uint8_t *end, const uint8_t **ret_p,
                         size_t *ret_len)
{
    const uint8_t *c = *cursor;
    uint32_t len;

    if (end - c < CONTROL_HDR_LEN)
        return 0;
    len = (uint32_t)c[0] << 24 | (uint32_t)c[1] << 16 | (uint32_t)c[2] << 8 | c[3];
    if (len == 0 || len > BB_MAX_CONTROL_FRAME)
        return -EMSGSIZE;
    if ((size_t)(end - c) < CONTROL_HDR_LEN + (size_t)len)
        return 0;
    *ret_p = c + CONTROL_HDR_LEN;
    *ret_len = len;
    *cursor = c + CONTROL_HDR_LEN + len;
    return 1;
}

static const struct {
    const char *name;
    enum control_cmd cmd;
    bool pattern;        /* "pattern" required */
    const char *seconds; /* the optional number of seconds this command takes, or NULL */
    uint32_t max_seconds;
} commands[] = {
    { "status", CONTROL_STATUS, false, NULL, 0 },
    { "stop", CONTROL_STOP, false, "time", CONTROL_MAX_STOP_TIME },
    { "allow", CONTROL_ALLOW, true, "for", CONTROL_MAX_GRANT },
    { "deny", CONTROL_DENY, true, NULL, 0 },
    { "attach", CONTROL_ATTACH, false, NULL, 0 },
    { "exec", CONTROL_EXEC, false, NULL, 0 },
    { "signal", CONTROL_SIGNAL, false, NULL, 0 },
};

/* The signals an exec client may forward (what a terminal or `kill` would send). */
static const int signals_ok[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGKILL, SIGUSR1, SIGUSR2 };

/* Copy a JSON array of strings into out[] (NULL-terminated) backed by q->strings at *used.
 * Returns 0 or -EBADMSG. */
static int copy_strings(const json_t *a, char **out, struct control_request *q, size_t *used,
                        bool nonempty)
{
    size_t i;
    json_t *v;

    if (!json_is_array(a) || json_array_size(a) > CONTROL_MAX_ARGS ||
        (nonempty && json_array_size(a) == 0))
        return -EBADMSG;
    json_array_foreach(a, i, v)
    {
        size_t n;
        if (!json_is_string(v))
            return -EBADMSG;
        n = json_string_length(v);
        if (strlen(json_string_value(v)) != n || *used + n + 1 > sizeof(q->strings))
            return -EBADMSG;
        memcpy(q->strings + *used, json_string_value(v), n + 1);
        out[i] = q->strings + *used;
        *used += n + 1;
    }
    out[json_array_size(a)] = NULL;
    return 0;
}

int control_request_parse(const uint8_t *p, size_t len, struct control_request *ret,
                          const char **reterr_msg)
{
    json_t *o, *v, *argv = NULL, *env = NULL, *tty = NULL, *inter = NULL, *sig = NULL;
    json_t *rows = NULL, *cols = NULL;
    const char *key, *cmd = NULL, *pattern = NULL, *num_key = NULL;
    json_int_t num = 0;
    size_t pattern_len = 0, used = 0;
    int r = -EBADMSG;

    memset(ret, 0, sizeof(*ret));
    *reterr_msg = "not a JSON object";
    if (len > BB_MAX_CONTROL_FRAME)
        return -EBADMSG;
    /* JSON_REJECT_DUPLICATES: one meaning per key; JSON_DISABLE_EOF_CHECK off: nothing may
     * follow the object. */
    o = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
    if (!o || !json_is_object(o))
        goto out;
    json_object_foreach(o, key, v)
    {
        if (strcmp(key, "cmd") == 0 && json_is_string(v)) {
            cmd = json_string_value(v);
        } else if (strcmp(key, "pattern") == 0 && json_is_string(v)) {
            pattern = json_string_value(v);
            pattern_len = json_string_length(v);
        } else if ((strcmp(key, "time") == 0 || strcmp(key, "for") == 0) && json_is_integer(v) &&
                   !num_key) {
            num_key = key;
            num = json_integer_value(v);
        } else if (strcmp(key, "argv") == 0 && json_is_array(v)) {
            argv = v;
        } else if (strcmp(key, "env") == 0 && json_is_array(v)) {
            env = v;
        } else if (strcmp(key, "tty") == 0 && json_is_boolean(v)) {
            tty = v;
        } else if (strcmp(key, "interactive") == 0 && json_is_boolean(v)) {
            inter = v;
        } else if (strcmp(key, "signal") == 0 && json_is_integer(v)) {
            sig = v;
        } else if (strcmp(key, "rows") == 0 && json_is_integer(v)) {
            rows = v;
        } else if (strcmp(key, "cols") == 0 && json_is_integer(v)) {
            cols = v;
        } else {
            *reterr_msg = "unknown key, or a key of the wrong type";
            goto out;
        }
    }
    if (!cmd) {
        *reterr_msg = "no \"cmd\"";
        goto out;
    }
    *reterr_msg = "unknown command (status, stop, allow, deny, attach, exec, signal)";
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
        if (strcmp(cmd, commands[i].name) != 0)
            continue;
        if (commands[i].pattern != (pattern != NULL)) {
            *reterr_msg = commands[i].pattern ? "\"pattern\" is required for this command"
                                              : "\"pattern\" is only for allow and deny";
            goto out;
        }
        if (num_key) {
            if (!commands[i].seconds || strcmp(num_key, commands[i].seconds) != 0) {
                *reterr_msg = "\"time\" is only for stop, \"for\" only for allow";
                goto out;
            }
            if (num < (cmd[0] == 'a' ? 1 : 0) || num > commands[i].max_seconds) {
                *reterr_msg = "the number of seconds is out of range";
                goto out;
            }
            ret->has_seconds = true;
            ret->seconds = (uint32_t)num;
        }
        if ((argv || env || tty || inter || rows || cols) && commands[i].cmd != CONTROL_EXEC) {
            *reterr_msg = "\"argv\", \"env\", \"tty\", \"interactive\", \"rows\", \"cols\" are "
                          "only for exec";
            goto out;
        }
        if (sig && commands[i].cmd != CONTROL_SIGNAL) {
            *reterr_msg = "\"signal\" is only for signal";
            goto out;
        }
        if (commands[i].cmd == CONTROL_EXEC) {
            if (!argv || copy_strings(argv, ret->argv, ret, &used, true) < 0 ||
                (env && copy_strings(env, ret->env, ret, &used, false) < 0)) {
                *reterr_msg = "exec needs \"argv\": 1 to 128 strings (and \"env\": at most "
                              "128 NAME=VALUE strings)";
                goto out;
            }
            for (size_t k = 0; ret->env[k]; k++)
                if (!strchr(ret->env[k], '=') || ret->env[k][0] == '=') {
                    *reterr_msg = "\"env\" entries are NAME=VALUE";
                    goto out;
                }
            ret->tty = json_is_true(tty); /* false for NULL too */
            ret->interactive = json_is_true(inter);
            if ((rows && (json_integer_value(rows) < 0 || json_integer_value(rows) > 65535)) ||
                (cols && (json_integer_value(cols) < 0 || json_integer_value(cols) > 65535))) {
                *reterr_msg = "\"rows\" and \"cols\" are 0 to 65535";
                goto out;
            }
            ret->rows = rows ? (uint16_t)json_integer_value(rows) : 0;
            ret->cols = cols ? (uint16_t)json_integer_value(cols) : 0;
        }
        if (commands[i].cmd == CONTROL_SIGNAL) {
            json_int_t n = sig ? json_integer_value(sig) : 0;
            for (size_t k = 0; k < ARRAY_SIZE(signals_ok); k++)
                if (n == signals_ok[k])
                    ret->signo = (int)n;
            if (!ret->signo) {
                *reterr_msg = "\"signal\" must be one of HUP, INT, QUIT, TERM, KILL, USR1, USR2";
                goto out;
            }
        }
        if (pattern) {
            /* a pattern is text: no NUL inside, bounded; its grammar is the daemon's to check */
            if (pattern_len == 0 || pattern_len > CONTROL_MAX_PATTERN ||
                strlen(pattern) != pattern_len) {
                *reterr_msg = "\"pattern\" must be 1 to 1024 bytes of text";
                goto out;
            }
            memcpy(ret->pattern, pattern, pattern_len);
            ret->pattern[pattern_len] = '\0';
        }
        ret->cmd = commands[i].cmd;
        *reterr_msg = NULL;
        r = 0;
        break;
    }
out:
    json_decref(o);
    return r;
}

int control_frame_encode(const json_t *msg, uint8_t *out, size_t size)
{
    size_t n;

    if (size < CONTROL_HDR_LEN)
        return -EMSGSIZE;
    n = json_dumpb(msg, (char *)out + CONTROL_HDR_LEN, size - CONTROL_HDR_LEN, JSON_COMPACT);
    if (n == 0 || n > size - CONTROL_HDR_LEN || n > BB_MAX_CONTROL_FRAME)
        return -EMSGSIZE;
    out[0] = (uint8_t)(n >> 24);
    out[1] = (uint8_t)(n >> 16);
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    return (int)(CONTROL_HDR_LEN + n);
}

bool control_peer_allowed(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof(cred))
        return false;
    return cred.uid == geteuid() || cred.uid == 0;
}

/* ---------------------------------------------------------------- server */

struct control_conn {
    struct control_server *srv;
    int fd;
    struct loop_source src;
    struct loop_timer idle;
    struct loop_defer free_d;
    uint8_t in[FRAME_MAX];
    size_t in_len;
    uint8_t out[2 * FRAME_MAX]; /* a reply, and an unsolicited frame (control_conn_send) */
    size_t out_len, out_off;
    bool close_after_write; /* a fatal error was answered: close once it is written */
    bool closing;
    bool held; /* attach, exec: no idle timeout; closed() when it ends */
    void (*closed)(void *userdata);
    void *closed_ud;
    int fds[CONTROL_MAX_FDS]; /* to pass with the next bytes written */
    size_t n_fds;
    struct control_conn *next;
};

struct control_server {
    struct loop *loop;
    int listen_fd;
    int spare_fd; /* held in reserve to shed connections when out of descriptors */
    bool shedding;
    struct loop_source listen_src;
    control_handler_fn handler;
    void *userdata;
    struct control_conn *conns;
    size_t n_conns;
};

static void conn_free_deferred(struct loop_defer *d)
{
    free(d->userdata);
}

static void conn_close(struct control_conn *c)
{
    struct control_server *s = c->srv;

    if (c->closing)
        return;
    c->closing = true;
    for (size_t i = 0; i < c->n_fds; i++)
        close(c->fds[i]);
    c->n_fds = 0;
    if (c->held && c->closed) {
        c->held = false;
        c->closed(c->closed_ud);
    }
    loop_del(s->loop, &c->src);
    loop_timer_stop(s->loop, &c->idle);
    close(c->fd);
    c->fd = -1;
    for (struct control_conn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    s->n_conns--;
    /* a later event of this dispatch pass may still point at c */
    loop_defer(s->loop, &c->free_d, conn_free_deferred, c);
}

static void conn_reply(struct control_conn *c, json_t *reply)
{
    int n = control_frame_encode(reply, c->out, sizeof(c->out));

    if (n < 0) {
        json_t *e = json_pack("{s:b, s:s}", "ok", 0, "error", "reply too long");
        n = e ? control_frame_encode(e, c->out, sizeof(c->out)) : -ENOMEM;
        json_decref(e);
    }
    if (n < 0) {
        c->close_after_write = true;
        return;
    }
    c->out_len = (size_t)n;
    c->out_off = 0;
}

static void conn_error(struct control_conn *c, const char *msg, bool fatal)
{
    json_t *e = json_pack("{s:b, s:s}", "ok", 0, "error", msg);

    if (e)
        conn_reply(c, e);
    json_decref(e);
    if (fatal)
        c->close_after_write = true;
}

/* Write what is pending; 1 when all of it is out, 0 when the socket is full, <0 error. */
static int conn_flush(struct control_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w;
        if (c->n_fds) {
            /* the descriptors ride on the first byte of the reply */
            union {
                struct cmsghdr h;
                char b[CMSG_SPACE(sizeof(int) * CONTROL_MAX_FDS)];
            } cm;
            struct iovec iov = { c->out + c->out_off, c->out_len - c->out_off };
            struct msghdr mh = { .msg_iov = &iov,
                                 .msg_iovlen = 1,
                                 .msg_control = cm.b,
                                 .msg_controllen = CMSG_SPACE(sizeof(int) * c->n_fds) };
            struct cmsghdr *h;
            memset(&cm, 0, sizeof(cm));
            h = CMSG_FIRSTHDR(&mh);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int) * c->n_fds);
            memcpy(CMSG_DATA(h), c->fds, sizeof(int) * c->n_fds);
            w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                for (size_t i = 0; i < c->n_fds; i++)
                    close(c->fds[i]);
                c->n_fds = 0;
            }
        } else {
            w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        c->out_off += (size_t)w;
    }
    c->out_len = c->out_off = 0;
    return 1;
}

/* Handle the complete frames in c->in, one at a time (a reply must be written before the next
 * request is read: the output never holds more than one frame). */
static void conn_process(struct control_conn *c)
{
    while (!c->closing && c->out_len == 0 && !c->close_after_write) {
        const uint8_t *cur = c->in, *p;
        size_t len;
        struct control_request req;
        const char *why;
        int r = control_frame_decode(&cur, c->in + c->in_len, &p, &len);

        if (r == 0)
            return;
        if (r < 0) {
            conn_error(c, "frame too long or empty", true);
            break;
        }
        r = control_request_parse(p, len, &req, &why);
        req.conn = c;
        if (r < 0) {
            conn_error(c, why, true);
        } else {
            json_t *reply = json_object();
            r = c->srv->handler(c->srv->userdata, &req, reply);
            json_object_set_new(reply, "ok", json_boolean(r >= 0));
            if (r < 0 && !json_object_get(reply, "error"))
                json_object_set_new(reply, "error", json_string(strerror(-r)));
            if (r < 0)
                for (; c->n_fds; c->n_fds--)
                    close(c->fds[c->n_fds - 1]);
            conn_reply(c, reply);
            json_decref(reply);
            if (!c->held)
                loop_timer_set_in(c->srv->loop, &c->idle, BB_CONTROL_IDLE_MS);
        }
        memmove(c->in, cur, (size_t)(c->in + c->in_len - cur));
        c->in_len = (size_t)(c->in + c->in_len - cur);
    }
}

/* Write the reply; once it is out, handle the next frame already received, and so on. */
static void conn_update(struct control_conn *c)
{
    for (;;) {
        int r;
        if (c->closing)
            return;
        r = conn_flush(c);
        if (r < 0 || (r > 0 && c->close_after_write)) {
            conn_close(c);
            return;
        }
        if (r == 0) {
            (void)loop_mod(c->srv->loop, &c->src, EPOLLOUT);
            return;
        }
        conn_process(c);
        if (c->out_len == 0 && !c->close_after_write) {
            (void)loop_mod(c->srv->loop, &c->src, EPOLLIN);
            return;
        }
    }
}

static void on_conn(struct loop_source *src, uint32_t events)
{
    struct control_conn *c = src->userdata;

    if (c->out_len == 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (n > 0)
            c->in_len += (size_t)n;
    }
    conn_update(c);
}

static void on_idle(struct loop_timer *t)
{
    conn_close(t->userdata);
}

void control_conn_hold(struct control_conn *c, void (*closed)(void *userdata), void *userdata)
{
    c->held = true;
    c->closed = closed;
    c->closed_ud = userdata;
    loop_timer_stop(c->srv->loop, &c->idle);
}

void control_conn_release(struct control_conn *c)
{
    c->held = false;
    c->closed = NULL;
    if (!c->closing)
        loop_timer_set_in(c->srv->loop, &c->idle, BB_CONTROL_IDLE_MS);
}

int control_conn_set_fds(struct control_conn *c, const int *fds, size_t n)
{
    if (c->n_fds + n > CONTROL_MAX_FDS)
        return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        int d = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        if (d < 0)
            return -errno;
        c->fds[c->n_fds++] = d;
    }
    return 0;
}

int control_conn_send(struct control_conn *c, const json_t *msg)
{
    int n;

    if (c->closing)
        return -ENOTCONN;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    n = control_frame_encode(msg, c->out + c->out_len, sizeof(c->out) - c->out_len);
    if (n < 0)
        return n;
    c->out_len += (size_t)n;
    conn_update(c);
    return 0;
}

int control_server_adopt(struct control_server *s, int fd)
{
    struct control_conn *c;
    int r;

    if (!control_peer_allowed(fd) || s->n_conns >= BB_MAX_CONTROL_CONNS) {
        close(fd);
        return -EPERM;
    }
    r = fd_set_nonblock(fd, true);
    if (r < 0) {
        close(fd);
        return r;
    }
    c = xcalloc(1, sizeof(*c));
    c->srv = s;
    c->fd = fd;
    loop_timer_init(&c->idle, on_idle, c);
    r = loop_add(s->loop, &c->src, fd, EPOLLIN, on_conn, c);
    if (r < 0) {
        close(fd);
        free(c);
        return r;
    }
    loop_timer_set_in(s->loop, &c->idle, BB_CONTROL_IDLE_MS);
    c->next = s->conns;
    s->conns = c;
    s->n_conns++;
    return 0;
}

static void on_accept(struct loop_source *src, uint32_t events)
{
    struct control_server *s = src->userdata;
    (void)events;

    for (int i = 0; i < 16; i++) {
        int fd = net_accept(s->listen_fd, SOCK_NONBLOCK, &s->spare_fd);
        if (fd == -ECONNREFUSED) {
            /* out of descriptors: net_accept closed it (said once per episode) */
            if (!s->shedding)
                log_warn("out of file descriptors: control connections are closed unanswered "
                         "until some are free");
            s->shedding = true;
            continue;
        }
        if (fd < 0)
            return;
        s->shedding = false;
        (void)control_server_adopt(s, fd); /* closes a refused one */
    }
}

int control_server_new(struct loop *loop, int listen_fd, control_handler_fn handler, void *userdata,
                       struct control_server **ret)
{
    struct control_server *s = xcalloc(1, sizeof(*s));
    int r;

    s->loop = loop;
    s->listen_fd = listen_fd;
    s->spare_fd = listen_fd >= 0 ? net_spare_fd_open() : -1;
    s->handler = handler;
    s->userdata = userdata;
    if (listen_fd >= 0) {
        r = loop_add(loop, &s->listen_src, listen_fd, EPOLLIN, on_accept, s);
        if (r < 0) {
            control_server_free(s);
            return r;
        }
    }
    *ret = s;
    return 0;
}

struct control_server *control_server_free(struct control_server *s)
{
    if (!s)
        return NULL;
    while (s->conns)
        conn_close(s->conns);
    loop_del(s->loop, &s->listen_src);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->spare_fd >= 0)
        close(s->spare_fd);
    free(s);
    return NULL;
}

/* ---------------------------------------------------------------- paths, client */

/* sun_path for dir/control: the path itself, or through /proc/self/fd/DIRFD when too long. */
static int control_addr(const char *dir, int dirfd, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (str_printf(sa->sun_path, sizeof(sa->sun_path), "%s/control", dir) == 0)
        return 0;
    return str_printf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/control", dirfd);
}

int control_listen(const char *dir)
{
    _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int fd = -1;
    struct sockaddr_un sa;
    int r;

    if (dirfd < 0)
        return -errno;
    r = control_addr(dir, dirfd, &sa);
    if (r < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (unlinkat(dirfd, "control", 0) < 0 && errno != ENOENT)
        return -errno;
    /* The directory is 0700: nobody else can reach the socket during the chmod window. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        fchmodat(dirfd, "control", 0600, 0) < 0 || listen(fd, 8) < 0)
        return -errno;
    return TAKE_FD(fd);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for fd to be ready for events until deadline; 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = events };
        int64_t left = deadline - now_ms();
        int r;
        if (left <= 0)
            return -ETIMEDOUT;
        r = poll(&pfd, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

int control_call(const char *dir, const json_t *request, int timeout_ms, json_t **ret_reply)
{
    _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int fd = -1;
    int64_t deadline = now_ms() + timeout_ms;
    uint8_t buf[FRAME_MAX];
    size_t have = 0, off = 0;
    struct sockaddr_un sa;
    int n, r;

    if (dirfd < 0)
        return -errno;
    if ((r = control_addr(dir, dirfd, &sa)) < 0)
        return r;
    n = control_frame_encode(request, buf, sizeof(buf));
    if (n < 0)
        return n;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    if ((r = fd_set_nonblock(fd, true)) < 0)
        return r;
    while (off < (size_t)n) {
        ssize_t w = send(fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (w > 0)
            off += (size_t)w;
        else if ((r = wait_fd(fd, POLLOUT, deadline)) < 0)
            return r;
    }
    for (;;) {
        const uint8_t *cur = buf, *p;
        size_t len;
        ssize_t k;
        r = control_frame_decode(&cur, buf + have, &p, &len);
        if (r < 0)
            return -EBADMSG;
        if (r > 0) {
            json_t *o = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
            if (!o || !json_is_object(o)) {
                json_decref(o);
                return -EBADMSG;
            }
            *ret_reply = o;
            return 0;
        }
        if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
            return r;
        k = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (k == 0)
            return -ECONNRESET;
        if (k < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if (k > 0)
            have += (size_t)k;
    }
}

/* recvmsg into buf, collecting passed descriptors into fds (those beyond max are closed). */
static ssize_t recv_fds(int fd, uint8_t *buf, size_t size, int *fds, size_t max, size_t *nfds)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int) * CONTROL_MAX_FDS)];
    } cm;
    struct iovec iov = { buf, size };
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)
    };
    ssize_t k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);

    if (k < 0)
        return -errno;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        size_t n;
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int d;
            memcpy(&d, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
            if (fds && *nfds < max)
                fds[(*nfds)++] = d;
            else
                close(d);
        }
    }
    return k;
}

int control_write_frame(int fd, const json_t *msg)
{
    uint8_t buf[FRAME_MAX];
    int n = control_frame_encode(msg, buf, sizeof(buf));
    size_t off = 0;

    if (n < 0)
        return n;
    while (off < (size_t)n) {
        ssize_t w = send(fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0 && errno != EINTR)
            return -errno;
        if (w > 0)
            off += (size_t)w;
    }
    return 0;
}

/* Read exactly one frame, byte-exact (never past it: what follows is the next frame). */
static int read_frame_fds(int fd, json_t **ret, int *fds, size_t max, size_t *nfds)
{
    uint8_t buf[FRAME_MAX];
    size_t have = 0, want = CONTROL_HDR_LEN;
    json_t *o;

    while (have < want) {
        ssize_t k = recv_fds(fd, buf + have, want - have, fds, max, nfds);
        if (k == -EINTR)
            continue;
        if (k < 0)
            return (int)k;
        if (k == 0)
            return -ECONNRESET;
        have += (size_t)k;
        if (have == CONTROL_HDR_LEN) {
            uint32_t len =
                (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
            if (len == 0 || len > BB_MAX_CONTROL_FRAME)
                return -EBADMSG;
            want = CONTROL_HDR_LEN + len;
        }
    }
    o = json_loadb((const char *)buf + CONTROL_HDR_LEN, want - CONTROL_HDR_LEN,
                   JSON_REJECT_DUPLICATES, NULL);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return -EBADMSG;
    }
    *ret = o;
    return 0;
}

int control_read_frame(int fd, json_t **ret)
{
    return read_frame_fds(fd, ret, NULL, 0, NULL);
}

int control_call_keep(const char *dir, const json_t *request, int timeout_ms, json_t **ret_reply,
                      int *fds, size_t max_fds, size_t *ret_nfds, int *ret_fd)
{
    _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int fd = -1;
    struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000 };
    struct timeval none = { 0 };
    struct sockaddr_un sa;
    int r;

    *ret_nfds = 0;
    if (dirfd < 0)
        return -errno;
    if ((r = control_addr(dir, dirfd, &sa)) < 0)
        return r;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    /* the reply within timeout_ms; later frames (exit) may take as long as the command does */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    if ((r = control_write_frame(fd, request)) < 0)
        return r == -EAGAIN ? -ETIMEDOUT : r;
    r = read_frame_fds(fd, ret_reply, fds, max_fds, ret_nfds);
    if (r < 0) {
        for (; *ret_nfds; (*ret_nfds)--)
            close(fds[*ret_nfds - 1]);
        return r == -EAGAIN ? -ETIMEDOUT : r;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
    *ret_fd = TAKE_FD(fd);
    return 0;
}
