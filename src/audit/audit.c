#include "audit/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/macro.h"
#include "common/sha256.h"
#include "common/xalloc.h"

#define AGG_BUCKETS 8192 /* power of two, >= AUDIT_AGG_MAX */
#define AGG_KEY_MAX 2048 /* longer keys (hostile raw names) are cut; still one entry each */
#define NS_PER_MS 1000000ull
#define LINE_MAX_BYTES (16u << 20) /* a record's line; hostile names are bounded far below */

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

    struct buf line;    /* the record being written, kept for the next one */
    time_t ts_sec;      /* the second ts_prefix was made for */
    char ts_prefix[24]; /* "YYYY-MM-DDTHH:MM:SS" of ts_sec */
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
    buf_init(&a->line, LINE_MAX_BYTES);
    a->ts_sec = (time_t)-1;
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
    buf_done(&a->line);
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

/* "YYYY-MM-DDTHH:MM:SS.mmmZ"; the part up to the second is made once a second. */
static void format_ts(struct audit *a, uint64_t ns, char out[32])
{
    time_t secs = (time_t)(ns / 1000000000ull);
    unsigned ms = (unsigned)((ns / 1000000ull) % 1000);

    if (secs != a->ts_sec) {
        struct tm tm;
        gmtime_r(&secs, &tm);
        if (strftime(a->ts_prefix, sizeof(a->ts_prefix), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
            a->ts_prefix[0] = '\0';
        a->ts_sec = secs;
    }
    size_t n = strlen(a->ts_prefix);
    memcpy(out, a->ts_prefix, n);
    out[n] = '.';
    out[n + 1] = (char)('0' + ms / 100);
    out[n + 2] = (char)('0' + ms / 10 % 10);
    out[n + 3] = (char)('0' + ms % 10);
    out[n + 4] = 'Z';
    out[n + 5] = '\0';
}

static const char *const kinds[AUDIT_KIND_MAX] = { "connect", "http", "dns", "policy", "end" };

const char *audit_kind_name(enum audit_kind k)
{
    return (unsigned)k < AUDIT_KIND_MAX ? kinds[k] : "?";
}

/* ---- the record's JSON, written straight into a->line ----
 *
 * What jansson's json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) made of the
 * same object, byte for byte (tests/unit/test-audit.c compares the two on hostile strings),
 * without an object, a hash table and an allocation per field for every record. */

/* The length of the valid UTF-8 sequence at s (as jansson accepts it: no overlong form, no
 * surrogate, nothing above U+10FFFF) and its code point, or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, uint32_t *ret_cp)
{
    uint32_t cp;
    size_t n;

    if (s[0] < 0x80) {
        *ret_cp = s[0];
        return 1;
    }
    if (s[0] < 0xC2 || s[0] > 0xF4)
        return 0;
    n = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
    cp = s[0] & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0; /* also stops at the NUL */
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    *ret_cp = cp;
    return n;
}

bool audit_json_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;

    while (*p) {
        size_t n = utf8_seq(p, &cp);
        if (!n)
            return false;
        p += n;
    }
    return true;
}

/* s as a JSON string; s is valid UTF-8 (audit_json_valid). */
static int json_str_valid(struct buf *b, const char *s)
{
    static const char hexd[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s, *run = p;
    int r;

    r = buf_append(b, "\"", 1);
    while (r >= 0 && *p) {
        char esc[12];
        size_t el = 2;
        uint32_t cp;
        size_t n;

        if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
            continue;
        }
        n = utf8_seq(p, &cp);
        if (p > run)
            r = buf_append(b, run, (size_t)(p - run));
        esc[0] = '\\';
        switch (cp) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default: {
            uint32_t units[2] = { cp, 0 };
            size_t nu = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                units[0] = 0xD800 | (cp >> 10);
                units[1] = 0xDC00 | (cp & 0x3FF);
                nu = 2;
            }
            el = 0;
            for (size_t i = 0; i < nu; i++) {
                esc[el++] = '\\';
                esc[el++] = 'u';
                for (int sh = 12; sh >= 0; sh -= 4)
                    esc[el++] = hexd[(units[i] >> sh) & 15];
            }
        }
        }
        if (r >= 0)
            r = buf_append(b, esc, el);
        p += n;
        run = p;
    }
    if (r >= 0 && p > run)
        r = buf_append(b, run, (size_t)(p - run));
    if (r >= 0)
        r = buf_append(b, "\"", 1);
    return r < 0 ? r : 0;
}

int audit_json_str(struct buf *b, const char *s)
{
    return audit_json_valid(s) ? json_str_valid(b, s) : -EILSEQ;
}

