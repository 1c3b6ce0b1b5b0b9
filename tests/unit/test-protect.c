/* Unit tests for the host side of the protected workspace paths (src/supervisor/protect.c). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/str.h"
#include "supervisor/protect.h"
#include "unit-util.h"

static void scan(const char *text, const char *want_hooks, const char *want_inc)
{
    char hooks[256], inc[1024] = "";
    struct strv v = { 0 };

    assert_int_equal(protect_scan_git_config(text, strlen(text), hooks, sizeof(hooks), &v), 0);
    for (size_t i = 0; i < v.n; i++) {
        size_t n = strlen(inc);
        assert_int_equal(str_printf(inc + n, sizeof(inc) - n, "%s%s", i ? "|" : "", v.v[i]), 0);
    }
    if (strcmp(hooks, want_hooks) != 0 || strcmp(inc, want_inc) != 0)
        fail_msg("config:\n%s\ngot hooks '%s' includes '%s', want '%s' '%s'", text, hooks, inc,
                 want_hooks, want_inc);
    strv_done(&v);
}

static void test_scan_git_config(void **state)
{
    (void)state;
    scan("", "", "");
    scan("[core]\n\trepositoryformatversion = 0\n\tbare = false\n", "", "");
    scan("[core]\n\thooksPath = .husky/_\n", ".husky/_", "");
    /* section and key names are case-insensitive; the last value wins */
    scan("[CORE]\nHOOKSPATH = a\n[core]\n  hookspath=b  \n", "b", "");
    /* quotes, escapes, comments */
    scan("[core]\nhooksPath = \"my hooks\" # comment\n", "my hooks", "");
    scan("[core]\nhooksPath = x ; comment\n", "x", "");
    scan("[core]\nhooksPath = \"a;b\"\n", "a;b", "");
    scan("[core]\nhooksPath = a\\\\b\n", "a\\b", "");
    /* a key on the header line */
    scan("[core] hooksPath = inline\n", "inline", "");
    /* other sections and subsections are not core */
    scan("[core2]\nhooksPath = no\n[remote \"core\"]\nhooksPath = no\n", "", "");
    scan("[core.sub]\nhooksPath = no\n", "", "");
    /* commented out, or a key without '=' */
    scan("[core]\n# hooksPath = no\n;hooksPath = no\nhooksPath\n", "", "");
    /* includes, includeIf with any condition, worktree config */
    scan("[include]\n\tpath = ../.gitconfig\n[includeIf \"gitdir:~/w/\"]\n\tpath = /abs/x\n", "",
         "../.gitconfig|/abs/x");
    scan("[extensions]\n\tworktreeConfig = true\n", "", "config.worktree");
    scan("[extensions]\n\tworktreeConfig = false\n", "", "");
    /* CRLF and no final newline */
    scan("[core]\r\n\thooksPath = crlf\r\n", "crlf", "");
    scan("[core]\nhooksPath = last", "last", "");
}

static void test_scan_bounded(void **state)
{
    char hooks[8];
    struct strv v = { 0 };
    char *big = calloc(1, PROTECT_GIT_CONFIG_MAX + 2);
    (void)state;

    assert_non_null(big);
    memset(big, '#', PROTECT_GIT_CONFIG_MAX + 1);
    assert_int_equal(
        protect_scan_git_config(big, PROTECT_GIT_CONFIG_MAX + 1, hooks, sizeof(hooks), &v), -EFBIG);
    free(big);
    /* a value longer than the output is truncated, never overflows */
    assert_int_equal(protect_scan_git_config("[core]\nhooksPath = 0123456789abcdef\n", 34, hooks,
                                             sizeof(hooks), &v),
                     0);
    assert_int_equal(strlen(hooks), sizeof(hooks) - 1);
}

