/* Unit tests for src/config: loading, validation, error lines, libinih line-length caveat. */
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
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

#include "common/macro.h"
#include "config/config.h"
#include "dlp/dlp.h"
#include "unit-util.h"

static int load(const char *text, struct bb_config *cfg, struct config_error *err)
{
    return config_load_string("test.ini", text, strlen(text), cfg, err);
}

static void test_config_example(void **state)
{
    static const char text[] = "\xEF\xBB\xBF# bot-bottle config\r\n"
                               "[bottle]\r\n"
                               "backend = microvm\r\n"
                               "cpus = 2\n"
                               "memory = 2G\n"
                               "name = b1\n"
                               "allow_write = .vscode\n"
                               "allow_write = .git/hooks\n"
                               "\n"
                               "; the egress allowlist\n"
                               "[egress]  ; comment\n"
                               "    allow = api.anthropic.com   ; inline comment\n"
                               "\tallow = *.githubusercontent.com\n"
                               "allow_cidr = 203.0.113.0/24\n"
                               "upstream_dns = 127.0.0.1:5399\n"
                               "listen = 127.77.0.1:3128\n"
                               "dns = [::1]:53\n"
                               "audit = /tmp/audit.jsonl\n"
                               "hold_blocked = 45\n"
                               "[env]\n"
                               "pass = TERM\n"
                               "pass = ANTHROPIC_BASE_URL\n"
                               "pass = FOO=bar baz\n"
                               "[microvm]\n"
                               "accel = tcg\n"
                               "kernel = /opt/k/vmlinux\n"
                               "snapshot = off\n";
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    if (load(text, &cfg, &err) != 0)
        fail_msg("%s:%u: %s", err.path, err.line, err.msg);
    assert_string_equal(cfg.backend, "microvm");
    assert_string_equal(cfg.accel, "tcg");
    assert_string_equal(cfg.kernel, "/opt/k/vmlinux");
    assert_string_equal(cfg.snapshot, "off");
    assert_int_equal(cfg.cpus, 2);
    assert_true(cfg.memory == 2ull << 30);
    assert_string_equal(cfg.name, "b1");
    assert_int_equal(cfg.allow_write.n, 2);
    assert_string_equal(cfg.allow_write.v[1], ".git/hooks");
    assert_int_equal(cfg.allow.n, 2);
    assert_string_equal(cfg.allow.v[0], "api.anthropic.com");
    assert_string_equal(cfg.allow.v[1], "*.githubusercontent.com");
    assert_null(cfg.allow.v[2]);
    assert_int_equal(cfg.allow_cidr.n, 1);
    assert_string_equal(cfg.allow_cidr.v[0], "203.0.113.0/24");
    assert_string_equal(cfg.upstream_dns, "127.0.0.1:5399");
    assert_string_equal(cfg.listen, "127.77.0.1:3128");
    assert_string_equal(cfg.dns, "[::1]:53");
    assert_string_equal(cfg.audit, "/tmp/audit.jsonl");
    assert_true(cfg.have_hold_blocked);
    assert_int_equal(cfg.hold_blocked, 45);
    assert_int_equal(cfg.env_pass.n, 3);
    assert_string_equal(cfg.env_pass.v[2], "FOO=bar baz");

    struct policy *p = NULL;
    const char *msg = NULL, *item = NULL;
    assert_int_equal(config_build_policy(&cfg, &p, &msg, &item), 0);
    assert_int_equal(policy_n_allow(p), 2);
    assert_int_equal(policy_n_cidr(p), 1);
    policy_free(p);
    config_done(&cfg);
    config_done(&cfg); /* idempotent */
}

struct err_case {
    const char *text;
    unsigned line;
    const char *msg_has;
};

