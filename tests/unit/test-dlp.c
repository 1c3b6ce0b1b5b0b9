/*
 * Unit tests for src/dlp: every rule fires on a positive case and stays quiet on near misses;
 * a match is found at every split of a stream; credentials in every encoding, not to their own
 * host; rules turned off by name; and zero findings on the benign corpus in data/dlp/benign
 * (made by data/dlp/make-benign.py), read whole and in chunks of many sizes.
 */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/macro.h"
#include "dlp/dlp.h"

static const struct dlp_ctx plain = { NULL, 0, "example.com", 443 };

struct tcase {
    const char *text;
    int rule; /* DLP_NONE: must stay quiet */
};

#define GHP                                                                                        \
    "ghp_"                                                                                         \
    "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
#define JWT                                                                                        \
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwia"   \
    "WF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"

static const struct tcase cases[] = {
    /* aws-key */
    { "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", DLP_AWS_KEY },
    { "key_ASIAY34FZKBOKMUTVV7A,", DLP_AWS_KEY },
    { "AKIAIOSFODNN7EXAMPLE", DLP_AWS_KEY },
    { "AKIAIOSFODNN7EXAMPL", DLP_NONE },   /* 15 after the prefix */
    { "AKIAIOSFODNN7EXAMPLEX", DLP_NONE }, /* 17 */
    { "xAKIAIOSFODNN7EXAMPLE", DLP_NONE }, /* inside a word */
    { "AKIAiosfodnn7example", DLP_NONE },  /* lower case */
    /* github-token */
    { "Authorization: token " GHP "\r\n", DLP_GITHUB_TOKEN },
    { "\"gho_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789\"", DLP_GITHUB_TOKEN },
    { "ghs_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", DLP_GITHUB_TOKEN },
    { "ghu_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", DLP_GITHUB_TOKEN },
    { "ghr_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", DLP_GITHUB_TOKEN },
    { "github_pat_11ABCDEFG0abcdefghijkl_"
      "mnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij"
      "klmnopq",
      DLP_GITHUB_TOKEN },
    { "ghp_short", DLP_NONE },
    { "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ012345678", DLP_NONE }, /* 35 */
    { "github_pat_short", DLP_NONE },
    { "the ghp_ prefix", DLP_NONE },
    /* gitlab-token */
    { "PRIVATE-TOKEN: glpat-AbCdEfGhIjKlMnOpQrSt\r\n", DLP_GITLAB_TOKEN },
    { "glpat-short", DLP_NONE },
    /* slack-token */
    { "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", DLP_SLACK_TOKEN },
    { "token=xoxp-1234567890-abcdefghij", DLP_SLACK_TOKEN },
    { "xoxb-", DLP_NONE },
    { "xoxb-onlyletters", DLP_NONE },
    { "xoxo-123456789012-1234567890", DLP_NONE },
    /* private-key */
    { "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n", DLP_PRIVATE_KEY },
    { "\"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjE\"", DLP_PRIVATE_KEY },
    { "-----BEGIN PRIVATE KEY-----", DLP_PRIVATE_KEY },
    { "-----BEGIN ENCRYPTED PRIVATE KEY-----", DLP_PRIVATE_KEY },
    { "-----BEGIN PGP PRIVATE KEY BLOCK-----", DLP_PRIVATE_KEY },
    { "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n", DLP_NONE },
    { "-----BEGIN CERTIFICATE-----\nMIIB\n", DLP_NONE },
    { "BEGIN RSA PRIVATE KEY", DLP_NONE },
    /* jwt */
    { "Authorization: Bearer " JWT "\r\n", DLP_JWT },
    { "?token=" JWT "&x=1", DLP_JWT },
    { "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", DLP_JWT }, /* {"alg":"none"} */
    { "eyJhbGciOiJIUzI1NiJ9", DLP_NONE },                /* a header alone */
    { "eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijkl", DLP_NONE }, /* no alg */
    { "eyes.eyJ.x", DLP_NONE },
    /* card */
    { "card: 4111111111111111 exp 12/29", DLP_CARD },
    { "4111 1111 1111 1111", DLP_CARD },
    { "4111-1111-1111-1111", DLP_CARD },
    { "amex 3782 822463 10005.", DLP_CARD },
    { "\"pan\":\"5555555555554444\"", DLP_CARD },
    { "6011111111111117", DLP_CARD },
    { "4111111111111112", DLP_NONE },         /* Luhn fails */
    { "1234567812345670", DLP_NONE },         /* Luhn ok, no issuer starts with 1 */
    { "0.4111111111111111", DLP_NONE },       /* a fraction */
    { "4111 1111 1111 1111 1111", DLP_NONE }, /* too long */
    { "41111 1111 1111 111", DLP_NONE },      /* bad grouping */
    { "4111-1111 1111-1111", DLP_NONE },      /* mixed separators */
    { "x4111111111111111", DLP_NONE },
    { "1732881234567 4503599627370496 9007199254740991", DLP_NONE },
    /* near misses of every kind */
    { "f47ac10b-58cc-4372-a567-0e02b2c3d479", DLP_NONE }, /* UUID */
    { "da39a3ee5e6b4b0d3255bfef95601890afd80709", DLP_NONE },
    { "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", DLP_NONE },
    { "sha512-z4PhNX7vuL3xVChQ1m2AB9Yg5AULVxXcg/"
      "SpIdNs6c5H0NE8XYXysP+DGNKHfuwvY7kxvUdBeoGlODJ6+SfaPg==",
      DLP_NONE },
    { "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz", DLP_NONE },
    { "Привет, 世界! مرحبا 🎉 Größe", DLP_NONE },
    { "", DLP_NONE },
};

