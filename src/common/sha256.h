/*
 * SHA-256 (libcrypto): the one helper of the tree, used by the trusted config files
 * (config/trust.c) and the audit log's hash chain (audit/audit.c).
 */
#pragma once

#include <stddef.h>

#define SHA256_HEX_LEN 64

/* SHA-256 of data as 64 lowercase hex digits plus NUL. Returns 0 or -EIO (libcrypto). */
int sha256_hex(const void *data, size_t len, char ret_hex[SHA256_HEX_LEN + 1]);
