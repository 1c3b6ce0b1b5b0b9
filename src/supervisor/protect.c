/* What a bottle may not write in its workspace: the host's side (see protect.h). */
#include "supervisor/protect.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

/*
 * The list, relative to the workspace; docs/workspace.md says why each entry is here. A
 * directory entry protects everything beneath it. `placeholder_file`: when missing, the
 * placeholder is an empty file (git needs .git/config to be a file), or a file holding
 * COMMONDIR_PLACEHOLDER for .git/commondir (git dies on an empty or unreadable one; "."
 * names the gitdir itself, so git works as without the file); every other placeholder is an
 * empty directory, which git status does not show and a host tool cannot mistake for a
 * config file it should use.
 */
struct protect_entry {
    const char *path;
    bool unless_dir;       /* protected only when it is not a directory (.git) */
    bool placeholder_file; /* see above */
};

static const struct protect_entry protect_list[] = {
    { ".git", true, false },           { ".git/config", false, true },
    { ".git/commondir", false, true }, { ".git/hooks", false, false },
    { ".git/modules", false, false },  { ".vscode", false, false },
    { ".idea", false, false },         { ".claude", false, false },
    { ".mcp.json", false, false },     { ".envrc", false, false },
    { "bottle.ini", false, false },    { ".devcontainer", false, false },
    { ".cursor", false, false },       { ".gemini", false, false },
    { ".zed", false, false },
};

#define COMMONDIR_PLACEHOLDER ".\n"

/* The content of a file placeholder at rel: only a commondir's is not empty. */
static const char *placeholder_text(const char *rel)
{
    const char *base = strrchr(rel, '/');

    return strcmp(base ? base + 1 : rel, "commondir") == 0 ? COMMONDIR_PLACEHOLDER : "";
}

const char *protect_list_entry(size_t i)
{
    return i < ARRAY_SIZE(protect_list) ? protect_list[i].path : NULL;
}

/* ---------------------------------------------------------------- paths */

bool protect_rel_path_valid(const char *rel)
{
    return strlen(rel) < PATH_MAX && str_path_rel_clean(rel);
}

/* a == b or a is an ancestor of b (relative, canonical) */
static bool rel_covers(const char *a, const char *b)
{
    size_t n = strlen(a);

    return strncmp(a, b, n) == 0 && (b[n] == '\0' || b[n] == '/');
}

/*
 * Lexically normalizes base + "/" + p (base relative to the workspace, "" for its root) into
 * a canonical relative path in ret. -EXDEV when it leaves the workspace or is the workspace
 * itself.
 */
static int rel_join(const char *base, const char *p, char *ret, size_t size)
{
    char tmp[PATH_MAX];
    size_t n = 0;
    int r = str_printf(tmp, sizeof(tmp), "%s%s%s", base, *base ? "/" : "", p);

    if (r < 0)
        return r;
    for (char *c = tmp, *e; c; c = e) {
        size_t len;
        e = strchr(c, '/');
        if (e)
            *e++ = '\0';
        len = strlen(c);
        if (len == 0 || strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            if (n == 0)
                return -EXDEV;
            while (n > 0 && ret[n - 1] != '/')
                n--;
            if (n > 0)
                n--; /* the slash */
            continue;
        }
        if (n + (n ? 1 : 0) + len + 1 > size)
            return -ENAMETOOLONG;
        if (n)
            ret[n++] = '/';
        memcpy(ret + n, c, len);
        n += len;
    }
    if (n == 0)
        return -EXDEV;
    ret[n] = '\0';
    return 0;
}

int protect_check_nofollow(const char *path, char *reterr_at, size_t size)
{
    char prefix[PATH_MAX];
    size_t n = strlen(path);

    if (path[0] != '/' || n >= sizeof(prefix))
        return -EINVAL;
    memcpy(prefix, path, n + 1);
    for (char *c = prefix + 1;; c++) {
        struct stat st;
        char saved;

        if (*c != '/' && *c != '\0')
            continue;
        saved = *c;
        *c = '\0';
        int r = lstat(prefix, &st) < 0 ? -errno : S_ISLNK(st.st_mode) ? -ELOOP : 0;
        if (r < 0) {
            str_printf(reterr_at, size, "%s", prefix);
            return r;
        }
        if (!saved)
            return 0;
        *c = saved;
    }
}

/* ---------------------------------------------------------------- git config */

static bool key_char(char c)
{
    return ascii_isalnum(c) || c == '-';
}

/* Parses a value at p (after '='): quotes, escapes, comments. Into out (truncated). */
static void git_value(const char *p, const char *end, char *out, size_t size)
{
    bool quoted = false;
    size_t n = 0, trail = 0; /* trail: length without unquoted trailing blanks */

    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    for (; p < end; p++) {
        char c = *p;
        if (!quoted && (c == '#' || c == ';'))
            break;
        if (c == '"') {
            quoted = !quoted;
            continue;
        }
        if (c == '\\' && p + 1 < end) {
            c = *++p;
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'b' ? '\b' : c;
        }
        if (n + 1 < size)
            out[n++] = c;
        if (quoted || (c != ' ' && c != '\t' && c != '\r'))
            trail = n;
    }
    out[trail < size ? trail : 0] = '\0';
}

static bool git_true(const char *v)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };

    for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
        if (slice_eq_nocase(slice_cstr(v), slice_cstr(yes[i])))
            return true;
    return false;
}

