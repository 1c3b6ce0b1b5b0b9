/* The audit log's reader (reader.h). */
#include "audit/reader.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/str.h"

static void copy_cut(char *dst, size_t size, const char *src, size_t len, bool *cut)
{
    if (len >= size) {
        len = size - 1;
        if (cut)
            *cut = true;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static bool hex64(const char *s, size_t len)
{
    if (len != SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

int audit_record_parse(const char *line, size_t len, struct audit_record *ret)
{
    static const struct {
        const char *key;
        size_t off, size;
    } strs[] = {
#define S(k, f) { k, offsetof(struct audit_record, f), sizeof(((struct audit_record *)0)->f) }
        S("ts", ts),         S("bottle", bottle),     S("kind", kind),
        S("host", host),     S("decision", decision), S("reason", reason),
        S("method", method), S("qtype", qtype),       S("addr", addr),
        S("path", path),
#undef S
    };
    json_t *o, *v;
    const char *key;
    bool have_ts = false, have_kind = false, have_decision = false;
    int r = -EBADMSG;

    memset(ret, 0, sizeof(*ret));
    if (len == 0 || len > AUDIT_LINE_MAX || memchr(line, '\0', len))
        return -EBADMSG;
    o = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!o || !json_is_object(o))
        goto out;
    json_object_foreach(o, key, v)
    {
        bool done = false;
        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
            if (strcmp(key, strs[i].key) != 0)
                continue;
            if (!json_is_string(v))
                goto out;
            copy_cut((char *)ret + strs[i].off, strs[i].size, json_string_value(v),
                     json_string_length(v), strcmp(key, "host") == 0 ? &ret->host_cut : NULL);
            have_ts |= strcmp(key, "ts") == 0;
            have_kind |= strcmp(key, "kind") == 0;
            have_decision |= strcmp(key, "decision") == 0;
            done = true;
            break;
        }
        if (done)
            continue;
        if (strcmp(key, "port") == 0 || strcmp(key, "bytes_up") == 0 ||
            strcmp(key, "bytes_down") == 0 || strcmp(key, "status") == 0 ||
            strcmp(key, "count") == 0) {
            json_int_t n;
            if (!json_is_integer(v) || (n = json_integer_value(v)) < 0)
                goto out;
            if (strcmp(key, "port") == 0) {
                if (n > 65535)
                    goto out;
                ret->port = (uint16_t)n;
            } else if (strcmp(key, "bytes_up") == 0) {
                ret->bytes_up = (uint64_t)n;
            } else if (strcmp(key, "bytes_down") == 0) {
                ret->bytes_down = (uint64_t)n;
            } else if (strcmp(key, "status") == 0) {
                if (n > 999)
                    goto out;
                ret->status = (int)n;
            } else {
                if (n > UINT32_MAX)
                    goto out;
                ret->count = (uint32_t)n;
            }
        } else if (strcmp(key, "prev") == 0 || strcmp(key, "nonce") == 0) {
            bool prev = key[0] == 'p';
            if (!json_is_string(v) || !hex64(json_string_value(v), json_string_length(v)))
                goto out;
            memcpy(prev ? ret->prev : ret->nonce, json_string_value(v), SHA256_HEX_LEN + 1);
            *(prev ? &ret->has_prev : &ret->has_nonce) = true;
        } else if (strcmp(key, "rotated") == 0) {
            if (!json_is_boolean(v))
                goto out;
            ret->rotated = json_is_true(v);
        }
        /* other keys: ignored (later versions may add some) */
    }
    if (have_ts && have_kind && have_decision)
        r = 0;
out:
    json_decref(o);
    if (r < 0)
        memset(ret, 0, sizeof(*ret));
    return r;
}

uint64_t audit_record_weight(const struct audit_record *r)
{
    return r->count ? r->count : 1;
}

bool audit_record_is_decision(const struct audit_record *r)
{
    return strcmp(r->kind, "connect") == 0 || strcmp(r->kind, "http") == 0 ||
           strcmp(r->kind, "dns") == 0;
}

bool audit_record_match(const struct audit_record *r, const struct audit_filter *f)
{
    if (f->decisions_only && !audit_record_is_decision(r))
        return false;
    if (f->kind && strcmp(r->kind, f->kind) != 0)
        return false;
    return !f->decision || strcmp(r->decision, f->decision) == 0;
}

/* ---- following ---- */

int audit_follow_open(struct audit_follow *f, const char *path, bool from_start)
{
    char old[sizeof(f->path) + 4];
    int r;

    memset(f, 0, sizeof(*f));
    f->fd = -1;
    buf_init(&f->tail, AUDIT_LINE_MAX + 1);
    r = str_printf(f->path, sizeof(f->path), "%s", path);
    if (r < 0)
        return r;
    if (from_start) {
        /* the older file first: the poll moves on to PATH once it is read to its end */
        if (str_printf(old, sizeof(old), "%s.1", path) >= 0)
            f->fd = open(old, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (f->fd < 0)
            f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        return f->fd < 0 ? -errno : 0;
    }
    f->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (f->fd >= 0)
        lseek(f->fd, 0, SEEK_END);
    else if (errno != ENOENT)
        return -errno;
    return 0;
}

static void emit_lines(struct audit_follow *f, audit_line_fn fn, void *ud)
{
    char *nl;

    while (f->tail.len && (nl = memchr(f->tail.p, '\n', f->tail.len))) {
        size_t len = (size_t)(nl - f->tail.p);
        fn(ud, f->tail.p, len);
        buf_consume(&f->tail, len + 1);
    }
}

static int read_new(struct audit_follow *f, audit_line_fn fn, void *ud)
{
    char tmp[8192];
    ssize_t k;

    while ((k = read(f->fd, tmp, sizeof(tmp))) > 0) {
        if (buf_append(&f->tail, tmp, (size_t)k) < 0)
            buf_reset(&f->tail); /* a runaway line: drop it */
        emit_lines(f, fn, ud);
    }
    return k < 0 ? -errno : 0;
}

int audit_follow_poll(struct audit_follow *f, audit_line_fn fn, void *ud)
{
    struct stat fst, pst;
    int r = 0;

    if (f->fd < 0) {
        /* PATH did not exist yet */
        f->fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (f->fd < 0)
            return errno == ENOENT ? 0 : -errno;
    }
    r = read_new(f, fn, ud);
    if (fstat(f->fd, &fst) == 0 && stat(f->path, &pst) == 0) {
        if (pst.st_dev != fst.st_dev || pst.st_ino != fst.st_ino) {
            /* rotated (or we were reading PATH.1): the old file is read to its end */
            int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
            if (fd >= 0) {
                close(f->fd);
                f->fd = fd;
                buf_reset(&f->tail); /* a cut last line of the old file is not a record */
                r = read_new(f, fn, ud);
            }
        } else if (lseek(f->fd, 0, SEEK_CUR) > fst.st_size) {
            /* truncated: read again from the start */
            lseek(f->fd, 0, SEEK_SET);
            buf_reset(&f->tail);
            r = read_new(f, fn, ud);
        }
    }
    return r;
}

size_t audit_follow_pending(const struct audit_follow *f)
{
    return f->tail.len;
}

void audit_follow_close(struct audit_follow *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    buf_done(&f->tail);
}

/* ---- the hash chain ---- */

void audit_verify_init(struct audit_verify *v)
{
    memset(v, 0, sizeof(*v));
}

static int bad(struct audit_verify *v, const char *why)
{
    v->bad_line = v->lines;
    (void)str_printf(v->why, sizeof(v->why), "%s", why);
    return -EBADMSG;
}

int audit_verify_line(struct audit_verify *v, const char *line, size_t len)
{
    struct audit_record rec;
    char *withnl;
    int r;

    if (v->bad_line)
        return -EBADMSG;
    v->lines++;
    if (audit_record_parse(line, len, &rec) < 0)
        return bad(v, "not an audit record");
    if (!rec.has_prev)
        return bad(v, "no \"prev\" (not written by a chaining daemon, or edited)");
    if (rec.has_nonce) {
        /* a chain starts only at the very beginning: elsewhere, records before it could
         * have been cut and a new chain started to hide it */
        if (v->lines != 1)
            return bad(v, "a new chain starts in the middle of the log");
        if (strcmp(rec.prev, rec.nonce) != 0)
            return bad(v, "the first record's \"prev\" is not its \"nonce\"");
    } else if (!v->have_prev) {
        if (!rec.rotated)
            return bad(v, "the log does not start with a chain's first record (its start was "
                          "cut)");
        v->starts_rotated = true;
    } else if (strcmp(rec.prev, v->prev) != 0) {
        return bad(v, "\"prev\" is not the hash of the line before (a line was changed, "
                      "removed or inserted)");
    }
    withnl = malloc(len + 1);
    if (!withnl)
        return bad(v, "out of memory");
    memcpy(withnl, line, len);
    withnl[len] = '\n';
    r = sha256_hex(withnl, len + 1, v->prev);
    free(withnl);
    if (r < 0)
        return bad(v, "cannot hash (libcrypto)");
    v->have_prev = true;
    v->last_is_end = strcmp(rec.kind, "end") == 0;
    return 0;
}
