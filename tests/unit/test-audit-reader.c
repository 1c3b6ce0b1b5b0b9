/*
 * The audit reader (src/audit/reader.c): the record parser's bounds and refusals, following a
 * log across rotation and truncation, and the hash chain as the writer makes it: intact
 * across a reopen and a rotation, sealed, and an edited, removed or cut line found.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit/audit.h"
#include "audit/reader.h"

struct dir {
    char path[64], log[96], rotated[100];
};

static void dir_make(struct dir *d)
{
    snprintf(d->path, sizeof(d->path), "/tmp/bb-test-reader.XXXXXX");
    assert_non_null(mkdtemp(d->path));
    snprintf(d->log, sizeof(d->log), "%s/b.audit.log", d->path);
    snprintf(d->rotated, sizeof(d->rotated), "%s.1", d->log);
}

static void dir_remove(struct dir *d)
{
    unlink(d->log);
    unlink(d->rotated);
    rmdir(d->path);
}

static const struct audit_event deny_ev = {
    .kind = AUDIT_CONNECT,
    .host = "late.test",
    .port = 443,
    .allow = false,
    .reason = "not-allowlisted",
};

struct lines {
    char *v[512];
    size_t n;
};

static void collect(void *ud, const char *line, size_t len)
{
    struct lines *l = ud;
    if (l->n < 512)
        l->v[l->n++] = strndup(line, len);
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    l->n = 0;
}

/* Read PATH.1 and PATH from their starts. */
static void read_all(const char *path, struct lines *l)
{
    struct audit_follow f;
    assert_int_equal(audit_follow_open(&f, path, true), 0);
    assert_int_equal(audit_follow_poll(&f, collect, l), 0);
    audit_follow_close(&f);
}

/* Verify the lines; returns the first bad line (1-based) or 0. */
static uint64_t verify(struct lines *l, struct audit_verify *v)
{
    audit_verify_init(v);
    for (size_t i = 0; i < l->n; i++)
        if (audit_verify_line(v, l->v[i], strlen(l->v[i])) < 0)
            return v->bad_line;
    return 0;
}

static void test_parse(void **state)
{
    struct audit_record r;
    char big[2048];
    (void)state;

#define P(s) audit_record_parse(s, strlen(s), &r)
    assert_int_equal(P("{\"ts\":\"t\",\"kind\":\"http\",\"decision\":\"deny\",\"host\":\"a.test\","
                       "\"port\":80,\"count\":3,\"reason\":\"not-allowlisted\",\"new\":[1]}"),
                     0);
    assert_string_equal(r.host, "a.test");
    assert_int_equal(r.port, 80);
    assert_int_equal(audit_record_weight(&r), 3);
    assert_true(audit_record_is_decision(&r));
    {
        struct audit_filter deny = { .decision = "deny", .decisions_only = true };
        struct audit_filter http = { .kind = "http" }, dns = { .kind = "dns" }, any = { 0 };
        assert_true(audit_record_match(&r, &deny));
        assert_true(audit_record_match(&r, &http));
        assert_false(audit_record_match(&r, &dns));
        assert_true(audit_record_match(&r, &any));
        assert_int_equal(P("{\"ts\":\"t\",\"kind\":\"policy\",\"decision\":\"deny\"}"), 0);
        assert_false(audit_record_match(&r, &deny)); /* a policy change is not a decision */
        assert_true(audit_record_match(&r, &any));
    }
    assert_int_equal(P("{\"ts\":\"t\",\"kind\":\"policy\",\"decision\":\"allow\"}"), 0);
    assert_false(audit_record_is_decision(&r));
    assert_int_equal(audit_record_weight(&r), 1);
    /* refused: missing keys, wrong types, out of range, not an object, duplicates, NUL */
    assert_int_equal(P("{\"kind\":\"http\",\"decision\":\"deny\"}"), -EBADMSG);
    assert_int_equal(P("{\"ts\":1,\"kind\":\"http\",\"decision\":\"deny\"}"), -EBADMSG);
    assert_int_equal(P("{\"ts\":\"t\",\"kind\":\"http\",\"decision\":\"deny\",\"port\":70000}"),
                     -EBADMSG);
    assert_int_equal(P("{\"ts\":\"t\",\"kind\":\"http\",\"decision\":\"deny\",\"port\":-1}"),
                     -EBADMSG);
    assert_int_equal(P("{\"ts\":\"t\",\"kind\":\"http\",\"decision\":\"deny\",\"prev\":\"ab\"}"),
                     -EBADMSG);
    assert_int_equal(P("{\"ts\":\"t\",\"ts\":\"u\",\"kind\":\"http\",\"decision\":\"deny\"}"),
                     -EBADMSG);
    assert_int_equal(P("[1]"), -EBADMSG);
    assert_int_equal(P(""), -EBADMSG);
    assert_int_equal(audit_record_parse("{\"ts\":\"\0\"}", 10, &r), -EBADMSG);
    /* a hostile host name is cut to its buffer */
    memset(big, 'a', sizeof(big));
    memcpy(big, "{\"ts\":\"t\",\"kind\":\"dns\",\"decision\":\"deny\",\"host\":\"", 49);
    memcpy(big + sizeof(big) - 3, "\"}", 3);
    assert_int_equal(P(big), 0);
    assert_true(r.host_cut);
    assert_int_equal(strlen(r.host), sizeof(r.host) - 1);
#undef P
}

