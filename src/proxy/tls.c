/* TLS interception: the per-daemon CA, leaf certificates, the TLS transport (tls.h). */
#include "proxy/tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "proxy/proxy-int.h"

#define HOST_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define CA_DAYS 365
#define LEAF_DAYS 30

struct tls_host {
    char name[BB_MAX_HOSTNAME + 1];
    uint16_t port;
};

struct tls_leaf {
    char name[BB_MAX_HOSTNAME + 1];
    X509 *cert;
};

struct tls_ctx {
    struct tls_host hosts[TLS_MAX_HOSTS];
    size_t n_hosts;
    EVP_PKEY *ca_key, *leaf_key;
    X509 *ca;
    SSL_CTX *server, *client;
    struct tls_leaf leaves[TLS_MAX_HOSTS]; /* one per intercepted name at most */
    size_t n_leaves;
};

struct tls_ctx *tls_ctx_new(void)
{
    return xcalloc(1, sizeof(struct tls_ctx));
}

struct tls_ctx *tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return NULL;
    for (size_t i = 0; i < t->n_leaves; i++)
        X509_free(t->leaves[i].cert);
    SSL_CTX_free(t->server);
    SSL_CTX_free(t->client);
    X509_free(t->ca);
    EVP_PKEY_free(t->ca_key);
    EVP_PKEY_free(t->leaf_key);
    free(t);
    return NULL;
}

static bool name_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > BB_MAX_HOSTNAME || h[0] == '.' || h[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((h[i] >= 'a' && h[i] <= 'z') || ascii_isdigit(h[i]) || h[i] == '-' || h[i] == '.'))
            return false;
    /* an IPv4 address is not a name */
    return strspn(h, "0123456789.") != n;
}

int tls_intercept_add(struct tls_ctx *t, const char *host, uint16_t port)
{
    if (!name_ok(host) || port == 0 || t->ca)
        return -EINVAL;
    if (tls_intercepts(t, host, port))
        return 0;
    if (t->n_hosts >= TLS_MAX_HOSTS)
        return -E2BIG;
    snprintf(t->hosts[t->n_hosts].name, sizeof(t->hosts[0].name), "%s", host);
    t->hosts[t->n_hosts].port = port;
    t->n_hosts++;
    return 0;
}

size_t tls_intercept_count(const struct tls_ctx *t)
{
    return t ? t->n_hosts : 0;
}

bool tls_intercepts(const struct tls_ctx *t, const char *host, uint16_t port)
{
    for (size_t i = 0; t && i < t->n_hosts; i++)
        if (t->hosts[i].port == port && strcmp(t->hosts[i].name, host) == 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- certificates */

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -EINVAL;
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -ENOMEM;
}

static X509 *new_cert(EVP_PKEY *key, const char *cn, long days)
{
    X509 *c = X509_new();
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    X509_NAME *nm;

    if (!c)
        return NULL;
    if (RAND_bytes(serial, sizeof(serial)) != 1)
        goto fail;
    serial[0] &= 0x7f; /* positive */
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c)) || !X509_set_version(c, 2) ||
        !X509_gmtime_adj(X509_getm_notBefore(c), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(c), days * 86400L) || !X509_set_pubkey(c, key))
        goto fail;
    nm = X509_get_subject_name(c);
    if (!X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
        goto fail;
    BN_free(bn);
    return c;
fail:
    BN_free(bn);
    X509_free(c);
    return NULL;
}