static void test_rel_path_valid(void **state)
{
    (void)state;
    assert_true(protect_rel_path_valid(".vscode"));
    assert_true(protect_rel_path_valid(".git/hooks"));
    assert_false(protect_rel_path_valid(""));
    assert_false(protect_rel_path_valid("/etc"));
    assert_false(protect_rel_path_valid(".git/"));
    assert_false(protect_rel_path_valid("./.git"));
    assert_false(protect_rel_path_valid("a/../b"));
    assert_false(protect_rel_path_valid(".."));
    assert_false(protect_rel_path_valid("a//b"));
}

/* The plan on a scratch workspace: placeholders at the first missing component, removed
 * again; existing paths protected as they are; a symlink refused; allow_write honoured. */
static void test_plan(void **state)
{
    char ws[] = "/tmp/bb-protect-XXXXXX", path[512];
    struct protect_plan p;
    struct strv allow = { 0 };
    struct stat st;
    (void)state;

    assert_non_null(mkdtemp(ws));
    snprintf(path, sizeof(path), "%s/.git", ws);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/.git/config", ws);
    {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("[core]\n\thooksPath = tools/hooks\n[include]\n\tpath = ../.gitconfig\n", f);
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/.idea", ws);
    assert_int_equal(mkdir(path, 0755), 0);
    strv_push(&allow, ".claude");
    /* the user's global config names a relative hooks directory: every work tree's */
    snprintf(path, sizeof(path), "%s/home", ws);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(setenv("HOME", path, 1), 0);
    unsetenv("XDG_CONFIG_HOME");
    snprintf(path, sizeof(path), "%s/home/.gitconfig", ws);
    {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs("[core]\n\thooksPath = .githooks\n", f);
        fclose(f);
    }
    assert_int_equal(protect_plan_build(ws, &allow, NULL, &p), 0);
    {
        const char *want[] = { ".git/config", ".git/commondir", ".git/hooks", ".git/modules",
                               ".vscode",     ".idea",          ".mcp.json",  ".envrc",
                               "bottle.ini",  ".devcontainer",  ".cursor",    ".gemini",
                               ".zed",        ".githooks",      "tools",      ".gitconfig" };
        assert_int_equal(p.paths.n, sizeof(want) / sizeof(want[0]));
        for (size_t i = 0; i < p.paths.n; i++) {
            snprintf(path, sizeof(path), "%s/%s", ws, want[i]);
            assert_string_equal(p.paths.v[i], path);
            assert_int_equal(lstat(path, &st), 0);
        }
    }
    /* .git/commondir's placeholder names the gitdir itself (git dies on an empty one) */
    snprintf(path, sizeof(path), "%s/.git/commondir", ws);
    {
        char text[8] = { 0 };
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_int_equal(fread(text, 1, sizeof(text) - 1, f), 2);
        fclose(f);
        assert_string_equal(text, ".\n");
    }
    /* the hooks directory's placeholder is at its first missing component */
    snprintf(path, sizeof(path), "%s/tools", ws);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    snprintf(path, sizeof(path), "%s/.claude", ws);
    assert_int_equal(lstat(path, &st), -1); /* allowed: no placeholder */
    /* a placeholder someone filled in is left alone */
    snprintf(path, sizeof(path), "%s/.vscode/kept", ws);
    assert_int_equal(mkdir(path, 0755), 0);
    protect_plan_done(&p, true);
    snprintf(path, sizeof(path), "%s/.mcp.json", ws);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.git/hooks", ws);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.git/commondir", ws);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.idea", ws);
    assert_int_equal(lstat(path, &st), 0); /* the user's */
    snprintf(path, sizeof(path), "%s/.vscode/kept", ws);
    assert_int_equal(lstat(path, &st), 0);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/.vscode", ws);
    rmdir(path);

    /* a symlink in the list is refused, nothing is left behind */
    snprintf(path, sizeof(path), "%s/.envrc", ws);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_int_equal(protect_plan_build(ws, NULL, NULL, &p), -ELOOP);
    snprintf(path, sizeof(path), "%s/.vscode", ws);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.envrc", ws);
    unlink(path);

    strv_done(&allow);
    assert_int_equal(rm_rf(ws), 0);
}