/* The writer's chain verifies: a nonce first, across a reopen (a daemon restart appending to
 * the same file) and the closing record. */
static void test_chain_intact(void **state)
{
    struct dir d;
    struct audit *a;
    struct lines l = { 0 };
    struct audit_verify v;
    struct audit_record r;
    struct audit_event pol = {
        .kind = AUDIT_POLICY, .host = "x.test", .allow = true, .reason = "control"
    };
    (void)state;

    dir_make(&d);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    assert_int_equal(audit_emit(a, &deny_ev), 0);
    assert_int_equal(audit_emit(a, &pol), 0);
    assert_int_equal(audit_seal(a), 0);
    audit_close(a);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    assert_int_equal(audit_emit(a, &deny_ev), 0);
    assert_int_equal(audit_seal(a), 0);
    audit_close(a);
    read_all(d.log, &l);
    assert_int_equal(l.n, 5);
    assert_int_equal(audit_record_parse(l.v[0], strlen(l.v[0]), &r), 0);
    assert_true(r.has_nonce);
    assert_string_equal(r.prev, r.nonce);
    assert_int_equal(audit_record_parse(l.v[3], strlen(l.v[3]), &r), 0);
    assert_false(r.has_nonce); /* the reopen continued the chain */
    assert_int_equal(audit_record_parse(l.v[1], strlen(l.v[1]), &r), 0);
    assert_string_equal(r.kind, "policy");
    assert_int_equal(verify(&l, &v), 0);
    assert_true(v.last_is_end);
    assert_false(v.starts_rotated);
    lines_free(&l);
    dir_remove(&d);
}

/* Rotation continues the chain into the new file (read .1 then the log); a log whose older
 * file was rotated away starts with a "rotated" record and still verifies. */
static void test_chain_rotation(void **state)
{
    struct dir d;
    struct audit *a;
    struct lines l = { 0 };
    struct audit_verify v;
    struct audit_record r;
    (void)state;

    dir_make(&d);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    audit_set_max_size(a, 2048);
    for (int i = 0; i < 30; i++)
        assert_int_equal(audit_emit(a, &deny_ev), 0);
    audit_close(a);
    read_all(d.log, &l);
    assert_true(l.n > 5 && l.n < 30);
    assert_int_equal(audit_record_parse(l.v[0], strlen(l.v[0]), &r), 0);
    assert_true(r.rotated);
    assert_int_equal(verify(&l, &v), 0);
    assert_true(v.starts_rotated);
    assert_false(v.last_is_end); /* not sealed */
    lines_free(&l);
    dir_remove(&d);
}

