/*
 * Fuzz host_parse() and host_parse_authority() on arbitrary bytes. Invariants: an accepted
 * name contains only [a-z0-9_.-] (IPv4: digits and dots; IPv6: hex and ':' '.'), and parsing
 * the normalised form again yields the same host.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "policy/policy.h"

static void check_charset(const struct host *h)
{
    for (const char *c = h->name; *c; c++) {
        bool ok;
        switch (h->kind) {
        case HOST_NAME:
            ok = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' ||
                 *c == '-';
            break;
        case HOST_IPV4:
            ok = (*c >= '0' && *c <= '9') || *c == '.';
            break;
        case HOST_IPV6:
            ok = (*c >= 'a' && *c <= 'f') || (*c >= '0' && *c <= '9') || *c == ':' || *c == '.';
            break;
        case HOST_KIND_MAX:
        default:
            ok = false;
            break;
        }
        if (!ok)
            abort();
    }
    if (strlen(h->name) == 0 || strlen(h->name) > BB_MAX_HOSTNAME)
        abort();
}

static void check_reparse(const struct host *h)
{
    char buf[BB_MAX_HOSTNAME + 3];
    struct host h2;
    const char *msg = NULL;
    size_t n = strlen(h->name);

    if (h->kind == HOST_IPV6) {
        buf[0] = '[';
        memcpy(buf + 1, h->name, n);
        buf[n + 1] = ']';
        n += 2;
    } else {
        memcpy(buf, h->name, n);
    }
    if (host_parse(buf, n, &h2, &msg) != 0)
        abort();
    if (h2.kind != h->kind || strcmp(h2.name, h->name) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct host h;
    const char *msg = NULL;
    uint16_t port;

    if (host_parse((const char *)data, size, &h, &msg) == 0) {
        check_charset(&h);
        check_reparse(&h);
    } else if (!msg) {
        abort();
    }
    if (host_parse_authority((const char *)data, size, 443, &h, &port, &msg) == 0) {
        check_charset(&h);
        check_reparse(&h);
        if (port == 0)
            abort();
    }
    return 0;
}
