/* Start-up snapshots of a microVM: their key, their files and their saving (snapshot.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/microvm/snapshot.h"
#include "common/buf.h"
#include "common/macro.h"
#include "common/str.h"

/* Bump when what a template holds changes in a way the inputs do not show (the restore
 * protocol between microvm.c and bottle-init). */
#define SNAPSHOT_FORMAT "bot-bottle microvm snapshot 1"
#define SUFFIX ".vmstate"
/* A temporary file older than this was left by a supervisor that died while saving. */
#define TMP_STALE_S 3600
/* QMP: one message is a line of JSON; ours are small (query-migrate's is the largest). */
#define QMP_LINE_MAX 16384

int snapshot_key(const char *const *files, size_t n_files, char *const *canon_argv,
                 char ret[SNAPSHOT_KEY_HEX + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE] = { 0 };
    unsigned int md_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int r = 0;

    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, SNAPSHOT_FORMAT, sizeof(SNAPSHOT_FORMAT)) != 1)
        r = -EIO;
    for (size_t i = 0; r == 0 && i < n_files; i++) {
        struct stat st;
        char line[PATH_MAX + 160];
        int n;

        if (stat(files[i], &st) < 0) {
            r = -errno;
            break;
        }
        n = snprintf(line, sizeof(line), "file %s %ju %ju %jd %jd.%09ld %jd.%09ld\n", files[i],
                     (uintmax_t)st.st_dev, (uintmax_t)st.st_ino, (intmax_t)st.st_size,
                     (intmax_t)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (intmax_t)st.st_ctim.tv_sec,
                     st.st_ctim.tv_nsec);
        if (n < 0 || (size_t)n >= sizeof(line))
            r = -ENAMETOOLONG;
        else if (EVP_DigestUpdate(ctx, line, (size_t)n) != 1)
            r = -EIO;
    }
    /* each argument with its NUL: no two argvs hash alike */
    for (char *const *a = canon_argv; r == 0 && *a; a++)
        if (EVP_DigestUpdate(ctx, *a, strlen(*a) + 1) != 1)
            r = -EIO;
    if (r == 0 && (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len < SNAPSHOT_KEY_HEX / 2))
        r = -EIO;
    EVP_MD_CTX_free(ctx);
    if (r < 0)
        return r;
    for (size_t i = 0; i < SNAPSHOT_KEY_HEX / 2; i++)
        (void)snprintf(ret + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int snapshot_cpu_model(const char *cpuinfo_path, char *ret, size_t size)
{
    char text[8192], *line;
    size_t len = 0;
    int fd = open(cpuinfo_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0)
        return -errno;
    while (len < sizeof(text) - 1) {
        ssize_t n = RETRY_EINTR(read(fd, text + len, sizeof(text) - 1 - len));
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    text[len] = '\0';
    ret[0] = '\0';
    for (line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *colon;
        size_t n;

        if (strncmp(line, "model name", 10) != 0 || !(colon = strchr(line, ':')))
            continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        n = strcspn(colon, "\n");
        return str_printf(ret, size, "%.*s", (int)n, colon) < 0 ? -ENAMETOOLONG : 0;
    }
    return 0;
}

int snapshot_dir(const char *cache_dir, char *ret, size_t size)
{
    struct stat st;
    int r = str_printf(ret, size, "%s/snapshot", cache_dir);

    if (r < 0)
        return r;
    if (mkdir(cache_dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    if (mkdir(ret, 0700) < 0 && errno != EEXIST)
        return -errno;
    if (lstat(ret, &st) < 0)
        return -errno;
    /* ours and private: what is restored from here runs as the bottle's guest */
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
        return -EPERM;
    return 0;
}

static int key_path(const char *dir, const char *key, const char *suffix, char *ret, size_t size)
{
    if (strlen(key) != SNAPSHOT_KEY_HEX || strspn(key, "0123456789abcdef") != SNAPSHOT_KEY_HEX)
        return -EINVAL;
    return str_printf(ret, size, "%s/%s%s", dir, key, suffix);
}

int snapshot_open(const char *dir, const char *key)
{
    char path[PATH_MAX];
    struct stat st;
    int fd, r = key_path(dir, key, SUFFIX, path, sizeof(path));

    if (r < 0)
        return r;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) || st.st_size == 0) {
        close(fd);
        return -EPERM;
    }
    return fd;
}

int snapshot_lock(const char *dir, int timeout_ms)
{
    char path[PATH_MAX];
    struct timespec start, now;
    int fd, r = str_printf(path, sizeof(path), "%s/lock", dir);

    if (r < 0)
        return r;
    fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        struct timespec ts = { 0, 20 * 1000000 };
        if (errno != EINTR && errno != EWOULDBLOCK) {
            r = -errno;
            close(fd);
            return r;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000LL + (now.tv_nsec - start.tv_nsec) / 1000000 >=
            timeout_ms) {
            close(fd);
            return -ETIMEDOUT;
        }
        nanosleep(&ts, NULL);
    }
    return fd;
}

int snapshot_create_tmp(const char *dir, const char *key, char *tmp_path, size_t size)
{
    char suffix[48];
    int fd, r;

    (void)str_printf(suffix, sizeof(suffix), SUFFIX ".tmp.%ld", (long)getpid());
    r = key_path(dir, key, suffix, tmp_path, size);
    if (r < 0)
        return r;
    (void)unlink(tmp_path); /* our own pid's: a leftover of a dead process with our pid */
    fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

/* Keeps the SNAPSHOT_KEEP newest templates; removes stale temporary files. */
static void prune(const char *dir)
{
    struct {
        char name[NAME_MAX + 1];
        struct timespec mtime;
    } keep[SNAPSHOT_KEEP + 1];
    size_t n_keep = 0;
    time_t now = time(NULL);
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        struct stat st;

        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (strstr(de->d_name, SUFFIX ".tmp.")) {
            if (now - st.st_mtim.tv_sec > TMP_STALE_S)
                (void)unlinkat(dirfd(d), de->d_name, 0);
            continue;
        }
        if (len <= strlen(SUFFIX) || strcmp(de->d_name + len - strlen(SUFFIX), SUFFIX) != 0)
            continue;
        /* insert by mtime, newest first; what falls off the end is removed */
        {
            size_t at = n_keep;
            while (at > 0 && (keep[at - 1].mtime.tv_sec < st.st_mtim.tv_sec ||
                              (keep[at - 1].mtime.tv_sec == st.st_mtim.tv_sec &&
                               keep[at - 1].mtime.tv_nsec < st.st_mtim.tv_nsec)))
                at--;
            if (n_keep == SNAPSHOT_KEEP && at == n_keep) {
                (void)unlinkat(dirfd(d), de->d_name, 0);
                continue;
            }
            if (n_keep == SNAPSHOT_KEEP) {
                (void)unlinkat(dirfd(d), keep[n_keep - 1].name, 0);
                n_keep--;
            }
            memmove(&keep[at + 1], &keep[at], (n_keep - at) * sizeof(keep[0]));
            (void)str_printf(keep[at].name, sizeof(keep[at].name), "%s", de->d_name);
            keep[at].mtime = st.st_mtim;
            n_keep++;
        }
    }
    closedir(d);
}

int snapshot_commit(int fd, const char *tmp_path, const char *dir, const char *key)
{
    char path[PATH_MAX];
    int r = key_path(dir, key, SUFFIX, path, sizeof(path));

    if (r < 0)
        return r;
    if (fsync(fd) < 0 || rename(tmp_path, path) < 0)
        return -errno;
    prune(dir);
    return 0;
}

bool snapshot_discard(const char *dir, const char *key, int fd)
{
    char path[PATH_MAX];
    struct stat a, b;

    if (key_path(dir, key, SUFFIX, path, sizeof(path)) < 0 || fstat(fd, &a) < 0 ||
        lstat(path, &b) < 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
        return false;
    return unlink(path) == 0;
}

/* ---- QMP ---- */

struct qmp {
    int fd;
    char buf[QMP_LINE_MAX];
    size_t len;
    struct timespec deadline;
};

static int ms_left(const struct qmp *q)
{
    struct timespec now;
    long long ms;

    clock_gettime(CLOCK_MONOTONIC, &now);
    ms = (long long)(q->deadline.tv_sec - now.tv_sec) * 1000 +
         (q->deadline.tv_nsec - now.tv_nsec) / 1000000;
    return ms <= 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
}

/* The next message (a line) as JSON, or NULL with *err set. */
static json_t *qmp_read(struct qmp *q, int *err)
{
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        struct pollfd p = { .fd = q->fd, .events = POLLIN };
        ssize_t n;
        int left;

        if (nl) {
            size_t line = (size_t)(nl - q->buf);
            json_t *o = json_loadb(q->buf, line, JSON_REJECT_DUPLICATES, NULL);
            q->len -= line + 1;
            memmove(q->buf, nl + 1, q->len);
            if (!json_is_object(o)) {
                json_decref(o);
                *err = -EPROTO;
                return NULL;
            }
            return o;
        }
        if (q->len == sizeof(q->buf)) {
            *err = -EPROTO;
            return NULL;
        }
        left = ms_left(q);
        if (left == 0 || (n = poll(&p, 1, left)) == 0) {
            *err = -ETIMEDOUT;
            return NULL;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            *err = -errno;
            return NULL;
        }
        n = read(q->fd, q->buf + q->len, sizeof(q->buf) - q->len);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            *err = n < 0 ? -errno : -ECONNRESET;
            return NULL;
        }
        q->len += (size_t)n;
    }
}

