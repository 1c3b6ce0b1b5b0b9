/*
 * The bottle's trust for TLS interception (docs/credentials.md): the egress daemon's CA
 * certificate (never its key) goes into a CA bundle the bottle sees read-only, and the usual
 * variables point at it.
 */
#pragma once

#include <stddef.h>

#include "guest/spec.h"

#define BOTTLE_CA_DIR "/etc/ssl/bot-bottle" /* inside the bottle */

/*
 * In dir (the bottle's state directory) create tls/ with ca.pem (the daemon's CAs; len 0: none
 * yet, the file is empty) and
 * ca-bundle.crt (the host's bundle, extra_ca if given, then the CA); mount tls/ read-only at
 * BOTTLE_CA_DIR and set SSL_CERT_FILE, CURL_CA_BUNDLE, REQUESTS_CA_BUNDLE, GIT_SSL_CAINFO (the
 * bundle), NPM_CONFIG_CAFILE (the bundle: Debian's npm names the system bundle as its cafile)
 * and NODE_EXTRA_CA_CERTS (the CA). Returns 0 or -errno after logging why.
 */
int bottle_ca_install(const char *dir, const char *pem, size_t len, const char *extra_ca,
                      struct bottle_spec *spec);
/*
 * A CA the daemon made at run time (a host intercepted from then on): append pem to ca.pem and
 * ca-bundle.crt of dir/tls, each replaced whole by a rename (the same path in the bottle shows
 * the new content to whoever opens it next). Returns 0 or -errno after logging why.
 */
int bottle_ca_add(const char *dir, const char *pem, size_t len);
