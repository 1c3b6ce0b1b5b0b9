/*
 * Unit tests for src/proxy/tls.c: the per-bottle CA is name-constrained to exactly the
 * intercepted names, so even its own key cannot make a certificate for any other name that a
 * client would accept (checked with OpenSSL's verifier, the code behind `openssl verify`, and
 * with the openssl command itself).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "proxy/tls.h"

static X509 *from_pem(const struct buf *b)
{
    BIO *bio = BIO_new_mem_buf(b->p, (int)b->len);
    X509 *c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(c);
    return c;
}

/* X509_V_OK or the verification error of leaf under ca, for TLS server use. */
static int verify(X509 *ca, X509 *leaf)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int r;

    X509_STORE_add_cert(st, ca);
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    r = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return r;
}

static void write_file(const char *path, const struct buf *b)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(b->p, 1, b->len, f), b->len);
    fclose(f);
}

/* The exit status of `openssl verify -CAfile ca -purpose sslserver leaf` (quiet). */
static int openssl_verify(const char *ca, const char *leaf)
{
    int status;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("openssl", "openssl", "verify", "-CAfile", ca, "-purpose", "sslserver", leaf,
               (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void test_name_constraints(void **state)
{
    static const struct {
        const char *host;
        int want;
    } cases[] = {
        { "api.example.com", X509_V_OK },
        { "registry.example.org", X509_V_OK },
        /* a DNS subtree: names below an intercepted one are inside it */
        { "sub.api.example.com", X509_V_OK },
        { "evil.example.com", X509_V_ERR_PERMITTED_VIOLATION },
        { "example.com", X509_V_ERR_PERMITTED_VIOLATION },
        { "api.example.com.evil.test", X509_V_ERR_PERMITTED_VIOLATION },
        { "xapi.example.com", X509_V_ERR_PERMITTED_VIOLATION },
        { "github.com", X509_V_ERR_PERMITTED_VIOLATION },
    };
    struct tls_ctx *t = tls_ctx_new();
    struct buf capem = BUF_INIT(1 << 20);
    const char *why = NULL;
    char dir[] = "/tmp/bb-test-tls.XXXXXX", cafile[64], leaffile[64];
    bool have_openssl = access("/usr/bin/openssl", X_OK) == 0;
    X509 *ca;
    (void)state;

    assert_int_equal(tls_intercept_add(t, "api.example.com", 443), 0);
    assert_int_equal(tls_intercept_add(t, "registry.example.org", 8443), 0);
    assert_int_equal(tls_intercept_add(t, "10.0.0.1", 443), -EINVAL);
    assert_int_equal(tls_intercept_add(t, "*.10.0.0.1", 443), -EINVAL);
    assert_int_equal(tls_intercept_add(t, "*.", 443), -EINVAL);
    assert_true(tls_intercepts(t, "api.example.com", 443));
    assert_false(tls_intercepts(t, "api.example.com", 8443));
    assert_false(tls_intercepts(t, "evil.example.com", 443));
    assert_int_equal(tls_ctx_start(t, "test", NULL, NULL, &why), 0);
    /* no host can be added once the CA is made */
    assert_int_equal(tls_intercept_add(t, "late.example.com", 443), -EINVAL);
    assert_int_equal(tls_ca_pem(t, &capem), 0);
    ca = from_pem(&capem);
    assert_non_null(mkdtemp(dir));
    snprintf(cafile, sizeof(cafile), "%s/ca.pem", dir);
    snprintf(leaffile, sizeof(leaffile), "%s/leaf.pem", dir);
    write_file(cafile, &capem);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf lp = BUF_INIT(1 << 20);
        X509 *leaf;
        int got;
        assert_int_equal(tls_leaf_pem(t, cases[i].host, &lp), 0);
        leaf = from_pem(&lp);
        got = verify(ca, leaf);
        if (got != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].host, X509_verify_cert_error_string(got),
                     X509_verify_cert_error_string(cases[i].want));
        if (have_openssl) {
            write_file(leaffile, &lp);
            assert_int_equal(openssl_verify(cafile, leaffile) == 0, cases[i].want == X509_V_OK);
        }
        X509_free(leaf);
        buf_done(&lp);
    }
    unlink(cafile);
    unlink(leaffile);
    rmdir(dir);
    X509_free(ca);
    buf_done(&capem);
    tls_ctx_free(t);
}

/* The verification result of a leaf for host signed by CA number ca, checked against every CA
 * in capem (the whole bundle, as a client has it), with OpenSSL and with `openssl verify`. */
static int verify_by(struct tls_ctx *t, size_t ca, const char *host, const struct buf *capem,
                     const char *dir)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    BIO *bio = BIO_new_mem_buf(capem->p, (int)capem->len);
    struct buf lp = BUF_INIT(1 << 20);
    char cafile[128], leaffile[128];
    X509 *c, *leaf;
    int r;

    while ((c = PEM_read_bio_X509(bio, NULL, NULL, NULL))) {
        X509_STORE_add_cert(st, c);
        X509_free(c);
    }
    BIO_free(bio);
    assert_int_equal(tls_leaf_pem_by(t, ca, host, &lp), 0);
    leaf = from_pem(&lp);
    X509_STORE_CTX_init(ctx, st, leaf, NULL);
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
    r = X509_verify_cert(ctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(ctx);
    if (access("/usr/bin/openssl", X_OK) == 0) {
        snprintf(cafile, sizeof(cafile), "%s/ca.pem", dir);
        snprintf(leaffile, sizeof(leaffile), "%s/leaf.pem", dir);
        write_file(cafile, capem);
        write_file(leaffile, &lp);
        if ((openssl_verify(cafile, leaffile) == 0) != (r == X509_V_OK))
            fail_msg("%s by CA %zu: openssl verify disagrees with X509_verify_cert", host, ca);
        unlink(cafile);
        unlink(leaffile);
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    X509_free(leaf);
    buf_done(&lp);
    return r;
}

/* Hosts added at run time: a CA each, constrained to the new host alone; the CAs made before
 * keep their constraint (no CA can sign anything new); "*.name" is the names below name, not
 * name itself. */
static void test_extend(void **state)
{
    static const struct {
        const char *host;
        int ok[3]; /* may CA 0 (start), 1 (wild.example) and 2 (late.example.org) sign it? */
    } cases[] = {
        { "api.example.com", { 1, 0, 0 } },
        { "a.wild.example", { 0, 1, 0 } },
        { "x.y.wild.example", { 0, 1, 0 } },
        { "wild.example", { 0, 0, 0 } }, /* the wildcard's own base name: no CA */
        { "late.example.org", { 0, 0, 1 } },
        { "evilwild.example", { 0, 0, 0 } },
        { "other.example.org", { 0, 0, 0 } },
        { "example.org", { 0, 0, 0 } },
        { "github.com", { 0, 0, 0 } },
    };
    struct tls_ctx *t = tls_ctx_new();
    struct buf capem = BUF_INIT(1 << 20), pem = BUF_INIT(1 << 20);
    const char *why = NULL;
    char dir[] = "/tmp/bb-test-tls.XXXXXX";
    struct tls_mark m;
    (void)state;

    assert_non_null(mkdtemp(dir));
    assert_int_equal(tls_intercept_extend(t, "late.example.org", 443, &pem), -EINVAL);
    assert_int_equal(tls_intercept_add(t, "api.example.com", 443), 0);
    assert_int_equal(tls_ctx_start(t, "test", NULL, NULL, &why), 0);
    assert_int_equal(tls_ca_count(t), 1);
    assert_false(tls_intercepts(t, "a.wild.example", 443));
    assert_int_equal(tls_intercept_extend(t, "*.wild.example", 443, &pem), 1);
    assert_true(tls_intercepts(t, "a.wild.example", 443));
    assert_true(tls_intercepts(t, "x.y.wild.example", 443));
    assert_false(tls_intercepts(t, "wild.example", 443));
    assert_false(tls_intercepts(t, "a.wild.example", 8443));
    /* a wildcard rule's target: covered by the subtree at or above its name only */
    assert_false(tls_intercepts(t, "*.wild.example", 443 - 1));
    assert_true(tls_intercepts(t, "*.wild.example", 443));
    assert_true(tls_intercepts(t, "*.a.wild.example", 443));
    assert_false(tls_intercepts(t, "*.example", 443));
    assert_false(tls_intercepts(t, "*.example.com", 443)); /* api.example.com: not a subtree */
    assert_false(tls_intercepts(t, "*.api.example.com", 443));
    assert_int_equal(tls_intercept_extend(t, "late.example.org", 443, &pem), 1);
    /* known already: nothing new; one more port of a covered name: no new CA */
    assert_int_equal(tls_intercept_extend(t, "late.example.org", 443, &pem), 0);
    assert_int_equal(tls_intercept_extend(t, "b.wild.example", 443, &pem), 0);
    assert_int_equal(tls_intercept_extend(t, "api.example.com", 8443, &pem), 0);
    assert_true(tls_intercepts(t, "api.example.com", 8443));
    assert_int_equal(tls_ca_count(t), 3);
    assert_int_equal(tls_intercept_extend(t, "10.0.0.1", 443, &pem), -EINVAL);
    /* what extend returned is what tls_ca_pem gives after the first CA */
    assert_int_equal(tls_ca_pem(t, &capem), 0);
    assert_true(capem.len > pem.len);
    assert_memory_equal(capem.p + capem.len - pem.len, pem.p, pem.len);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (size_t ca = 0; ca < 3; ca++) {
            int got = verify_by(t, ca, cases[i].host, &capem, dir);
            if ((got == X509_V_OK) != cases[i].ok[ca])
                fail_msg("%s signed by CA %zu: got %s", cases[i].host, ca,
                         X509_verify_cert_error_string(got));
        }
    /* a rollback forgets what was added since the mark */
    m = tls_intercept_mark(t);
    assert_int_equal(tls_intercept_extend(t, "gone.example.net", 443, &pem), 1);
    assert_true(tls_intercepts(t, "gone.example.net", 443));
    tls_intercept_rollback(t, m);
    assert_false(tls_intercepts(t, "gone.example.net", 443));
    assert_int_equal(tls_ca_count(t), 3);
    rmdir(dir);
    buf_done(&capem);
    buf_done(&pem);
    tls_ctx_free(t);
}

/* Nothing to intercept at start: no CA at all (a NameConstraints extension without a DNS
 * subtree would permit every name); the first host added makes one. */
static void test_start_empty(void **state)
{
    struct tls_ctx *t = tls_ctx_new();
    struct buf pem = BUF_INIT(1 << 20);
    const char *why = NULL;
    (void)state;

    assert_int_equal(tls_ctx_start(t, "test", NULL, NULL, &why), 0);
    assert_int_equal(tls_ca_count(t), 0);
    assert_int_equal(tls_ca_pem(t, &pem), -ENOENT);
    assert_int_equal(tls_leaf_pem(t, "api.example.com", &pem), -EINVAL);
    assert_int_equal(tls_intercept_extend(t, "api.example.com", 443, &pem), 1);
    assert_int_equal(tls_ca_count(t), 1);
    buf_done(&pem);
    tls_ctx_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_constraints),
        cmocka_unit_test(test_extend),
        cmocka_unit_test(test_start_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
