/* Unit tests for src/agent (profiles, directories, installed versions) and the config's
 * [agent "NAME"] sections (src/config). */
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

#include "agent/agent.h"
#include "config/config.h"
#include "unit-util.h"

static char tmpdir[256];

static int load(const char *text, struct bb_config *cfg, struct config_error *err)
{
    return config_load_string("test.ini", text, strlen(text), cfg, err);
}

static bool strv_has(const struct strv *v, const char *s)
{
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->v[i], s) == 0)
            return true;
    return false;
}

static void test_builtin_profiles(void **state)
{
    struct agent_profile p;
    (void)state;

    assert_string_equal(agent_builtin_name(0), "claude");
    assert_string_equal(agent_builtin_name(1), "codex");
    assert_null(agent_builtin_name(2));

    assert_int_equal(agent_profile_get(NULL, "claude", &p), 0);
    assert_string_equal(p.command, "claude");
    assert_string_equal(p.package, "@anthropic-ai/claude-code");
    assert_true(strv_has(&p.allow, "api.anthropic.com"));
    assert_true(strv_has(&p.allow, "platform.claude.com"));
    /* telemetry, error reports and auto-update are never allowed, and turned off */
    assert_false(strv_has(&p.allow, "statsig.anthropic.com"));
    assert_true(strv_has(&p.env, "DISABLE_TELEMETRY=1"));
    assert_true(strv_has(&p.env, "DISABLE_AUTOUPDATER=1"));
    assert_true(strv_has(&p.env, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"));
    /* the API keys are credentials (the bottle gets a placeholder), never passed */
    assert_false(strv_has(&p.env, "ANTHROPIC_API_KEY"));
    assert_true(strv_has(&p.env, "ANTHROPIC_BASE_URL"));
    assert_non_null(p.keys);
    assert_string_equal(p.keys[0].var, "ANTHROPIC_API_KEY");
    assert_string_equal(p.keys[0].header, "x-api-key");
    assert_string_equal(p.keys[0].host, "api.anthropic.com");
    assert_string_equal(p.keys[1].var, "ANTHROPIC_AUTH_TOKEN");
    assert_string_equal(p.keys[1].header, "authorization");
    assert_string_equal(p.keys[2].var, "CLAUDE_CODE_OAUTH_TOKEN");
    assert_null(p.keys[3].var);
    assert_string_equal(p.state, ".claude");
    assert_string_equal(p.state_env, "CLAUDE_CONFIG_DIR");
    assert_true(p.builtin);
    agent_profile_done(&p);

    assert_int_equal(agent_profile_get(NULL, "codex", &p), 0);
    assert_string_equal(p.command, "codex");
    assert_string_equal(p.package, "@openai/codex");
    assert_true(strv_has(&p.allow, "api.openai.com"));
    assert_true(strv_has(&p.allow, "auth.openai.com"));
    assert_false(strv_has(&p.env, "OPENAI_API_KEY"));
    assert_string_equal(p.keys[0].var, "OPENAI_API_KEY");
    assert_string_equal(p.keys[0].header, "authorization");
    assert_string_equal(p.keys[0].host, "api.openai.com");
    assert_null(p.keys[1].var);
    assert_string_equal(p.state_env, "CODEX_HOME");
    agent_profile_done(&p);

    assert_int_equal(agent_profile_get(NULL, "aider", &p), -ENOENT);
}

static void test_user_profiles(void **state)
{
    static const char text[] = "[agent \"aider\"]\n"
                               "command = aider\n"
                               "allow = api.openai.com\n"
                               "allow = *.example.com:8443\n"
                               "env = OPENAI_API_KEY\n"
                               "env = AIDER_CHECK_UPDATE=false\n"
                               "state = .aider\n"
                               "state_env = AIDER_HOME\n"
                               "package = @scope/aider-js\n"
                               "[agent \"claude\"]\n"
                               "allow = github.com\n"
                               "env = GITHUB_TOKEN\n"
                               "[agent \"new\"]\n"
                               "allow = example.com\n"
                               "[egress]\n"
                               "allow = x.example\n";
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    struct agent_profile p;
    (void)state;

    if (load(text, &cfg, &err) != 0)
        fail_msg("%s:%u: %s", err.path, err.line, err.msg);
    assert_int_equal(cfg.n_agents, 3);
    /* a key after another section's header does not land in the agent */
    assert_int_equal(cfg.allow.n, 1);

    assert_int_equal(agent_profile_get(&cfg, "aider", &p), 0);
    assert_false(p.builtin);
    assert_non_null(p.user);
    assert_int_equal(p.user->line, 1);
    assert_string_equal(p.command, "aider");
    assert_int_equal(p.allow.n, 2);
    assert_int_equal(p.env.n, 2);
    assert_string_equal(p.state, ".aider");
    assert_string_equal(p.state_env, "AIDER_HOME");
    assert_string_equal(p.package, "@scope/aider-js");
    agent_profile_done(&p);

    /* a section named like a built-in adds to it */
    assert_int_equal(agent_profile_get(&cfg, "claude", &p), 0);
    assert_true(p.builtin);
    assert_string_equal(p.command, "claude");
    assert_true(strv_has(&p.allow, "api.anthropic.com"));
    assert_true(strv_has(&p.allow, "github.com"));
    assert_true(strv_has(&p.env, "GITHUB_TOKEN"));
    assert_true(strv_has(&p.env, "DISABLE_TELEMETRY=1"));
    agent_profile_done(&p);

    /* a new profile needs a command */
    assert_int_equal(agent_profile_get(&cfg, "new", &p), -EINVAL);

    /* a later file's section replaces an earlier one as a whole */
    assert_int_equal(load("[agent \"aider\"]\ncommand = /opt/aider/bin/aider\n", &cfg, &err), 0);
    assert_int_equal(cfg.n_agents, 3);
    assert_int_equal(agent_profile_get(&cfg, "aider", &p), 0);
    assert_string_equal(p.command, "/opt/aider/bin/aider");
    assert_int_equal(p.allow.n, 0);
    assert_null(p.state);
    agent_profile_done(&p);
    config_done(&cfg);
}

static void test_agent_config_errors(void **state)
{
    static const struct {
        const char *text;
        unsigned line;
        const char *msg;
    } cases[] = {
        { "[agent \"a\"]\nbogus = 1\n", 2, "unknown key 'bogus' in [agent \"a\"]" },
        { "[agent \"A\"]\n", 1, "an agent name is" },
        { "[agent \"\"]\n", 1, "write an agent section as" },
        { "[agent a]\n", 1, "unknown section" },
        { "[agent \"a]\n", 1, "write an agent section as" },
        { "[agent \"a\"]\n[agent \"a\"]\n", 2, "already on line 1" },
        { "[agent \"a\"]\ncommand = x\ncommand = y\n", 3, "set twice" },
        { "[agent \"a\"]\ncommand = bin/x\n", 2, "not a program name" },
        { "[agent \"a\"]\ncommand = x --flag\n", 2, "not a program name" },
        { "[agent \"a\"]\nallow = https://x.example/\n", 2, "allow: 'https://x.example/'" },
        { "[agent \"a\"]\nenv = 1BAD\n", 2, "env: '1BAD'" },
        { "[agent \"a\"]\nstate = /abs\n", 2, "not a path relative to $HOME" },
        { "[agent \"a\"]\nstate = ../up\n", 2, "not a path relative to $HOME" },
        { "[agent \"a\"]\nstate_env = A-B\n", 2, "not a variable name" },
        { "[agent \"a\"]\npackage = Upper\n", 2, "not an npm package name" },
        { "[agent \"a\"]\npackage = @scope\n", 2, "not an npm package name" },
        { "[agent \"a\"]\npackage = a/b\n", 2, "not an npm package name" },
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bb_config cfg = { 0 };
        struct config_error err = { 0 };
        assert_int_equal(load(cases[i].text, &cfg, &err), -EINVAL);
        if (err.line != cases[i].line || !strstr(err.msg, cases[i].msg))
            fail_msg("case %zu: got %u: %s; want %u: ...%s...", i, err.line, err.msg, cases[i].line,
                     cases[i].msg);
        assert_int_equal(cfg.n_agents, 0);
    }
}

static void test_dirs(void **state)
{
    char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    char path[PATH_MAX];
    (void)state;

    setenv("XDG_DATA_HOME", "/data", 1);
    setenv("XDG_CACHE_HOME", "/cache", 1);
    unsetenv("BOT_BOTTLE_AGENT_CACHE");
    assert_int_equal(agent_cache_root(&a), 0);
    assert_string_equal(a, "/cache/bot-bottle/agents");
    free(a);
    setenv("BOT_BOTTLE_AGENT_CACHE", "/over", 1);
    assert_int_equal(agent_cache_root(&a), 0);
    assert_string_equal(a, "/over");
    free(a);
    /* XDG: a relative value is ignored */
    setenv("XDG_DATA_HOME", "rel", 1);
    setenv("HOME", "/home/u", 1);
    assert_int_equal(agent_state_root(&a), 0);
    assert_string_equal(a, "/home/u/.local/share/bot-bottle/agents");
    free(a);
    setenv("XDG_DATA_HOME", "/data", 1);

    /* per agent and per workspace; the name is readable, the hash tells them apart */
    assert_int_equal(agent_state_dir("claude", "/src/proj", &a), 0);
    assert_int_equal(agent_state_dir("claude", "/other/proj", &b), 0);
    assert_int_equal(agent_state_dir("codex", "/src/proj", &c), 0);
    assert_int_equal(agent_state_dir("claude", "/src/.hidden dir", &d), 0);
    assert_true(strncmp(a, "/data/bot-bottle/agents/claude/proj-", 36) == 0);
    assert_int_equal(strlen(a), 36 + 16);
    assert_string_not_equal(a, b);
    assert_true(strncmp(c, "/data/bot-bottle/agents/codex/proj-", 35) == 0);
    assert_string_equal(a + 36, c + 35);
    assert_true(strncmp(d, "/data/bot-bottle/agents/claude/_hidden_dir-", 43) == 0);
    free(a);
    free(b);
    free(c);
    free(d);
    assert_int_equal(agent_state_dir("claude", "rel", &a), -EINVAL);
    assert_int_equal(agent_state_dir("../x", "/w", &a), -EINVAL);

    snprintf(path, sizeof(path), "%s/x/y/z", tmpdir);
    assert_int_equal(agent_mkdir_p(path, 0700), 0);
    assert_int_equal(agent_mkdir_p(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    assert_int_equal(close(creat(path, 0600)), 0);
    assert_int_equal(agent_mkdir_p(path, 0700), -EPERM);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_installed_version(void **state)
{
    char prefix[512], dir[1024], file[2048];
    char *v = NULL;
    (void)state;

    snprintf(prefix, sizeof(prefix), "%s/prefix", tmpdir);
    assert_int_equal(agent_installed_version(prefix, "@openai/codex", &v), -ENOENT);
    snprintf(dir, sizeof(dir), "%s/lib/node_modules/@openai/codex", prefix);
    assert_int_equal(agent_mkdir_p(dir, 0755), 0);
    snprintf(file, sizeof(file), "%s/package.json", dir);
    write_file(file, "{\"name\":\"@openai/codex\",\"version\":\"0.171.0\",\"bin\":{}}");
    assert_int_equal(agent_installed_version(prefix, "@openai/codex", &v), 0);
    assert_string_equal(v, "0.171.0");
    free(v);
    write_file(file, "{\"version\":\"1\",\"version\":\"2\"}");
    assert_int_equal(agent_installed_version(prefix, "@openai/codex", &v), -EINVAL);
    write_file(file, "{\"version\":7}");
    assert_int_equal(agent_installed_version(prefix, "@openai/codex", &v), -EINVAL);
    write_file(file, "not json");
    assert_int_equal(agent_installed_version(prefix, "@openai/codex", &v), -EINVAL);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bb-test-agent-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    return rm_rf(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_profiles),    cmocka_unit_test(test_user_profiles),
        cmocka_unit_test(test_agent_config_errors), cmocka_unit_test(test_dirs),
        cmocka_unit_test(test_installed_version),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