static int scan_git_config(const char *text, size_t len, char *ret_hooks, size_t hooks_size,
                           struct strv *ret_includes, char *ret_worktree, size_t worktree_size)
{
    const char *p = text, *end = text + len;
    char section[64] = "";
    char value[PATH_MAX];

    if (len > PROTECT_GIT_CONFIG_MAX)
        return -EFBIG;
    if (hooks_size)
        ret_hooks[0] = '\0';
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        const char *k, *ke;

        while (p < le && (*p == ' ' || *p == '\t' || *p == '\r'))
            p++;
        if (p < le && *p == '[') {
            /* [section] or [section "subsection"]; a key may follow on the same line */
            const char *q = ++p;
            size_t n = 0;
            while (q < le && key_char(*q) && n + 1 < sizeof(section))
                section[n++] = (char)ascii_tolower(*q++);
            section[n] = '\0';
            if (q < le && *q == '.')
                section[0] = '\0'; /* [a.b]: a subsection, never "core" or "include" */
            if (q < le && (*q == ' ' || *q == '"')) {
                /* a subsection: only includeIf's matter, and any of them counts */
                if (strcmp(section, "includeif") != 0)
                    section[0] = '\0';
            }
            while (q < le && *q != ']') {
                if (*q == '\\' && q + 1 < le)
                    q++;
                q++;
            }
            p = q < le ? q + 1 : le;
            while (p < le && (*p == ' ' || *p == '\t'))
                p++;
        }
        k = p;
        while (p < le && key_char(*p))
            p++;
        ke = p;
        while (p < le && (*p == ' ' || *p == '\t'))
            p++;
        if (ke > k && p < le && *p == '=') {
            struct slice key = slice_make(k, (size_t)(ke - k));
            const char *ve = le;
            /* a value continued with a trailing backslash: take its first line (bounded) */
            git_value(p + 1, ve, value, sizeof(value));
            if (strcmp(section, "core") == 0 && slice_eq_nocase(key, SLICE_LIT("hooksPath")))
                str_printf(ret_hooks, hooks_size, "%s", value);
            else if (ret_worktree && strcmp(section, "core") == 0 &&
                     slice_eq_nocase(key, SLICE_LIT("worktree")))
                str_printf(ret_worktree, worktree_size, "%s", value);
            else if ((strcmp(section, "include") == 0 || strcmp(section, "includeif") == 0) &&
                     slice_eq_nocase(key, SLICE_LIT("path")) && value[0])
                strv_push(ret_includes, value);
            else if (strcmp(section, "extensions") == 0 &&
                     slice_eq_nocase(key, SLICE_LIT("worktreeConfig")) && git_true(value))
                strv_push(ret_includes, "config.worktree"); /* read as config, like an include */
        }
        p = eol ? eol + 1 : end;
    }
    return 0;
}

int protect_scan_git_config(const char *text, size_t len, char *ret_hooks, size_t hooks_size,
                            struct strv *ret_includes)
{
    return scan_git_config(text, len, ret_hooks, hooks_size, ret_includes, NULL, 0);
}

static int read_all(int fd, struct buf *out)
{
    char tmp[16384];

    for (;;) {
        ssize_t n = RETRY_EINTR(read(fd, tmp, sizeof(tmp)));
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        if (buf_append(out, tmp, (size_t)n) < 0)
            return -EFBIG;
    }
}

