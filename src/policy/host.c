/*
 * Host parsing and normalisation (DESIGN.md S6). Everything here sees bytes chosen by a bottle,
 * so it is bounded (BB_MAX_HOST_INPUT), allocation-free on the ASCII path, and fuzzed
 * (tests/fuzz/fuzz-host.c). See docs/policy.md for the rules and why each one exists.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <idn2.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "common/str.h"
#include "policy/policy.h"

/* Bytes refused anywhere in a host, before any conversion. Control bytes (< 0x20, 0x7f) are
 * refused separately. These are the URL delimiters and the characters that let one string be
 * read as two different hosts by two parsers (userinfo, fragment, percent-encoding, paths). */
static bool is_forbidden_ascii(unsigned char c)
{
    switch (c) {
    case ' ':
    case '@':
    case '%':
    case '/':
    case '\\':
    case '#':
    case '?':
    case '[':
    case ']':
    case ':':
    case '<':
    case '>':
    case '"':
    case '\'':
    case '`':
    case '^':
    case '{':
    case '}':
    case '|':
    case ',':
    case ';':
    case '=':
    case '+':
    case '!':
    case '$':
    case '&':
    case '(':
    case ')':
    case '~':
        return true;
    default:
        return c < 0x20 || c == 0x7f;
    }
}

/* "Four decimal parts 0-255 without leading zeros", the only IPv4 text we accept. */
static bool parse_dotted_quad(const char *s, size_t len, struct in_addr *ret)
{
    uint32_t v = 0;
    size_t i = 0;

    for (int part = 0; part < 4; part++) {
        size_t start = i;
        unsigned n = 0;

        if (part > 0) {
            if (i >= len || s[i] != '.')
                return false;
            start = ++i;
        }
        while (i < len && ascii_isdigit(s[i]) && i - start < 3) {
            n = n * 10 + (unsigned)(s[i] - '0');
            i++;
        }
        if (i == start || n > 255 || (s[start] == '0' && i - start > 1))
            return false;
        v = (v << 8) | n;
    }
    if (i != len)
        return false;
    ret->s_addr = htonl(v);
    return true;
}

/* WHATWG URL "ends in a number": the last label is all digits, or "0x" followed by hex digits
 * only. Browsers and curl parse such names as IPv4 (2130706433, 0x7f.1, 0177.0.0.1, 127.1). */
static bool ends_in_number(const char *s, size_t len)
{
    size_t start = len;
    bool all_digits = true, hex = true;

    while (start > 0 && s[start - 1] != '.')
        start--;
    if (start == len)
        return false;
    for (size_t i = start; i < len; i++)
        if (!ascii_isdigit(s[i]))
            all_digits = false;
    if (all_digits)
        return true;
    if (len - start < 2 || s[start] != '0' || (s[start + 1] != 'x' && s[start + 1] != 'X'))
        return false;
    for (size_t i = start + 2; i < len; i++) {
        char c = ascii_tolower(s[i]);
        if (!ascii_isdigit(c) && !(c >= 'a' && c <= 'f'))
            hex = false;
    }
    return hex;
}

/* Check the final (ASCII, lower-case, no trailing dot) form of a name: LDH plus '_', label and
 * name lengths, no empty labels, no leading/trailing hyphen. */
static int check_ascii_name(const char *s, size_t len, const char **reterr_msg)
{
    size_t label = 0;

    if (len == 0) {
        *reterr_msg = "empty host name";
        return -EINVAL;
    }
    if (len > BB_MAX_HOSTNAME) {
        *reterr_msg = "host name longer than 253 octets";
        return -EINVAL;
    }
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';

        if (c == '.') {
            if (label == 0) {
                *reterr_msg = "empty label in host name (\"..\", or a leading dot)";
                return -EINVAL;
            }
            if (s[i - label] == '-' || s[i - 1] == '-') {
                *reterr_msg = "host name label starts or ends with '-'";
                return -EINVAL;
            }
            label = 0;
            continue;
        }
        if (!(c >= 'a' && c <= 'z') && !ascii_isdigit(c) && c != '-' && c != '_') {
            *reterr_msg = "character not allowed in a host name (letters, digits, '-', '_')";
            return -EINVAL;
        }
        if (++label > BB_MAX_LABEL) {
            *reterr_msg = "host name label longer than 63 octets";
            return -EINVAL;
        }
    }
    return 0;
}

