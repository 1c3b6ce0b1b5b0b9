/*
 * The docker backend: an EXAMPLE, not a tested security boundary (docs/backends.md,
 * "docker (example)"; examples/docker/README.md). It drives the setup of
 * examples/docker/compose.yaml through the `docker` CLI: an `--internal` network for the
 * agent, bot-bottle's egress daemon as a sidecar container on that network and an outside
 * one, the agent's proxy variables and DNS pointed at the sidecar.
 *
 * Images: $BOT_BOTTLE_DOCKER_IMAGE for the agent (default debian:bookworm-slim) and
 * $BOT_BOTTLE_DOCKER_EGRESS_IMAGE for the sidecar (default bot-bottle-egress, built from
 * examples/docker/Dockerfile; never pulled).
 */
#pragma once

#include "backend/backend.h"

extern const struct backend_ops backend_docker_ops;
