#include "audit/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/sha256.h"
#include "common/xalloc.h"

#define AGG_BUCKETS 8192 /* power of two, >= AUDIT_AGG_MAX */
#define AGG_KEY_MAX 2048 /* longer keys (hostile raw names) are cut; still one entry each */
#define NS_PER_MS 1000000ull

/* One distinct decision of the current window; the strings of ev point into key. */
struct agg_entry {
    struct agg_entry *next;
    uint64_t hash;
    uint32_t repeats; /* after the first, which was written */
    size_t klen;
    struct audit_event ev;
    char key[];
};

struct audit {
    char *path; /* NULL: disabled; "-": stdout */
    char *bottle;
    int fd;
    bool own_fd;
    uint64_t write_errors;
    uint64_t (*clock)(void);

    uint64_t max_size; /* 0: no cap */
    uint64_t size;     /* bytes in the current file, as far as we know */
    bool failed;       /* the last write failed: refuse new egress */

    /* the hash chain (audit.h) */
    char prev[SHA256_HEX_LEN + 1]; /* SHA-256 of the last record written */
    bool prev_valid;               /* false: the next record starts a chain (with a nonce) */
    bool file_start;               /* the file is new/empty: the next record is its first */

    struct loop *loop;
    struct loop_timer timer;
    bool window_open;
    uint64_t window_end; /* ns, on the window clock */
    struct agg_entry *buckets[AGG_BUCKETS];
    size_t n_agg;
    uint32_t overflow_deny[AUDIT_KIND_MAX]; /* denials past AUDIT_AGG_MAX distinct ones */
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
    /* Never through a symlink: whoever can write the log directory must not be able to point
     * our appends (as root, in the supervisor's case) at another file. */
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    *ret_fd = fd;
    *ret_own = true;
    return 0;
}

static uint64_t fd_size(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    return (uint64_t)st.st_size;
}

static void on_window_end(struct loop_timer *t);

#define CHAIN_TAIL_MAX (64 * 1024) /* the last line of an existing log is read from this much */

/* Continue the chain of an existing file: hash its last line. prev_valid stays false when the
 * file is empty, does not end with a newline, or its last line is longer than the window. */