static int parse_ipv6_literal(const char *p, size_t len, struct host *h, const char **reterr_msg)
{
    char tmp[INET6_ADDRSTRLEN + 1];

    /* p includes the brackets */
    if (len < 3 || p[len - 1] != ']') {
        *reterr_msg = "IPv6 literal without closing ']'";
        return -EINVAL;
    }
    p++;
    len -= 2;
    for (size_t i = 0; i < len; i++) {
        char c = ascii_tolower(p[i]);
        if (c == '%') {
            *reterr_msg = "IPv6 zone ids (\"%eth0\") are not allowed";
            return -EINVAL;
        }
        if (!ascii_isdigit(c) && !(c >= 'a' && c <= 'f') && c != ':' && c != '.') {
            *reterr_msg = "bad character in IPv6 literal";
            return -EINVAL;
        }
    }
    if (len >= sizeof(tmp)) {
        *reterr_msg = "IPv6 literal too long";
        return -EINVAL;
    }
    memcpy(tmp, p, len);
    tmp[len] = '\0';
    if (inet_pton(AF_INET6, tmp, &h->addr.v6) != 1) {
        *reterr_msg = "not a valid IPv6 address";
        return -EINVAL;
    }
    if (!inet_ntop(AF_INET6, &h->addr.v6, h->name, sizeof(h->name))) {
        *reterr_msg = "not a valid IPv6 address";
        return -EINVAL;
    }
    h->kind = HOST_IPV6;
    return 0;
}

/*
 * The common case in one pass (the DNS filter calls host_parse() for every query): a plain name
 * of letters, digits, '-', '_' and dots whose last label cannot be read as a number. Returns 1
 * with *ret filled exactly as the general path would, or 0 when the general path must decide
 * (anything else, every error included). Sanitizer builds (unit tests, fuzzers) check that
 * both paths agree on every input.
 */
static int host_parse_fast(const char *p, size_t len, struct host *ret)
{
    char name[BB_MAX_HOSTNAME + 1];
    size_t label = 0, last_start = 0;
    bool last_digits = true;

    if (len > 0 && p[len - 1] == '.')
        len--;
    if (len == 0 || len > BB_MAX_HOSTNAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];

        if (c == '.') {
            /* empty label, or a label ending in '-' */
            if (label == 0 || p[i - 1] == '-')
                return 0;
            label = 0;
            last_start = i + 1;
            last_digits = true;
            name[i] = c;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!(c >= 'a' && c <= 'z') && !ascii_isdigit(c) && c != '-' && c != '_')
            return 0;
        if (label == 0 && c == '-')
            return 0;
        if (++label > BB_MAX_LABEL)
            return 0;
        if (!ascii_isdigit(c))
            last_digits = false;
        name[i] = c;
    }
    if (label == 0 || p[len - 1] == '-' || last_digits)
        return 0; /* empty last label, one ending in '-', or a numeric one (IPv4 forms) */
    if (len - last_start >= 2 && name[last_start] == '0' && name[last_start + 1] == 'x')
        return 0; /* possibly a hex number */
    ret->kind = HOST_NAME;
    memcpy(ret->name, name, len);
    memset(ret->name + len, 0, sizeof(ret->name) - len);
    memset(&ret->addr, 0, sizeof(ret->addr));
    return 1;
}

static int host_parse_general(const char *p, size_t len, struct host *ret, const char **reterr_msg);

#if defined(__SANITIZE_ADDRESS__)
#define HOST_CHECK_FAST 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOST_CHECK_FAST 1
#endif
#endif

int host_parse(const char *p, size_t len, struct host *ret, const char **reterr_msg)
{
    struct host h;

    if (!p || !host_parse_fast(p, len, &h))
        return host_parse_general(p, len, ret, reterr_msg);
#ifdef HOST_CHECK_FAST
    {
        struct host g;
        const char *msg = NULL;
        if (host_parse_general(p, len, &g, &msg) != 0 || g.kind != h.kind ||
            memcmp(g.name, h.name, sizeof(g.name)) != 0 ||
            memcmp(&g.addr, &h.addr, sizeof(g.addr)) != 0)
            abort(); /* the fast path disagrees with the general one */
    }
#endif
    *ret = h;
    return 0;
}

