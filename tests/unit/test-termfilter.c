/*
 * The terminal filter (src/supervisor/termfilter.c): what is dropped, what passes, the same
 * result whatever the read boundaries, real programs' output passing unchanged, and its
 * throughput (printed, not asserted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "supervisor/termfilter.h"

struct tcase {
    const char *in, *want;
};

/* lengths by strlen: no case has a NUL */
static const struct tcase cases[] = {
    /* OSC 52 (clipboard), every terminator */
    { "a\x1b]52;c;ZWNobyBoaQ==\x07z", "az" },
    { "a\x1b]52;c;Zm9v\x1b\\z", "az" },
    { "a\x1b]52;c;Zm9v\xc2\x9cz", "az" },
    { "a\x1b]52;p;Zm9v\x18z", "az" },
    { "a\x1b]52;c;?\x07z", "az" },
    /* 8-bit and UTF-8-encoded C1 introducers never reach the terminal */
    { "a\x9d"
      "52;c;Zm9v\x9cz",
      "a52;c;Zm9vz" },
    { "a\xc2\x9d"
      "52;c;Zm9v\xc2\x9cz",
      "a52;c;Zm9vz" },
    { "a\x9b"
      "21tz",
      "a21tz" },
    { "a\xc2\x90$qm\xc2\x9cz", "a$qmz" },
    /* other OSC that act or answer back */
    { "\x1b]50;?\x07x", "x" },
    { "\x1b]50;#+1\x1b\\x", "x" },
    { "\x1b]1337;File=name=eA==;inline=0:Zm9v\x07x", "x" },
    { "\x1b]1337;SetUserVar=a=Yg==\x07x", "x" },
    { "\x1b]5;0;?\x07\x1b]4;1;?\x07\x1b]10;?\x07\x1b]11;?\x1b\\x", "x" },
    { "\x1b]7;file://h/tmp\x07\x1b]9;notify\x07\x1b]777;notify;a;b\x07x", "x" },
    { "\x1b]104\x07x", "x" },
    { "\x1b]l title\x1b\\x", "x" },
    { "\x1b]012;x\x07y", "y" },
    { "\x1b]1234567;x\x07y", "y" },
    /* DCS, SOS, PM, APC */
    { "a\x1bP$qm\x1b\\z", "az" },
    { "a\x1bP+q544e\x1b\\z", "az" },
    { "a\x1bP1$r0m\x1b\\z", "az" },
    { "a\x1bPq#0;2;0;0;0#0~~\x1b\\z", "az" },
    { "a\x1b_Gf=100,t=f;L2V0Yy9wYXNzd2Q=\x1b\\z", "az" },
    { "a\x1bXsos\x1b\\\x1b^pm\x1b\\z", "az" },
    /* tmux passthrough wrapping OSC 52: all of it goes; the inner ST is a lone ST */
    { "a\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\z", "a\x1b\\z" },
    /* window operations and reports; the title stack passes */
    { "\x1b[21tx\x1b[20t\x1b[14t\x1b[18t\x1b[19t\x1b[13t\x1b[11t", "x" },
    { "\x1b[8;100;100t\x1b[3;0;0t\x1b[2t\x1b[1t\x1b[9;1t\x1b[>2tx", "x" },
    { "\x1b[22;0t\x1b[22;2t\x1b[23;0;0t\x1b[23t", "\x1b[22;0t\x1b[22;2t\x1b[23;0;0t\x1b[23t" },
    { "\x1b[221tx\x1b[2;2t", "x" },
    /* DECRQM, DECRQTSR, DECRQPSR, DECRQCRA */
    { "\x1b[?2026$px\x1b[12$p\x1b[1$u\x1b[1$w\x1b[1;1;1;1;1*y", "x" },
    /* a CSI too long to hold is dropped whole */
    { "\x1b[1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;"
      "1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;"
      "1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;"
      "21tx",
      "x" },
    /* ESC restarts: a dropped string ends at the next sequence, which is judged itself */
    { "\x1b]52;c;x\x1b[1mX", "\x1b[1mX" },
    { "\x1b]0;t\x1b]52;c;x\x07Z", "\x1b]0;tZ" },
    { "\x1b[1\x1b]52;c;x\x07Z", "Z" },
    { "\x1b\x1b]52;c;x\x07Z", "Z" },
    { "\x1b(\x1b]52;c;x\x07Z", "Z" },
    /* kept: titles, hyperlinks, SGR, modes, DSR/DA, charsets */
    { "\x1b]0;hi\x07\x1b]2;t \xe2\x80\x94 x\x1b\\\x1b]1;i\x07",
      "\x1b]0;hi\x07\x1b]2;t \xe2\x80\x94 x\x1b\\\x1b]1;i\x07" },
    { "\x1b]8;;https://example.invalid/\x1b\\l\x1b]8;;\x1b\\",
      "\x1b]8;;https://example.invalid/\x1b\\l\x1b]8;;\x1b\\" },
    { "\x1b[0;1;38;2;1;2;3;48;5;17mX\x1b[m\x1b[4:3m",
      "\x1b[0;1;38;2;1;2;3;48;5;17mX\x1b[m\x1b[4:3m" },
    { "\x1b[?1049h\x1b[?2004h\x1b[?1000h\x1b[?1006h\x1b[?1004h\x1b[?25l\x1b[?2026h",
      "\x1b[?1049h\x1b[?2004h\x1b[?1000h\x1b[?1006h\x1b[?1004h\x1b[?25l\x1b[?2026h" },
    { "\x1b[6n\x1b[c\x1b[>c\x1b[2 q\x1b[!p\x1b[>1u\x1b[?u",
      "\x1b[6n\x1b[c\x1b[>c\x1b[2 q\x1b[!p\x1b[>1u\x1b[?u" },
    { "\x1b(0lqk\x1b(B\x1b"
      "7\x1b"
      "8\x1b=\x1b>\x1bM\x1b#8\x1b\\",
      "\x1b(0lqk\x1b(B\x1b"
      "7\x1b"
      "8\x1b=\x1b>\x1bM\x1b#8\x1b\\" },
    /* an 8-bit ST in a passed title ends it (as BEL); C0 inside a CSI acts first */
    { "\x1b]0;t\x9cX", "\x1b]0;t\x07X" },
    { "\x1b]0;t\xc2\x9cX", "\x1b]0;t\x07X" },
    { "\x1b]0;t\xc2\x9dX\x07", "\x1b]0;tX\x07" },
    { "\x1b[1\nm", "\n\x1b[1m" },
    { "\x1b[1\x7fm\x1b\x7f"
      "7",
      "\x1b[1m\x1b"
      "7" },
    { "\x1b[1\x18m", "\x18m" },
    { "\x1b[1\xc3\xa9m", "\xc3\xa9m" },
    /* UTF-8: text passes; stray C1 bytes and overlong encodings of controls do not */
    { "caf\xc3\xa9 \xc2\xa3\xc2\xa0 \xe4\xb8\xad \xf0\x9f\x98\x80 \xe2\x9c\x9c \xed\x9f\xbf",
      "caf\xc3\xa9 \xc2\xa3\xc2\xa0 \xe4\xb8\xad \xf0\x9f\x98\x80 \xe2\x9c\x9c \xed\x9f\xbf" },
    { "\xe0\x80\x9b"
      "6n\xc0\x9b"
      "6n\xc1\x9d",
      "\xe0"
      "6n\xc0"
      "6n\xc1" },
    { "\xc2\xc2\xa3\xc2x\xc2\x1b[1m", "\xc2\xc2\xa3\xc2x\xc2\x1b[1m" },
    { "\xe2\x9c\x1b]52;c;x\x07\x9c", "\xe2\x9c" },
};

