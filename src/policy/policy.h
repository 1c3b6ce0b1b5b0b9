/*
 * The egress policy: which host names (and ports) a bottle may reach, which address ranges
 * are explicitly opened (allow_cidr), and the SSRF guard for everything else.
 *
 * Pattern grammar (DESIGN.md S6):
 *   example.com          exactly that name, ports 80 and 443
 *   *.example.com        every name below example.com at any depth, not example.com itself
 *   example.com:8443     that name, port 8443 only
 *   HOST[:PORT] METHODS PATH     a method/path rule (docs/policy.md): the host as above, then
 *                        after whitespace a comma list of methods ("GET,HEAD", or "*" for any)
 *                        and a path pattern ("/repos/myorg/" then "*"). The host is allowed, and
 * once any rule covers a host and port, a request to it must match one of the rules that cover it
 * (a bare pattern for the same host does not lift them). Path patterns: literal segments, '*'
 * within a segment, a last segment "*" (anything below) or "**" (the base and anything below);
 *                        matched against the normalised path (policy_path_normalise), never
 *                        the query.
 * Names are compared after normalisation: ASCII lower case, one trailing dot removed, IDN
 * converted to punycode (libidn2, IDNA2008 + UTS#46 non-transitional).
 *
 * allow_cidr grammar: 10.0.0.0/8, 203.0.113.7 (a /32), fd00::/8, [fd00::1], optionally
 * followed by :PORT (for IPv6, only after a bracketed form: [fd00::]/8:5432).
 * A cidr entry admits IP-literal targets in its range (any port unless it names one), and lets
 * an allowlisted *name* resolve into an otherwise refused (private/loopback/...) range. It never
 * makes a non-allowlisted name allowed.
 *
 * A struct policy is built once, then only read (a reload builds a new one), so it can be
 * shared freely within a process.
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

/* A decision. Denials are verdicts, not errors. Keep verdict_reason() in sync. */
enum verdict {
    V_ALLOW,
    V_DENY_NOT_ALLOWLISTED, /* "not-allowlisted": name valid but no pattern matches */
    V_DENY_PORT,            /* "port-not-allowed": name matches but not on this port */
    V_DENY_BAD_HOST,        /* "bad-host": not a valid host name or address */
    V_DENY_IP_LITERAL,      /* "ip-literal": target is an IP address no allow_cidr covers */
    V_DENY_SSRF,            /* "ssrf-private": resolved to a refused range (loopback, RFC1918...) */
    V_DENY_METADATA,        /* "ssrf-metadata": cloud metadata address */
    V_DENY_NO_ADDRESS,      /* "no-address": resolution returned nothing usable */
    V_DENY_METHOD,          /* "method-not-allowed": a rule covers the path, not the method */
    V_DENY_PATH,            /* "path-not-allowed": no rule for this host covers the path */
    V_DENY_NEEDS_INTERCEPTION, /* "needs-interception": CONNECT to a host with method/path
                                * rules, which a blind tunnel would bypass */
    V_MAX
};

/* Stable, short, machine-readable reason ("not-allowlisted", ...); used in X-Bottle-Block and
 * the audit log. */
const char *verdict_reason(enum verdict v);

enum host_kind { HOST_NAME, HOST_IPV4, HOST_IPV6, HOST_KIND_MAX };

/* A parsed, normalised host. */
struct host {
    enum host_kind kind;
    /* HOST_NAME: normalised name (lower-case ASCII/punycode, no trailing dot).
     * HOST_IPV4/6: canonical text form (inet_ntop), without brackets. */
    char name[BB_MAX_HOSTNAME + 1];
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;
};

/*
 * Parse and normalise a host as it appears in a URL authority, a Host header, a CONNECT target
 * or a DNS question (without port). IPv6 literals must be bracketed ("[::1]"); a zone id
 * ("%eth0") is refused. Dotted-quad IPv4 must be canonical: four decimal parts 0-255 without
 * leading zeros; any other all-numeric/hex form ("2130706433", "0x7f.1", "0177.0.0.1", "127.1")
 * and any name whose last label is numeric is refused.
 * Refused: empty, > BB_MAX_HOST_INPUT bytes, CR/LF/NUL/space/control, '@', '%', '/', '\\',
 * '#', '?', empty labels (".." or leading "."), labels > 63, names > 253 after conversion,
 * characters outside letters/digits/'-' after IDN conversion ('_' is allowed: real DNS names
 * use it), labels starting or ending with '-'.
 * Returns 0 and fills *ret, or -EINVAL with *reterr_msg (static string) set.
 */
int host_parse(const char *p, size_t len, struct host *ret, const char **reterr_msg);

/*
 * Added: parse "host[:port]" (an authority without userinfo, e.g. a CONNECT target or the
 * argument of `policy check`) with host_parse() rules. IPv6 must be bracketed ("[::1]:443").
 * Without a port, *ret_port = default_port; default_port 0 means a port is required.
 * Returns 0 and fills *ret and *ret_port, or -EINVAL with *reterr_msg (static string) set.
 */
int host_parse_authority(const char *p, size_t len, uint16_t default_port, struct host *ret,
                         uint16_t *ret_port, const char **reterr_msg);

struct policy;

struct policy *policy_new(void);
struct policy *policy_free(struct policy *p);

/* Add an allow pattern (grammar above). Returns 0, or -EINVAL with *reterr_msg set, or -ENOSPC
 * past BB_MAX_PATTERNS. A duplicate pattern is accepted and ignored. */