/*
 * Sends one command (with pass_fd >= 0: that fd along, SCM_RIGHTS) and reads messages up to
 * its answer, skipping events. 0 with *ret_return (the "return" value, a new reference, when
 * ret_return), or -EIO with QEMU's error description in why.
 */
static int qmp_cmd(struct qmp *q, const char *cmd, int pass_fd, json_t **ret_return, char *why,
                   size_t why_size)
{
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = { .iov_base = (void *)cmd, .iov_len = strlen(cmd) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
    int r = 0;

    if (pass_fd >= 0) {
        struct cmsghdr *c;
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof(ctl.b);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    /* a few hundred bytes into an idle socket: all at once, or an error */
    {
        ssize_t n = RETRY_EINTR(sendmsg(q->fd, &mh, MSG_NOSIGNAL));
        if (n != (ssize_t)iov.iov_len)
            r = n < 0 ? -errno : -EIO;
    }
    if (r < 0) {
        (void)str_printf(why, why_size, "writing to QEMU's monitor: %s", strerror(-r));
        return r;
    }
    for (;;) {
        json_t *o = qmp_read(q, &r), *v;

        if (!o) {
            (void)str_printf(why, why_size, "reading QEMU's monitor: %s", strerror(-r));
            return r;
        }
        if ((v = json_object_get(o, "return")) != NULL) {
            if (ret_return)
                *ret_return = json_incref(v);
            json_decref(o);
            return 0;
        }
        if ((v = json_object_get(o, "error")) != NULL) {
            const char *d = json_string_value(json_object_get(v, "desc"));
            (void)str_printf(why, why_size, "QEMU: %s", d ? d : "an error without description");
            json_decref(o);
            return -EIO;
        }
        json_decref(o); /* an event */
    }
}

int snapshot_save(int qmp_fd, int state_fd, int timeout_ms, char *why, size_t why_size)
{
    struct qmp *q = calloc(1, sizeof(*q));
    json_t *greeting, *st = NULL;
    int r = 0;

    if (!q)
        return -ENOMEM;
    q->fd = qmp_fd;
    clock_gettime(CLOCK_MONOTONIC, &q->deadline);
    q->deadline.tv_sec += timeout_ms / 1000;
    q->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (q->deadline.tv_nsec >= 1000000000) {
        q->deadline.tv_sec++;
        q->deadline.tv_nsec -= 1000000000;
    }
    greeting = qmp_read(q, &r);
    if (!greeting || !json_object_get(greeting, "QMP")) {
        (void)str_printf(why, why_size, "QEMU's monitor did not greet (%s)",
                         greeting ? "not QMP" : strerror(-r));
        json_decref(greeting);
        free(q);
        return greeting ? -EPROTO : r;
    }
    json_decref(greeting);
    /* Stopped first: the saved VM is the one bottle-init left waiting, whatever the save
     * takes. The limit: QEMU 7.2's default of 32 MiB/s would take seconds. */
    if ((r = qmp_cmd(q, "{\"execute\":\"qmp_capabilities\"}\n", -1, NULL, why, why_size)) < 0 ||
        (r = qmp_cmd(q, "{\"execute\":\"stop\"}\n", -1, NULL, why, why_size)) < 0 ||
        (r = qmp_cmd(q,
                     "{\"execute\":\"migrate-set-parameters\",\"arguments\":"
                     "{\"max-bandwidth\":1099511627776}}\n",
                     -1, NULL, why, why_size)) < 0 ||
        (r = qmp_cmd(q, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"bbsnap\"}}\n", state_fd,
                     NULL, why, why_size)) < 0 ||
        (r = qmp_cmd(q, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:bbsnap\"}}\n", -1,
                     NULL, why, why_size)) < 0)
        goto out;
    for (;;) {
        const char *status;

        r = qmp_cmd(q, "{\"execute\":\"query-migrate\"}\n", -1, &st, why, why_size);
        if (r < 0)
            goto out;
        status = json_string_value(json_object_get(st, "status"));
        if (status && strcmp(status, "completed") == 0)
            break;
        if (status && (strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0)) {
            const char *d = json_string_value(json_object_get(st, "error-desc"));
            (void)str_printf(why, why_size, "QEMU: saving the VM %s%s%s", status, d ? ": " : "",
                             d ? d : "");
            r = -EIO;
            goto out;
        }
        json_decref(st);
        st = NULL;
        if (ms_left(q) == 0) {
            (void)str_printf(why, why_size, "saving the VM took longer than %d ms", timeout_ms);
            r = -ETIMEDOUT;
            goto out;
        }
        {
            struct timespec ts = { 0, 5 * 1000000 };
            nanosleep(&ts, NULL);
        }
    }
    /* (QEMU may close the monitor before it answers) */
    (void)qmp_cmd(q, "{\"execute\":\"quit\"}\n", -1, NULL, why, why_size);
    why[0] = '\0';
    r = 0;
out:
    json_decref(st);
    free(q);
    return r;
}
