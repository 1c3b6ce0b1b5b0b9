/* `run`'s credentials: resolved on the host, placeholders for the bottle (credentials.c). */
#pragma once

#include "common/buf.h"
#include "config/config.h"

/*
 * Resolve each of cfg's credentials (env:, file:, command: on the host), give it a fresh
 * placeholder (bb-cred-NAME-<32 hex>), append it to wire (proxy/cred.h format) and
 * VAR=placeholder to env for a credential with a variable (replacing a passed VAR: the bottle
 * never gets the host's value). Returns 0, or -errno after saying why (never the value).
 */
int credentials_prepare(const struct bb_config *cfg, struct strv *env, struct buf *wire);