static int make_ca(struct tls_ctx *t, const char *name)
{
    struct buf nc = BUF_INIT(TLS_MAX_HOSTS * (BB_MAX_HOSTNAME + 16) + 256);
    char cn[128];
    int r = -ENOMEM;

    t->ca_key = EVP_EC_gen("P-256");
    t->leaf_key = EVP_EC_gen("P-256");
    if (!t->ca_key || !t->leaf_key)
        return -ENOMEM;
    snprintf(cn, sizeof(cn), "bot-bottle CA for bottle %.64s", name ? name : "egress");
    t->ca = new_cert(t->ca_key, cn, CA_DAYS);
    if (!t->ca || !X509_set_issuer_name(t->ca, X509_get_subject_name(t->ca)))
        goto out;
    /* Exactly the intercepted names (and the names below them: that is what a DNS subtree
     * is), no IP address at all (the only permitted ones are 0.0.0.0/32 and ::/128). */
    r = buf_append_str(&nc, "critical");
    for (size_t i = 0; r >= 0 && i < t->n_hosts; i++) {
        bool dup = false;
        for (size_t k = 0; k < i; k++)
            dup |= strcmp(t->hosts[k].name, t->hosts[i].name) == 0;
        if (!dup)
            r = buf_printf(&nc, ",permitted;DNS:%s", t->hosts[i].name);
    }
    if (r >= 0)
        r = buf_append_str(&nc, ",permitted;IP:0.0.0.0/255.255.255.255,permitted;IP:::/"
                                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    if (r < 0)
        goto out;
    if ((r = add_ext(t->ca, t->ca, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) < 0 ||
        (r = add_ext(t->ca, t->ca, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0 ||
        (r = add_ext(t->ca, t->ca, NID_subject_key_identifier, "hash")) < 0 ||
        (r = add_ext(t->ca, t->ca, NID_name_constraints, buf_str(&nc))) < 0)
        goto out;
    r = X509_sign(t->ca, t->ca_key, EVP_sha256()) > 0 ? 0 : -EINVAL;
out:
    buf_done(&nc);
    return r;
}

static X509 *leaf_for(struct tls_ctx *t, const char *host)
{
    char san[BB_MAX_HOSTNAME + 8];
    X509 *c;

    for (size_t i = 0; i < t->n_leaves; i++)
        if (strcmp(t->leaves[i].name, host) == 0)
            return t->leaves[i].cert;
    if (t->n_leaves >= TLS_MAX_HOSTS)
        return NULL;
    c = new_cert(t->leaf_key, host, LEAF_DAYS);
    if (!c)
        return NULL;
    snprintf(san, sizeof(san), "DNS:%s", host);
    if (!X509_set_issuer_name(c, X509_get_subject_name(t->ca)) ||
        add_ext(c, t->ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(c, t->ca, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(c, t->ca, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(c, t->ca, NID_subject_alt_name, san) < 0 ||
        add_ext(c, t->ca, NID_authority_key_identifier, "keyid:always") < 0 ||
        X509_sign(c, t->ca_key, EVP_sha256()) <= 0) {
        X509_free(c);
        return NULL;
    }
    snprintf(t->leaves[t->n_leaves].name, sizeof(t->leaves[0].name), "%s", host);
    t->leaves[t->n_leaves].cert = c;
    t->n_leaves++;
    return c;
}

/* ALPN: http/1.1 only (the proxy speaks HTTP/1.x); a client offering only h2 gets none. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    unsigned char *sel = NULL;
    unsigned char sellen = 0;
    (void)ssl;
    (void)arg;

    if (SSL_select_next_proto(&sel, &sellen, h11, sizeof(h11), in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    *outlen = sellen;
    return SSL_TLSEXT_ERR_OK;
}

int tls_ctx_start(struct tls_ctx *t, const char *name, const char *ca_bundle, const char *extra_ca,
                  const char **reterr)
{
    static const unsigned char h11[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
    const char *bundle = ca_bundle ? ca_bundle : HOST_CA_BUNDLE;
    const long opts =
        SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION;
    const long modes = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;

    if (make_ca(t, name) < 0) {
        *reterr = "cannot generate the bottle's CA";
        return -ENOMEM;
    }
    t->server = SSL_CTX_new(TLS_server_method());
    t->client = SSL_CTX_new(TLS_client_method());
    if (!t->server || !t->client) {
        *reterr = "cannot create the TLS contexts";
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(t->server, TLS1_2_VERSION);
    SSL_CTX_set_min_proto_version(t->client, TLS1_2_VERSION);
    SSL_CTX_set_options(t->server, (uint64_t)opts);
    SSL_CTX_set_options(t->client, (uint64_t)opts);
    SSL_CTX_set_mode(t->server, modes);
    SSL_CTX_set_mode(t->client, modes);
    /* One read(2) per TLS record or more instead of two (header, then body); what is read
     * ahead is drained by tls_recv or reported by tls_pending. */
    SSL_CTX_set_read_ahead(t->server, 1);
    SSL_CTX_set_read_ahead(t->client, 1);
    SSL_CTX_set_alpn_select_cb(t->server, alpn_select, NULL);
    SSL_CTX_set_session_cache_mode(t->server, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(t->server, 0);
    if (SSL_CTX_set_alpn_protos(t->client, h11, sizeof(h11)) != 0) {
        *reterr = "cannot set ALPN";
        return -EINVAL;
    }
    SSL_CTX_set_verify(t->client, SSL_VERIFY_PEER, NULL);
    if (access(bundle, R_OK) == 0) {
        if (SSL_CTX_load_verify_locations(t->client, bundle, NULL) != 1) {
            *reterr = "cannot load the host's CA bundle";
            return -EINVAL;
        }
    } else if (ca_bundle || SSL_CTX_set_default_verify_paths(t->client) != 1) {
        *reterr = "cannot find the host's CA bundle";
        return -ENOENT;
    }
    if (extra_ca && SSL_CTX_load_verify_locations(t->client, extra_ca, NULL) != 1) {
        *reterr = "cannot load [tls] extra_ca (a PEM file of CA certificates)";
        return -EINVAL;
    }
    ERR_clear_error();
    return 0;
}

static int pem_of(X509 *c, struct buf *out)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    int r = -ENOMEM;

    if (b && PEM_write_bio_X509(b, c) == 1) {
        n = BIO_get_mem_data(b, &p);
        r = n > 0 ? buf_append(out, p, (size_t)n) : -EINVAL;
    }
    BIO_free(b);
    return r;
}

int tls_leaf_pem(struct tls_ctx *t, const char *host, struct buf *out)
{
    X509 *c = t->ca ? leaf_for(t, host) : NULL;
    return c ? pem_of(c, out) : -EINVAL;
}

int tls_ca_pem(const struct tls_ctx *t, struct buf *out)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;
    int r = -ENOMEM;

    if (!b || !t->ca)
        goto out;
    if (PEM_write_bio_X509(b, t->ca) != 1)
        goto out;
    n = BIO_get_mem_data(b, &p);
    r = n > 0 ? buf_append(out, p, (size_t)n) : -EINVAL;
out:
    BIO_free(b);
    return r;
}

/* ---------------------------------------------------------------- the transport */

static SSL *ssl_of(const struct side *s)
{
    return s->tp_ctx;
}

static ssize_t tls_recv(struct side *s, void *p, size_t len)
{
    size_t got = 0;
    int n, e;

    s->want = 0;
    s->rpending = false;
    ERR_clear_error();
    /* With read-ahead, whole records may wait in OpenSSL's buffer with no readiness event to
     * announce them: take them all, or say (rpending) that the caller's room ran out first. */
    for (;;) {
        n = SSL_read(ssl_of(s), (char *)p + got, (int)MIN(len - got, (size_t)INT32_MAX));
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == len) {
            s->rpending = SSL_has_pending(ssl_of(s)) == 1;
            return (ssize_t)got;
        }
        if (SSL_has_pending(ssl_of(s)) != 1)
            return (ssize_t)got; /* nothing buffered: no read(2) just to hear EAGAIN */
    }
    if (got) {
        /* The rest, if any, is a partial record: the fd will announce the remainder. An end
         * or an error found after the data is reported by the next call, at once. */
        s->rpending = SSL_get_error(ssl_of(s), n) != SSL_ERROR_WANT_READ;
        ERR_clear_error();
        return (ssize_t)got;
    }
    e = SSL_get_error(ssl_of(s), n);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return 0;
    case SSL_ERROR_WANT_WRITE:
        s->want = EPOLLOUT;
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        return -EPIPE;
    default:
        ERR_clear_error();
        return -ECONNRESET;
    }
}

static ssize_t tls_send(struct side *s, const void *p, size_t len)
{
    int n, e;

    s->want = 0;
    ERR_clear_error();
    n = SSL_write(ssl_of(s), p, (int)MIN(len, (size_t)INT32_MAX));
    if (n > 0)
        return n;
    e = SSL_get_error(ssl_of(s), n);
    if (e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_WANT_READ) {
        s->want = EPOLLIN;
        return 0;
    }
    ERR_clear_error();
    return -EPIPE;
}

static int tls_shutdown(struct side *s)
{
    ERR_clear_error();
    (void)SSL_shutdown(ssl_of(s)); /* close_notify, best effort (non-blocking) */
    ERR_clear_error();
    return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

static void tls_close(struct side *s)
{
    SSL_free(ssl_of(s));
    s->tp_ctx = NULL;
    close(s->fd);
}

static size_t tls_pending(const struct side *s)
{
    int n = SSL_pending(ssl_of(s));
    return n > 0 ? (size_t)n : s->rpending ? 1 : 0;
}

const struct transport_ops transport_tls = {
    .name = "tls",
    .recv = tls_recv,
    .send = tls_send,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .pending = tls_pending,
    .can_splice = false,
};

static int side_attach(struct side *s, SSL *ssl)
{
    if (SSL_set_fd(ssl, s->fd) != 1) {
        SSL_free(ssl);
        return -ENOMEM;
    }
    s->tp = &transport_tls;
    s->tp_ctx = ssl;
    s->want = 0;
    return 0;
}

int tls_side_server(struct tls_ctx *t, struct side *s, const char *host)
{
    X509 *leaf = leaf_for(t, host);
    SSL *ssl;

    if (!leaf)
        return -ENOMEM;
    ssl = SSL_new(t->server);
    if (!ssl)
        return -ENOMEM;
    if (SSL_use_certificate(ssl, leaf) != 1 || SSL_use_PrivateKey(ssl, t->leaf_key) != 1 ||
        SSL_add1_chain_cert(ssl, t->ca) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -EINVAL;
    }
    SSL_set_accept_state(ssl);
    return side_attach(s, ssl);
}

int tls_side_client(struct tls_ctx *t, struct side *s, const char *host)
{
    SSL *ssl = SSL_new(t->client);

    if (!ssl)
        return -ENOMEM;
    if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -EINVAL;
    }
    SSL_set_connect_state(ssl);
    return side_attach(s, ssl);
}

int tls_side_handshake(struct side *s, const char **reterr)
{
    SSL *ssl = ssl_of(s);
    int n, e;

    s->want = 0;
    ERR_clear_error();
    n = SSL_do_handshake(ssl);
    if (n == 1)
        return 1;
    e = SSL_get_error(ssl, n);
    if (e == SSL_ERROR_WANT_READ) {
        s->want = EPOLLIN;
        return 0;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        s->want = EPOLLOUT;
        return 0;
    }
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        *reterr = X509_verify_cert_error_string(SSL_get_verify_result(ssl));
    else
        *reterr = "TLS handshake failed";
    ERR_clear_error();
    return -EPROTO;
}

bool tls_side_idle_alive(struct side *s)
{
    char b;
    int n;

    /* Consume what arrived while idle (TLS 1.3 session tickets): alive only if that leaves
     * nothing to read and no end of stream. */
    ERR_clear_error();
    n = SSL_read(ssl_of(s), &b, 1);
    if (n > 0)
        return false;
    n = SSL_get_error(ssl_of(s), n);
    ERR_clear_error();
    return n == SSL_ERROR_WANT_READ;
}
