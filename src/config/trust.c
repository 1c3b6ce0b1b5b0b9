/* Trusted config files: the approval store. See trust.h and docs/config.md. */
#include "config/trust.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/macro.h"
#include "common/sha256.h"
#include "common/str.h"
#include "common/xalloc.h"
#include "config/config.h"

#define TRUST_MAGIC "bot-bottle-trust 1\n"
/* An entry is a header plus at most one config file. */
#define TRUST_MAX_ENTRY (BB_MAX_CONFIG_FILE + PATH_MAX + 256)
/* Lines compared by trust_diff: enough for any real config, bounded for a hostile one. */
#define DIFF_MAX_LINES 4096
#define DIFF_LINE_SHOWN 160

int trust_sha256_hex(const void *data, size_t len, char ret_hex[TRUST_HEX_LEN + 1])
{
    return sha256_hex(data, len, ret_hex);
}

bool trust_hex_valid(const char *s)
{
    if (!s || strlen(s) != TRUST_HEX_LEN)
        return false;
    for (size_t i = 0; i < TRUST_HEX_LEN; i++)
        if (!ascii_isdigit(s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
            return false;
    return true;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = xmalloc(n);
    if (str_printf(p, n, "%s/%s", strcmp(a, "/") == 0 ? "" : a, b) < 0) {
        free(p);
        return NULL;
    }
    return p;
}

int trust_store_dir(char **ret)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    char *p;

    /* XDG Base Directory: a relative XDG_CONFIG_HOME is invalid and ignored. */
    if (xdg && xdg[0] == '/')
        p = join(xdg, "bot-bottle/trusted");
    else if (home && home[0] == '/')
        p = join(home, ".config/bot-bottle/trusted");
    else
        return -ENOENT;
    if (!p)
        return -ENAMETOOLONG;
    *ret = p;
    return 0;
}

bool trust_path_within(const char *p, const char *root)
{
    size_t n = strlen(root);

    if (strcmp(root, "/") == 0)
        return p[0] == '/';
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int trust_canonicalize(const char *path, char **ret)
{
    _cleanup_free_ char *abs = NULL, *head = NULL;
    char rp[PATH_MAX];
    char *cut;

    if (!path || !*path)
        return -EINVAL;
    if (path[0] == '/') {
        abs = xstrdup(path);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return -errno;
        abs = join(cwd, path);
        if (!abs)
            return -ENAMETOOLONG;
    }
    /* Drop trailing slashes (but keep "/"). */
    for (size_t n = strlen(abs); n > 1 && abs[n - 1] == '/'; n--)
        abs[n - 1] = '\0';
    head = xstrdup(abs);
    for (;;) {
        if (realpath(head, rp)) {
            const char *tail = abs + strlen(head);
            /* The part that does not exist must be plain names. */
            for (const char *t = tail; *t;) {
                const char *e;
                while (*t == '/')
                    t++;
                e = strchrnul(t, '/');
                if ((e - t == 1 && t[0] == '.') || (e - t == 2 && t[0] == '.' && t[1] == '.'))
                    return -EINVAL;
                t = e;
            }
            size_t n = strlen(rp) + strlen(tail) + 1;
            char *out = xmalloc(n);
            if (str_printf(out, n, "%s%s", strcmp(rp, "/") == 0 && *tail ? "" : rp, tail) < 0) {
                free(out);
                return -ENAMETOOLONG;
            }
            *ret = out;
            return 0;
        }
        if (errno != ENOENT)
            return -errno;
        cut = strrchr(head, '/');
        if (!cut)
            return -ENOENT;
        if (cut == head)
            cut[1] = '\0'; /* "/" always exists; loop ends next round */
        else
            *cut = '\0';
    }
}

static int entry_path(const char *store, const char *path, char **ret)
{
    char hex[TRUST_HEX_LEN + 1];
    int r = trust_sha256_hex(path, strlen(path), hex);
    if (r < 0)
        return r;
    *ret = join(store, hex);
    return *ret ? 0 : -ENAMETOOLONG;
}

/* Read a whole regular file (not through a symlink) of at most max bytes. */
static int read_entry(const char *p, size_t max, char **ret, size_t *ret_len)
{
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    struct stat st;

    if (fd < 0)
        return errno == ELOOP ? -EBADMSG : -errno;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* An approval someone else could have written is no approval. */
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022))
        return -EBADMSG;
    return config_read_fd(fd, max, ret, ret_len);
}