static const struct err_case err_cases[] = {
    { "[bottle]\ncpus = 0\n", 2, "cpus" },
    { "[bottle]\ncpus = 257\n", 2, "1 to 256" },
    { "[bottle]\ncpus = -1\n", 2, "cpus" },
    { "[bottle]\ncpus = 2x\n", 2, "cpus" },
    { "[bottle]\ncpus = 2\ncpus = 3\n", 3, "already set on line 2" },
    { "[bottle]\nmemory = 2X\n", 2, "512M" },
    { "[bottle]\nmemory = 0\n", 2, "memory" },
    { "[bottle]\nmemory = 99999999999999999999\n", 2, "memory" },
    { "[bottle]\nbackend = Micro VM\n", 2, "backend" },
    { "[bottle]\nname = ../x\n", 2, "name" },
    { "[bottle]\nbackend = microvm\n[bottle]\nbackend = namespace\n", 4, "already set" },
    { "[bottle]\nbogus = 1\n", 2, "unknown key 'bogus' in [bottle]" },
    { "[bottle]\nallow_write = /etc\n", 2, "allow_write" },
    { "[bottle]\nallow_write = ../x\n", 2, "allow_write" },
    { "[bottle]\nallow_write = .git/\n", 2, "allow_write" },
    { "[bottle]\nCPUS = 1\n", 2, "unknown key" },
    { "[egress]\nallow = *\n", 2, "alone" },
    { "[egress]\nallow = 127.0.0.1\n", 2, "allow_cidr" },
    { "[egress]\nallow = evil.com#allowed.com\n", 2, "allow" },
    { "[egress]\nallow = allowed.com@evil.com\n", 2, "allow" },
    { "[egress]\nallow = example.com:0\n", 2, "port" },
    { "[egress]\nallow_cidr = 10.0.0.1/8\n", 2, "host bits" },
    { "[egress]\nallow_cidr = example.com\n", 2, "allow_cidr" },
    { "[egress]\nupstream_dns = dns.example\n", 2, "upstream_dns" },
    { "[egress]\nupstream_dns = ::1\n", 2, "upstream_dns" },
    { "[egress]\nlisten = 127.0.0.1\n", 2, "ADDR:PORT" },
    { "[egress]\ndns = 127.0.0.1:0\n", 2, "dns" },
    { "[egress]\nhold_blocked = 3601\n", 2, "from 0 to 3600" },
    { "[egress]\nhold_blocked = -1\n", 2, "hold_blocked" },
    { "[egress]\nhold_blocked = 10s\n", 2, "hold_blocked" },
    { "[egress]\nallowed = x.example\n", 2, "unknown key 'allowed' in [egress]" },
    { "[egress]\nallow =\n", 2, "empty value" },
    { "[egress]\nallow = ; just a comment\n", 2, "empty value" },
    { "[env]\npass = 1BAD\n", 2, "pass" },
    { "[env]\npass = =x\n", 2, "pass" },
    { "[env]\npass = A-B\n", 2, "pass" },
    { "[env]\nset = A\n", 2, "unknown key" },
    { "[microvm]\naccel = hvf\n", 2, "accel: 'hvf' is not auto, kvm or tcg" },
    { "[microvm]\naccel = kvm\naccel = tcg\n", 3, "already set" },
    { "[microvm]\nsnapshot = no\n", 2, "snapshot: 'no' is not on or off" },
    { "[microvm]\nkernel = vmlinux\n", 2, "absolute path" },
    { "[microvm]\nkernel = Stock\n", 2, "neither 'stock' nor an absolute path" },
    { "[microvm]\nmemory = 2G\n", 2, "unknown key 'memory' in [microvm]" },
    /* sections */
    { "[egres]\n", 1, "unknown section [egres]" },
    { "# c\n[Egress]\nallow = x.example\n", 2, "unknown section" },
    { "[egress\nallow = x.example\n", 1, "']'" },
    { "allow = x.example\n", 1, "outside a section" },
    { "[egress] allow = x.example\n", 1, "after the section header" },
    /* syntax: inih errors get a line too, and the first error wins */
    { "[egress]\nallow x.example\n", 2, "syntax error" },
    { "[egress]\nallow x.example\n[bottle]\ncpus = 0\n", 2, "syntax error" },
    { "[bottle]\ncpus = 0\nnot a key\n", 2, "cpus" },
    { "[egress]\n= value\n", 2, "no key" },
    /* credentials */
    { "[credential \"a\"]\nhost = *.example.com\nheader = x\nvalue = env:A\n", 2, "host" },
    { "[credential \"a\"]\nhost = 10.0.0.1\nheader = x\nvalue = env:A\n", 2, "host" },
    { "[credential \"a\"]\nhost = a.example\nheader = Host\nvalue = env:A\n", 3, "header" },
    { "[credential \"a\"]\nhost = a.example\nheader = x y\nvalue = env:A\n", 3, "header" },
    { "[credential \"a\"]\nhost = a.example\nheader = x\nvalue = sk-literal\n", 4, "value" },
    { "[credential \"a\"]\nhost = a.example\nheader = x\nvalue = file:rel\n", 4, "value" },
    { "[credential \"a\"]\nhost = a.example\nheader = x\nvalue = command:  \n", 4, "value" },
    { "[credential \"a\"]\nhost = a.example\nport = 0\n", 3, "port" },
    { "[credential \"a\"]\nhost = a.example\nhost = b.example\n", 3, "already set" },
    { "[credential \"a\"]\nhost = a.example\nheader = x\nvalue = env:A\nenv = 1X\n", 5, "env" },
    { "[credential \"a\"]\nhost = a.example\nheader = x\nsecret = y\n", 4, "unknown key" },
    { "[credential \"a\"]\nhost = a.example\nheader = x\n", 2, "has no value" },
    { "[credential \"A b\"]\nhost = a.example\n", 1, "unknown section" },
    { "[credential a]\nhost = a.example\n", 1, "unknown section" },
    /* bytes that do not belong in a text file */
    { "[bottle]\ncpus = 2\x01\n", 2, "control character" },
    { "[bottle]\n\x1b[31mcpus = 2\n", 2, "control character" },
    { "[bottle]\ncpus = 2\rbackend = x\n", 2, "control character" },
};