/* ,"key":  (the first field has no comma: the line holds just "{" then) */
static int jw_key(struct buf *b, const char *key)
{
    int r = b->len > 1 ? buf_append(b, ",\"", 2) : buf_append(b, "\"", 1);
    if (r >= 0)
        r = buf_append_str(b, key);
    return r < 0 ? r : buf_append(b, "\":", 2);
}

/* "key":"value"; an invalid string: "key":"fallback", or no field when fallback is NULL (as
 * json_object_set_new did with the NULL json_string gave). */
static int jw_str(struct buf *b, const char *key, const char *v, const char *fallback)
{
    int r;

    if (!audit_json_valid(v)) {
        if (!fallback)
            return 0;
        v = fallback;
    }
    r = jw_key(b, key);
    return r < 0 ? r : json_str_valid(b, v);
}

static int jw_int(struct buf *b, const char *key, long long v)
{
    char num[24];
    size_t at = sizeof(num);
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    int r = jw_key(b, key);

    do
        num[--at] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        num[--at] = '-';
    return r < 0 ? r : buf_append(b, num + at, sizeof(num) - at);
}

/* The chain fields (audit.h): "nonce" at a chain's start, "rotated" on a new file's first
 * record, then "prev". Returns 0 or -errno. */
static int chain_fields(struct audit *a, struct buf *b)
{
    int r = 0;

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
        r = jw_str(b, "nonce", a->prev, NULL);
    } else if (a->file_start) {
        r = jw_key(b, "rotated");
        if (r >= 0)
            r = buf_append_str(b, "true");
    }
    if (r >= 0)
        r = jw_str(b, "prev", a->prev, NULL);
    if (r >= 0)
        r = buf_append(b, "}\n", 2);
    return r < 0 ? r : 0;
}

int audit_emit(struct audit *a, const struct audit_event *ev)
{
    struct buf *b;
    size_t fields;
    char ts[32];
    int r;

    if (!a || a->fd < 0)
        return 0;
    b = &a->line;
    buf_reset(b);
    format_ts(a, a->clock(), ts);
    /* Every string is escaped, so hostile host names cannot break the line. A string that is
     * not valid UTF-8 is replaced (host, method, path) or left out (see jw_str). */
    r = buf_append(b, "{", 1);
    if (r >= 0)
        r = jw_str(b, "ts", ts, NULL);
    if (r >= 0)
        r = jw_str(b, "bottle", a->bottle, NULL);
    if (r >= 0)
        r = jw_str(b, "kind", audit_kind_name(ev->kind), NULL);
    if (r >= 0)
        r = jw_str(b, "host", ev->host ? ev->host : "", "(invalid utf-8)");
    if (r >= 0)
        r = jw_int(b, "port", ev->port);
    if (r >= 0)
        r = jw_str(b, "decision", ev->held ? "hold" : ev->allow ? "allow" : "deny", NULL);
    if (r >= 0)
        r = jw_str(b, "reason", ev->reason ? ev->reason : "", NULL);
    if (r >= 0)
        r = jw_int(b, "bytes_up", (long long)ev->bytes_up);
    if (r >= 0)
        r = jw_int(b, "bytes_down", (long long)ev->bytes_down);
    if (r >= 0 && ev->method)
        r = jw_str(b, "method", ev->method, "?");
    if (r >= 0 && ev->qtype)
        r = jw_str(b, "qtype", ev->qtype, NULL);
    if (r >= 0 && ev->path)
        r = jw_str(b, "path", ev->path, "?");
    if (r >= 0 && ev->addr)
        r = jw_str(b, "addr", ev->addr, NULL);
    if (r >= 0 && ev->status)
        r = jw_int(b, "status", ev->status);
    if (r >= 0 && ev->reused) {
        r = jw_key(b, "reused");
        if (r >= 0)
            r = buf_append_str(b, "true");
    }
    if (r >= 0 && ev->count)
        r = jw_int(b, "count", ev->count);
    fields = b->len;

    /* The chain fields close the line; a record that needs a rotation first gets them anew,
     * since those of a new file's first record differ ("rotated"). */
    if (r >= 0)
        r = chain_fields(a, b);
    if (r >= 0 && needs_room(a, b->len)) {
        r = sink_make_room(a, b->len + 16); /* + "rotated":true, */
        if (r >= 0) {
            b->len = fields;
            r = chain_fields(a, b);
        }
    }
    if (r < 0) {
        r = r == -E2BIG ? -ENOMEM : r;
        set_failed(a, r);
        return r;
    }
    r = sink_write(a, b->p, b->len);
    if (r >= 0 && sha256_hex(b->p, b->len, a->prev) == 0) {
        a->prev_valid = true;
        a->file_start = false;
    } else if (r >= 0) {
        a->prev_valid = false; /* cannot hash: the next record starts a new chain */
    }
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
