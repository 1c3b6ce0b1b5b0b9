/* The blocked-host notices (notice.h). */
#include "supervisor/notice.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/str.h"
#include "common/xalloc.h"

#define NOTICE_POLL_MS 200
#define NOTICE_TAIL_MAX (1 << 20)

int notice_open(struct notice *n, const char *audit_path)
{
    int fd, r;

    memset(n, 0, sizeof(*n));
    n->fd = -1;
    buf_init(&n->tail, NOTICE_TAIL_MAX);
    r = str_printf(n->path, sizeof(n->path), "%s", audit_path);
    if (r < 0)
        return r;
    /* Never through a symlink: one planted there would make the daemon append to (and us
     * create) whatever file it names. */
    fd = open(audit_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    /* (without it, no notices; the bottle still runs) */
    n->fd = open(audit_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (n->fd >= 0)
        lseek(n->fd, 0, SEEK_END);
    return 0;
}

static void read_new(struct notice *n)
{
    char tmp[8192];
    ssize_t k;

    while ((k = read(n->fd, tmp, sizeof(tmp))) > 0)
        if (buf_append(&n->tail, tmp, (size_t)k) < 0)
            buf_reset(&n->tail); /* a runaway line: drop it */
}

/* Show each blocked host once, on our stderr (never inside the command's output). */
void notice_poll(struct notice *n)
{
    char *nl;

    if (n->fd < 0)
        return;
    read_new(n);
    /* The daemon rotates the log (NAME.audit.log -> NAME.audit.log.1) at its size cap: once the
     * old file is read to its end, follow the name to the new file. A truncated file is read
     * again from its start. */
    {
        struct stat fst, pst;
        if (fstat(n->fd, &fst) == 0 && stat(n->path, &pst) == 0) {
            if (pst.st_dev != fst.st_dev || pst.st_ino != fst.st_ino) {
                int fd = open(n->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd >= 0) {
                    close(n->fd);
                    n->fd = fd;
                    read_new(n);
                }
            } else if (lseek(n->fd, 0, SEEK_CUR) > fst.st_size) {
                lseek(n->fd, 0, SEEK_SET);
                buf_reset(&n->tail);
            }
        }
    }
    while (n->tail.len && (nl = memchr(n->tail.p, '\n', n->tail.len))) {
        size_t len = (size_t)(nl - n->tail.p);
        json_t *o = json_loadb(n->tail.p, len, 0, NULL);
        const char *host = NULL, *reason = NULL, *decision = NULL;
        bool seen = false;

        if (o &&
            json_unpack(o, "{s:s, s:s, s:s}", "host", &host, "reason", &reason, "decision",
                        &decision) == 0 &&
            strcmp(decision, "deny") == 0) {
            for (size_t i = 0; i < n->n_notified; i++)
                if (strcmp(n->notified[i], host) == 0)
                    seen = true;
            if (!seen && n->n_notified < NOTICE_MAX_HOSTS) {
                const char *eol = n->crlf ? "\r\n" : "\n";
                n->notified[n->n_notified++] = xstrdup(host);
                if (strcmp(reason, "not-allowlisted") == 0)
                    fprintf(stderr,
                            "bot-bottle: blocked %s (not in the allowlist); to allow it, "
                            "add --allow %s%s",
                            host, host, eol);
                else
                    fprintf(stderr, "bot-bottle: blocked %s (%s); see docs/policy.md%s", host,
                            reason, eol);
            }
        }
        json_decref(o);
        buf_consume(&n->tail, len + 1);
    }
}

static void on_timer(struct loop_timer *t)
{
    struct notice *n = t->userdata;

    notice_poll(n);
    loop_timer_set_in(n->loop, t, NOTICE_POLL_MS);
}

void notice_start(struct notice *n, struct loop *loop)
{
    n->loop = loop;
    loop_timer_init(&n->timer, on_timer, n);
    loop_timer_set_in(loop, &n->timer, NOTICE_POLL_MS);
}

void notice_done(struct notice *n)
{
    if (n->loop)
        loop_timer_stop(n->loop, &n->timer);
    n->loop = NULL;
    if (n->fd >= 0)
        close(n->fd);
    n->fd = -1;
    buf_done(&n->tail);
    for (size_t i = 0; i < n->n_notified; i++)
        free(n->notified[i]);
    n->n_notified = 0;
}