int policy_add_allow(struct policy *p, const char *text, size_t len, const char **reterr_msg);
/* Add an allow_cidr entry. Same return convention (BB_MAX_CIDRS). */
int policy_add_cidr(struct policy *p, const char *text, size_t len, const char **reterr_msg);

size_t policy_n_allow(const struct policy *p);
size_t policy_n_cidr(const struct policy *p);
/* Pattern i in its normalised text form (for `logs`, `ls`, errors). */
const char *policy_allow_text(const struct policy *p, size_t i);

/* A new policy with p's allow patterns and allow_cidr entries, leaving out the pattern whose
 * normalised text (policy_allow_text) is `without` (NULL: none). Never NULL (aborts on OOM). */
struct policy *policy_copy(const struct policy *p, const char *without);

/*
 * Decide on a target before resolution.
 *  - HOST_NAME: V_ALLOW when a pattern matches the name and the port (port 0 = "any port", used
 *    by the DNS filter, which ignores ports); else V_DENY_PORT / V_DENY_NOT_ALLOWLISTED.
 *  - HOST_IPV4/6 (an IP-literal target): V_ALLOW only when an allow_cidr entry covers the
 *    address and port; else V_DENY_IP_LITERAL (V_DENY_METADATA for metadata addresses).
 */
enum verdict policy_check_host(const struct policy *p, const struct host *h, uint16_t port);

/*
 * Vet one address an allowlisted name resolved to (the SSRF guard). sa is AF_INET or AF_INET6
 * (IPv4-mapped/compatible IPv6 is judged as the embedded IPv4 address).
 * V_ALLOW for public unicast; V_DENY_SSRF / V_DENY_METADATA for loopback, RFC 1918, link-local,
 * CGNAT 100.64/10, 0/8, multicast, broadcast, reserved, ULA fc00::/7, fe80::/10, ::1, ::,
 * metadata (169.254.169.254, fd00:ec2::254), unless an allow_cidr entry covers the address and
 * port.
 */
enum verdict policy_check_addr(const struct policy *p, const struct sockaddr *sa, uint16_t port);

/*
 * Method/path rules. policy_host_has_rules: does any rule cover this host and port (port 0:
 * any)? Such a host must not get a blind CONNECT tunnel (it needs interception).
 * policy_check_request: V_ALLOW when no rule covers host:port, or when one matches method and
 * path (the raw origin-form target, query included; it is normalised here and a path that
 * cannot be normalised is refused); else V_DENY_METHOD / V_DENY_PATH. *ret_rule (may be NULL)
 * gets the text of the rule that decided (a matching one, or the first covering one), and
 * *ret_why a static note when the path itself was refused (else NULL).
 */
bool policy_host_has_rules(const struct policy *p, const struct host *h, uint16_t port);
enum verdict policy_check_request(const struct policy *p, const struct host *h, uint16_t port,
                                  const char *method, size_t method_len, const char *target,
                                  size_t target_len, const char **ret_rule, const char **ret_why);
/*
 * Normalise a request path (path.c): stop at '?' or '#'; decode percent-encoded unreserved
 * characters; keep other escapes (upper-case hex); refuse an encoded '/', '\', '%' or control
 * character, a raw backslash, space or control character, a bad escape, an empty segment
 * ("//"), and a dot segment ("." or "..", also encoded or followed by ";params"). A trailing
 * '/' is kept. Returns 0 with out NUL-terminated, or -EINVAL with *reterr_msg.
 */
int policy_path_normalise(const char *in, size_t len, char *out, size_t size,
                          const char **reterr_msg);
/* Does the normalised path match the path pattern (grammar above)? */
bool policy_path_match(const char *pattern, const char *path);

/* The DLP rules turned off (DLP_BIT(rule) of dlp/dlp.h; policy only carries the mask, so that
 * it travels with the allowlist through config, reloads and the daemon's arguments). */
void policy_set_dlp_off(struct policy *p, uint32_t mask);
uint32_t policy_dlp_off(const struct policy *p);

/*
 * Credentials (docs/credentials.md): what a credential's name and the request header it goes
 * into may be. The config parser and the proxy's credential store both check with these.
 * A name is 1-32 of a-z, 0-9, '-', '_'. A header is an HTTP field name (RFC 9110 token) of at
 * most POLICY_CRED_HEADER_MAX bytes and not one that frames the message or belongs to the hop
 * (Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer,
 * Expect, Proxy-Connection, Proxy-Authorization): a value there would not reach the origin as
 * a credential, or would change how the request is read.
 */
#define POLICY_CRED_NAME_MAX 32
#define POLICY_CRED_HEADER_MAX 100
bool policy_cred_name_valid(const char *s, size_t n);
bool policy_cred_header_valid(const char *s, size_t n);

/* True when the first `prefix` bits of a and net are equal (both in network byte order, at least
 * prefix/8 rounded up bytes long). */
bool addr_prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix);

/* True when the address falls in a range the SSRF guard refuses by default. */
bool addr_is_restricted(const struct sockaddr *sa);
/* Added: true for a cloud metadata address (169.254.169.254, 169.254.170.2, 169.254.170.23,
 * fd00:ec2::254, fd00:ec2::23), also when embedded in an IPv4-mapped/compatible, NAT64 or 6to4
 * IPv6 address. Every metadata address is also restricted. */
bool addr_is_metadata(const struct sockaddr *sa);
/* Added: if sa is IPv4-mapped (::ffff:a.b.c.d) or IPv4-compatible (::a.b.c.d, except :: and
 * ::1) IPv6, write the embedded IPv4 address (same port) to *ret and return true. */
bool addr_unmap_v4(const struct sockaddr *sa, struct sockaddr_in *ret);
