/*
 * Fuzz the policy: input lines are allow patterns ("c:" prefix: allow_cidr entries, "h:"
 * prefix: hosts to check). Invariants: every accepted pattern admits the host it names
 * (a subdomain for "*.x"), on its port; a method/path rule ("HOST METHODS PATH") makes its host
 * one with rules; checks never crash.
 */
#include <stdlib.h>
#include <string.h>

#include "common/str.h"
#include "fuzz.h"
#include "policy/policy.h"

static void check_pattern(const struct policy *p, const char *text)
{
    char name[BB_MAX_HOSTNAME + 16], hostpart[BB_MAX_HOSTNAME + 16];
    const char *sp = strchr(text, ' ');
    if (sp) {
        /* a method/path rule: its host part is a pattern of its own */
        if ((size_t)(sp - text) >= sizeof(hostpart))
            abort();
        memcpy(hostpart, text, (size_t)(sp - text));
        hostpart[sp - text] = '\0';
        text = hostpart;
    }
    const char *colon = strchr(text, ':');
    size_t n = colon ? (size_t)(colon - text) : strlen(text);
    uint16_t port = 443;
    struct host h;
    const char *msg = NULL;

    if (colon && str_to_port(slice_cstr(colon + 1), &port) < 0)
        abort(); /* the normalised text carries a valid port */
    if (n > 2 && text[0] == '*' && text[1] == '.') {
        if (n - 2 + 2 > BB_MAX_HOSTNAME)
            return;
        name[0] = 'a';
        memcpy(name + 1, text + 1, n - 1); /* "a.rest" */
    } else {
        memcpy(name, text, n);
    }
    if (host_parse(name, n, &h, &msg) != 0 || h.kind != HOST_NAME)
        abort();
    if (policy_check_host(p, &h, port) != V_ALLOW || policy_check_host(p, &h, 0) != V_ALLOW)
        abort();
    if (sp && !policy_host_has_rules(p, &h, port))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy *p = policy_new();
    const char *s = (const char *)data, *end = s + size;
    const char *msg = NULL;
    unsigned lines = 0;

    /* first pass: patterns and cidrs */
    for (const char *l = s; l < end && lines < 256; lines++) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t len = nl ? (size_t)(nl - l) : (size_t)(end - l);
        if (len >= 2 && l[0] == 'c' && l[1] == ':')
            policy_add_cidr(p, l + 2, len - 2, &msg);
        else if (!(len >= 2 && l[0] == 'h' && l[1] == ':'))
            policy_add_allow(p, l, len, &msg);
        l += len + 1;
    }
    for (size_t i = 0; i < policy_n_allow(p); i++)
        check_pattern(p, policy_allow_text(p, i));
    /* second pass: hosts (and every line as a host) */
    lines = 0;
    for (const char *l = s; l < end && lines < 256; lines++) {
        const char *nl = memchr(l, '\n', (size_t)(end - l));
        size_t len = nl ? (size_t)(nl - l) : (size_t)(end - l);
        const char *hp = l;
        struct host h;
        uint16_t port = 0;
        if (len >= 2 && l[0] == 'h' && l[1] == ':') {
            hp += 2;
            len -= 2;
        }
        if (host_parse_authority(hp, len, 443, &h, &port, &msg) == 0) {
            enum verdict v = policy_check_host(p, &h, port);
            if (v >= V_MAX)
                abort();
            (void)policy_check_host(p, &h, 0);
        }
        l += (nl ? (size_t)(nl - l) : (size_t)(end - l)) + 1;
    }
    policy_free(p);
    return 0;
}