static void test_cases(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int got = dlp_scan_buf(&plain, cases[i].text, strlen(cases[i].text));
        if (got != cases[i].rule)
            fail_msg("case %zu \"%s\": got %s, want %s", i, cases[i].text,
                     got == DLP_NONE ? "none" : dlp_rule_name(got),
                     cases[i].rule == DLP_NONE ? "none" : dlp_rule_name(cases[i].rule));
    }
}

/* Feed text in pieces cut at a and b; return what the stream reports (with its end). */
static int stream_cut(const struct dlp_ctx *x, const char *t, size_t len, size_t a, size_t b)
{
    struct dlp_stream s;
    int r;

    dlp_stream_init(&s);
    r = dlp_stream_feed(&s, x, t, a);
    if (r == DLP_NONE)
        r = dlp_stream_feed(&s, x, t + a, b - a);
    if (r == DLP_NONE)
        r = dlp_stream_feed(&s, x, t + b, len - b);
    if (r == DLP_NONE)
        r = dlp_stream_end(&s, x);
    return r;
}

static void test_stream_splits(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        const char *t = cases[i].text;
        size_t len = strlen(t);
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b += 1 + (len > 40 ? 3 : 0)) {
                int got = stream_cut(&plain, t, len, a, b);
                if (got != cases[i].rule)
                    fail_msg("case %zu cut at %zu,%zu: got %d want %d", i, a, b, got,
                             cases[i].rule);
            }
    }
}

/* A token in the middle of a large stream, fed one byte at a time and in 7-byte pieces. */
static void test_stream_bytewise(void **state)
{
    char big[6000];
    struct dlp_stream s;
    int r = DLP_NONE;

    (void)state;
    memset(big, 'q', sizeof(big));
    for (size_t i = 0; i < sizeof(big); i += 50)
        big[i] = ' ';
    memcpy(big + 3001, " " GHP " ", strlen(GHP) + 2);
    for (size_t step = 1; step <= 1024; step = step * 2 + 5) {
        dlp_stream_init(&s);
        r = DLP_NONE;
        for (size_t i = 0; i < sizeof(big) && r == DLP_NONE; i += step)
            r = dlp_stream_feed(&s, &plain, big + i, MIN(step, sizeof(big) - i));
        if (r == DLP_NONE)
            r = dlp_stream_end(&s, &plain);
        assert_int_equal(r, DLP_GITHUB_TOKEN);
    }
    /* and nothing without the token */
    memset(big + 3001, 'q', strlen(GHP) + 2);
    dlp_stream_init(&s);
    for (size_t i = 0; i < sizeof(big); i += 13)
        assert_int_equal(dlp_stream_feed(&s, &plain, big + i, MIN(13, sizeof(big) - i)), DLP_NONE);
    assert_int_equal(dlp_stream_end(&s, &plain), DLP_NONE);
}