/* [microvm] kernel = stock: Debian's kernel from the cache (docs/microvm.md) */
static void test_config_kernel_stock(void **state)
{
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    if (load("[microvm]\nkernel = stock\n", &cfg, &err) != 0)
        fail_msg("%s:%u: %s", err.path, err.line, err.msg);
    assert_string_equal(cfg.kernel, "stock");
    config_done(&cfg);
}

static void test_config_credentials(void **state)
{
    static const char text[] = "[credential \"anthropic\"]\n"
                               "host = API.Anthropic.com\n"
                               "header = x-api-key\n"
                               "value = env:ANTHROPIC_API_KEY\n"
                               "[credential \"gh\"]\n"
                               "host = api.github.com\n"
                               "port = 8443\n"
                               "header = authorization\n"
                               "value = command:gh auth token\n"
                               "env = GH_TOKEN\n";
    struct bb_config cfg = { 0 }, cli = { 0 };
    struct config_error err = { 0 };
    const char *why = NULL;
    (void)state;

    assert_int_equal(load(text, &cfg, &err), 0);
    assert_int_equal(cfg.n_creds, 2);
    assert_string_equal(cfg.creds[0].host, "api.anthropic.com");
    assert_int_equal(cfg.creds[0].port, 443);
    assert_string_equal(cfg.creds[0].env, "ANTHROPIC_API_KEY"); /* from env:NAME */
    assert_int_equal(cfg.creds[1].port, 8443);
    assert_string_equal(cfg.creds[1].value, "command:gh auth token");
    assert_string_equal(cfg.creds[1].env, "GH_TOKEN");

    /* --credential: NAME:HOST[:PORT]:HEADER:SOURCE, the source may hold ':' */
    assert_int_equal(config_parse_credential_arg(&cli,
                                                 "gh:api.github.com:authorization:"
                                                 "command:gh auth token --host a:b",
                                                 &why),
                     0);
    assert_int_equal(config_parse_credential_arg(&cli,
                                                 "npm:registry.npmjs.org:8080:authorization:"
                                                 "file:/run/npm-token",
                                                 &why),
                     0);
    assert_int_equal(cli.n_creds, 2);
    assert_string_equal(cli.creds[0].value, "command:gh auth token --host a:b");
    assert_int_equal(cli.creds[0].port, 443);
    assert_string_equal(cli.creds[0].env, "BB_CRED_GH"); /* the default for non-env sources */
    assert_int_equal(cli.creds[1].port, 8080);
    assert_string_equal(cli.creds[1].header, "authorization");
    assert_string_equal(cli.creds[1].value, "file:/run/npm-token");
    assert_int_equal(config_parse_credential_arg(&cli, "x:h.example:x-api-key", &why), -EINVAL);
    assert_int_equal(config_parse_credential_arg(&cli, "x:h.example:0:x:env:A", &why), -EINVAL);
    assert_int_equal(config_parse_credential_arg(&cli, "gh:h.example:x:env:A", &why), -EINVAL);
    /* the command line's replaces the file's of the same name */
    config_merge_credentials(&cfg, &cli);
    assert_int_equal(cfg.n_creds, 3);
    assert_string_equal(cfg.creds[1].value, "command:gh auth token --host a:b");
    config_done(&cli);
    config_done(&cfg);
}

