/*
 * Fuzz the audit log's line parser and chain verifier (src/audit/reader.c).
 *
 * Input: the bytes of a log file. Each line is parsed as a record and fed to the verifier, as
 * `bot-bottle logs` and `--verify` do. Checks: no crash or leak; an accepted record's strings
 * are NUL-terminated inside their buffers, its hashes are 64 lowercase hex digits, its
 * decision/kind/ts are present; the verifier stops at the first bad line and never accepts a
 * line the parser refused.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/reader.h"
#include "fuzz.h"

static void check(int cond)
{
    if (!cond)
        abort();
}

static void check_str(const char *s, size_t size)
{
    check(memchr(s, '\0', size) != NULL);
}

static void check_hex(const char *s)
{
    check(strlen(s) == SHA256_HEX_LEN);
    for (size_t i = 0; i < SHA256_HEX_LEN; i++)
        check((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    struct audit_verify v;

    audit_verify_init(&v);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        struct audit_record rec;
        int r = audit_record_parse(p, len, &rec);
        uint64_t bad_before = v.bad_line;
        int vr = audit_verify_line(&v, p, len);

        if (r == 0) {
            check_str(rec.ts, sizeof(rec.ts));
            check_str(rec.bottle, sizeof(rec.bottle));
            check_str(rec.kind, sizeof(rec.kind));
            check_str(rec.host, sizeof(rec.host));
            check_str(rec.decision, sizeof(rec.decision));
            check_str(rec.reason, sizeof(rec.reason));
            check_str(rec.method, sizeof(rec.method));
            check_str(rec.qtype, sizeof(rec.qtype));
            check(rec.status >= 0 && rec.status <= 999);
            check(audit_record_weight(&rec) >= 1);
            if (rec.has_prev)
                check_hex(rec.prev);
            if (rec.has_nonce)
                check_hex(rec.nonce);
        } else {
            check(vr < 0); /* a line the parser refuses is never part of an intact chain */
        }
        if (bad_before)
            check(vr < 0 && v.bad_line == bad_before); /* the first bad line stays named */
        if (vr < 0)
            check(v.bad_line >= 1 && v.bad_line <= v.lines && v.why[0]);
        if (!nl)
            break;
        p = nl + 1;
    }
    return 0;
}