static void test_disable(void **state)
{
    uint32_t mask = 0;
    const char *why = NULL;
    struct dlp_ctx x = plain;

    (void)state;
    assert_int_equal(dlp_parse_disable("jwt, card", 9, &mask, &why), 0);
    assert_int_equal(mask, DLP_BIT(DLP_JWT) | DLP_BIT(DLP_CARD));
    assert_int_equal(dlp_parse_disable("jwtx", 4, &mask, &why), -EINVAL);
    assert_non_null(why);
    x.disabled = mask;
    assert_int_equal(dlp_scan_buf(&x, JWT, strlen(JWT)), DLP_NONE);
    assert_int_equal(dlp_scan_buf(&x, "4111111111111111", 16), DLP_NONE);
    assert_int_equal(dlp_scan_buf(&x, GHP, strlen(GHP)), DLP_GITHUB_TOKEN);
    mask = 0;
    assert_int_equal(dlp_parse_disable("all", 3, &mask, &why), 0);
    x.disabled = mask;
    assert_int_equal(dlp_scan_buf(&x, GHP, strlen(GHP)), DLP_NONE);
    for (int r = 0; r < DLP_RULE_MAX; r++) {
        const char *n = dlp_rule_name(r);
        assert_int_equal(dlp_rule_by_name(n, strlen(n)), r);
        assert_true(strncmp(dlp_rule_reason(r), "dlp:", 4) == 0);
    }
}

static void b64(const unsigned char *in, size_t n, char *out, bool url)
{
    const char *a = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? a[v & 63] : '=';
    }
    out[o] = '\0';
}

static void test_credentials(void **state)
{
    static const char secret[] = "sk-real-9f8e7d6c5b4a?/+~"; /* bytes giving + and / in base64 */
    struct dlp *d = dlp_new();
    struct dlp_ctx other = { d, 0, "evil.example", 443 }, own = { d, 0, "api.example.com", 443 };
    char buf[1024], enc[512];

    (void)state;
    assert_int_equal(dlp_add_secret(d, "api.example.com", 443, "short", 5), -EINVAL);
    assert_int_equal(dlp_add_secret(d, "api.example.com", 443, secret, strlen(secret)), 0);
    assert_int_equal(dlp_n_secrets(d), 1);

    /* raw, in a body and a URL */
    snprintf(buf, sizeof(buf), "{\"k\":\"%s\"}", secret);
    assert_int_equal(dlp_scan_buf(&other, buf, strlen(buf)), DLP_CREDENTIAL);
    assert_int_equal(dlp_scan_buf(&own, buf, strlen(buf)), DLP_NONE);
    /* base64 (std and url) at the three alignments */
    for (int k = 0; k < 3; k++)
        for (int url = 0; url < 2; url++) {
            unsigned char in[128];
            size_t n = 0;
            for (int j = 0; j < k; j++)
                in[n++] = (unsigned char)('x' + j);
            memcpy(in + n, secret, strlen(secret));
            n += strlen(secret);
            in[n++] = '!';
            b64(in, n, enc, url);
            snprintf(buf, sizeof(buf), "data=%s;", enc);
            assert_int_equal(dlp_scan_buf(&other, buf, strlen(buf)), DLP_CREDENTIAL);
            assert_int_equal(dlp_scan_buf(&own, buf, strlen(buf)), DLP_NONE);
        }
    /* hex, both cases; percent-encoding, both cases */
    for (int form = 0; form < 4; form++) {
        size_t o = 0;
        for (size_t i = 0; i < strlen(secret); i++)
            o += (size_t)snprintf(enc + o, sizeof(enc) - o,
                                  form == 0   ? "%02x"
                                  : form == 1 ? "%02X"
                                  : form == 2 ? "%%%02X"
                                              : "%%%02x",
                                  (unsigned char)secret[i]);
        snprintf(buf, sizeof(buf), "GET /x?q=%s HTTP/1.1", enc);
        assert_int_equal(dlp_scan_buf(&other, buf, strlen(buf)), DLP_CREDENTIAL);
    }
    /* the own host on another port is not its own host */
    own.port = 8443;
    snprintf(buf, sizeof(buf), "%s", secret);
    assert_int_equal(dlp_scan_buf(&own, buf, strlen(buf)), DLP_CREDENTIAL);
    /* a near miss: the value with one byte changed */
    buf[3] = 'X';
    assert_int_equal(dlp_scan_buf(&other, buf, strlen(buf)), DLP_NONE);
    /* the same value registered for a second host: one value, two hosts it may go to */
    assert_int_equal(dlp_add_secret(d, "uploads.example.com", 0, secret, strlen(secret)), 0);
    assert_int_equal(dlp_n_secrets(d), 1);
    struct dlp_ctx second = { d, 0, "uploads.example.com", 8443 };
    snprintf(buf, sizeof(buf), "%s", secret);
    assert_int_equal(dlp_scan_buf(&second, buf, strlen(buf)), DLP_NONE);
    assert_int_equal(dlp_scan_buf(&other, buf, strlen(buf)), DLP_CREDENTIAL);
    buf[3] = 'X';
    /* turned off */
    other.disabled = DLP_BIT(DLP_CREDENTIAL);
    snprintf(buf, sizeof(buf), "%s", secret);
    assert_int_equal(dlp_scan_buf(&other, buf, strlen(buf)), DLP_NONE);
    /* straddling a stream cut */
    other.disabled = 0;
    snprintf(buf, sizeof(buf), "aaaa%sbbbb", secret);
    for (size_t a = 0; a <= strlen(buf); a++)
        assert_int_equal(stream_cut(&other, buf, strlen(buf), a, a), DLP_CREDENTIAL);
    dlp_free(d);
}