static void test_config_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(err_cases); i++) {
        const struct err_case *c = &err_cases[i];
        struct bb_config cfg = { 0 };
        struct config_error err = { 0 };
        int r = load(c->text, &cfg, &err);

        if (r >= 0)
            fail_msg("case %zu accepted: %s", i, c->text);
        if (err.line != c->line || !strstr(err.msg, c->msg_has))
            fail_msg("case %zu: got %s:%u: '%s', want line %u with '%s'", i, err.path, err.line,
                     err.msg, c->line, c->msg_has);
        assert_string_equal(err.path, "test.ini");
        /* nothing of a failed file reaches the config */
        assert_null(cfg.backend);
        assert_int_equal(cfg.allow.n, 0);
        assert_int_equal(cfg.cpus, 0);
        config_done(&cfg);
    }
}

static void test_config_nul_byte(void **state)
{
    static const char text[] = "[egress]\nallow = a.example\nallow = b.example\0.evil\n";
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    assert_int_equal(config_load_string("nul.ini", text, sizeof(text) - 1, &cfg, &err), -EINVAL);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, "NUL"));
    assert_int_equal(cfg.allow.n, 0);
}

/*
 * Debian's libinih reads lines into a 200-byte buffer and splits longer ones silently: the tail
 * of "allow = <long>" would become a line of its own. Such lines must be refused (naming the
 * line), and the tail must never be applied.
 */