static void chain_load(struct audit *a)
{
    struct stat st;
    char *tail;
    size_t n;
    ssize_t k;

    a->prev_valid = false;
    a->file_start = false;
    if (!a->own_fd || fstat(a->fd, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    if (st.st_size == 0) {
        a->file_start = true;
        return;
    }
    n = st.st_size > CHAIN_TAIL_MAX ? CHAIN_TAIL_MAX : (size_t)st.st_size;
    tail = xmalloc(n);
    /* the sink is opened write-only: read through a second, read-only open of the same inode */
    {
        char proc[64];
        int rfd;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", a->fd);
        rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        k = rfd >= 0 ? pread(rfd, tail, n, st.st_size - (off_t)n) : -1;
        if (rfd >= 0)
            close(rfd);
    }
    if (k == (ssize_t)n && tail[n - 1] == '\n') {
        size_t start = n - 1;
        while (start > 0 && tail[start - 1] != '\n')
            start--;
        if ((start > 0 || n == (size_t)st.st_size) &&
            sha256_hex(tail + start, n - start, a->prev) == 0)
            a->prev_valid = true;
    }
    free(tail);
}

int audit_open(const char *path, const char *bottle, struct audit **ret)
{
    struct audit *a;
    int fd = -1, r;
    bool own = false;

    r = open_sink(path, &fd, &own);
    if (r < 0)
        return r;
    a = xcalloc(1, sizeof(*a));
    a->path = path ? xstrdup(path) : NULL;
    a->bottle = xstrdup(bottle ? bottle : "");
    a->fd = fd;
    a->own_fd = own;
    a->clock = wall_ns;
    a->max_size = AUDIT_DEFAULT_MAX_SIZE;
    a->size = own ? fd_size(fd) : 0;
    loop_timer_init(&a->timer, on_window_end, a);
    chain_load(a);
    *ret = a;
    return 0;
}

static void window_close(struct audit *a);

struct audit *audit_close(struct audit *a)
{
    if (!a)
        return NULL;
    audit_attach_loop(a, NULL);
    window_close(a);
    if (a->own_fd)
        close(a->fd);
    free(a->path);
    free(a->bottle);
    free(a);
    return NULL;
}

int audit_reopen(struct audit *a)
{
    int fd = -1, r;
    bool own = false;

    if (!a->own_fd)
        return 0;
    r = open_sink(a->path, &fd, &own);
    if (r < 0)
        return r;
    close(a->fd);
    a->fd = fd;
    a->size = fd_size(fd);
    a->file_start = a->size == 0; /* a new file continues our chain ("rotated") */
    return 0;
}

void audit_set_max_size(struct audit *a, uint64_t max)
{
    a->max_size = max;
}

void audit_set_clock(struct audit *a, uint64_t (*fn)(void))
{
    a->clock = fn ? fn : wall_ns;
}

uint64_t audit_write_errors(const struct audit *a)
{
    return a->write_errors;
}

bool audit_failed(const struct audit *a)
{
    return a && a->failed;
}

/* ---- the file: size cap, rotation, failure state ---- */

/*
 * PATH is full: rename it to PATH.1 and start a new PATH. When PATH no longer names our file
 * (another writer rotated it, or it was moved away), just reopen PATH.
 */
static int rotate(struct audit *a, size_t need)
{
    struct stat st, pst;
    char old[4096];

    if (fstat(a->fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode)) {
        a->size = 0; /* a FIFO or a device: nothing to cap */
        return 0;
    }
    if (lstat(a->path, &pst) == 0 && pst.st_dev == st.st_dev && pst.st_ino == st.st_ino) {
        if ((uint64_t)st.st_size + need <= a->max_size) {
            a->size = (uint64_t)st.st_size; /* someone truncated it */
            return 0;
        }
        if (snprintf(old, sizeof(old), "%s.1", a->path) >= (int)sizeof(old))
            return -ENAMETOOLONG;
        if (rename(a->path, old) < 0)
            return -errno;
    }
    return audit_reopen(a); /* (only an owned file is rotated) */
}

static void set_failed(struct audit *a, int err)
{
    a->write_errors++;
    if (a->failed)
        return;
    a->failed = true;
    log_errno(LOG_LVL_ERROR, err,
              "egress: cannot write the audit log %s; refusing new egress for bottle '%s' until "
              "it can be written again (free space on its filesystem; --audit-max-size caps each "
              "bottle's log)",
              a->path ? a->path : "(stdout)", a->bottle);
}

static void set_ok(struct audit *a)
{
    if (!a->failed)
        return;
    a->failed = false;
    log_info("egress: the audit log %s can be written again; egress resumes for bottle '%s'",
             a->path ? a->path : "(stdout)", a->bottle);
}

static bool needs_room(const struct audit *a, size_t len)
{
    return a->own_fd && a->max_size && a->size + len > a->max_size && a->size > 0;
}

/* Rotate first when a record of about len bytes would take the file past its cap. */
static int sink_make_room(struct audit *a, size_t len)
{
    int r;

    if (needs_room(a, len)) {
        r = rotate(a, len);
        if (r < 0) {
            set_failed(a, r);
            return r;
        }
    }
    return 0;
}

/* One write(2) of the whole record. */
static int sink_write(struct audit *a, const char *line, size_t len)
{
    ssize_t n;
    int r;

    n = write(a->fd, line, len);
    if (n < 0) {
        r = -errno;
        set_failed(a, r);
        return r;
    }
    if ((size_t)n != len) {
        /* A short write: the rest did not fit. Take the piece back (when the file still ends
         * with it), so the next record does not start in the middle of a broken line. */
        off_t end = lseek(a->fd, 0, SEEK_CUR);
        struct stat st;
        if (end >= n && fstat(a->fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == end &&
            ftruncate(a->fd, end - n) == 0)
            n = 0;
        a->size += (uint64_t)n;
        set_failed(a, -ENOSPC);
        return -ENOSPC;
    }
    a->size += (uint64_t)n;
    set_ok(a);
    return 0;
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

static const char *const kinds[AUDIT_KIND_MAX] = { "connect", "http", "dns", "policy", "end" };

const char *audit_kind_name(enum audit_kind k)
{
    return (unsigned)k < AUDIT_KIND_MAX ? kinds[k] : "?";
}

/* The chain fields (audit.h): "nonce" at a chain's start, "rotated" on a new file's first
 * record, then "prev". Returns 0 or -errno. */
static int chain_fields(struct audit *a, json_t *o)
{
    if (!a->prev_valid) {
        unsigned char rnd[32];
        static const char hexd[] = "0123456789abcdef";
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            return -EIO;
        for (unsigned i = 0; i < sizeof(rnd); i++) {
            a->prev[2 * i] = hexd[rnd[i] >> 4];
            a->prev[2 * i + 1] = hexd[rnd[i] & 15];
        }
        a->prev[SHA256_HEX_LEN] = '\0';
        json_object_set_new(o, "nonce", json_string(a->prev));
    } else if (a->file_start) {
        json_object_set_new(o, "rotated", json_true());
    }
    json_object_set_new(o, "prev", json_string(a->prev));
    return 0;
}

int audit_emit(struct audit *a, const struct audit_event *ev)
{
    char ts[32];
    json_t *o;
    char *line;
    size_t len;
    int r;

    if (!a || a->fd < 0)
        return 0;
    format_ts(a->clock(), ts);
    /* jansson escapes every string, so hostile host names cannot break the line. Strings
     * that are not valid UTF-8 are refused by jansson; we pass them through json_stringn
     * with a safe replacement instead (see below). */
    o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "bottle", json_string(a->bottle));
    json_object_set_new(o, "kind", json_string(audit_kind_name(ev->kind)));
    {
        json_t *h = json_string(ev->host ? ev->host : "");
        if (!h)
            h = json_string("(invalid utf-8)");
        json_object_set_new(o, "host", h);
    }
    json_object_set_new(o, "port", json_integer(ev->port));
    json_object_set_new(o, "decision",
                        json_string(ev->held    ? "hold"
                                    : ev->allow ? "allow"
                                                : "deny"));
    json_object_set_new(o, "reason", json_string(ev->reason ? ev->reason : ""));
    json_object_set_new(o, "bytes_up", json_integer((json_int_t)ev->bytes_up));
    json_object_set_new(o, "bytes_down", json_integer((json_int_t)ev->bytes_down));
    if (ev->method) {
        json_t *m = json_string(ev->method);
        json_object_set_new(o, "method", m ? m : json_string("?"));
    }
    if (ev->qtype)
        json_object_set_new(o, "qtype", json_string(ev->qtype));
    if (ev->path) {
        json_t *pa = json_string(ev->path);
        json_object_set_new(o, "path", pa ? pa : json_string("?"));
    }
    if (ev->addr)
        json_object_set_new(o, "addr", json_string(ev->addr));
    if (ev->status)
        json_object_set_new(o, "status", json_integer(ev->status));
    if (ev->reused)
        json_object_set_new(o, "reused", json_true());
    if (ev->count)
        json_object_set_new(o, "count", json_integer(ev->count));

    /* One dump in the common case; a record that needs a rotation first is dumped again,
     * since the chain fields of a new file's first record differ ("rotated"). */
    r = chain_fields(a, o);
    line = r >= 0 ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) : NULL;
    if (line && needs_room(a, strlen(line) + 1)) {
        r = sink_make_room(a, strlen(line) + 1 + 16); /* + "rotated":true, */
        free(line);
        line = NULL;
        if (r >= 0) {
            json_object_del(o, "nonce");
            json_object_del(o, "prev");
            r = chain_fields(a, o);
        }
        if (r >= 0)
            line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    }
    json_decref(o);
    if (r < 0 || !line) {
        r = r < 0 ? r : -ENOMEM;
        set_failed(a, r);
        return r;
    }
    len = strlen(line);
    line[len] = '\n'; /* json_dumps NUL-terminates; overwrite it and write len+1 bytes */
    r = sink_write(a, line, len + 1);
    if (r >= 0 && sha256_hex(line, len + 1, a->prev) == 0) {
        a->prev_valid = true;
        a->file_start = false;
    } else if (r >= 0) {
        a->prev_valid = false; /* cannot hash: the next record starts a new chain */
    }
    free(line);
    return r;
}

int audit_seal(struct audit *a)
{
    struct audit_event ev = { .kind = AUDIT_END, .host = "", .allow = true, .reason = "closed" };

    if (!a || a->fd < 0)
        return 0;
    if (a->loop)
        loop_timer_stop(a->loop, &a->timer);
    window_close(a);
    return audit_emit(a, &ev);
}

/* ---- aggregation of repeated decisions ---- */

static uint64_t window_now(struct audit *a)
{
    return a->loop ? loop_now(a->loop) : a->clock();
}

/* Write the summaries of the window and forget it. */
static void window_close(struct audit *a)
{
    for (size_t i = 0; i < AGG_BUCKETS && a->n_agg; i++) {
        struct agg_entry *e = a->buckets[i], *next;
        for (; e; e = next) {
            next = e->next;
            if (e->repeats) {
                e->ev.count = e->repeats;
                audit_emit(a, &e->ev);
            }
            free(e);
            a->n_agg--;
        }
        a->buckets[i] = NULL;
    }
    for (int k = 0; k < AUDIT_KIND_MAX; k++) {
        if (a->overflow_deny[k]) {
            struct audit_event ev = {
                .kind = (enum audit_kind)k,
                .host = "*",
                .allow = false,
                .reason = "aggregated",
                .count = a->overflow_deny[k],
            };
            audit_emit(a, &ev);
            a->overflow_deny[k] = 0;
        }
    }
    a->window_open = false;
    if (a->loop)
        loop_timer_stop(a->loop, &a->timer);
}

static void on_window_end(struct loop_timer *t)
{
    window_close(t->userdata);
}

void audit_attach_loop(struct audit *a, struct loop *l)
{
    if (!a)
        return;
    if (a->loop) {
        loop_timer_stop(a->loop, &a->timer);
        window_close(a);
    }
    a->loop = l;
}

/* Append s (or "") and a NUL to the key; false when it does not fit. */
static bool key_add(char *key, size_t *len, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (*len + n + 1 > AGG_KEY_MAX)
        return false;
    if (n)
        memcpy(key + *len, s, n);
    key[*len + n] = '\0';
    *len += n + 1;
    return true;
}

static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
    return h;
}

int audit_note(struct audit *a, const struct audit_event *ev)
{
    char key[AGG_KEY_MAX], nums[48];
    size_t klen = 0;
    struct agg_entry *e, **slot;
    uint64_t h, now;
    int r;

    if (!a || a->fd < 0)
        return 0;
    /* A failed sink writes every decision: each is a try, and none may go unrecorded. */
    if (a->failed)
        return audit_emit(a, ev);

    now = window_now(a);
    if (a->window_open && now >= a->window_end)
        window_close(a);
    if (!a->window_open) {
        a->window_open = true;
        a->window_end = now + AUDIT_AGG_WINDOW_MS * NS_PER_MS;
        if (a->loop)
            loop_timer_set(a->loop, &a->timer, a->window_end);
    }

    snprintf(nums, sizeof(nums), "%d %d %u %d", (int)ev->kind,
             ev->held    ? 2
             : ev->allow ? 1
                         : 0,
             ev->port, ev->status);
    if (!key_add(key, &klen, nums) || !key_add(key, &klen, ev->reason) ||
        !key_add(key, &klen, ev->method) || !key_add(key, &klen, ev->qtype) ||
        !key_add(key, &klen, ev->host))
        return audit_emit(a, ev); /* too long to track: written on its own */
    h = key_hash(key, klen);
    slot = &a->buckets[h & (AGG_BUCKETS - 1)];
    for (e = *slot; e; e = e->next) {
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            if (e->repeats < UINT32_MAX)
                e->repeats++;
            return 0;
        }
    }
    if (a->n_agg >= AUDIT_AGG_MAX) {
        if (ev->allow)
            return audit_emit(a, ev);
        if (a->overflow_deny[ev->kind < AUDIT_KIND_MAX ? ev->kind : 0] < UINT32_MAX)
            a->overflow_deny[ev->kind < AUDIT_KIND_MAX ? ev->kind : 0]++;
        return 0;
    }
    r = audit_emit(a, ev);
    if (r < 0)
        return r; /* not recorded: not tracked either, so the next one is written (a try) */
    e = xmalloc(sizeof(*e) + klen);
    memcpy(e->key, key, klen);
    e->klen = klen;
    e->hash = h;
    e->repeats = 0;
    e->ev = *ev;
    e->ev.count = 0;
    e->ev.addr = e->ev.path = NULL; /* (not kept: the first record carried them) */
    e->ev.bytes_up = e->ev.bytes_down = 0;
    {
        /* The strings, in key order: nums, reason, method, qtype, host. */
        const char *p = e->key + strlen(e->key) + 1;
        e->ev.reason = ev->reason ? p : NULL;
        p += strlen(p) + 1;
        e->ev.method = ev->method ? p : NULL;
        p += strlen(p) + 1;
        e->ev.qtype = ev->qtype ? p : NULL;
        p += strlen(p) + 1;
        e->ev.host = ev->host ? p : NULL;
    }
    e->next = *slot;
    *slot = e;
    a->n_agg++;
    return 0;
}
