#include "egress/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/xalloc.h"

struct audit {
    char *path; /* NULL: disabled; "-": stdout */
    char *bottle;
    int fd;
    bool own_fd;
    uint64_t write_errors;
    uint64_t (*clock)(void);
};

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_sink(const char *path, int *ret_fd, bool *ret_own)
{
    int fd;

    if (!path) {
        *ret_fd = -1;
        *ret_own = false;
        return 0;
    }
    if (strcmp(path, "-") == 0) {
        *ret_fd = STDOUT_FILENO;
        *ret_own = false;
        return 0;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return -errno;
    *ret_fd = fd;
    *ret_own = true;
    return 0;
}

int audit_open(const char *path, const char *bottle, struct audit **ret)
{
    struct audit *a;
    int fd, r;
    bool own;

    r = open_sink(path, &fd, &own);
    if (r < 0)
        return r;
    a = xcalloc(1, sizeof(*a));
    a->path = path ? xstrdup(path) : NULL;
    a->bottle = xstrdup(bottle ? bottle : "");
    a->fd = fd;
    a->own_fd = own;
    a->clock = wall_ns;
    *ret = a;
    return 0;
}

struct audit *audit_close(struct audit *a)
{
    if (!a)
        return NULL;
    if (a->own_fd)
        close(a->fd);
    free(a->path);
    free(a->bottle);
    free(a);
    return NULL;
}

int audit_reopen(struct audit *a)
{
    int fd, r;
    bool own;

    if (!a->own_fd)
        return 0;
    r = open_sink(a->path, &fd, &own);
    if (r < 0)
        return r;
    close(a->fd);
    a->fd = fd;
    return 0;
}

void audit_set_clock(struct audit *a, uint64_t (*fn)(void))
{
    a->clock = fn ? fn : wall_ns;
}

uint64_t audit_write_errors(const struct audit *a)
{
    return a->write_errors;
}

static void format_ts(uint64_t ns, char out[32])
{
    time_t secs = (time_t)(ns / 1000000000ull);
    unsigned ms = (unsigned)((ns / 1000000ull) % 1000);
    struct tm tm;
    size_t n;

    gmtime_r(&secs, &tm);
    n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", ms);
}

void audit_emit(struct audit *a, const struct audit_event *ev)
{
    static const char *const kinds[AUDIT_KIND_MAX] = { "connect", "http", "dns" };
    char ts[32];
    json_t *o;
    char *line;
    size_t len;

    if (!a || a->fd < 0)
        return;
    format_ts(a->clock(), ts);
    /* jansson escapes every string, so hostile host names cannot break the line. Strings
     * that are not valid UTF-8 are refused by jansson; we pass them through json_stringn
     * with a safe replacement instead (see below). */
    o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "bottle", json_string(a->bottle));
    json_object_set_new(o, "kind", json_string(kinds[ev->kind < AUDIT_KIND_MAX ? ev->kind : 0]));
    {
        json_t *h = json_string(ev->host ? ev->host : "");
        if (!h)
            h = json_string("(invalid utf-8)");
        json_object_set_new(o, "host", h);
    }
    json_object_set_new(o, "port", json_integer(ev->port));
    json_object_set_new(o, "decision", json_string(ev->allow ? "allow" : "deny"));
    json_object_set_new(o, "reason", json_string(ev->reason ? ev->reason : ""));
    json_object_set_new(o, "bytes_up", json_integer((json_int_t)ev->bytes_up));
    json_object_set_new(o, "bytes_down", json_integer((json_int_t)ev->bytes_down));
    if (ev->method) {
        json_t *m = json_string(ev->method);
        json_object_set_new(o, "method", m ? m : json_string("?"));
    }
    if (ev->qtype)
        json_object_set_new(o, "qtype", json_string(ev->qtype));
    if (ev->status)
        json_object_set_new(o, "status", json_integer(ev->status));
    if (ev->count > 1)
        json_object_set_new(o, "count", json_integer(ev->count));

    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!line) {
        a->write_errors++;
        return;
    }
    len = strlen(line);
    line[len] = '\n'; /* json_dumps NUL-terminates; overwrite it and write len+1 bytes */
    if (write(a->fd, line, len + 1) != (ssize_t)(len + 1))
        a->write_errors++;
    free(line);
}