/* A read-write --mount SRC:DST: SRC's plan, translated to DST; its placeholders registered
 * under SRC; /DST/PATH opens PATH; a source through a list entry is refused. */
static void test_plan_mount(void **state)
{
    char ws[] = "/tmp/bb-protect-XXXXXX", src[] = "/tmp/bb-protect-src-XXXXXX", path[512];
    char reg[600];
    struct protect_plan p;
    struct strv allow = { 0 };
    struct stat st;
    bool has_config = false, has_vscode = false, has_idea = false;
    (void)state;

    assert_non_null(mkdtemp(ws));
    assert_non_null(mkdtemp(src));
    unsetenv("XDG_CONFIG_HOME");
    assert_int_equal(setenv("HOME", ws, 1), 0); /* no user config */
    snprintf(path, sizeof(path), "%s/.git", src);
    assert_int_equal(mkdir(path, 0755), 0);
    strv_push(&allow, "/data/.vscode");
    strv_push(&allow, ".idea"); /* the workspace's, not the mount's */
    assert_int_equal(protect_plan_build(ws, &allow, NULL, &p), 0);
    size_t n_ws = p.paths.n, made_ws = p.n_made;
    assert_int_equal(protect_plan_add_mount(src, "/data", &allow, NULL, &p), 0);
    assert_true(p.paths.n > n_ws);
    for (size_t i = n_ws; i < p.paths.n; i++) {
        assert_int_equal(strncmp(p.paths.v[i], "/data/", 6), 0);
        has_config |= strcmp(p.paths.v[i], "/data/.git/config") == 0;
        has_vscode |= strcmp(p.paths.v[i], "/data/.vscode") == 0;
        has_idea |= strcmp(p.paths.v[i], "/data/.idea") == 0;
    }
    assert_true(has_config && has_idea);
    assert_false(has_vscode);
    assert_int_equal(p.roots.n, 2);
    assert_string_equal(p.roots.v[1], src);
    for (size_t i = made_ws; i < p.n_made; i++)
        assert_string_equal(p.made[i].root, src);
    snprintf(path, sizeof(path), "%s/.git/config", src); /* a file placeholder in SRC */
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));

    /* refused: a source that is or lies in a list entry; p stays as it was */
    size_t n = p.paths.n, made = p.n_made;
    snprintf(path, sizeof(path), "%s/.git", src);
    assert_int_equal(protect_plan_add_mount(path, "/g", &allow, NULL, &p), -EPERM);
    snprintf(path, sizeof(path), "%s/.git/config", src);
    assert_int_equal(protect_plan_add_mount(path, "/cfg", &allow, NULL, &p), -EPERM);
    assert_int_equal(p.paths.n, n);
    assert_int_equal(p.n_made, made);
    /* ... unless --allow-write names DST: the user opened the whole mount */
    strv_push(&allow, "/cfg");
    assert_int_equal(protect_plan_add_mount(path, "/cfg", &allow, NULL, &p), 0);
    assert_int_equal(p.paths.n, n);

    /* the registry: SRC's placeholders are cleaned under SRC, not under the workspace */
    snprintf(reg, sizeof(reg), "%s/placeholders", ws);
    assert_int_equal(protect_registry_add(reg, ws, &p), 0);
    protect_plan_done(&p, false);
    assert_int_equal(protect_registry_clean(reg, ws), 0);
    snprintf(path, sizeof(path), "%s/.git/config", src);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(protect_registry_clean(reg, src), 0);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.git", src);
    assert_int_equal(rmdir(path), 0);
    assert_int_equal(rmdir(src), 0);
    assert_int_equal(unlink(reg), 0);
    assert_int_equal(rmdir(ws), 0);
    strv_done(&allow);
}