/* Reads <ws>/.git/config (when .git is a directory) without following symlinks. */
static int read_git_config(int wsfd, struct buf *out)
{
    _cleanup_close_ int git = openat(wsfd, ".git", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    _cleanup_close_ int fd = -1;

    if (git < 0)
        return -errno;
    fd = openat(git, "config", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return read_all(fd, out);
}

/* A path git takes from config, as a workspace-relative path; false when it lies outside. */
static bool git_path_in_ws(const char *ws, const char *base, const char *v, char *ret, size_t size)
{
    size_t wl = strlen(ws);

    if (!v[0] || v[0] == '~')
        return false;
    if (v[0] == '/') {
        if (strncmp(v, ws, wl) != 0 || v[wl] != '/')
            return false;
        return rel_join("", v + wl + 1, ret, size) == 0;
    }
    return rel_join(base, v, ret, size) == 0;
}

/* Adds a core.hooksPath value (from the file named by `from`) when it lies in the workspace. */
static int add_hooks_path(const char *ws, const char *hooks, const char *from, struct strv *out)
{
    char rel[PATH_MAX];

    if (!hooks[0])
        return 0;
    /* A relative core.hooksPath is relative to the top of the work tree. */
    if (strcmp(hooks, ".") == 0 || strcmp(hooks, "./") == 0) {
        log_error("core.hooksPath in %s is the workspace itself; bot-bottle cannot make it "
                  "read-only. Point it at a directory below (git config core.hooksPath "
                  ".githooks)",
                  from);
        return -EINVAL;
    }
    if (git_path_in_ws(ws, "", hooks, rel, sizeof(rel))) {
        /* husky (v9) sets .husky/_, whose wrappers run the scripts in .husky */
        char *slash = strrchr(rel, '/');
        if (slash && strcmp(slash + 1, "_") == 0)
            *slash = '\0';
        strv_push(out, rel);
    }
    return 0;
}

/*
 * core.hooksPath of the user's own git configuration (system, XDG, ~/.gitconfig): a relative
 * one (say .githooks) names a directory in every work tree, this workspace's too. Protecting
 * each one found, whichever wins, errs on the safe side. Includes there are not followed.
 */
static int host_git_configs(const char *ws, struct strv *out)
{
    const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
    char paths[3][PATH_MAX];
    size_t n = 0;
    int r;

    if (str_printf(paths[n], sizeof(paths[n]), "/etc/gitconfig") == 0)
        n++;
    if (xdg && xdg[0] == '/' && str_printf(paths[n], sizeof(paths[n]), "%s/git/config", xdg) == 0)
        n++;
    else if (home && home[0] == '/' &&
             str_printf(paths[n], sizeof(paths[n]), "%s/.config/git/config", home) == 0)
        n++;
    if (home && home[0] == '/' &&
        str_printf(paths[n], sizeof(paths[n]), "%s/.gitconfig", home) == 0)
        n++;
    for (size_t i = 0; i < n; i++) {
        struct buf b = BUF_INIT(PROTECT_GIT_CONFIG_MAX);
        struct strv inc = { 0 };
        char hooks[PATH_MAX] = "";
        _cleanup_close_ int fd = open(paths[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC);

        r = fd < 0 ? -errno : read_all(fd, &b);
        if (r >= 0)
            r = protect_scan_git_config(b.p ? b.p : "", b.len, hooks, sizeof(hooks), &inc);
        buf_done(&b);
        strv_done(&inc);
        if (r == -ENOENT)
            continue;
        if (r < 0) {
            log_warn("cannot read %s (%s): its core.hooksPath, if any, is not protected", paths[i],
                     strerror(-r));
            continue;
        }
        r = add_hooks_path(ws, hooks, paths[i], out);
        if (r < 0)
            return r;
    }
    return 0;
}

/* The workspace paths named by git configuration: core.hooksPath and include paths. */
static int git_config_entries(const char *ws, int wsfd, struct strv *out)
{
    struct buf b = BUF_INIT(PROTECT_GIT_CONFIG_MAX);
    struct strv inc = { 0 };
    char hooks[PATH_MAX], rel[PATH_MAX], from[PATH_MAX + 16];
    int r = host_git_configs(ws, out);

    if (r < 0)
        return r;
    r = read_git_config(wsfd, &b);
    if (r == -ENOENT || r == -ENOTDIR) {
        buf_done(&b);
        return 0;
    }
    if (r >= 0)
        r = protect_scan_git_config(b.p ? b.p : "", b.len, hooks, sizeof(hooks), &inc);
    buf_done(&b);
    if (r < 0) {
        strv_done(&inc);
        return log_errno(LOG_LVL_ERROR, r,
                         "cannot read %s/.git/config to find core.hooksPath (bot-bottle reads "
                         "at most 1 MiB of it)",
                         ws);
    }
    str_printf(from, sizeof(from), "%s/.git/config", ws);
    r = add_hooks_path(ws, hooks, from, out);
    /* A relative include path is relative to the directory of the including file. */
    for (size_t i = 0; r >= 0 && i < inc.n; i++)
        if (git_path_in_ws(ws, ".git", inc.v[i], rel, sizeof(rel)))
            strv_push(out, rel);
    strv_done(&inc);
    return r;
}

/* ---------------------------------------------------------------- the plan */

/* A file placeholder is removed only while it still holds what we wrote: empty, or (a
 * .git/commondir placeholder) exactly COMMONDIR_PLACEHOLDER. */
static bool placeholder_unchanged(const char *path, const struct stat *st)
{
    char b[sizeof(COMMONDIR_PLACEHOLDER)];
    _cleanup_close_ int fd = -1;

    if (st->st_size == 0)
        return true;
    if (st->st_size != (off_t)strlen(COMMONDIR_PLACEHOLDER))
        return false;
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    return read(fd, b, sizeof(b)) == (ssize_t)strlen(COMMONDIR_PLACEHOLDER) &&
           memcmp(b, COMMONDIR_PLACEHOLDER, strlen(COMMONDIR_PLACEHOLDER)) == 0;
}

static void plan_remove_made(struct protect_plan *p)
{
    for (size_t i = p->n_made; i-- > 0;) {
        struct protect_made *m = &p->made[i];
        struct stat st;
        if (lstat(m->path, &st) < 0 || st.st_dev != m->dev || st.st_ino != m->ino)
            continue; /* not ours any more: leave it */
        if (m->dir) {
            if (S_ISDIR(st.st_mode) && rmdir(m->path) < 0)
                log_info("left the placeholder %s in place: %s", m->path, strerror(errno));
        } else if (S_ISREG(st.st_mode) && placeholder_unchanged(m->path, &st)) {
            unlink(m->path);
        }
    }
}

void protect_plan_done(struct protect_plan *p, bool remove)
{
    if (remove)
        plan_remove_made(p);
    else if (p->n_made)
        log_info("leaving the empty placeholders of protected paths (e.g. %s) in place: "
                 "another bottle uses this workspace",
                 p->made[0].path);
    for (size_t i = 0; i < p->n_made; i++) {
        free(p->made[i].path);
        free(p->made[i].root);
    }
    strv_done(&p->paths);
    strv_done(&p->roots);
    memset(p, 0, sizeof(*p));
}

static bool registry_has(const struct protect_registry *reg, const char *root, const char *path,
                         const struct stat *st);

/* Whether the directory name below dir is empty (false when it cannot be read). */
static bool dir_empty(int dir, const char *name)
{
    int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct dirent *de;
    bool empty = true;
    DIR *d;

    if (fd < 0)
        return false;
    d = fdopendir(fd);
    if (!d) {
        close(fd);
        return false;
    }
    while (empty && (de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            empty = false;
    closedir(d);
    return empty;
}

/*
 * Whether the existing component name below dir (full: its path) is a placeholder another
 * bottle of this state root made for root (registered, same device and inode) that is still
 * pristine: this bottle then protects it as a whole, as the one that made it does, instead of
 * taking it for the user's (a .git placeholder for a repository: protecting .git/config in it
 * left the rest of .git writable, and its owner's 0700 mode kept QEMU, running as the
 * workspace's owner, from reaching .git/config).
 */
static bool shared_placeholder(const struct protect_registry *reg, const char *root, int dir,
                               const char *name, const char *full, const struct stat *st)
{
    if (!reg || reg->fd < 0 || !registry_has(reg, root, full, st))
        return false;
    if (S_ISDIR(st->st_mode))
        return dir_empty(dir, name);
    return S_ISREG(st->st_mode) && placeholder_unchanged(full, st);
}

/*
 * Walks rel below wsfd. Sets *ret_len to the length of the prefix to protect (0: nothing,
 * the path cannot exist) and creates a placeholder at the first missing component (or
 * shares the one another bottle made there, see shared_placeholder()).
 */
static int plan_walk(struct protect_plan *p, const struct protect_registry *reg, const char *ws,
                     int wsfd, const char *rel, bool unless_dir, bool placeholder_file,
                     size_t *ret_len)
{
    char buf[PATH_MAX];
    _cleanup_close_ int dir = fcntl(wsfd, F_DUPFD_CLOEXEC, 3);
    bool retried = false;
    int r;

    *ret_len = 0;
    r = str_printf(buf, sizeof(buf), "%s", rel);
    if (r < 0 || dir < 0)
        return r < 0 ? r : -errno;
    for (char *c = buf, *next; c; c = next) {
        struct stat st;
        char full[PATH_MAX];

        next = strchr(c, '/');
        if (next)
            *next++ = '\0';
        if (str_printf(full, sizeof(full), "%s/%.*s", ws, (int)(c - buf + strlen(c)), rel) < 0)
            return -ENAMETOOLONG;
    again:
        if (fstatat(dir, c, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            struct protect_made *m;
            bool as_dir = next || !placeholder_file;
            if (errno != ENOENT)
                return log_errno(LOG_LVL_ERROR, -errno, "cannot check %s", full);
            if (p->n_made == PROTECT_MAX)
                return -E2BIG;
            if (as_dir)
                r = mkdirat(dir, c, 0700) < 0 ? -errno : 0;
            else {
                const char *text = placeholder_text(rel);
                int fd = openat(dir, c, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                *text ? 0644 : 0600);
                r = fd < 0 ? -errno : 0;
                if (fd >= 0 && *text && write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
                    r = -EIO;
                    unlinkat(dir, c, 0);
                }
                if (fd >= 0)
                    close(fd);
            }
            if (r == -EEXIST && !retried) {
                /* made meanwhile (by a bottle of another state root, or the user): look again */
                retried = true;
                goto again;
            }
            if (r >= 0 && fstatat(dir, c, &st, AT_SYMLINK_NOFOLLOW) < 0)
                r = -errno;
            if (r < 0)
                return log_errno(LOG_LVL_ERROR, r,
                                 "cannot create the placeholder %s that keeps the bottle from "
                                 "creating it (bot-bottle help workspace)",
                                 full);
            m = &p->made[p->n_made++];
            *m = (struct protect_made){
                .path = xstrdup(full), .dev = st.st_dev, .ino = st.st_ino, .dir = as_dir
            };
            *ret_len = (size_t)(c - buf + strlen(c));
            return 0;
        }
        if (S_ISLNK(st.st_mode)) {
            log_error("%s is a symbolic link: bot-bottle cannot make what it points to "
                      "read-only for the bottle, and the host may run what the bottle writes "
                      "there. Remove the link, or run with --allow-write %.*s",
                      full, (int)(c - buf + strlen(c)), rel);
            return -ELOOP;
        }
        if (shared_placeholder(reg, ws, dir, c, full, &st)) {
            *ret_len = (size_t)(c - buf + strlen(c));
            return 0;
        }
        if (!next) {
            if (!(unless_dir && S_ISDIR(st.st_mode)))
                *ret_len = strlen(rel);
            return 0;
        }
        if (!S_ISDIR(st.st_mode))
            return 0; /* beneath a file: cannot exist */
        {
            int fd = openat(dir, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return log_errno(LOG_LVL_ERROR, -errno, "cannot open %s", full);
            close(dir);
            dir = fd;
        }
    }
    return 0;
}

#define PROTECT_MAX_SUBMODULES 8

/*
 * Open .git/NAME of the workspace for reading, never through a symlink. Returns 1 and *ret, 0
 * when there is none (no .git directory, no NAME, or a symlink there), or -errno (logged).
 */
static int open_git_subdir(const char *ws, int wsfd, const char *name, DIR **ret)
{
    _cleanup_close_ int git = openat(wsfd, ".git", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int fd;
    DIR *d;

    if (git < 0)
        return 0;
    fd = openat(git, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return log_errno(LOG_LVL_ERROR, r, "cannot read %s/.git/%s", ws, name);
    }
    *ret = d;
    return 1;
}

/*
 * The checkouts of the repository's submodules: each one's .git is a file ("gitdir:
 * ../.git/modules/NAME") that the host's git status in the workspace follows to run git
 * status in the submodule. A bottle that rewrote it to point at a gitdir of its own made the
 * host's plain `git status` run that gitdir's core.fsmonitor. The checkout is found from
 * core.worktree in .git/modules/NAME/config (read-only inside, unlike .gitmodules). Only a .git
 * that exists is protected (an uninitialised submodule has none; a bottle creating one is the
 * nested repository case of docs/workspace.md). First-level submodules only.
 */
static int submodule_entries(const char *ws, int wsfd, struct strv *out)
{
    size_t n = 0;
    DIR *d = NULL;
    struct dirent *de;
    int opened = open_git_subdir(ws, wsfd, "modules", &d);

    if (opened <= 0)
        return opened;
    /* open_git_subdir() returns 1 only with *ret set (the analyzer does not see that log_errno() */
    /* returns its negative r) */
    /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
    while ((de = readdir(d))) {
        struct buf b = BUF_INIT(PROTECT_GIT_CONFIG_MAX);
        struct strv inc = { 0 };
        char hooks[8], wt[PATH_MAX] = "", base[PATH_MAX], rel[PATH_MAX];
        struct stat st;
        int cfd, r;

        if (de->d_name[0] == '.')
            continue;
        if (str_printf(base, sizeof(base), "%s/config", de->d_name) < 0)
            continue;
        cfd = openat(dirfd(d), base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (cfd < 0)
            continue;
        r = fstat(cfd, &st) < 0 || !S_ISREG(st.st_mode) ? -EINVAL : read_all(cfd, &b);
        close(cfd);
        if (r >= 0)
            r = scan_git_config(b.p ? b.p : "", b.len, hooks, sizeof(hooks), &inc, wt, sizeof(wt));
        buf_done(&b);
        strv_done(&inc);
        /* core.worktree is relative to the submodule's gitdir */
        if (r < 0 || !wt[0] || str_printf(base, sizeof(base), ".git/modules/%s", de->d_name) < 0 ||
            !git_path_in_ws(ws, base, wt, base, sizeof(base)) || !base[0] ||
            str_printf(rel, sizeof(rel), "%s/.git", base) < 0)
            continue;
        if (fstatat(wsfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (++n > PROTECT_MAX_SUBMODULES) {
            closedir(d);
            log_error("%s has more than %d submodules, whose .git files bot-bottle protects; "
                      "run with --allow-write for the ones the bottle may change",
                      ws, PROTECT_MAX_SUBMODULES);
            return -E2BIG;
        }
        strv_push(out, rel);
    }
    closedir(d);
    return 0;
}

#define PROTECT_MAX_WORKTREES 8

/*
 * The linked worktrees of the workspace's repository (.git/worktrees/ID, one per `git worktree
 * add`): git in such a worktree, which may lie outside the workspace, takes its config and
 * hooks from the directory ID/commondir names, and reads ID/config.worktree as config when
 * extensions.worktreeConfig is on. A bottle that rewrote them would run its code in the
 * user's other checkouts.
 */
static int worktree_entries(const char *ws, int wsfd, struct strv *out)
{
    bool wt_config = false;
    size_t n = 0;
    DIR *d = NULL;
    struct dirent *de;
    int opened = open_git_subdir(ws, wsfd, "worktrees", &d);

    if (opened <= 0)
        return opened;
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->v[i], ".git/config.worktree") == 0)
            wt_config = true;
    /* as in submodule_entries() */
    /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
    while ((de = readdir(d))) {
        struct stat st;
        char rel[PATH_MAX];
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        if (++n > PROTECT_MAX_WORKTREES) {
            closedir(d);
            log_error("%s/.git/worktrees has more than %d linked worktrees, whose commondir "
                      "files bot-bottle protects: remove the stale ones (git worktree prune), "
                      "or run with --allow-write .git/worktrees",
                      ws, PROTECT_MAX_WORKTREES);
            return -E2BIG;
        }
        if (str_printf(rel, sizeof(rel), ".git/worktrees/%s/commondir", de->d_name) == 0)
            strv_push(out, rel);
        if (wt_config &&
            str_printf(rel, sizeof(rel), ".git/worktrees/%s/config.worktree", de->d_name) == 0)
            strv_push(out, rel);
    }
    closedir(d);
    return 0;
}

/* Entries whose placeholder is a file: git reads them as files (commondir, config). */
static bool wants_placeholder_file(const char *rel)
{
    const char *base = strrchr(rel, '/');

    base = base ? base + 1 : rel;
    return strcmp(base, "commondir") == 0 || strcmp(base, "config.worktree") == 0;
}

/*
 * The plan of one host directory `root` (the workspace, or a read-write --mount source) that
 * the bottle sees at `dst` (the same path for the workspace): the paths go into p->paths
 * translated to dst, the placeholders into p->made with their root. allow_write: relative
 * paths beneath root.
 */
static int plan_tree(const char *root, const char *dst, const struct strv *allow_write,
                     const struct protect_registry *reg, struct protect_plan *p)
{
    struct strv entries = { 0 }, chosen = { 0 };
    _cleanup_close_ int wsfd = -1;
    size_t n_static = ARRAY_SIZE(protect_list), first_made = p->n_made;
    const char *ws = root;
    int r;

    wsfd = open(ws, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (wsfd < 0)
        return log_errno(LOG_LVL_ERROR, -errno, "cannot open %s", ws);
    for (size_t i = 0; i < n_static; i++)
        strv_push(&entries, protect_list[i].path);
    r = git_config_entries(ws, wsfd, &entries);
    if (r < 0)
        goto out;
    r = worktree_entries(ws, wsfd, &entries);
    if (r < 0)
        goto out;
    r = submodule_entries(ws, wsfd, &entries);
    if (r < 0)
        goto out;

    for (size_t i = 0; i < entries.n; i++) {
        const char *e = entries.v[i];
        bool allowed = false, covered = false;
        size_t len;

        for (size_t j = 0; allow_write && j < allow_write->n; j++)
            if (rel_covers(allow_write->v[j], e))
                allowed = true;
        for (size_t j = 0; j < chosen.n; j++)
            if (rel_covers(chosen.v[j], e))
                covered = true;
        if (allowed || covered)
            continue;
        r = plan_walk(p, reg, ws, wsfd, e, i < n_static && protect_list[i].unless_dir,
                      i < n_static ? protect_list[i].placeholder_file : wants_placeholder_file(e),
                      &len);
        if (r < 0)
            goto out;
        if (len) {
            char *c = xstrndup(e, len);
            strv_push(&chosen, c);
            free(c);
        }
    }
    for (size_t i = first_made; i < p->n_made; i++)
        p->made[i].root = xstrdup(root);
    strv_push(&p->roots, root);
    /* An entry beneath another is covered by it (the protection is recursive). */
    for (size_t i = 0; i < chosen.n; i++) {
        bool covered = false;
        char abs[PATH_MAX];
        for (size_t j = 0; j < chosen.n; j++)
            if (j != i && rel_covers(chosen.v[j], chosen.v[i]) &&
                (strcmp(chosen.v[j], chosen.v[i]) != 0 || j < i))
                covered = true;
        if (covered)
            continue;
        if (p->paths.n == PROTECT_MAX ||
            str_printf(abs, sizeof(abs), "%s/%s", dst, chosen.v[i]) < 0) {
            r = log_errno(LOG_LVL_ERROR, -E2BIG, "too many protected paths in %s", ws);
            goto out;
        }
        strv_push(&p->paths, abs);
    }
    r = 0;
out:
    strv_done(&entries);
    strv_done(&chosen);
    return r;
}

/* The relative allow_write entries, and the absolute ones beneath dir (made relative). */
static void allow_for(const struct strv *allow_write, const char *dir, bool with_rel,
                      struct strv *out, bool *ret_all)
{
    size_t n = strlen(dir);

    *ret_all = false;
    for (size_t j = 0; allow_write && j < allow_write->n; j++) {
        const char *a = allow_write->v[j];
        if (a[0] != '/') {
            if (with_rel)
                strv_push(out, a);
        } else if (strcmp(a, dir) == 0) {
            *ret_all = true;
        } else if (strncmp(a, dir, n) == 0 && a[n] == '/') {
            strv_push(out, a + n + 1);
        }
    }
}

int protect_plan_build(const char *ws, const struct strv *allow_write,
                       const struct protect_registry *reg, struct protect_plan *p)
{
    struct strv allow = { 0 };
    bool all;
    int r;

    memset(p, 0, sizeof(*p));
    allow_for(allow_write, ws, true, &allow, &all);
    r = all ? 0 : plan_tree(ws, ws, &allow, reg, p);
    strv_done(&allow);
    if (r < 0)
        protect_plan_done(p, true);
    return r;
}

/* The names of the list's top-level entries: a read-write mount source may not pass through
 * one (e.g. ~/repo/.git, ~/repo/.git/config, ~/repo/.vscode). */
static const char *entry_component(const char *src)
{
    for (const char *c = src; *c;) {
        const char *e;
        size_t len;
        while (*c == '/')
            c++;
        e = strchrnul(c, '/');
        len = (size_t)(e - c);
        for (size_t i = 0; len && i < ARRAY_SIZE(protect_list); i++) {
            const char *pe = protect_list[i].path;
            if (!strchr(pe, '/') && strlen(pe) == len && memcmp(pe, c, len) == 0)
                return pe;
        }
        c = e;
    }
    return NULL;
}

int protect_plan_add_mount(const char *src, const char *dst, const struct strv *allow_write,
                           const struct protect_registry *reg, struct protect_plan *p)
{
    struct protect_plan q = { 0 };
    struct strv allow = { 0 };
    const char *bad;
    struct stat st;
    bool all;
    int r;

    allow_for(allow_write, dst, false, &allow, &all);
    if (all)
        goto done; /* --allow-write DST: the user opened the whole mount */
    bad = entry_component(src);
    if (bad) {
        log_error("--mount %s:%s: the source is or lies in %s, which bot-bottle protects in a "
                  "workspace (the host runs or trusts what is written there); mount it "
                  "read-only (--mount %s:%s:ro), or run with --allow-write %s",
                  src, dst, bad, src, dst, dst);
        r = -EPERM;
        goto out;
    }
    if (lstat(src, &st) < 0) {
        r = log_errno(LOG_LVL_ERROR, -errno, "--mount %s:%s: cannot check %s", src, dst, src);
        goto out;
    }
    if (!S_ISDIR(st.st_mode))
        goto done; /* a single file: nothing beneath it to protect (docs/workspace.md) */
    r = plan_tree(src, dst, &allow, reg, &q);
    if (r >= 0 && (p->n_made + q.n_made > PROTECT_MAX || p->paths.n + q.paths.n > PROTECT_MAX))
        r = log_errno(LOG_LVL_ERROR, -E2BIG,
                      "too many protected paths in the workspace and "
                      "the --mount sources");
    if (r < 0) {
        protect_plan_done(&q, true);
        goto out;
    }
    for (size_t i = 0; i < q.paths.n; i++)
        strv_push(&p->paths, q.paths.v[i]);
    for (size_t i = 0; i < q.roots.n; i++)
        strv_push(&p->roots, q.roots.v[i]);
    memcpy(p->made + p->n_made, q.made, q.n_made * sizeof(q.made[0]));
    p->n_made += q.n_made;
    q.n_made = 0;
    protect_plan_done(&q, false);
done:
    r = 0;
out:
    strv_done(&allow);
    return r;
}

/* ---------------------------------------------------------------- the registry */

#define REGISTRY_MAX (1024 * 1024)

/* A path with '%', and bytes outside 0x21..0x7e, written as %HH: one token, one line. */
static int put_token(struct buf *b, const char *v)
{
    static const char hex[] = "0123456789abcdef";
    int r = 0;

    for (const unsigned char *c = (const unsigned char *)v; r >= 0 && *c; c++) {
        if (*c <= 0x20 || *c >= 0x7f || *c == '%') {
            char e[3] = { '%', hex[*c >> 4], hex[*c & 15] };
            r = buf_append(b, e, 3);
        } else {
            r = buf_append(b, (const char *)c, 1);
        }
    }
    return r;
}

static int hexdig(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes a token of s (len bytes) into out; -EINVAL when malformed. */
static int get_token(const char *s, size_t len, char *out, size_t size)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = hexdig(s[i + 1])) < 0 || (lo = hexdig(s[i + 2])) < 0)
                return -EINVAL;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0' || n + 1 >= size)
            return -EINVAL;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

static int registry_write(int fd, const struct buf *b)
{
    size_t off = 0;

    if (ftruncate(fd, 0) < 0)
        return -errno;
    while (off < b->len) {
        ssize_t n = RETRY_EINTR(pwrite(fd, b->p + off, b->len - off, (off_t)off));
        if (n < 0)
            return -errno;
        off += (size_t)n;
    }
    return 0;
}

int protect_registry_lock(const char *reg, struct protect_registry *ret)
{
    _cleanup_close_ int fd = open(reg, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    int r;

    ret->fd = -1;
    ret->text = BUF_INIT(REGISTRY_MAX);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX) < 0)
        return -errno;
    r = read_all(fd, &ret->text);
    if (r < 0) {
        buf_done(&ret->text);
        return r;
    }
    ret->fd = TAKE_FD(fd);
    return 0;
}

void protect_registry_unlock(struct protect_registry *reg)
{
    if (reg->fd >= 0)
        close(reg->fd);
    reg->fd = -1;
    buf_done(&reg->text);
}

/* One line of the registry: "KIND DEV INO ROOT PATH", five fields separated by single
 * spaces; KIND d or f (a placeholder: directory, file) or u (a bottle that uses ROOT: DEV
 * and INO 0, PATH its name). */
struct reg_line {
    char kind;
    uint64_t dev, ino;
    char root[PATH_MAX], path[PATH_MAX];
};

/* Parses [p, le): 1 when well-formed, 0 when it has five fields but is not (kept as it is:
 * a later version's), -EINVAL when malformed (dropped). */
static int reg_parse(const char *p, const char *le, struct reg_line *l)
{
    const char *f[5];
    size_t nf = 0;

    f[nf++] = p;
    for (const char *q = p; q < le && nf < 5; q++)
        if (*q == ' ')
            f[nf++] = q + 1;
    if (nf != 5)
        return -EINVAL;
    if ((f[0][0] == 'd' || f[0][0] == 'f' || f[0][0] == 'u') && f[1] == f[0] + 2 &&
        str_to_u64(slice_make(f[1], (size_t)(f[2] - f[1] - 1)), UINT64_MAX, &l->dev) == 0 &&
        str_to_u64(slice_make(f[2], (size_t)(f[3] - f[2] - 1)), UINT64_MAX, &l->ino) == 0 &&
        get_token(f[3], (size_t)(f[4] - f[3] - 1), l->root, sizeof(l->root)) == 0 &&
        get_token(f[4], (size_t)(le - f[4]), l->path, sizeof(l->path)) == 0) {
        l->kind = f[0][0];
        return 1;
    }
    return 0;
}

static bool registry_has(const struct protect_registry *reg, const char *root, const char *path,
                         const struct stat *st)
{
    const char *p = buf_str(&reg->text), *end = p + reg->text.len;
    struct reg_line l;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if (reg_parse(p, le, &l) == 1 && l.kind != 'u' && (l.kind == 'd') == S_ISDIR(st->st_mode) &&
            l.dev == (uint64_t)st->st_dev && l.ino == (uint64_t)st->st_ino &&
            strcmp(l.root, root) == 0 && strcmp(l.path, path) == 0)
            return true;
        p = eol ? eol + 1 : end;
    }
    return false;
}

static int put_line(struct buf *b, char kind, uint64_t dev, uint64_t ino, const char *root,
                    const char *path)
{
    int r = buf_printf(b, "%c %llu %llu ", kind, (unsigned long long)dev, (unsigned long long)ino);

    if (r >= 0)
        r = put_token(b, root);
    if (r >= 0)
        r = buf_append(b, " ", 1);
    if (r >= 0)
        r = put_token(b, path);
    if (r >= 0)
        r = buf_append(b, "\n", 1);
    return r;
}

int protect_registry_record(struct protect_registry *reg, const char *ws, const char *name,
                            const struct protect_plan *p)
{
    int r = 0;

    if (reg->fd < 0)
        return -EBADF;
    if (!p->n_made && !(name && p->roots.n))
        return 0;
    for (size_t i = 0; r >= 0 && i < p->n_made; i++) {
        const struct protect_made *m = &p->made[i];
        r = put_line(&reg->text, m->dir ? 'd' : 'f', (uint64_t)m->dev, (uint64_t)m->ino,
                     m->root ? m->root : ws, m->path);
    }
    for (size_t i = 0; r >= 0 && name && i < p->roots.n; i++)
        r = put_line(&reg->text, 'u', 0, 0, p->roots.v[i], name);
    if (r >= 0)
        r = registry_write(reg->fd, &reg->text);
    return r;
}

int protect_registry_add(const char *reg, const char *ws, const struct protect_plan *p)
{
    struct protect_registry r;
    int e;

    if (!p->n_made)
        return 0;
    e = protect_registry_lock(reg, &r);
    if (e < 0)
        return e;
    e = protect_registry_record(&r, ws, NULL, p);
    protect_registry_unlock(&r);
    return e;
}

/* The index of root in roots, or -1. */
static int root_index(const char *const *roots, size_t n, const char *root)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(roots[i], root) == 0)
            return (int)i;
    return -1;
}

/*
 * Rewrites the locked registry: for each roots[i] with !busy[i], its placeholders are removed
 * (those still pristine) and dropped, and (leaving: name set) its users too, which are not
 * alive (else it would be busy); the lines that say `name` uses one of roots are dropped.
 */
static int registry_sweep(struct protect_registry *reg, const char *const *roots, size_t n,
                          const bool *busy, const char *name)
{
    struct buf keep = BUF_INIT(REGISTRY_MAX);
    struct protect_plan gone = { 0 };
    const char *p = buf_str(&reg->text), *end = p + reg->text.len;
    struct reg_line l;
    int r = 0;

    while (p < end && r >= 0) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        int ok = reg_parse(p, le, &l), i = ok == 1 ? root_index(roots, n, l.root) : -1;
        bool drop = ok < 0; /* a malformed line is dropped */

        if (i >= 0 && l.kind == 'u')
            drop = (name && strcmp(l.path, name) == 0) || (name && !busy[i]);
        else if (i >= 0 && !busy[i] && gone.n_made < PROTECT_MAX) {
            gone.made[gone.n_made++] = (struct protect_made){ .path = xstrdup(l.path),
                                                              .dev = (dev_t)l.dev,
                                                              .ino = (ino_t)l.ino,
                                                              .dir = l.kind == 'd' };
            drop = true;
        } /* over the cap: kept for the next clean-up */
        if (!drop) {
            r = buf_append(&keep, p, (size_t)(le - p));
            if (r >= 0)
                r = buf_append(&keep, "\n", 1);
        }
        p = eol ? eol + 1 : end;
    }
    if (r >= 0)
        r = registry_write(reg->fd, &keep);
    if (r >= 0) {
        buf_done(&reg->text);
        reg->text = keep;
    } else {
        buf_done(&keep);
    }
    /* still under the lock: a bottle starting now sees them either registered or gone */
    protect_plan_done(&gone, true);
    return r;
}

int protect_registry_clean(const char *reg, const char *ws)
{
    struct protect_registry r;
    const char *roots[1] = { ws };
    bool busy[1] = { false };
    int e = protect_registry_lock(reg, &r);

    if (e < 0)
        return e;
    e = registry_sweep(&r, roots, 1, busy, NULL);
    protect_registry_unlock(&r);
    return e;
}

int protect_registry_leave(const char *reg, const char *name, const struct strv *roots,
                           bool (*alive)(const char *name, void *userdata), void *userdata,
                           bool *ret_shared)
{
    struct protect_registry r;
    const char *rv[2 * PROTECT_MAX + 1];
    bool busy[2 * PROTECT_MAX + 1] = { false };
    size_t n = roots->n < ARRAY_SIZE(rv) ? roots->n : ARRAY_SIZE(rv);
    const char *p, *end;
    struct reg_line l;
    int e;

    *ret_shared = true; /* until known otherwise: the placeholders stay */
    if (roots->n > ARRAY_SIZE(rv))
        return -E2BIG;
    e = protect_registry_lock(reg, &r);
    if (e < 0)
        return e;
    for (size_t i = 0; i < n; i++)
        rv[i] = roots->v[i];
    /* another bottle that said it uses one of our roots, and still runs */
    p = buf_str(&r.text);
    end = p + r.text.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        int i;
        if (reg_parse(p, le, &l) == 1 && l.kind == 'u' && strcmp(l.path, name) != 0 &&
            (i = root_index(rv, n, l.root)) >= 0 && !busy[i] && alive(l.path, userdata))
            busy[i] = true;
        p = eol ? eol + 1 : end;
    }
    e = registry_sweep(&r, rv, n, busy, name);
    protect_registry_unlock(&r);
    if (e < 0)
        return e;
    *ret_shared = false;
    for (size_t i = 0; i < n; i++)
        if (busy[i])
            *ret_shared = true;
    return 0;
}