/* An edited line breaks the next one's "prev"; a removed one too; a cut start is named. */
static void test_chain_tampered(void **state)
{
    struct dir d;
    struct audit *a;
    struct lines l = { 0 };
    struct audit_verify v;
    char *p;
    (void)state;

    dir_make(&d);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    for (int i = 0; i < 6; i++)
        assert_int_equal(audit_emit(a, &deny_ev), 0);
    audit_close(a);
    read_all(d.log, &l);
    assert_int_equal(l.n, 6);
    assert_int_equal(verify(&l, &v), 0);
    /* edit line 3: line 4 is the first whose "prev" does not match */
    p = strstr(l.v[2], "late.test");
    p[0] = 'L';
    assert_int_equal(verify(&l, &v), 4);
    assert_non_null(strstr(v.why, "prev"));
    p[0] = 'l';
    assert_int_equal(verify(&l, &v), 0);
    /* remove line 3 */
    free(l.v[2]);
    memmove(&l.v[2], &l.v[3], 3 * sizeof(l.v[0]));
    l.n--;
    assert_int_equal(verify(&l, &v), 3);
    /* cut the start: the first line read is neither a chain's start nor a rotated file's */
    {
        struct lines tail = { .n = 3 };
        memcpy(tail.v, &l.v[2], 3 * sizeof(l.v[0]));
        assert_int_equal(verify(&tail, &v), 1);
        assert_non_null(strstr(v.why, "start"));
    }
    /* a nonce in the middle: a chain cannot restart after the first record */
    {
        struct lines two = { .n = 2 };
        two.v[0] = l.v[0];
        two.v[1] = l.v[0];
        assert_int_equal(verify(&two, &v), 2);
    }
    lines_free(&l);
    dir_remove(&d);
}

/* Following: new lines from the end, a truncated file read again from its start, a rotation
 * followed to the new file after the old one's last lines. */
static void test_follow(void **state)
{
    struct dir d;
    struct audit_follow f;
    struct lines l = { 0 };
    FILE *fp;
    (void)state;

    dir_make(&d);
    fp = fopen(d.log, "w");
    fputs("old\n", fp);
    fclose(fp);
    assert_int_equal(audit_follow_open(&f, d.log, false), 0);
    assert_int_equal(audit_follow_poll(&f, collect, &l), 0);
    assert_int_equal(l.n, 0); /* from the end */
    fp = fopen(d.log, "a");
    fputs("one\ntw", fp);
    fclose(fp);
    assert_int_equal(audit_follow_poll(&f, collect, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(audit_follow_pending(&f), 2);
    fp = fopen(d.log, "a");
    fputs("o\n", fp);
    fclose(fp);
    assert_int_equal(audit_follow_poll(&f, collect, &l), 0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.v[1], "two");
    /* truncated: from the start again */
    assert_int_equal(truncate(d.log, 0), 0);
    fp = fopen(d.log, "a");
    fputs("x\n", fp);
    fclose(fp);
    assert_int_equal(audit_follow_poll(&f, collect, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[2], "x");
    /* rotated: the old file's last line, then the new file */
    fp = fopen(d.log, "a");
    fputs("last-of-old\n", fp);
    fclose(fp);
    assert_int_equal(rename(d.log, d.rotated), 0);
    fp = fopen(d.log, "w");
    fputs("first-of-new\n", fp);
    fclose(fp);
    assert_int_equal(audit_follow_poll(&f, collect, &l), 0);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.v[3], "last-of-old");
    assert_string_equal(l.v[4], "first-of-new");
    audit_follow_close(&f);
    /* from the start: .1 first */
    lines_free(&l);
    read_all(d.log, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0], "x");
    assert_string_equal(l.v[2], "first-of-new");
    lines_free(&l);
    /* never through a symlink */
    unlink(d.log);
    assert_int_equal(symlink("/etc/passwd", d.log), 0);
    unlink(d.rotated);
    assert_int_equal(audit_follow_open(&f, d.log, true), -ELOOP);
    audit_follow_close(&f);
    dir_remove(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),          cmocka_unit_test(test_chain_intact),
        cmocka_unit_test(test_chain_rotation), cmocka_unit_test(test_chain_tampered),
        cmocka_unit_test(test_follow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