static void test_config_long_line(void **state)
{
    char text[1024];
    size_t o = 0;
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    o += (size_t)snprintf(text + o, sizeof(text) - o, "[egress]\nallow = a.example\n");
    /* line 3: a comment whose tail, split off at byte 199, would be a key of its own */
    text[o++] = '#';
    for (int i = 0; i < 198; i++)
        text[o++] = 'x';
    o += (size_t)snprintf(text + o, sizeof(text) - o, "allow_cidr = 0.0.0.0/0\n[bottle]\n");
    assert_int_equal(load(text, &cfg, &err), -EINVAL);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, "longer than"));
    assert_int_equal(cfg.allow_cidr.n, 0);
    assert_int_equal(cfg.allow.n, 0);
    config_done(&cfg);

    /* The limit is what inih's buffer holds (INI_MAX_LINE - 1 bytes), and at most
     * BB_MAX_CONFIG_LINE. A line of exactly that many bytes loads, one more is refused, with
     * or without CRLF. */
    size_t max = MIN((size_t)INI_MAX_LINE - 1, (size_t)BB_MAX_CONFIG_LINE);
    for (int crlf = 0; crlf < 2; crlf++) {
        for (size_t len = max - 1; len <= max + 1; len++) {
            char *t = malloc(len + 64);
            size_t n = (size_t)snprintf(t, 64, "[egress]\n");
            /* "allow =" + spaces + "x.example": exactly len bytes */
            memcpy(t + n, "allow =", 7);
            memset(t + n + 7, ' ', len - 7 - 9);
            memcpy(t + n + len - 9, "x.example", 9);
            n += len;
            n += (size_t)snprintf(t + n, 64, "%s",
                                  crlf ? "\r\n[bottle]\r\ncpus = 3\r\n" : "\n[bottle]\ncpus = 3\n");
            memset(&err, 0, sizeof(err));
            int r = config_load_string("long.ini", t, n, &cfg, &err);
            if (len <= max) {
                if (r != 0)
                    fail_msg("line of %zu bytes refused: %s", len, err.msg);
                assert_string_equal(cfg.allow.v[cfg.allow.n - 1], "x.example");
                assert_int_equal(cfg.cpus, 3);
            } else {
                assert_int_equal(r, -EINVAL);
                assert_int_equal(err.line, 2);
            }
            config_done(&cfg);
            free(t);
        }
    }
}

static void test_config_too_big(void **state)
{
    size_t n = BB_MAX_CONFIG_FILE + 1;
    char *t = malloc(n);
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    for (size_t i = 0; i < n; i++)
        t[i] = (i % 64 == 63) ? '\n' : '#';
    assert_int_equal(config_load_string("big.ini", t, n, &cfg, &err), -EFBIG);
    assert_int_equal(err.line, 0);
    /* one byte less is a (long, all-comment) file that loads */
    assert_int_equal(config_load_string("big.ini", t, n - 1, &cfg, &err), 0);
    free(t);
    config_done(&cfg);
}

static void test_config_merge(void **state)
{
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    strv_push(&cfg.allow, "a.example");
    cfg.cpus = 4;
    cfg.backend = strdup("namespace");
    assert_int_equal(load("[bottle]\ncpus = 2\n[egress]\nallow = b.example\n", &cfg, &err), 0);
    assert_int_equal(cfg.cpus, 2);
    assert_string_equal(cfg.backend, "namespace");
    assert_int_equal(cfg.allow.n, 2);
    assert_string_equal(cfg.allow.v[0], "a.example");
    assert_string_equal(cfg.allow.v[1], "b.example");

    /* a failing file leaves the config as it was */
    assert_int_equal(
        load("[bottle]\ncpus = 8\nbackend = docker\n[egress]\nallow = *\n", &cfg, &err), -EINVAL);
    assert_int_equal(err.line, 5);
    assert_int_equal(cfg.cpus, 2);
    assert_string_equal(cfg.backend, "namespace");
    assert_int_equal(cfg.allow.n, 2);

    char buf[1024];
    assert_string_equal(config_error_str(&err, buf, sizeof(buf)),
                        "test.ini:5: allow: '*': '*' alone would allow every host; list the names "
                        "(or *.domain) instead");
    config_done(&cfg);

    /* the empty file is fine */
    assert_int_equal(config_load_string("empty.ini", "", 0, &cfg, &err), 0);
    assert_int_equal(config_load_string("empty.ini", NULL, 0, &cfg, &err), 0);
    config_done(&cfg);
}

