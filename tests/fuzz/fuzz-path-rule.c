/*
 * Fuzz the request-path normaliser and the path matcher. The first line is a rule's path
 * pattern, every other line a request path. Invariants: a normalised path normalises to itself
 * and has no dot segment, "//", encoded '/' or '\\'; a pattern matches itself when it has no
 * '*'; "/" "**" matches every normalised path; the rule check never crashes.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "policy/policy.h"

static void check_path(const char *p, size_t len, const char *pattern)
{
    char out[BB_MAX_HTTP_TARGET + 1], again[BB_MAX_HTTP_TARGET + 1];
    const char *why = NULL;

    if (len > BB_MAX_HTTP_TARGET)
        return;
    if (policy_path_normalise(p, len, out, sizeof(out), &why) < 0) {
        if (!why)
            abort();
        return;
    }
    if (policy_path_normalise(out, strlen(out), again, sizeof(again), &why) < 0 ||
        strcmp(out, again) != 0)
        abort();
    if (strstr(out, "/../") || strstr(out, "/./") || strstr(out, "//") || strstr(out, "%2F") ||
        strstr(out, "%5C") || strchr(out, '\\') || strchr(out, '?'))
        abort();
    size_t n = strlen(out);
    if ((n >= 3 && strcmp(out + n - 3, "/..") == 0) || (n >= 2 && strcmp(out + n - 2, "/.") == 0))
        abort();
    if (!policy_path_match("/**", out))
        abort();
    if (!strchr(out, '*') && !policy_path_match(out, out))
        abort();
    if (pattern)
        (void)policy_path_match(pattern, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *end = s + size;
    char pattern[BB_MAX_HTTP_TARGET + 1];
    bool have_pattern = false;
    struct policy *p = policy_new();
    const char *why = NULL;
    unsigned lines = 0;

    for (const char *l = s; l < end && lines < 128; lines++) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t len = nl ? (size_t)(nl - l) : (size_t)(end - l);
        if (lines == 0) {
            char rule[BB_MAX_HTTP_TARGET + 64];
            if (policy_path_normalise(l, len, pattern, sizeof(pattern), &why) == 0)
                have_pattern = true;
            if (len < BB_MAX_HTTP_TARGET) {
                memcpy(rule, "h.example GET,POST ", 19);
                memcpy(rule + 19, l, len);
                (void)policy_add_allow(p, rule, 19 + len, &why);
            }
        } else {
            struct host h;
            check_path(l, len, have_pattern ? pattern : NULL);
            if (host_parse("h.example", 9, &h, &why) == 0) {
                const char *rule = NULL;
                enum verdict v = policy_check_request(p, &h, 80, "GET", 3, l, len, &rule, &why);
                if (v != V_ALLOW && v != V_DENY_METHOD && v != V_DENY_PATH)
                    abort();
                if (v != V_ALLOW && !rule)
                    abort();
            }
        }
        l += len + 1;
    }
    policy_free(p);
    return 0;
}