/* Parse an entry: header fields and where the content starts. */
static int parse_entry(const char *data, size_t len, struct slice *ret_path, const char **ret_hex,
                       size_t *ret_off)
{
    const size_t ml = sizeof(TRUST_MAGIC) - 1;
    const char *p, *nl, *hex;
    struct slice path;

    if (len < ml || memcmp(data, TRUST_MAGIC, ml) != 0)
        return -EBADMSG;
    p = data + ml;
    nl = memchr(p, '\n', len - (size_t)(p - data));
    if (!nl || nl - p < 6 || memcmp(p, "path /", 6) != 0)
        return -EBADMSG;
    path = slice_make(p + 5, (size_t)(nl - p - 5));
    p = nl + 1;
    nl = memchr(p, '\n', len - (size_t)(p - data));
    if (!nl || nl - p != 7 + TRUST_HEX_LEN || memcmp(p, "sha256 ", 7) != 0)
        return -EBADMSG;
    hex = p + 7;
    p = nl + 1;
    if ((size_t)(p - data) >= len || *p != '\n')
        return -EBADMSG;
    *ret_path = path;
    *ret_hex = hex;
    *ret_off = (size_t)(p + 1 - data);
    return 0;
}

int trust_lookup(const char *store, const char *path, char ret_hex[TRUST_HEX_LEN + 1],
                 char **ret_content, size_t *ret_len)
{
    _cleanup_free_ char *ep = NULL, *data = NULL;
    struct slice epath;
    const char *hex;
    size_t len, off;
    char hexbuf[TRUST_HEX_LEN + 1], actual[TRUST_HEX_LEN + 1];
    struct stat st;
    int r;

    if ((r = entry_path(store, path, &ep)) < 0)
        return r;
    if (lstat(store, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022))
        return -EBADMSG;
    if ((r = read_entry(ep, TRUST_MAX_ENTRY, &data, &len)) < 0)
        return r;
    if ((r = parse_entry(data, len, &epath, &hex, &off)) < 0)
        return r;
    /* The name is a hash of the path; the path inside must be the same one. */
    if (!slice_eq(epath, slice_cstr(path)))
        return -EBADMSG;
    memcpy(hexbuf, hex, TRUST_HEX_LEN);
    hexbuf[TRUST_HEX_LEN] = '\0';
    if (!trust_hex_valid(hexbuf))
        return -EBADMSG;
    /* And the copy must be what was hashed (a damaged copy would mislead the diff). */
    if ((r = trust_sha256_hex(data + off, len - off, actual)) < 0)
        return r;
    if (strcmp(actual, hexbuf) != 0)
        return -EBADMSG;
    memcpy(ret_hex, hexbuf, TRUST_HEX_LEN + 1);
    if (ret_content) {
        size_t clen = len - off;
        char *c = xmalloc(clen + 1);
        memcpy(c, data + off, clen);
        c[clen] = '\0';
        *ret_content = c;
        *ret_len = clen;
    }
    return 0;
}

static int mkdir_p_private(const char *dir)
{
    _cleanup_free_ char *p = xstrdup(dir);
    struct stat st;

    for (char *s = p + 1;; s++) {
        bool end = *s == '\0';
        if (*s == '/' || end) {
            *s = '\0';
            if (mkdir(p, 0700) < 0 && errno != EEXIST)
                return -errno;
            if (!end)
                *s = '/';
        }
        if (end)
            break;
    }
    /* The store itself: a real directory of ours, not writable by others. */
    if (lstat(dir, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022))
        return -EPERM;
    return 0;
}