static int host_parse_general(const char *p, size_t len, struct host *ret, const char **reterr_msg)
{
    struct host h = { .kind = HOST_NAME };
    const char *msg = NULL;
    bool non_ascii = false, stripped_dot = false;
    size_t n;

    if (!p || len == 0) {
        *reterr_msg = "empty host";
        return -EINVAL;
    }
    if (len > BB_MAX_HOST_INPUT) {
        *reterr_msg = "host too long";
        return -EINVAL;
    }
    if (p[0] == '[') {
        if (parse_ipv6_literal(p, len, &h, reterr_msg) < 0)
            return -EINVAL;
        *ret = h;
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x80) {
            non_ascii = true;
        } else if (c == '%') {
            *reterr_msg = "'%' in host (percent-encoding and zone ids are not allowed)";
            return -EINVAL;
        } else if (c == '@') {
            *reterr_msg = "'@' in host (userinfo is not allowed)";
            return -EINVAL;
        } else if (c == ':') {
            *reterr_msg = "':' in host (a port must be split off first; IPv6 needs brackets)";
            return -EINVAL;
        } else if (c == '\r' || c == '\n' || c == '\0') {
            *reterr_msg = "CR, LF or NUL in host";
            return -EINVAL;
        } else if (is_forbidden_ascii(c)) {
            *reterr_msg = "character not allowed in a host";
            return -EINVAL;
        }
    }
    /* One trailing dot is the same name (the root label); two is an empty label. */
    if (p[len - 1] == '.') {
        len--;
        stripped_dot = true;
    }
    if (len == 0) {
        *reterr_msg = "empty host name";
        return -EINVAL;
    }

    if (!non_ascii) {
        if (len > BB_MAX_HOSTNAME) {
            *reterr_msg = "host name longer than 253 octets";
            return -EINVAL;
        }
        for (size_t i = 0; i < len; i++)
            h.name[i] = ascii_tolower(p[i]);
        n = len;
    } else {
        /* IDNA2008 + UTS#46 non-transitional, as browsers do. idn2 wants a C string. */
        char in[BB_MAX_HOST_INPUT + 1];
        uint8_t *out = NULL;
        int r;

        memcpy(in, p, len);
        in[len] = '\0';
        r = idn2_lookup_u8((const uint8_t *)in, &out, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
        if (r != IDN2_OK || !out) {
            idn2_free(out);
            *reterr_msg = "invalid internationalised domain name (IDNA2008/UTS#46)";
            return -EINVAL;
        }
        n = strlen((const char *)out);
        /* UTS#46 maps ideographic full stops etc. to '.', so look again for a trailing dot. */
        if (n > 0 && out[n - 1] == '.' && !stripped_dot)
            n--;
        if (n > BB_MAX_HOSTNAME) {
            idn2_free(out);
            *reterr_msg = "host name longer than 253 octets after IDN conversion";
            return -EINVAL;
        }
        for (size_t i = 0; i < n; i++)
            h.name[i] = ascii_tolower((char)out[i]);
        idn2_free(out);
    }
    h.name[n] = '\0';

    if (parse_dotted_quad(h.name, n, &h.addr.v4)) {
        if (non_ascii) {
            *reterr_msg = "IPv4 address written with non-ASCII characters";
            return -EINVAL;
        }
        h.kind = HOST_IPV4;
        *ret = h;
        return 0;
    }
    if (check_ascii_name(h.name, n, &msg) < 0) {
        *reterr_msg = msg;
        return -EINVAL;
    }
    if (ends_in_number(h.name, n)) {
        *reterr_msg = "last label is numeric: non-canonical IPv4 forms (2130706433, 0x7f.1, "
                      "0177.0.0.1, 127.1) are refused";
        return -EINVAL;
    }
    *ret = h;
    return 0;
}

int host_parse_authority(const char *p, size_t len, uint16_t default_port, struct host *ret,
                         uint16_t *ret_port, const char **reterr_msg)
{
    struct host h;
    size_t hlen = len;
    uint16_t port = default_port;

    if (!p || len == 0) {
        *reterr_msg = "empty host";
        return -EINVAL;
    }
    if (len > BB_MAX_HOST_INPUT + 6) {
        *reterr_msg = "host too long";
        return -EINVAL;
    }
    if (p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (!close) {
            *reterr_msg = "IPv6 literal without closing ']'";
            return -EINVAL;
        }
        hlen = (size_t)(close - p) + 1;
        if (hlen < len && p[hlen] != ':') {
            *reterr_msg = "junk after IPv6 literal";
            return -EINVAL;
        }
    } else {
        const char *colon = memchr(p, ':', len);
        if (colon)
            hlen = (size_t)(colon - p);
    }
    if (hlen < len) {
        /* p[hlen] == ':' */
        if (str_to_port(slice_make(p + hlen + 1, len - hlen - 1), &port) < 0) {
            *reterr_msg = "bad port (1-65535, decimal)";
            return -EINVAL;
        }
    } else if (default_port == 0) {
        *reterr_msg = "missing port";
        return -EINVAL;
    }
    if (host_parse(p, hlen, &h, reterr_msg) < 0)
        return -EINVAL;
    *ret = h;
    *ret_port = port;
    return 0;
}
