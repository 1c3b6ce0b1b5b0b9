/*
 * The audit sink: size cap and rotation, never through a symlink, the failed state (fail
 * closed) and its recovery, aggregation of repeated decisions and its bounds.
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
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/buf.h"
#include "common/loop.h"
#include "common/str.h"
#include "audit/audit.h"
#include "unit-util.h"

static uint64_t fake_now = 5000000000ull;
static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return fake_now;
}

struct dir {
    char path[64], log[96], rotated[100];
};

static void dir_make(struct dir *d)
{
    snprintf(d->path, sizeof(d->path), "/tmp/bb-test-audit.XXXXXX");
    assert_non_null(mkdtemp(d->path));
    snprintf(d->log, sizeof(d->log), "%s/b.audit.log", d->path);
    snprintf(d->rotated, sizeof(d->rotated), "%s.1", d->log);
}

static void dir_remove(struct dir *d)
{
    char p[128];
    unlink(d->log);
    unlink(d->rotated);
    snprintf(p, sizeof(p), "%s/elsewhere", d->path);
    unlink(p);
    rmdir(d->path);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static size_t count_lines(const char *path, const char *needle)
{
    char line[4096];
    size_t n = 0;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    while (fgets(line, sizeof(line), fp))
        if (!needle || strstr(line, needle))
            n++;
    fclose(fp);
    return n;
}

static const struct audit_event allow_ev = {
    .kind = AUDIT_HTTP,
    .host = "allowed.test",
    .port = 80,
    .allow = true,
    .reason = "allowlisted",
    .method = "GET",
    .status = 200,
};

/* The file never grows past the cap: it is renamed to .1 and a new one started; two files at
 * most, and every record written lands in one of them. */
static void test_rotation(void **state)
{
    struct dir d;
    struct audit *a;
    (void)state;

    dir_make(&d);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    audit_set_max_size(a, 4096);
    for (int i = 0; i < 200; i++)
        assert_int_equal(audit_emit(a, &allow_ev), 0);
    audit_close(a);
    assert_true(file_size(d.log) <= 4096);
    assert_true(file_size(d.rotated) <= 4096);
    assert_true(file_size(d.rotated) > 3000);
    /* 200 records of ~265 bytes (with the chain's "prev"): the first ones were rotated away
     * with the older .1; a full .1 holds at least 13 */
    assert_true(count_lines(d.log, NULL) + count_lines(d.rotated, NULL) < 200);
    assert_true(count_lines(d.rotated, NULL) >= 13);
    dir_remove(&d);
}

/* A symlink at the audit path is refused, at open and at rotation. */
static void test_no_symlink(void **state)
{
    struct dir d;
    struct audit *a;
    char target[128];
    (void)state;

    dir_make(&d);
    snprintf(target, sizeof(target), "%s/elsewhere", d.path);
    assert_int_equal(symlink(target, d.log), 0);
    assert_int_equal(audit_open(d.log, "b", &a), -ELOOP);
    assert_int_equal(file_size(target), -1);
    unlink(d.log);

    /* Replaced by a symlink between records: rotation does not follow it either. */
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    audit_set_max_size(a, 600);
    assert_int_equal(audit_emit(a, &allow_ev), 0);
    unlink(d.log);
    assert_int_equal(symlink(target, d.log), 0);
    for (int i = 0; i < 5; i++)
        audit_emit(a, &allow_ev);
    assert_true(audit_failed(a));
    assert_int_equal(file_size(target), -1);
    audit_close(a);
    dir_remove(&d);
}

/* ENOSPC: the sink says it failed (the caller refuses egress); it recovers by itself once a
 * write succeeds again. */
static void test_failed_and_recovery(void **state)
{
    struct dir d;
    struct audit *a;
    (void)state;

    if (access("/dev/full", W_OK) < 0)
        skip();
    dir_make(&d);
    assert_int_equal(audit_open("/dev/full", "b", &a), 0);
    assert_false(audit_failed(a));
    assert_int_equal(audit_emit(a, &allow_ev), -ENOSPC);
    assert_true(audit_failed(a));
    /* While failed, repeats are not folded away: every one is a write attempt and reports. */
    assert_int_equal(audit_note(a, &allow_ev), -ENOSPC);
    assert_int_equal(audit_note(a, &allow_ev), -ENOSPC);
    assert_true(audit_write_errors(a) >= 3);
    audit_close(a);

    /* Recovery: writes fail (EFBIG past RLIMIT_FSIZE, as ENOSPC would), then succeed again. */
    {
        struct rlimit old, small;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
        signal(SIGXFSZ, SIG_IGN);
        assert_int_equal(audit_open(d.log, "b", &a), 0);
        audit_set_max_size(a, 0);
        assert_int_equal(audit_emit(a, &allow_ev), 0);
        small = old;
        small.rlim_cur = (rlim_t)file_size(d.log) + 10;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
        assert_true(audit_emit(a, &allow_ev) < 0);
        assert_true(audit_failed(a));
        assert_true(audit_note(a, &allow_ev) < 0);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
        assert_int_equal(audit_note(a, &allow_ev), 0);
        assert_false(audit_failed(a));
        audit_close(a);
        signal(SIGXFSZ, SIG_DFL);
        /* The piece of the record that did not fit was taken back: whole lines only. */
        assert_int_equal(count_lines(d.log, NULL), 2);
        assert_int_equal(count_lines(d.log, "{\"ts\":"), 2);
    }
    dir_remove(&d);
}

