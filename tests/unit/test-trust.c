/* Unit tests for src/config/trust.c: hashing, the approval store, canonical paths, the diff. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "config/trust.h"
#include "unit-util.h"

static char tmpdir[PATH_MAX];

static int setup(void **state)
{
    char tmpl[] = "/tmp/bb-unit-trust.XXXXXX";
    char rp[PATH_MAX];
    (void)state;
    if (!mkdtemp(tmpl) || !realpath(tmpl, rp))
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "%s", rp);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return rm_rf(tmpdir);
}

static void test_sha256(void **state)
{
    char hex[TRUST_HEX_LEN + 1];
    (void)state;

    /* FIPS 180-2 test vectors */
    assert_int_equal(trust_sha256_hex("abc", 3, hex), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(trust_sha256_hex("", 0, hex), 0);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_true(trust_hex_valid(hex));
    hex[3] = 'A';
    assert_false(trust_hex_valid(hex));
    assert_false(trust_hex_valid("abc"));
}

static void test_within(void **state)
{
    (void)state;
    assert_true(trust_path_within("/w", "/w"));
    assert_true(trust_path_within("/w/a/b", "/w"));
    assert_false(trust_path_within("/wx/a", "/w"));
    assert_false(trust_path_within("/", "/w"));
    assert_true(trust_path_within("/anything", "/"));
}

static void test_canonicalize(void **state)
{
    char p[PATH_MAX + 64], link[PATH_MAX + 64], want[PATH_MAX + 128];
    char *c = NULL;
    (void)state;

    snprintf(p, sizeof(p), "%s/real", tmpdir);
    mkdir(p, 0700);
    snprintf(link, sizeof(link), "%s/link", tmpdir);
    assert_int_equal(symlink(p, link), 0);
    /* an existing prefix through a symlink, then names that do not exist yet */
    snprintf(p, sizeof(p), "%s/link/not/yet", tmpdir);
    assert_int_equal(trust_canonicalize(p, &c), 0);
    snprintf(want, sizeof(want), "%s/real/not/yet", tmpdir);
    assert_string_equal(c, want);
    free(c);
    /* ".." in the part that does not exist is refused (it could climb out) */
    snprintf(p, sizeof(p), "%s/link/nope/../../x", tmpdir);
    assert_int_equal(trust_canonicalize(p, &c), -EINVAL);
    snprintf(p, sizeof(p), "%s/link/", tmpdir);
    assert_int_equal(trust_canonicalize(p, &c), 0);
    snprintf(want, sizeof(want), "%s/real", tmpdir);
    assert_string_equal(c, want);
    free(c);
}

static void test_store(void **state)
{
    char store[PATH_MAX + 64], hex[TRUST_HEX_LEN + 1], want[TRUST_HEX_LEN + 1];
    char *content = NULL;
    size_t len = 0;
    int n = 0;
    (void)state;

    snprintf(store, sizeof(store), "%s/cfg/bot-bottle/trusted", tmpdir);
    assert_int_equal(trust_lookup(store, "/w/bottle.ini", hex, NULL, NULL), -ENOENT);
    assert_int_equal(trust_save(store, "/w/bottle.ini", "[egress]\nallow = a.test\n", 24), 0);
    assert_int_equal(trust_lookup(store, "/w/bottle.ini", hex, &content, &len), 0);
    assert_int_equal(trust_sha256_hex("[egress]\nallow = a.test\n", 24, want), 0);
    assert_string_equal(hex, want);
    assert_int_equal(len, 24);
    assert_memory_equal(content, "[egress]\nallow = a.test\n", 24);
    free(content);
    /* another path has no approval */
    assert_int_equal(trust_lookup(store, "/w2/bottle.ini", hex, NULL, NULL), -ENOENT);
    /* a newline in a path would break the format: refused */
    assert_int_equal(trust_save(store, "/w/x\ny", "", 0), -EINVAL);

    /* a damaged copy is reported, not believed */
    {
        char ep[PATH_MAX + 200];
        FILE *f;
        assert_int_equal(trust_sha256_hex("/w/bottle.ini", 13, hex), 0);
        snprintf(ep, sizeof(ep), "%s/%s", store, hex);
        f = fopen(ep, "a");
        assert_non_null(f);
        fputs("allow = extra.test\n", f);
        fclose(f);
        assert_int_equal(trust_lookup(store, "/w/bottle.ini", hex, NULL, NULL), -EBADMSG);
    }
    assert_int_equal(trust_save(store, "/w/bottle.ini", "x", 1), 0);
    assert_int_equal(trust_lookup(store, "/w/bottle.ini", hex, NULL, NULL), 0);
    /* a store others can write holds no approvals */
    assert_int_equal(chmod(store, 0777), 0);
    assert_int_equal(trust_lookup(store, "/w/bottle.ini", hex, NULL, NULL), -EBADMSG);
    assert_int_equal(chmod(store, 0700), 0);

    assert_int_equal(trust_revoke(store, "/w/bottle.ini"), 0);
    assert_int_equal(trust_lookup(store, "/w/bottle.ini", hex, NULL, NULL), -ENOENT);
    assert_int_equal(trust_revoke(store, "/w/bottle.ini"), -ENOENT);
    (void)n;
}

static void test_diff(void **state)
{
    struct buf b = BUF_INIT(65536);
    const char *old = "[egress]\nallow = a.test\nallow = b.test\n";
    const char *new_ = "[egress]\nallow = b.test\nallow = *.com\nallow_cidr = 0.0.0.0/0\x1b[2J\n";
    (void)state;

    trust_diff(old, strlen(old), new_, strlen(new_), 20, &b);
    assert_string_equal(buf_str(&b), "  - allow = a.test\n"
                                     "  + allow = *.com\n"
                                     "  + allow_cidr = 0.0.0.0/0\\x1b[2J\n");
    buf_done(&b);
    /* bounded */
    trust_diff(NULL, 0, new_, strlen(new_), 1, &b);
    assert_string_equal(buf_str(&b), "  + [egress]\n  ... and 3 more changed lines\n");
    buf_done(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),       cmocka_unit_test(test_within),
        cmocka_unit_test(test_canonicalize), cmocka_unit_test(test_store),
        cmocka_unit_test(test_diff),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
