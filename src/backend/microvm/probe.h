/*
 * The microvm backend's host probe: can this host run a microVM bottle, and with which
 * accelerator? Pure functions over injectable paths (the unit tests point them at fake files),
 * plus microvm_probe_run() which puts them together for backend probe and `doctor`.
 *
 * Prerequisites: a QEMU (qemu-system-x86_64) new enough for `-M microvm,acpi=off` as this
 * project uses it, and a guest kernel built by scripts/build-guest-kernel.sh in the cache.
 * Accelerator: KVM when /dev/kvm opens read-write, answers KVM_GET_API_VERSION with 12 and is
 * not kvm-pvm (a PVM host's KVM boots only PVM-enlightened kernels: a stock or minimal
 * kernel dies in its instruction emulator), and when the optional boot probe agrees;
 * otherwise TCG, which is slow but still a VM boundary, with the reason said out loud.
 *
 * Nothing here logs: results carry human sentences for the caller to print.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MICROVM_QEMU_NAME "qemu-system-x86_64"
/* The oldest QEMU this backend's command line was tested with (Debian 12's). */
#define MICROVM_QEMU_MIN_MAJOR 7
#define MICROVM_QEMU_MIN_MINOR 2
#define MICROVM_KVM_API_VERSION 12
#define MICROVM_REASON_MAX 512 /* same as BACKEND_REASON_MAX */
#define MICROVM_FINDING_MAX 256
/* kernel.meta written by scripts/build-guest-kernel.sh */
#define MICROVM_KERNEL_META "kernel.meta"
#define MICROVM_KERNEL_META_MAX 4096

enum microvm_accel {
    MICROVM_ACCEL_TCG,
    MICROVM_ACCEL_KVM,
    MICROVM_ACCEL_MAX,
};

/* What the user asked for (--accel). */
enum microvm_accel_request {
    MICROVM_ACCEL_REQ_AUTO,
    MICROVM_ACCEL_REQ_KVM,
    MICROVM_ACCEL_REQ_TCG,
    MICROVM_ACCEL_REQ_MAX,
};

/* "kvm" / "tcg" */
const char *microvm_accel_name(enum microvm_accel a);
/* "auto", "kvm" or "tcg"; -EINVAL otherwise. */
int microvm_accel_request_from_string(const char *s, enum microvm_accel_request *ret);

/* ---- QEMU ---- */

/*
 * Looks for an executable regular file called name in the ':'-separated path_env (empty
 * elements are skipped, not taken as "."). Returns 0 and the path in ret, -ENOENT, or
 * -ENAMETOOLONG.
 */
int microvm_find_in_path(const char *name, const char *path_env, char *ret, size_t size);

/* Parses `qemu -version` output ("QEMU emulator version 7.2.22 (Debian ...)") into
 * ret[0..2]; a missing micro is 0. -EINVAL when no such line is there. */
int microvm_qemu_parse_version(const char *text, unsigned ret[3]);

/* Runs `qemu -version` (empty environment, stdin /dev/null, 5 s timeout) and parses it.
 * -ETIMEDOUT, -EINVAL for output that is not QEMU's, or the exec error. */
int microvm_qemu_version(const char *qemu, unsigned ret[3]);

/* The same, remembered: per process and in cache_dir/qemu.version (cache_dir may be NULL),
 * keyed by the binary's path, device, inode, size and mtime; the binary runs only when the
 * key changed. Same errors. */
int microvm_qemu_version_cached(const char *qemu, const char *cache_dir, unsigned ret[3]);

/* ---- guest kernel ---- */

struct microvm_kernel {
    char path[PATH_MAX]; /* the vmlinux */
    char version[64];
    char fragment_hash[65];
    /* kernel.meta's modules=DIR (the stock kernel's): DIR/modules.load names the modules
     * bottle-init loads, in order; "" for a kernel with everything built in */
    char modules[PATH_MAX];
    bool acpi; /* boot with ACPI: no VIRTIO_MMIO_CMDLINE_DEVICES (the stock kernel) */
};

/* Debian's stock kernel ([microvm] kernel = stock), fetched by scripts/fetch-stock-kernel.sh
 * into <cache_dir>/stock with a kernel.meta of its own. */
#define MICROVM_STOCK_SUBDIR "stock"
#define MICROVM_STOCK_NAME "stock"
#define MICROVM_MODULES_LOAD "modules.load"

/* The cache directory for a user: /var/cache/bot-bottle/kernel for uid 0, else
 * $XDG_CACHE_HOME/bot-bottle/kernel, else $HOME/.cache/bot-bottle/kernel (xdg_cache_home and
 * home may be NULL or empty). -ENOENT when neither is usable for a non-root user. */
int microvm_cache_dir_for(uid_t uid, const char *xdg_cache_home, const char *home, char *ret,
                          size_t size);
/* The same for the running process. */
int microvm_cache_dir_default(char *ret, size_t size);

/*
 * Parses kernel.meta's text (key=value lines, '#' comments). The vmlinux value must be a
 * plain file name (no '/', not "." or ".."). Returns 0, or -EINVAL naming nothing (the
 * caller says which file was bad). cache_dir is prefixed to the file name.
 */
int microvm_kernel_meta_parse(const char *text, const char *cache_dir, struct microvm_kernel *ret);
/* Reads cache_dir/kernel.meta and checks the vmlinux it names is a readable regular file.
 * -ENOENT when there is no kernel.meta or no vmlinux, -EINVAL for a bad kernel.meta. */
