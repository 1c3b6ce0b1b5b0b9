/*
 * The smolmachines backend (docs/backends.md, "smolmachines"): the bottle runs in an
 * ephemeral smolvm machine (`smolvm machine run`, libkrun on KVM, its virtio-net gateway)
 * whose outbound allowlist is exactly the bottle's loopback alias as a /32
 * (`--allow-cidr A/32`); the supervisor's egress daemon listens on A:3128 (and the DNS filter
 * on A:53 as root) on the host as for the other backends, and the guest's HTTP(S)_PROXY and
 * resolver point at A.
 *
 * The guest's root filesystem is an OCI image: $BOT_BOTTLE_SMOLVM_IMAGE (default
 * debian:bookworm-slim). The KVM device probed is $BOT_BOTTLE_KVM_DEVICE (default /dev/kvm).
 */
#pragma once

#include "backend/backend.h"

extern const struct backend_ops backend_smolmachines_ops;