static void test_check_nofollow(void **state)
{
    char d[] = "/tmp/bb-nofollow-XXXXXX", p[512], at[512];
    (void)state;

    assert_non_null(mkdtemp(d));
    snprintf(p, sizeof(p), "%s/real", d);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/link", d);
    assert_int_equal(symlink("real", p), 0);
    snprintf(p, sizeof(p), "%s/real", d);
    assert_int_equal(protect_check_nofollow(p, at, sizeof(at)), 0);
    snprintf(p, sizeof(p), "%s/link/x", d);
    assert_int_equal(protect_check_nofollow(p, at, sizeof(at)), -ELOOP);
    snprintf(p, sizeof(p), "%s/link", d);
    assert_string_equal(at, p);
    snprintf(p, sizeof(p), "%s/missing", d);
    assert_int_equal(protect_check_nofollow(p, at, sizeof(at)), -ENOENT);
    snprintf(p, sizeof(p), "%s/link", d);
    unlink(p);
    snprintf(p, sizeof(p), "%s/real", d);
    rmdir(p);
    rmdir(d);
}

/* The registry: the last one out removes what every bottle on the workspace made. */
static void test_registry(void **state)
{
    char d[] = "/tmp/bb-registry-XXXXXX", reg[256], ws1[256], ws2[256], path[512];
    struct protect_plan p1, p2;
    struct stat st;
    FILE *f;
    char line[1024];
    int lines = 0;
    (void)state;

    assert_non_null(mkdtemp(d));
    snprintf(reg, sizeof(reg), "%s/placeholders", d);
    snprintf(ws1, sizeof(ws1), "%s/w s%%1\n", d); /* space, '%', newline: escaped */
    snprintf(ws2, sizeof(ws2), "%s/ws2", d);
    assert_int_equal(mkdir(ws1, 0755), 0);
    assert_int_equal(mkdir(ws2, 0755), 0);
    assert_int_equal(protect_plan_build(ws1, NULL, NULL, &p1), 0);
    assert_int_equal(protect_plan_build(ws2, NULL, NULL, &p2), 0);
    assert_true(p1.n_made > 0);
    assert_int_equal(protect_registry_add(reg, ws1, &p1), 0);
    assert_int_equal(protect_registry_add(reg, ws2, &p2), 0);
    /* the bottle that made ws1's placeholders leaves while another uses ws1: they stay */
    protect_plan_done(&p1, false);
    snprintf(path, sizeof(path), "%s/.vscode", ws1);
    assert_int_equal(lstat(path, &st), 0);
    /* the last one out of ws1 removes them, and leaves ws2's alone */
    assert_int_equal(protect_registry_clean(reg, ws1), 0);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.vscode", ws2);
    assert_int_equal(lstat(path, &st), 0);
    f = fopen(reg, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f)) {
        assert_non_null(strstr(line, "/ws2 "));
        lines++;
    }
    fclose(f);
    assert_int_equal((size_t)lines, p2.n_made);
    assert_int_equal(protect_registry_clean(reg, ws2), 0);
    assert_int_equal(lstat(path, &st), -1);
    protect_plan_done(&p2, false);
    assert_int_equal(rm_rf(d), 0);
}

static bool fake_alive(const char *name, void *userdata)
{
    return strcmp(name, (const char *)userdata) == 0;
}

static bool has(const struct strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0)
            return true;
    return false;
}

/* Bottles starting at once share the placeholders (planned under the registry's lock); the
 * last one out, whichever leaves first, removes them. */
