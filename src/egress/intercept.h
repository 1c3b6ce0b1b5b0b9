/*
 * Which TLS interception an allow pattern calls for (docs/credentials.md, "Changing the
 * intercepted set at run time"): a method/path rule ("HOST[:PORT] METHODS PATH") can be
 * enforced on HTTPS only inside an intercepted session, so its host and port must be
 * intercepted; a bare host pattern calls for none.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The host ("name", or "*.name" for a wildcard) and port (443 unless given) text names, as
 * proxy/tls.h takes them. rule_only: only for a method/path rule (a host then whitespace);
 * else also for a bare "HOST[:PORT]" (an [egress] inspect entry). Returns 1 and fills
 * ret_host/ret_port, 0 when text calls for no interception (not a rule, an IP literal), or
 * -EINVAL when its host is not a host name.
 */
int egress_intercept_target(const char *text, bool rule_only, char *ret_host, size_t size,
                            uint16_t *ret_port);
