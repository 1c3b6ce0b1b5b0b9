/*
 * QEMU's command line for a microVM bottle, built from a small config: machine microvm with
 * no firmware tables and no option ROMs, the chosen accelerator, QEMU's own seccomp sandbox,
 * the kernel and initramfs, one virtio-serial device carrying the console and the named
 * ports (bottle.ctl, bottle.chan), virtio-9p shares, and a virtio-rng.
 *
 * Never any network device: there is no -netdev, -nic, -net, virtio-net or vsock in the
 * result, whatever the config says (the config cannot even express one); -nodefaults keeps
 * QEMU from adding a NIC itself. The bottle's only way out is the channel port.
 *
 * Unix-socket chardevs are clients (server=off): the host side listens first, QEMU connects
 * at startup, so there is no window in which something else can connect to the bottle's
 * ports, and no socket file created by QEMU.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/microvm/probe.h"

#define MICROVM_MAX_SHARES 16
#define MICROVM_TAG_MAX 31       /* 9p mount_tag length */
#define MICROVM_CMDLINE_MAX 2047 /* x86 COMMAND_LINE_SIZE is 2048 with the NUL */
#define MICROVM_SUN_PATH_MAX 107 /* sizeof(sun_path) - 1 */
#define MICROVM_ARGV_MAX 128
#define MICROVM_GUEST_HZ 250 /* CONFIG_HZ of guest/kernel/bottle.config's kernel */
#define MICROVM_MAX_CPUS 16  /* CONFIG_NR_CPUS */
#define MICROVM_MIN_MEMORY_MIB 64
/* TCG's translation-cache size (-accel tcg,tb-size=, MiB) */
#define MICROVM_TCG_TB_MIB 128
#define MICROVM_TCG_TB_MIB_STR "128"

/* The port names bottle-init looks for in /sys/class/virtio-ports/<port>/name. */
#define MICROVM_PORT_CTL "bottle.ctl"
#define MICROVM_PORT_CHAN "bottle.chan"

/*
 * A host directory shared with the guest over virtio-9p. security_model=none: QEMU performs
 * every operation as its own (unprivileged) user and keeps no mapping metadata; see
 * docs/microvm.md "9p security model" for why not mapped-xattr and what the guest refuses.
 */
struct microvm_share {
    const char *tag;       /* mount_tag: 1..MICROVM_TAG_MAX of [A-Za-z0-9_.-] */
    const char *host_path; /* absolute */
    bool readonly;
};

struct microvm_qemu_config {
    const char *qemu; /* argv[0]; NULL: "qemu-system-x86_64" */
    enum microvm_accel accel;
    uint64_t tsc_khz; /* TCG only: the host's cpu kHz for the guest timer hints; 0: none */
    unsigned cpus;    /* 1..MICROVM_MAX_CPUS */
    uint64_t memory_mib;
    const char *kernel; /* vmlinux (PVH) */
    /* microvm with ACPI: for a kernel without VIRTIO_MMIO_CMDLINE_DEVICES (Debian's stock
     * one), which finds the virtio-mmio devices in the ACPI tables instead */
    bool acpi;
    const char *initrd;
    /* appended to the kernel command line (bottle-init's options); NULL: nothing */
    const char *cmdline_extra;
    /* unix sockets QEMU connects to; console NULL: QEMU's stdio; ctl/chan NULL: no such port */
    const char *console_socket;
    const char *ctl_socket;
    const char *chan_socket;
    const struct microvm_share *shares;
    size_t n_shares;
    /*
     * Start-up from a snapshot (docs/microvm.md, "Start-up from a snapshot"). template: the
     * boot that makes one: bbtemplate=1 on the kernel command line (bottle-init stops in
     * vm_template_wait), QMP on qmp_socket (QEMU connects to it, as to the ports), and the
     * migration's global state left out of the saved stream (a VM stopped before it is saved
     * would otherwise come back paused). restore: QEMU reads the saved state from
     * the inherited fd restore_fd (-incoming fd:N) instead of booting, so there is no
     * -kernel, -initrd or -append (kernel and initrd may then be NULL). Everything else (the
     * devices, -m, -smp, the machine, the accelerator) must be what the template had.
     */
    bool template_boot;
    const char *qmp_socket;
    bool restore;
    int restore_fd; /* > 2 */
};

/*
 * Builds the NULL-terminated argv into *ret (free with microvm_argv_free()). Returns 0,
 * -EINVAL for a config it will not express (relative paths, bad tag, no kernel, cpus or
 * memory out of range, control characters), -ENAMETOOLONG for a socket path longer than
 * sun_path or a kernel command line over MICROVM_CMDLINE_MAX, -E2BIG past MICROVM_ARGV_MAX.
 */
int microvm_qemu_argv(const struct microvm_qemu_config *c, char ***ret);
void microvm_argv_free(char **argv);

/* The kernel command line alone (what -append gets). Same errors. */
int microvm_kernel_cmdline(const struct microvm_qemu_config *c, char *ret, size_t size);