static void test_registry_shared(void **state)
{
    char d[] = "/tmp/bb-registry-XXXXXX", reg[256], ws[256], path[512];
    struct protect_registry r;
    struct protect_plan a, b, c;
    struct strv roots = { 0 };
    struct stat st;
    bool shared;
    (void)state;

    assert_non_null(mkdtemp(d));
    snprintf(reg, sizeof(reg), "%s/placeholders", d);
    snprintf(ws, sizeof(ws), "%s/ws", d);
    assert_int_equal(mkdir(ws, 0755), 0);
    strv_push(&roots, ws);
    /* A plans first: .git is missing, its placeholder protects it whole */
    assert_int_equal(protect_registry_lock(reg, &r), 0);
    assert_int_equal(protect_plan_build(ws, NULL, &r, &a), 0);
    assert_int_equal(protect_registry_record(&r, ws, "a", &a), 0);
    protect_registry_unlock(&r);
    snprintf(path, sizeof(path), "%s/.git", ws);
    assert_true(has(&a.paths, path));
    /* B finds A's .git placeholder: protected whole too, nothing made in it or again */
    assert_int_equal(protect_registry_lock(reg, &r), 0);
    assert_int_equal(protect_plan_build(ws, NULL, &r, &b), 0);
    assert_int_equal(protect_registry_record(&r, ws, "b", &b), 0);
    protect_registry_unlock(&r);
    assert_true(has(&b.paths, path));
    assert_int_equal(b.n_made, 0);
    assert_int_equal(a.paths.n, b.paths.n);
    snprintf(path, sizeof(path), "%s/.git/config", ws);
    assert_int_equal(lstat(path, &st), -1);
    /* without the registry, B would take it for a repository and make .git/config in it */
    assert_int_equal(protect_plan_build(ws, NULL, NULL, &c), 0);
    assert_int_equal(lstat(path, &st), 0);
    protect_plan_done(&c, true);
    assert_int_equal(lstat(path, &st), -1);
    /* A leaves while B runs: everything stays */
    assert_int_equal(protect_registry_leave(reg, "a", &roots, fake_alive, (void *)"b", &shared), 0);
    assert_true(shared);
    protect_plan_done(&a, !shared);
    snprintf(path, sizeof(path), "%s/.git", ws);
    assert_int_equal(lstat(path, &st), 0);
    /* B leaves (A still looks alive: it said it left, so it does not count) */
    assert_int_equal(protect_registry_leave(reg, "b", &roots, fake_alive, (void *)"a", &shared), 0);
    assert_false(shared);
    protect_plan_done(&b, !shared);
    assert_int_equal(lstat(path, &st), -1);
    snprintf(path, sizeof(path), "%s/.vscode", ws);
    assert_int_equal(lstat(path, &st), -1);
    /* a user that is not alive (a supervisor killed with SIGKILL) keeps nothing */
    assert_int_equal(protect_registry_lock(reg, &r), 0);
    assert_int_equal(protect_plan_build(ws, NULL, &r, &a), 0);
    assert_int_equal(protect_registry_record(&r, ws, "dead", &a), 0);
    assert_int_equal(protect_plan_build(ws, NULL, &r, &b), 0);
    assert_int_equal(protect_registry_record(&r, ws, "b", &b), 0);
    protect_registry_unlock(&r);
    protect_plan_done(&a, false);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(protect_registry_leave(reg, "b", &roots, fake_alive, (void *)"x", &shared), 0);
    assert_false(shared);
    protect_plan_done(&b, !shared);
    assert_int_equal(lstat(path, &st), -1);
    {
        /* and the registry is empty again: no user, no placeholder left listed */
        FILE *f = fopen(reg, "r");
        assert_non_null(f);
        assert_int_equal(fgetc(f), EOF);
        fclose(f);
    }
    strv_done(&roots);
    assert_int_equal(rm_rf(d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_git_config), cmocka_unit_test(test_scan_bounded),
        cmocka_unit_test(test_rel_path_valid),  cmocka_unit_test(test_plan),
        cmocka_unit_test(test_check_nofollow),  cmocka_unit_test(test_registry),
        cmocka_unit_test(test_plan_mount),      cmocka_unit_test(test_registry_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