/* 1000 identical decisions over 3 s of loop time: a bounded number of lines, counts add up;
 * N distinct allowed decisions: every one written, by name. */
static void test_aggregation(void **state)
{
    struct dir d;
    struct audit *a;
    struct loop *l;
    char line[4096], host[64];
    uint64_t total = 0;
    FILE *fp;
    struct audit_event deny = {
        .kind = AUDIT_HTTP,
        .host = "evil.test",
        .port = 80,
        .allow = false,
        .reason = "not-allowlisted",
        .method = "GET",
        .status = 403,
    };
    (void)state;

    dir_make(&d);
    assert_int_equal(loop_new(&l), 0);
    loop_set_clock(l, fake_clock, NULL);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    audit_attach_loop(a, l);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(audit_note(a, &deny), 0);
        fake_now += 3000000ull;
        loop_run_once(l, 0);
    }
    for (int i = 0; i < 500; i++) {
        struct audit_event ev = allow_ev;
        snprintf(host, sizeof(host), "x%d.allowed.test", i);
        ev.kind = AUDIT_DNS;
        ev.host = host;
        assert_int_equal(audit_note(a, &ev), 0);
        assert_int_equal(audit_note(a, &ev), 0); /* a repeat: counted */
    }
    audit_attach_loop(a, NULL);
    audit_close(a);
    loop_free(l);

    assert_true(count_lines(d.log, "evil.test") <= 8);
    fp = fopen(d.log, "r");
    assert_non_null(fp);
    while (fgets(line, sizeof(line), fp))
        if (strstr(line, "evil.test"))
            total += audit_line_count(line);
    fclose(fp);
    assert_int_equal(total, 1000);
    for (int i = 0; i < 500; i++) {
        char needle[96];
        snprintf(needle, sizeof(needle), "\"host\":\"x%d.allowed.test\"", i);
        /* the first at once, the repeat in the window's summary */
        assert_int_equal(count_lines(d.log, needle), 2);
    }
    dir_remove(&d);
}

/* Past AUDIT_AGG_MAX distinct decisions in one window, allowed ones are still written by name
 * and denied ones fold into one "*" record: memory stays bounded, names that leave do not hide. */
static void test_aggregation_cap(void **state)
{
    struct dir d;
    struct audit *a;
    char host[64];
    (void)state;

    dir_make(&d);
    assert_int_equal(audit_open(d.log, "b", &a), 0);
    audit_set_max_size(a, 0);
    for (int i = 0; i < AUDIT_AGG_MAX + 100; i++) {
        struct audit_event ev = { .kind = AUDIT_DNS,
                                  .host = host,
                                  .allow = false,
                                  .reason = "not-allowlisted",
                                  .qtype = "A" };
        snprintf(host, sizeof(host), "d%d.evil.test", i);
        assert_int_equal(audit_note(a, &ev), 0);
    }
    for (int i = 0; i < 100; i++) {
        struct audit_event ev = {
            .kind = AUDIT_DNS, .host = host, .allow = true, .reason = "allowlisted", .qtype = "A"
        };
        snprintf(host, sizeof(host), "late%d.allowed.test", i);
        assert_int_equal(audit_note(a, &ev), 0);
    }
    audit_close(a);
    assert_int_equal(count_lines(d.log, ".evil.test\""), AUDIT_AGG_MAX);
    assert_int_equal(count_lines(d.log, "\"host\":\"*\",\"port\":0,\"decision\":\"deny\","
                                        "\"reason\":\"aggregated\""),
                     1);
    assert_int_equal(count_lines(d.log, "\"count\":100"), 1);
    assert_int_equal(count_lines(d.log, "late"), 100);
    dir_remove(&d);
}

