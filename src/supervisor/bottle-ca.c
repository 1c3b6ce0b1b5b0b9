/* The bottle's trust for TLS interception (bottle-ca.h). */
#include "supervisor/bottle-ca.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/fileio.h"
#include "common/log.h"

#define HOST_CA_BUNDLE "/etc/ssl/certs/ca-certificates.crt"
#define BUNDLE_MAX (16 * 1024 * 1024)

/* Append what fd holds to b. */
static int append_fd(struct buf *b, int fd)
{
    char tmp[65536];
    ssize_t n;

    while ((n = read(fd, tmp, sizeof(tmp))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (buf_append(b, tmp, (size_t)n) < 0)
            return -E2BIG;
    }
    return 0;
}

/* Append the file at path (a PEM bundle) to b, with a newline after it. */
static int append_file(struct buf *b, const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    int r;

    if (fd < 0)
        return -errno;
    r = append_fd(b, fd);
    if (r < 0)
        return r;
    return buf_append(b, "\n", 1) < 0 ? -E2BIG : 0;
}

/*
 * Append only the certificates of the PEM file at path (whole "-----BEGIN CERTIFICATE-----" ..
 * "-----END CERTIFICATE-----" blocks, line by line) to b. The file is named by a config file
 * (possibly a project's, approved by its text, not by what the path holds at run time), read
 * with the user's rights and shown to the bottle: a private key next to a certificate, or any
 * other content of a host file, stays out.
 */
static int append_certificates(struct buf *b, const char *path)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----", end[] = "-----END CERTIFICATE-----";
    struct buf raw = BUF_INIT(BUNDLE_MAX);
    bool in = false;
    size_t n = 0;
    int r = append_file(&raw, path);

    for (size_t i = 0; r >= 0 && i < raw.len;) {
        const char *line = raw.p + i, *nl = memchr(line, '\n', raw.len - i);
        size_t len = nl ? (size_t)(nl - line) : raw.len - i;
        size_t l = len;

        i += len + (nl ? 1 : 0);
        if (l && line[l - 1] == '\r')
            l--;
        if (!in && l == sizeof(begin) - 1 && memcmp(line, begin, l) == 0)
            in = true;
        if (in) {
            r = buf_append(b, line, l) < 0 || buf_append(b, "\n", 1) < 0 ? -E2BIG : 0;
            if (l == sizeof(end) - 1 && memcmp(line, end, l) == 0) {
                in = false;
                n++;
            }
        }
    }
    if (r >= 0 && in)
        r = -EINVAL; /* a certificate that does not end: drop nothing half-way, refuse */
    if (r >= 0 && n == 0)
        r = -EINVAL;
    if (raw.p)
        explicit_bzero(raw.p, raw.len);
    buf_done(&raw);
    return r;
}

