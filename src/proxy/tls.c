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
    bool subtree; /* "*.name": every name below name, not name itself */
};

struct tls_leaf {
    char name[BB_MAX_HOSTNAME + 1];
    X509 *cert;
    const struct tls_ca *ca; /* its issuer */
};

/* One CA: constrained to hosts[first .. first + n) and nothing else. The first is made at
 * start for the hosts added before it; each tls_intercept_extend() makes another for its one
 * new host, so no CA's constraint ever widens (tls-runtime notes in docs/credentials.md). */
struct tls_ca {
    EVP_PKEY *key;
    X509 *cert;
    size_t first, n;
};

struct tls_ctx {
    struct tls_host hosts[TLS_MAX_HOSTS];
    size_t n_hosts;
    EVP_PKEY *leaf_key;
    struct tls_ca cas[TLS_MAX_CAS];
    size_t n_cas;
    bool started;
    char ca_name[80]; /* the bottle's name, for the CAs' subjects */
    SSL_CTX *server, *client;
    struct tls_leaf leaves[TLS_MAX_HOSTS]; /* a cache; a leaf past it is made for each use */
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
    for (size_t i = 0; i < t->n_cas; i++) {
        X509_free(t->cas[i].cert);
        EVP_PKEY_free(t->cas[i].key);
    }
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

/* Is host (a normalised name) the entry h's name, or (a subtree) strictly below it? */
static bool host_covers(const struct tls_host *h, const char *host)
{
    size_t n = strlen(host), hn = strlen(h->name);

    if (!h->subtree)
        return strcmp(h->name, host) == 0;
    return n > hn + 1 && host[n - hn - 1] == '.' && strcmp(host + n - hn, h->name) == 0;
}

/* Add "name" or "*.name" on port to the set (not yet to any CA). 1 added, 0 already there. */
static int host_add(struct tls_ctx *t, const char *host, uint16_t port)
{
    bool subtree = strncmp(host, "*.", 2) == 0;
    const char *name = subtree ? host + 2 : host;

    if (!name_ok(name) || port == 0)
        return -EINVAL;
    for (size_t i = 0; i < t->n_hosts; i++)
        if (t->hosts[i].port == port && t->hosts[i].subtree == subtree &&
            strcmp(t->hosts[i].name, name) == 0)
            return 0;
    if (t->n_hosts >= TLS_MAX_HOSTS)
        return -E2BIG;
    snprintf(t->hosts[t->n_hosts].name, sizeof(t->hosts[0].name), "%s", name);
    t->hosts[t->n_hosts].port = port;
    t->hosts[t->n_hosts].subtree = subtree;
    t->n_hosts++;
    return 1;
}

int tls_intercept_add(struct tls_ctx *t, const char *host, uint16_t port)
{
    int r;

    if (t->started)
        return -EINVAL;
    r = host_add(t, host, port);
    return r < 0 ? r : 0;
}

size_t tls_intercept_count(const struct tls_ctx *t)
{
    return t ? t->n_hosts : 0;
}

bool tls_intercepts(const struct tls_ctx *t, const char *host, uint16_t port)
{
    bool subtree = strncmp(host, "*.", 2) == 0;

    for (size_t i = 0; t && i < t->n_hosts; i++) {
        const struct tls_host *h = &t->hosts[i];
        if (h->port != port)
            continue;
        /* "*.name": every name below name, which only a subtree at or above name covers */
        if (subtree ? h->subtree && (strcmp(h->name, host + 2) == 0 || host_covers(h, host + 2))
                    : host_covers(h, host))
            return true;
    }
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

/* A new CA in t->cas[t->n_cas] for hosts[first .. n_hosts) (at least one: a NameConstraints
 * extension without a DNS subtree would leave every DNS name permitted). */
static int make_ca(struct tls_ctx *t, const char *name, size_t first)
{
    struct buf nc = BUF_INIT(TLS_MAX_HOSTS * (BB_MAX_HOSTNAME + 16) + 256);
    struct tls_ca *ca = &t->cas[t->n_cas];
    char cn[128];
    int r = -ENOMEM;

    if (first >= t->n_hosts)
        return -EINVAL;
    if (t->n_cas >= TLS_MAX_CAS)
        return -E2BIG;
    memset(ca, 0, sizeof(*ca));
    ca->key = EVP_EC_gen("P-256");
    if (!ca->key)
        goto out;
    if (t->n_cas == 0)
        snprintf(cn, sizeof(cn), "bot-bottle CA for bottle %.64s", name ? name : "egress");
    else
        snprintf(cn, sizeof(cn), "bot-bottle CA %zu for bottle %.64s", t->n_cas + 1,
                 name ? name : "egress");
    ca->cert = new_cert(ca->key, cn, CA_DAYS);
    if (!ca->cert || !X509_set_issuer_name(ca->cert, X509_get_subject_name(ca->cert)))
        goto out;
    /* Exactly these intercepted names (and the names below them: that is what a DNS subtree
     * is; "*.name" is ".name", the names below only, as OpenSSL and Go read it), no IP address
     * at all (the only permitted ones are 0.0.0.0/32 and ::/128). */
    r = buf_append_str(&nc, "critical");
    for (size_t i = first; r >= 0 && i < t->n_hosts; i++) {
        bool dup = false;
        for (size_t k = first; k < i; k++)
            dup |= t->hosts[k].subtree == t->hosts[i].subtree &&
                   strcmp(t->hosts[k].name, t->hosts[i].name) == 0;
        if (!dup)
            r = buf_printf(&nc, ",permitted;DNS:%s%s", t->hosts[i].subtree ? "." : "",
                           t->hosts[i].name);
    }
    if (r >= 0)
        r = buf_append_str(&nc, ",permitted;IP:0.0.0.0/255.255.255.255,permitted;IP:::/"
                                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    if (r < 0)
        goto out;
    if ((r = add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0")) <
            0 ||
        (r = add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0 ||
        (r = add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash")) < 0 ||
        (r = add_ext(ca->cert, ca->cert, NID_name_constraints, buf_str(&nc))) < 0)
        goto out;
    r = X509_sign(ca->cert, ca->key, EVP_sha256()) > 0 ? 0 : -EINVAL;
out:
    buf_done(&nc);
    if (r < 0) {
        X509_free(ca->cert);
        EVP_PKEY_free(ca->key);
        memset(ca, 0, sizeof(*ca));
        return r;
    }
    ca->first = first;
    ca->n = t->n_hosts - first;
    t->n_cas++;
    return 0;
}

/* The CA whose constraint covers host (the first one), or NULL. */
static struct tls_ca *ca_for(struct tls_ctx *t, const char *host)
{
    for (size_t c = 0; c < t->n_cas; c++)
        for (size_t i = t->cas[c].first; i < t->cas[c].first + t->cas[c].n; i++)
            if (host_covers(&t->hosts[i], host))
                return &t->cas[c];
    return NULL;
}

/* A leaf for host signed by ca (not cached). */
static X509 *sign_leaf(struct tls_ctx *t, const struct tls_ca *ca, const char *host)
{
    char san[BB_MAX_HOSTNAME + 8];
    X509 *c = new_cert(t->leaf_key, host, LEAF_DAYS);

    if (!c)
        return NULL;
    snprintf(san, sizeof(san), "DNS:%s", host);
    if (!X509_set_issuer_name(c, X509_get_subject_name(ca->cert)) ||
        add_ext(c, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(c, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(c, ca->cert, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(c, ca->cert, NID_subject_alt_name, san) < 0 ||
        add_ext(c, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
        X509_sign(c, ca->key, EVP_sha256()) <= 0) {
        X509_free(c);
        return NULL;
    }
    return c;
}

/* The leaf for host (a reference of the caller's own: X509_free it) and, in *ret_ca, the CA
 * that signed it: the one whose constraint covers host, else (tests: what can a CA sign?) the
 * first. Cached per name while the cache has room (a subtree has no bound on its names). */
static X509 *leaf_for(struct tls_ctx *t, const char *host, struct tls_ca **ret_ca)
{
    struct tls_ca *ca = ca_for(t, host);
    bool cache = ca != NULL;
    X509 *c;

    if (!ca && t->n_cas)
        ca = &t->cas[0];
    if (!ca)
        return NULL;
    *ret_ca = ca;
    for (size_t i = 0; i < t->n_leaves; i++)
        if (t->leaves[i].ca == ca && strcmp(t->leaves[i].name, host) == 0) {
            X509_up_ref(t->leaves[i].cert);
            return t->leaves[i].cert;
        }
    c = sign_leaf(t, ca, host);
    if (!c || !cache || t->n_leaves >= TLS_MAX_HOSTS)
        return c;
    snprintf(t->leaves[t->n_leaves].name, sizeof(t->leaves[0].name), "%s", host);
    X509_up_ref(c);
    t->leaves[t->n_leaves].cert = c;
    t->leaves[t->n_leaves].ca = ca;
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

    t->started = true;
    snprintf(t->ca_name, sizeof(t->ca_name), "%s", name ? name : "egress");
    t->leaf_key = EVP_EC_gen("P-256");
    /* no CA while nothing is intercepted (tls_intercept_extend makes the first later) */
    if (!t->leaf_key || (t->n_hosts && make_ca(t, t->ca_name, 0) < 0)) {
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
    struct tls_ca *ca = NULL;
    X509 *c = leaf_for(t, host, &ca);
    int r = c ? pem_of(c, out) : -EINVAL;

    X509_free(c);
    return r;
}

int tls_leaf_pem_by(struct tls_ctx *t, size_t ca, const char *host, struct buf *out)
{
    X509 *c = ca < t->n_cas ? sign_leaf(t, &t->cas[ca], host) : NULL;
    int r = c ? pem_of(c, out) : -EINVAL;

    X509_free(c);
    return r;
}

bool tls_ctx_started(const struct tls_ctx *t)
{
    return t && t->started;
}

size_t tls_ca_count(const struct tls_ctx *t)
{
    return t ? t->n_cas : 0;
}

int tls_ca_pem(const struct tls_ctx *t, struct buf *out)
{
    int r = t->n_cas ? 0 : -ENOENT;

    for (size_t i = 0; r >= 0 && i < t->n_cas; i++)
        r = pem_of(t->cas[i].cert, out);
    return r;
}

struct tls_mark tls_intercept_mark(const struct tls_ctx *t)
{
    return (struct tls_mark){ .hosts = t->n_hosts, .cas = t->n_cas };
}

void tls_intercept_rollback(struct tls_ctx *t, struct tls_mark m)
{
    while (t->n_cas > m.cas) {
        struct tls_ca *ca = &t->cas[--t->n_cas];
        for (size_t i = 0; i < t->n_leaves;) /* (none, if nothing was served meanwhile) */
            if (t->leaves[i].ca == ca) {
                X509_free(t->leaves[i].cert);
                t->leaves[i] = t->leaves[--t->n_leaves];
            } else {
                i++;
            }
        X509_free(ca->cert);
        EVP_PKEY_free(ca->key);
        memset(ca, 0, sizeof(*ca));
    }
    if (t->n_hosts > m.hosts)
        t->n_hosts = m.hosts;
}

int tls_intercept_extend(struct tls_ctx *t, const char *host, uint16_t port, struct buf *out)
{
    bool subtree = strncmp(host, "*.", 2) == 0;
    size_t first = t->n_hosts;
    int r;

    if (!t->started)
        return -EINVAL;
    /* already intercepted: an exact name inside a subtree in force, or the entry itself */
    if (!subtree && tls_intercepts(t, host, port))
        return 0;
    if (t->n_cas >= TLS_MAX_CAS)
        return -E2BIG;
    r = host_add(t, host, port);
    if (r <= 0)
        return r;
    /* A name some CA already covers on another port needs no new CA: its constraint holds
     * the name already (an exact name's CA also covers the names below it, which is why a
     * subtree always gets a CA of its own: its entry says "not the name itself"). */
    if (!subtree && ca_for(t, host))
        return 0;
    r = make_ca(t, t->ca_name, first);
    if (r < 0) {
        t->n_hosts = first; /* not intercepted without a CA the bottle can be given */
        return r;
    }
    r = pem_of(t->cas[t->n_cas - 1].cert, out);
    return r < 0 ? r : 1;
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
    struct tls_ca *ca = NULL;
    X509 *leaf = leaf_for(t, host, &ca);
    SSL *ssl;

    if (!leaf)
        return -ENOMEM;
    ssl = SSL_new(t->server);
    if (!ssl) {
        X509_free(leaf);
        return -ENOMEM;
    }
    if (SSL_use_certificate(ssl, leaf) != 1 || SSL_use_PrivateKey(ssl, t->leaf_key) != 1 ||
        SSL_add1_chain_cert(ssl, ca->cert) != 1) {
        X509_free(leaf);
        SSL_free(ssl);
        ERR_clear_error();
        return -EINVAL;
    }
    X509_free(leaf);
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