/* audit_emit writes its JSON itself: each string exactly as jansson (which wrote the records
 * before, and reads them in reader.c) dumps it, and refused exactly when jansson refuses it,
 * on hand-picked and on random hostile bytes (controls, quotes, overlong forms, surrogates,
 * code points past U+10FFFF, 4-byte sequences, truncated sequences). */
static void check_like_jansson(const char *s)
{
    json_t *js = json_string(s);
    struct buf b = BUF_INIT(1 << 20);

    assert_int_equal(audit_json_valid(s), js != NULL);
    if (!js) {
        assert_int_equal(audit_json_str(&b, s), -EILSEQ);
        buf_done(&b);
        return;
    }
    char *want = json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);
    assert_non_null(want);
    assert_int_equal(audit_json_str(&b, s), 0);
    assert_string_equal(buf_str(&b), want);
    free(want);
    json_decref(js);
    buf_done(&b);
}

static void test_json_like_jansson(void **state)
{
    static const char *const fixed[] = {
        "",
        "plain.example.com",
        "a\"b\\c/d",
        "\x01\x1f\x7f\b\f\n\r\t",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x80",
        "\xc0\xaf",
        "\xe0\x80\xaf",
        "\xed\xa0\x80",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xc3",
        "\xe2\x82",
        "\x80",
        "\xff",
        "\xef\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf4\x8f\xbf\xbf",
    };
    static const unsigned char pool[] = { 0x01, 0x08, 0x0a, 0x1f, ' ',  '"',  '\\', '/',  'a',
                                          0x7f, 0x80, 0x8f, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xed,
                                          0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0 };
    unsigned seed = 12345;
    char s[16];
    (void)state;

    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        check_like_jansson(fixed[i]);
    for (int i = 0; i < 200000; i++) {
        size_t n;
        seed = seed * 1103515245u + 12345u;
        n = (seed >> 16) % (sizeof(s) - 1);
        for (size_t j = 0; j < n; j++) {
            seed = seed * 1103515245u + 12345u;
            s[j] = (char)pool[(seed >> 16) % sizeof(pool)];
        }
        s[n] = '\0';
        check_like_jansson(s);
    }
}

/* A whole record, with hostile strings: jansson reads it back to the same values, and dumps
 * what it read to the very same line (so the line is what json_dumps made before). */
static void test_record_like_jansson(void **state)
{
    struct audit_event ev = {
        .kind = AUDIT_HTTP,
        .host = "h\"o\\st\x01.\xc3\xa9",
        .port = 443,
        .allow = false,
        .reason = "dlp:\xf0\x9f\x9a\x80",
        .bytes_up = 12,
        .bytes_down = 99,
        .method = "G\xffT",
        .path = "/a\nb",
        .addr = "\xc0\xaf",
        .status = 403,
        .reused = true,
        .count = 3,
    };
    char line[4096];
    struct dir d;
    struct audit *a;
    json_error_t err;
    json_t *o;
    FILE *fp;
    (void)state;

    dir_make(&d);
    assert_int_equal(audit_open(d.log, "bot\ttle", &a), 0);
    assert_int_equal(audit_emit(a, &ev), 0);
    audit_close(a);
    fp = fopen(d.log, "r");
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof(line), fp));
    fclose(fp);
    line[strcspn(line, "\n")] = '\0';
    o = json_loads(line, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "host")), ev.host);
    assert_string_equal(json_string_value(json_object_get(o, "bottle")), "bot\ttle");
    assert_string_equal(json_string_value(json_object_get(o, "reason")), ev.reason);
    assert_string_equal(json_string_value(json_object_get(o, "method")), "?");
    assert_string_equal(json_string_value(json_object_get(o, "path")), "/a\nb");
    assert_null(json_object_get(o, "addr")); /* not UTF-8: left out, as before */
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 403);
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 3);
    assert_true(json_is_true(json_object_get(o, "reused")));
    assert_non_null(json_object_get(o, "nonce"));
    const char *ts = json_string_value(json_object_get(o, "ts"));
    assert_non_null(ts); /* 2026-11-29T22:04:51.163Z */
    assert_int_equal(strlen(ts), 24);
    assert_true(ts[4] == '-' && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z');
    assert_int_equal(json_integer_value(json_object_get(o, "bytes_down")), 99);
    char *again = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    assert_string_equal(again, line);
    free(again);
    json_decref(o);
    dir_remove(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation),
        cmocka_unit_test(test_no_symlink),
        cmocka_unit_test(test_failed_and_recovery),
        cmocka_unit_test(test_aggregation),
        cmocka_unit_test(test_aggregation_cap),
        cmocka_unit_test(test_json_like_jansson),
        cmocka_unit_test(test_record_like_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