static unsigned char *run(struct termfilter *f, const char *in, size_t len, size_t *ret_len,
                          const size_t *cuts, size_t ncuts)
{
    unsigned char *out = malloc(len + TERMFILTER_HOLD * (ncuts + 2));
    size_t o = 0, at = 0;

    assert_non_null(out);
    for (size_t k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : len;
        size_t n = termfilter_feed(f, in + at, end - at, out + o);
        assert_true(n <= end - at + TERMFILTER_HOLD);
        o += n;
        at = end;
    }
    *ret_len = o;
    return out;
}

static void expect(const char *in, size_t len, const char *want, size_t wlen, const size_t *cuts,
                   size_t ncuts)
{
    struct termfilter f;
    size_t n;
    unsigned char *out;

    termfilter_init(&f);
    out = run(&f, in, len, &n, cuts, ncuts);
    if (n != wlen || memcmp(out, want, n) != 0) {
        char msg[64] = "";
        for (size_t k = 0; k < ncuts && k < 2; k++)
            snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), " cut@%zu", cuts[k]);
        fail_msg("case %zu bytes '%.*s'%s: got %zu bytes '%.*s'", len, (int)len, in, msg, n, (int)n,
                 (char *)out);
    }
    free(out);
}

static void test_cases(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
        expect(cases[c].in, strlen(cases[c].in), cases[c].want, strlen(cases[c].want), NULL, 0);
}