int trust_save(const char *store, const char *path, const char *content, size_t len)
{
    _cleanup_free_ char *ep = NULL, *tmp = NULL;
    _cleanup_close_ int fd = -1;
    char hex[TRUST_HEX_LEN + 1];
    struct buf b = BUF_INIT(TRUST_MAX_ENTRY);
    int r;

    if (path[0] != '/' || strchr(path, '\n') || len > BB_MAX_CONFIG_FILE)
        return -EINVAL;
    if ((r = mkdir_p_private(store)) < 0)
        return r;
    if ((r = entry_path(store, path, &ep)) < 0 || (r = trust_sha256_hex(content, len, hex)) < 0)
        return r;
    if (buf_printf(&b, TRUST_MAGIC "path %s\nsha256 %s\n\n", path, hex) < 0 ||
        buf_append(&b, content, len) < 0)
        return -E2BIG;
    tmp = xmalloc(strlen(ep) + 8);
    if (str_printf(tmp, strlen(ep) + 8, "%s.tmp", ep) < 0) {
        buf_done(&b);
        return -ENAMETOOLONG;
    }
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        buf_done(&b);
        return -errno;
    }
    for (size_t off = 0; off < b.len;) {
        ssize_t n = write(fd, b.p + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : -EIO;
            buf_done(&b);
            unlink(tmp);
            return r;
        }
        off += (size_t)n;
    }
    buf_done(&b);
    if (fsync(fd) < 0 || rename(tmp, ep) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

int trust_revoke(const char *store, const char *path)
{
    _cleanup_free_ char *ep = NULL;
    int r = entry_path(store, path, &ep);
    if (r < 0)
        return r;
    return unlink(ep) < 0 ? -errno : 0;
}

int trust_list(const char *store, void (*fn)(const char *path, const char *hex, void *ud), void *ud)
{
    DIR *d = opendir(store);
    struct dirent *de;

    if (!d)
        return -errno;
    while ((de = readdir(d))) {
        _cleanup_free_ char *ep = NULL, *data = NULL, *path = NULL;
        struct slice sp;
        const char *hex;
        char hexbuf[TRUST_HEX_LEN + 1];
        size_t len = 0, off;

        if (!trust_hex_valid(de->d_name))
            continue;
        ep = join(store, de->d_name);
        if (!ep || read_entry(ep, TRUST_MAX_ENTRY, &data, &len) < 0 ||
            parse_entry(data, len, &sp, &hex, &off) < 0)
            continue;
        path = xstrndup(sp.p, sp.len);
        memcpy(hexbuf, hex, TRUST_HEX_LEN);
        hexbuf[TRUST_HEX_LEN] = '\0';
        fn(path, hexbuf, ud);
    }
    closedir(d);
    return 0;
}

/* ---- diff */

struct lines {
    struct slice *v;
    bool *used;
    size_t n;
};

static void split_lines(const char *s, size_t len, struct lines *ret)
{
    size_t cap = 0;

    *ret = (struct lines){ 0 };
    for (size_t pos = 0; pos < len && ret->n < DIFF_MAX_LINES;) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (s + pos)) : len - pos;
        if (ret->n == cap) {
            cap = cap ? cap * 2 : 32;
            ret->v = xrealloc(ret->v, cap * sizeof(*ret->v));
        }
        size_t shown = l;
        if (shown && s[pos + shown - 1] == '\r')
            shown--;
        ret->v[ret->n++] = slice_make(s + pos, shown);
        pos += l + 1;
    }
    ret->used = xcalloc(ret->n ? ret->n : 1, sizeof(*ret->used));
}

static void show_line(struct buf *out, char sign, struct slice l)
{
    size_t n = MIN(l.len, (size_t)DIFF_LINE_SHOWN);
    (void)buf_printf(out, "  %c ", sign);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)l.p[i];
        /* The file is hostile: nothing that could drive the user's terminal. */
        if (c < 0x20 || c == 0x7f)
            (void)buf_printf(out, "\\x%02x", c);
        else
            (void)buf_append(out, &l.p[i], 1);
    }
    (void)buf_append_str(out, n < l.len ? " [...]\n" : "\n");
}

/* The lines of l not matched in the other file, while *shown < max_lines; the rest counted. */
static void show_unmatched(struct buf *out, char sign, const struct lines *l, size_t max_lines,
                           size_t *shown, size_t *more)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->used[i])
            continue;
        if (*shown < max_lines) {
            show_line(out, sign, l->v[i]);
            (*shown)++;
        } else {
            (*more)++;
        }
    }
}

void trust_diff(const char *old, size_t old_len, const char *new_, size_t new_len, size_t max_lines,
                struct buf *out)
{
    struct lines a, b;
    size_t shown = 0, more = 0;

    split_lines(old ? old : "", old ? old_len : 0, &a);
    split_lines(new_ ? new_ : "", new_ ? new_len : 0, &b);
    /* A line present in both (as many times) is unchanged; order is not compared. */
    for (size_t i = 0; i < b.n; i++)
        for (size_t j = 0; j < a.n; j++)
            if (!a.used[j] && slice_eq(a.v[j], b.v[i])) {
                a.used[j] = b.used[i] = true;
                break;
            }
    show_unmatched(out, '-', &a, max_lines, &shown, &more);
    show_unmatched(out, '+', &b, max_lines, &shown, &more);
    if (more)
        (void)buf_printf(out, "  ... and %zu more changed lines\n", more);
    free(a.v);
    free(a.used);
    free(b.v);
    free(b.used);
}