static int write_at(int dirfd, const char *name, const char *p, size_t len)
{
    _cleanup_close_ int fd =
        openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    size_t off = 0;

    if (fd < 0)
        return -errno;
    while (off < len) {
        ssize_t w = write(fd, p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        off += (size_t)w;
    }
    return 0;
}

/*
 * Replace dir/name by its content followed by pem, atomically: a new file beside it, renamed
 * over it. The bottle sees tls/ through a bind mount of the directory (namespace backend) or a
 * 9p share of it (microvm; cache=mmap, no dentry cache): a lookup of the name finds the new
 * file, and a process reading the bundle at that moment has the old one or the new one, never
 * half of one (an in-place rewrite would show a truncated bundle, which trusts nothing).
 */
static int append_replace(int dfd, const char *name, const char *pem, size_t len)
{
    struct buf b = BUF_INIT(BUNDLE_MAX);
    char tmp[64];
    int r;

    if (snprintf(tmp, sizeof(tmp), ".%s.new", name) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    {
        _cleanup_close_ int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            return -errno;
        r = append_fd(&b, fd);
    }
    if (r >= 0)
        r = buf_append(&b, pem, len) < 0 ? -E2BIG : 0;
    if (r >= 0)
        r = write_at(dfd, tmp, buf_str(&b), b.len);
    if (r >= 0 && renameat(dfd, tmp, dfd, name) < 0)
        r = -errno;
    if (r < 0)
        (void)unlinkat(dfd, tmp, 0);
    buf_done(&b);
    return r;
}

int bottle_ca_add(const char *dir, const char *pem, size_t len)
{
    char path[PATH_MAX];
    _cleanup_close_ int dfd = -1;
    int r;

    if (snprintf(path, sizeof(path), "%s/tls", dir) >= (int)sizeof(path))
        return log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "%s/tls", dir);
    dfd = open(path, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return log_errno(LOG_LVL_ERROR, -errno, "cannot open %s", path);
    r = append_replace(dfd, "ca-bundle.crt", pem, len);
    if (r >= 0)
        r = append_replace(dfd, "ca.pem", pem, len);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot add a CA to the bottle's CA bundle in %s", path);
    return 0;
}

int bottle_ca_install(const char *dir, const char *pem, size_t len, const char *extra_ca,
                      struct bottle_spec *spec)
{
    struct buf bundle = BUF_INIT(BUNDLE_MAX);
    char path[PATH_MAX], arg[PATH_MAX + 64];
    _cleanup_close_ int dfd = -1;
    int r;

    if (snprintf(path, sizeof(path), "%s/tls", dir) >= (int)sizeof(path))
        return log_errno(LOG_LVL_ERROR, -ENAMETOOLONG, "%s/tls", dir);
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return log_errno(LOG_LVL_ERROR, -errno, "cannot create %s", path);
    dfd = open(path, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return log_errno(LOG_LVL_ERROR, -errno, "cannot open %s", path);
    r = append_file(&bundle, HOST_CA_BUNDLE);
    if (r < 0 && r != -ENOENT) {
        buf_done(&bundle);
        return log_errno(LOG_LVL_ERROR, r, "cannot read %s", HOST_CA_BUNDLE);
    }
    if (extra_ca && (r = append_certificates(&bundle, extra_ca)) < 0) {
        buf_done(&bundle);
        return log_errno(LOG_LVL_ERROR, r, "cannot read [tls] extra_ca %s%s", extra_ca,
                         r == -EINVAL ? " (a PEM file of certificates: none, or one unfinished)"
                                      : "");
    }
    r = buf_append(&bundle, pem, len);
    if (r >= 0)
        r = write_at(dfd, "ca-bundle.crt", buf_str(&bundle), bundle.len);
    if (r >= 0)
        r = write_at(dfd, "ca.pem", pem, len);
    buf_done(&bundle);
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot write the bottle's CA bundle in %s", path);
    snprintf(arg, sizeof(arg), "%s:%s:ro", path, BOTTLE_CA_DIR);
    r = bottle_spec_add_mount_arg(spec, arg);
    if (r >= 0)
        r = bottle_spec_set_env(spec, "SSL_CERT_FILE", BOTTLE_CA_DIR "/ca-bundle.crt");
    if (r >= 0)
        r = bottle_spec_set_env(spec, "CURL_CA_BUNDLE", BOTTLE_CA_DIR "/ca-bundle.crt");
    if (r >= 0)
        r = bottle_spec_set_env(spec, "REQUESTS_CA_BUNDLE", BOTTLE_CA_DIR "/ca-bundle.crt");
    if (r >= 0)
        r = bottle_spec_set_env(spec, "GIT_SSL_CAINFO", BOTTLE_CA_DIR "/ca-bundle.crt");
    if (r >= 0)
        r = bottle_spec_set_env(spec, "NODE_EXTRA_CA_CERTS", BOTTLE_CA_DIR "/ca.pem");
    /* Debian's npm names the system bundle as its cafile (which replaces node's trust) */
    if (r >= 0)
        r = bottle_spec_set_env(spec, "NPM_CONFIG_CAFILE", BOTTLE_CA_DIR "/ca-bundle.crt");
    if (r < 0)
        return log_errno(LOG_LVL_ERROR, r, "cannot add the bottle's CA to its spec");
    return 0;
}
