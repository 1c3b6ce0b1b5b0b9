/*
 * The microvm backend (docs/microvm.md): the bottle is a QEMU microVM with bottle-init as its
 * init, no network device, the channel on a virtio-serial port.
 */
#pragma once

#include "backend/backend.h"

/* Guest RAM when the memory limit leaves room for it (-m, MiB). */
#define MICROVM_DEFAULT_GUEST_MIB 1024
/* The most guest RAM -m gets (microvm maps RAM above 4 GiB too; QEMU allocates on touch). */
#define MICROVM_MAX_GUEST_MIB (256u * 1024u)
/* QEMU's own memory on top of guest RAM (its TCG translation cache is capped at
 * MICROVM_TCG_TB_MIB by the argv): the cgroup's memory.max is guest + guest/32 + this. */
#define MICROVM_QEMU_OVERHEAD_MIB 256
/* QEMU's threads (vCPUs, I/O, the 9p worker pool) counted against pids.max on the host,
 * on top of the bottle's --pids. */
#define MICROVM_QEMU_THREADS 128

extern const struct backend_ops backend_microvm_ops;

/* Before start: the command's stdout and stderr on the VM's console (stdio[1]), stdin
 * /dev/null, no attach needed (tests/integration/helpers/vm-launch.c without a relay). */
void microvm_console_stdio(struct bottle *b);