static void test_config_dlp_and_rules(void **state)
{
    struct bb_config cfg = { 0 };
    struct config_error err;
    struct policy *p = NULL;
    const char *msg = NULL, *item = NULL;
    (void)state;

    assert_int_equal(load("[egress]\nallow = api.github.com GET,HEAD /repos/myorg/*\n"
                          "[dlp]\ndisable = jwt, card\ndisable = aws-key\n",
                          &cfg, &err),
                     0);
    assert_int_equal(config_build_policy(&cfg, &p, &msg, &item), 0);
    assert_int_equal(policy_dlp_off(p),
                     DLP_BIT(DLP_JWT) | DLP_BIT(DLP_CARD) | DLP_BIT(DLP_AWS_KEY));
    assert_string_equal(policy_allow_text(p, 0), "api.github.com GET,HEAD /repos/myorg/*");
    struct policy *c = policy_copy(p, NULL);
    assert_int_equal(policy_dlp_off(c), policy_dlp_off(p)); /* reloads and control changes */
    policy_free(c);
    policy_free(p);
    config_done(&cfg);

    assert_int_equal(load("[dlp]\ndisable = jwt,nosuch\n", &cfg, &err), -EINVAL);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "unknown DLP rule"));
    config_done(&cfg);
    assert_int_equal(load("[dlp]\nenable = jwt\n", &cfg, &err), -EINVAL);
    config_done(&cfg);
    assert_int_equal(load("[egress]\nallow = api.github.com GET /a/%2e%2e/b\n", &cfg, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "dot segment"));
    config_done(&cfg);
}

static void test_config_build_policy_error(void **state)
{
    struct bb_config cfg = { 0 };
    struct policy *p = NULL;
    const char *msg = NULL, *item = NULL;
    (void)state;

    /* lists filled by the command line are validated here */
    strv_push(&cfg.allow, "ok.example");
    strv_push(&cfg.allow_cidr, "10.0.0.0/8");
    strv_push(&cfg.allow_cidr, "10.0.0.1/8");
    assert_int_equal(config_build_policy(&cfg, &p, &msg, &item), -EINVAL);
    assert_null(p);
    assert_string_equal(item, "10.0.0.1/8");
    assert_non_null(strstr(msg, "host bits"));
    config_done(&cfg);

    strv_push(&cfg.allow, "0x7f.1");
    assert_int_equal(config_build_policy(&cfg, &p, &msg, &item), -EINVAL);
    assert_string_equal(item, "0x7f.1");
    config_done(&cfg);
}

static void test_config_parse_size(void **state)
{
    static const struct {
        const char *in;
        int ok;
        uint64_t v;
    } cases[] = {
        { "1048576", 1, 1048576 },
        { "512M", 1, 512ull << 20 },
        { "512m", 1, 512ull << 20 },
        { "2G", 1, 2ull << 30 },
        { "4k", 1, 4096 },
        { "1T", 1, 1ull << 40 },
        { "0", 1, 0 },
        { "16777215T", 1, 16777215ull << 40 },
        { "16777216T", 0, 0 },
        { "18446744073709551615", 1, UINT64_MAX },
        { "18446744073709551616", 0, 0 },
        { "", 0, 0 },
        { "G", 0, 0 },
        { "2GB", 0, 0 },
        { "2 G", 0, 0 },
        { "-1", 0, 0 },
        { "1.5G", 0, 0 },
        { "0x10", 0, 0 },
    };
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint64_t v = 12345;
        int r = config_parse_size(cases[i].in, &v);
        if (cases[i].ok) {
            if (r != 0 || v != cases[i].v)
                fail_msg("'%s': r=%d v=%llu", cases[i].in, r, (unsigned long long)v);
        } else {
            if (r >= 0)
                fail_msg("'%s' accepted", cases[i].in);
            assert_true(v == 12345);
        }
    }
}

static char tmpdir[PATH_MAX];

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void test_config_load_file(void **state)
{
    char path[PATH_MAX + 32];
    struct bb_config cfg = { 0 };
    struct config_error err = { 0 };
    (void)state;

    snprintf(path, sizeof(path), "%s/c.ini", tmpdir);
    write_file(path, "[egress]\nallow = file.example\n");
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_string_equal(cfg.allow.v[0], "file.example");
    config_done(&cfg);

    write_file(path, "[egress]\n\nallow = a..example\n");
    assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
    assert_string_equal(err.path, path);
    assert_int_equal(err.line, 3);

    snprintf(path, sizeof(path), "%s/missing.ini", tmpdir);
    assert_int_equal(config_load(path, &cfg, &err), -ENOENT);
    assert_int_equal(err.line, 0);
    assert_string_equal(err.path, path);

    assert_int_equal(config_load(tmpdir, &cfg, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "regular file"));
    config_done(&cfg);
}

