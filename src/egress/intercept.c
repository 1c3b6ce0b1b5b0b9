/* Which TLS interception an allow pattern calls for (intercept.h). */
#include "egress/intercept.h"

#include <errno.h>
#include <string.h>

#include "common/str.h"
#include "policy/policy.h"

int egress_intercept_target(const char *text, bool rule_only, char *ret_host, size_t size,
                            uint16_t *ret_port)
{
    size_t n = strcspn(text, " \t");
    bool wild = strncmp(text, "*.", 2) == 0;
    const char *msg = NULL;
    struct host h;

    if (n == 0 || (rule_only && !text[n]))
        return 0;
    if (text[0] == '[')
        return 0; /* an IPv6 literal: no certificate name (a CONNECT to it is never intercepted) */
    if (wild)
        text += 2, n -= 2;
    if (host_parse_authority(text, n, 443, &h, ret_port, &msg) < 0)
        return -EINVAL;
    if (h.kind != HOST_NAME)
        return 0;
    return str_printf(ret_host, size, "%s%s", wild ? "*." : "", h.name) < 0 ? -EINVAL : 1;
}