int microvm_kernel_lookup(const char *cache_dir, struct microvm_kernel *ret);
/* The stock kernel: microvm_kernel_lookup(cache_dir/stock), which must name a modules
 * directory holding modules.load. Same errors. */
int microvm_stock_lookup(const char *cache_dir, struct microvm_kernel *ret);

/*
 * Checks a user's own guest kernel ([microvm] kernel = PATH): an x86-64 ELF vmlinux with the
 * PVH entry note, with virtio-mmio command-line devices, the virtio console, 9p and 9p over
 * virtio built in. 0, or a negative errno with one sentence in reason naming what is missing.
 */
int microvm_kernel_check(const char *path, char *reason, size_t reason_size);
/*
 * The same for a kernel whose drivers may be modules that bottle-init loads first (the stock
 * kernel): a driver counts when it is built in or when modules_dir/modules.load names its
 * module. Such a kernel boots with ACPI on (microvm_qemu_config.acpi), so the virtio-mmio
 * devices need no command-line support, only the driver.
 */
int microvm_kernel_check_modules(const char *path, const char *modules_dir, char *reason,
                                 size_t reason_size);

/* ---- KVM ---- */

struct microvm_kvm_facts {
    int open_err;    /* 0: /dev/kvm opened O_RDWR; else the positive errno */
    int api_version; /* KVM_GET_API_VERSION's answer; -errno when the ioctl failed */
    bool pvm;        /* <sys_module>/kvm_pvm exists: the host's KVM is PVM */
};

/* Fills *ret from kvm_dev (e.g. "/dev/kvm") and sys_module (e.g. "/sys/module"). */
void microvm_kvm_gather(const char *kvm_dev, const char *sys_module, struct microvm_kvm_facts *ret);

/* Optional last check: boot a tiny guest under KVM and say whether it came up. Returns 0
 * when it did; otherwise a negative errno with a sentence in reason. */
typedef int (*microvm_boot_probe_fn)(void *userdata, char *reason, size_t reason_size);

/*
 * Decides whether KVM is usable from the facts (and, only if they allow it, the boot probe,
 * which may be NULL). Returns true for KVM; either way writes one sentence to reason: for
 * false it starts with "no usable KVM (" and ends with "): running under TCG emulation".
 */
bool microvm_kvm_decide(const char *kvm_dev, const struct microvm_kvm_facts *facts,
                        microvm_boot_probe_fn boot_probe, void *userdata, char *reason,
                        size_t reason_size);

/* ---- host CPU (TCG timer hints) ---- */

/* The first "cpu MHz" of a /proc/cpuinfo text, in kHz. -ENOENT when there is none. */
int microvm_cpuinfo_khz_parse(const char *text, uint64_t *ret);
int microvm_host_cpu_khz(const char *cpuinfo_path, uint64_t *ret);

/* ---- all together ---- */

struct microvm_probe_paths {
    const char *qemu;                 /* NULL: MICROVM_QEMU_NAME searched in path_env */
    const char *path_env;             /* NULL: $PATH, else "/usr/local/bin:/usr/bin:/bin" */
    const char *kvm_dev;              /* NULL: "/dev/kvm" */
    const char *sys_module;           /* NULL: "/sys/module" */
    const char *cache_dir;            /* NULL: microvm_cache_dir_default() */
    const char *cpuinfo;              /* NULL: "/proc/cpuinfo" */
    microvm_boot_probe_fn boot_probe; /* NULL: trust the facts */
    void *boot_probe_userdata;

    /* MICROVM_STOCK_NAME: Debian's stock kernel in cache_dir/stock ([microvm] kernel =
     * stock); NULL: the minimal kernel scripts/build-guest-kernel.sh built */
    const char *kernel;
};

enum microvm_finding_id {
    MICROVM_FINDING_QEMU,
    MICROVM_FINDING_KERNEL,
    MICROVM_FINDING_KVM,
    MICROVM_FINDING_CPU,
    MICROVM_FINDING_MAX_ID,
};

struct microvm_finding {
    bool ok;
    char text[MICROVM_FINDING_MAX];
};

struct microvm_probe {
    /* QEMU and a guest kernel are there: the backend can run, with accel */
    bool available;
    bool kvm_usable;
    enum microvm_accel accel;
    /* available: which accelerator and why (TCG: "no usable KVM (...): running under TCG
     * emulation"); not available: what is missing and the command that fixes it */
    char reason[MICROVM_REASON_MAX];
    /* one line each for `doctor` (names: microvm_finding_name()) */
    struct microvm_finding findings[MICROVM_FINDING_MAX_ID];
    char qemu[PATH_MAX];
    unsigned qemu_version[3];
    struct microvm_kernel kernel;
    uint64_t cpu_khz; /* 0: unknown (no TCG timer hints) */
};

const char *microvm_finding_name(enum microvm_finding_id id);

/* Probes everything; paths may be NULL. Always fills *ret and returns 0 (a broken probe is
 * reported as not available with the reason), so `doctor` can print every finding. */
int microvm_probe_run(const struct microvm_probe_paths *paths, struct microvm_probe *ret);

/*
 * Applies --accel to a probe result: auto takes the probe's choice, tcg is always possible,
 * kvm only when KVM is usable (else -ENODEV with a sentence naming --accel tcg|auto in
 * reason).
 */
int microvm_accel_choose(enum microvm_accel_request req, const struct microvm_probe *p,
                         enum microvm_accel *ret, char *reason, size_t reason_size);