/* Every case split at every pair of read boundaries, and byte by byte: the same output. */
static void test_boundaries(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *in = cases[c].in, *want = cases[c].want;
        size_t len = strlen(in), wlen = strlen(want);
        size_t *each = malloc((len + 1) * sizeof(*each));
        for (size_t a = 0; a <= len; a++)
            for (size_t b = a; b <= len; b++) {
                size_t cuts[2] = { a, b };
                expect(in, len, want, wlen, cuts, 2);
            }
        for (size_t k = 0; k < len; k++)
            each[k] = k + 1;
        expect(in, len, want, wlen, each, len ? len - 1 : 0);
        free(each);
    }
}

static char *slurp(const char *name, size_t *ret_len)
{
    char path[4096], *dir = strdup(__FILE__), *slash, *p;
    FILE *f;
    long n;

    assert_non_null(dir);
    slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(path, sizeof(path), "%s/data/termfilter/%s", slash ? dir : ".", name);
    free(dir);
    f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *ret_len = (size_t)n;
    return p;
}

/* Removes every occurrence of s from b (in place). */
static size_t cut_all(char *b, size_t len, const char *s)
{
    size_t sl = strlen(s), o = 0;

    for (size_t i = 0; i < len;) {
        if (i + sl <= len && memcmp(b + i, s, sl) == 0) {
            i += sl;
            continue;
        }
        b[o++] = b[i++];
    }
    return o;
}

/*
 * Real output (captured under a pty with TERM=xterm-256color: vim, less, top; tui.out from
 * data/termfilter/make-tui.py) passes unchanged, whatever the read boundaries. vim's, but for
 * its terminal queries: colour (OSC 10/11 ;?) and a DCS probe, which it does without.
 */
static void test_benign_corpus(void **state)
{
    static const char *const files[] = { "less.out", "top.out", "tui.out", "vim.out" };
    (void)state;

    for (size_t k = 0; k < sizeof(files) / sizeof(files[0]); k++) {
        size_t len, wlen, cuts[64], nc = 0;
        char *in = slurp(files[k], &len), *want = malloc(len + 1);
        assert_non_null(want);
        memcpy(want, in, len);
        wlen = len;
        if (strcmp(files[k], "vim.out") == 0) {
            wlen = cut_all(want, wlen, "\x1b]10;?\x07");
            wlen = cut_all(want, wlen, "\x1b]11;?\x07");
            wlen = cut_all(want, wlen, "\x1bPzz\x1b\\");
            assert_true(wlen < len); /* and nothing else went */
        }
        expect(in, len, want, wlen, NULL, 0);
        for (size_t step = 1; step < 64; step = step * 2 + 1) {
            nc = 0;
            for (size_t at = step; at < len && nc < 64; at += step + (at % 7))
                cuts[nc++] = at;
            expect(in, len, want, wlen, cuts, nc);
        }
        /* every single boundary over the first 4 KiB */
        for (size_t at = 0; at < len && at < 4096; at++)
            expect(in, len, want, wlen, &at, 1);
        free(in);
        free(want);
    }
}

/* Filtering twice changes nothing more: what comes out is what the filter lets through. */
static void test_idempotent(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *w = cases[c].want;
        /* a lone ST (tmux case) is itself kept */
        expect(w, strlen(w), w, strlen(w), NULL, 0);
    }
}

static void test_throughput(void **state)
{
    size_t len, total = 0, chunk = 65536;
    char *corpus = slurp("tui.out", &len);
    char *in = malloc(chunk), *out = malloc(chunk + TERMFILTER_HOLD);
    struct termfilter f;
    struct timespec t0, t1;
    double s;
    (void)state;

    for (size_t i = 0; i < chunk; i++)
        in[i] = corpus[i % len];
    termfilter_init(&f);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (total < 100u * 1000 * 1000) {
        assert_true(termfilter_feed(&f, in, chunk, out) <= chunk + TERMFILTER_HOLD);
        total += chunk;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# termfilter: %zu MB of TUI output in %.3f s: %.0f MB/s\n", total / 1000000, s,
           (double)total / 1e6 / s);
    memset(in, 'x', chunk);
    total = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (total < 100u * 1000 * 1000) {
        memcpy(out, in, chunk);
        total += chunk;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# (memcpy of the same on this machine: %.0f MB/s)\n", (double)total / 1e6 / s);
    total = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (total < 100u * 1000 * 1000) {
        termfilter_feed(&f, in, chunk, out);
        total += chunk;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# termfilter: %zu MB of plain text in %.3f s: %.0f MB/s\n", total / 1000000, s,
           (double)total / 1e6 / s);
    fflush(stdout);
    free(corpus);
    free(in);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),         cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_benign_corpus), cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
