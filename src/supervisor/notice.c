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

#include "audit/reader.h"
#include "common/xalloc.h"

#define NOTICE_POLL_MS 200

int notice_open(struct notice *n, const char *audit_path)
{
    int fd, r;

    memset(n, 0, sizeof(*n));
    n->f.fd = -1;
    /* Never through a symlink: one planted there would make the daemon append to (and us
     * create) whatever file it names. */
    fd = open(audit_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    /* from the current end (a failure only means no notices; the bottle still runs) */
    r = audit_follow_open(&n->f, audit_path, false);
    return r == -ENAMETOOLONG ? r : 0;
}

/* Show each blocked host once, on our stderr (never inside the command's output). */
static void on_line(void *ud, const char *line, size_t len)
{
    struct notice *n = ud;
    struct audit_record rec;
    const char *eol = n->crlf ? "\r\n" : "\n";

    if (audit_record_parse(line, len, &rec) < 0 || !audit_record_is_decision(&rec) ||
        strcmp(rec.decision, "deny") != 0)
        return;
    for (size_t i = 0; i < n->n_notified; i++)
        if (strcmp(n->notified[i], rec.host) == 0)
            return;
    if (n->n_notified >= NOTICE_MAX_HOSTS)
        return;
    n->notified[n->n_notified++] = xstrdup(rec.host);
    if (strcmp(rec.reason, "not-allowlisted") == 0)
        fprintf(stderr,
                "bot-bottle: blocked %s (not in the allowlist); to allow it, "
                "add --allow %s%s",
                rec.host, rec.host, eol);
    else
        fprintf(stderr, "bot-bottle: blocked %s (%s); see docs/policy.md%s", rec.host, rec.reason,
                eol);
}

/* The log is followed by the audit reader (audit/reader.h): across the daemon's rotation
 * (NAME.audit.log -> NAME.audit.log.1) and truncation. */
void notice_poll(struct notice *n)
{
    (void)audit_follow_poll(&n->f, on_line, n);
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
    audit_follow_close(&n->f);
    for (size_t i = 0; i < n->n_notified; i++)
        free(n->notified[i]);
    n->n_notified = 0;
}