static void test_config_default_path(void **state)
{
    char cwd[PATH_MAX], d[PATH_MAX + 64], x[PATH_MAX + 64], want[PATH_MAX + 128];
    char *p = NULL;
    (void)state;

    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(d, sizeof(d), "%s/work", tmpdir);
    mkdir(d, 0700);
    assert_int_equal(chdir(d), 0);

    /* nothing anywhere */
    snprintf(x, sizeof(x), "%s/xdg", tmpdir);
    setenv("XDG_CONFIG_HOME", x, 1);
    setenv("HOME", tmpdir, 1);
    assert_int_equal(config_default_path(&p), 0);
    assert_null(p);

    /* $HOME/.config is used only when XDG_CONFIG_HOME is unset (or not absolute) */
    snprintf(want, sizeof(want), "%s/.config", tmpdir);
    mkdir(want, 0700);
    snprintf(want, sizeof(want), "%s/.config/bot-bottle", tmpdir);
    mkdir(want, 0700);
    snprintf(want, sizeof(want), "%s/.config/bot-bottle/config.ini", tmpdir);
    write_file(want, "");
    assert_int_equal(config_default_path(&p), 0);
    assert_null(p);
    unsetenv("XDG_CONFIG_HOME");
    assert_int_equal(config_default_path(&p), 0);
    assert_non_null(p);
    assert_string_equal(p, want);
    free(p);
    setenv("XDG_CONFIG_HOME", "relative/dir", 1);
    assert_int_equal(config_default_path(&p), 0);
    assert_string_equal(p, want);
    free(p);

    /* $XDG_CONFIG_HOME/bot-bottle/config.ini */
    setenv("XDG_CONFIG_HOME", x, 1);
    mkdir(x, 0700);
    snprintf(want, sizeof(want), "%s/bot-bottle", x);
    mkdir(want, 0700);
    snprintf(want, sizeof(want), "%s/bot-bottle/config.ini", x);
    write_file(want, "");
    assert_int_equal(config_default_path(&p), 0);
    assert_string_equal(p, want);
    free(p);

    /* ./bottle.ini is not a default: it is the project file, used only once trusted
     * (src/cli/args.c) */
    write_file("bottle.ini", "");
    assert_int_equal(config_default_path(&p), 0);
    assert_string_equal(p, want);
    free(p);

    assert_int_equal(chdir(cwd), 0);
}

static void test_strv(void **state)
{
    struct strv s = { 0 };
    char buf[] = "abc";
    (void)state;

    strv_push(&s, buf);
    buf[0] = 'X'; /* copied */
    strv_push(&s, "def");
    assert_int_equal(s.n, 2);
    assert_string_equal(s.v[0], "abc");
    assert_null(s.v[2]);
    strv_done(&s);
    assert_int_equal(s.n, 0);
    assert_null(s.v);
    strv_done(&s);
}

static int setup_tmp(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bb-test-config-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmp(void **state)
{
    (void)state;
    return rm_rf(tmpdir); /* only our own mkdtemp directory */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_example),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_config_kernel_stock),
        cmocka_unit_test(test_config_credentials),
        cmocka_unit_test(test_config_nul_byte),
        cmocka_unit_test(test_config_long_line),
        cmocka_unit_test(test_config_too_big),
        cmocka_unit_test(test_config_merge),
        cmocka_unit_test(test_config_build_policy_error),
        cmocka_unit_test(test_config_dlp_and_rules),
        cmocka_unit_test(test_config_parse_size),
        cmocka_unit_test(test_config_load_file),
        cmocka_unit_test(test_config_default_path),
        cmocka_unit_test(test_strv),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