static void test_host_entropy(void **state)
{
    static const char *const bad[] = {
        "mzxw6ytboi4dsnrtgq2tmnzyhe3dmzrs.exfil.example.com",
        "a8f3k2j9d0s7l4m1n6b5v2c8x9z0q3w.example.com",
        "4a6f686e20446f6520736563726574206b6579.example.com",
        "qwhv7ezkmyxu3b2ngcdrj5fa8tp.example.com",
    };
    static const char *const good[] = {
        "api.github.com",
        "registry.npmjs.org",
        "objects.githubusercontent.com",
        "github-production-release-asset-2e65be.s3.amazonaws.com",
        "d111111abcdef8.cloudfront.net",
        "my-application-production-eu-west-1.example.com",
        "internationalization-and-localization.example.org",
        "xn--bcher-kva.example",
        "ec2-203-0-113-25.compute-1.amazonaws.com",
        "storage.googleapis.com",
        "pypi.org",
    };
    struct dlp_ctx x = plain;

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        if (dlp_check_host(&x, bad[i], strlen(bad[i])) != DLP_DNS_ENTROPY)
            fail_msg("not flagged: %s", bad[i]);
    for (size_t i = 0; i < ARRAY_SIZE(good); i++)
        if (dlp_check_host(&x, good[i], strlen(good[i])) != DLP_NONE)
            fail_msg("flagged: %s", good[i]);
    x.disabled = DLP_BIT(DLP_DNS_ENTROPY);
    assert_int_equal(dlp_check_host(&x, bad[0], strlen(bad[0])), DLP_NONE);
}

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "rb");
    char *p;
    long n;

    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return p;
}

/* The benign corpus: zero findings, whole and streamed, with a credential registered (the
 * corpus does not contain it). */
static void test_benign_corpus(void **state)
{
    char dirpath[3800], path[4200], *src = strdup(__FILE__), *slash;
    struct dlp *d = dlp_new();
    struct dlp_ctx x = { d, 0, "example.com", 443 };
    struct dirent *de;
    DIR *dir;
    size_t files = 0, bytes = 0;

    (void)state;
    assert_int_equal(dlp_add_secret(d, "api.example.com", 0, "sk-ant-api03-notinthecorpus", 27), 0);
    slash = strrchr(src, '/');
    if (slash)
        *slash = '\0';
    snprintf(dirpath, sizeof(dirpath), "%s/data/dlp/benign", slash ? src : ".");
    free(src);
    dir = opendir(dirpath);
    if (!dir)
        fail_msg("cannot open %s", dirpath);
    while ((de = readdir(dir))) {
        size_t len;
        char *t;
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dirpath, de->d_name);
        t = slurp(path, &len);
        int r = dlp_scan_buf(&x, t, len);
        if (r != DLP_NONE)
            fail_msg("%s: false positive %s", de->d_name, dlp_rule_name(r));
        static const size_t steps[] = { 1, 3, 100, 1460, 16384 };
        for (size_t k = 0; k < ARRAY_SIZE(steps); k++) {
            struct dlp_stream s;
            dlp_stream_init(&s);
            for (size_t i = 0; i < len; i += steps[k]) {
                r = dlp_stream_feed(&s, &x, t + i, MIN(steps[k], len - i));
                if (r != DLP_NONE)
                    fail_msg("%s (step %zu, at %zu): false positive %s", de->d_name, steps[k], i,
                             dlp_rule_name(r));
            }
            assert_int_equal(dlp_stream_end(&s, &x), DLP_NONE);
        }
        files++;
        bytes += len;
        free(t);
    }
    closedir(dir);
    assert_true(files >= 10);
    assert_true(bytes >= 200000);
    dlp_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),           cmocka_unit_test(test_stream_splits),
        cmocka_unit_test(test_stream_bytewise), cmocka_unit_test(test_disable),
        cmocka_unit_test(test_credentials),     cmocka_unit_test(test_host_entropy),
        cmocka_unit_test(test_benign_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
