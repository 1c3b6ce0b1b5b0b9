/* QEMU's argv for a microVM bottle (qemu-args.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backend/microvm/qemu-args.h"
#include "common/buf.h"
#include "common/macro.h"
#include "common/str.h"
#include "common/xalloc.h"

/*
 * Machine: microvm without ACPI (the guest kernel has VIRTIO_MMIO_CMDLINE_DEVICES, so QEMU
 * passes the virtio-mmio devices on the kernel command line), without option ROMs (PVH boot
 * needs no qboot real mode), with the RTC (wall clock at boot) and without the ISA serial port
 * (the console is virtio).
 */
#define MACHINE "microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=off"
/* The same with ACPI (microvm_qemu_config.acpi: Debian's stock kernel lacks
 * VIRTIO_MMIO_CMDLINE_DEVICES and finds the devices in the DSDT). */
#define MACHINE_ACPI "microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=on"
/* QEMU's own seccomp filter: no spawning, no privilege changes, no obsolete syscalls, no
 * scheduler/resource changes. */
#define SANDBOX "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
/* The console on hvc0; panic=-1 and reboot=t with QEMU's -no-reboot make any guest reboot or
 * panic end QEMU at once (there is no ACPI to power off with). */
#define CMDLINE_BASE "console=hvc0 quiet panic=-1 reboot=t"

struct argv_builder {
    char **v;
    size_t n;
    int err;
};

static void add(struct argv_builder *a, const char *s)
{
    if (a->err)
        return;
    if (a->n + 1 >= MICROVM_ARGV_MAX) {
        a->err = -E2BIG;
        return;
    }
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

static void add_buf(struct argv_builder *a, struct buf *b, int r)
{
    if (r < 0 && !a->err)
        a->err = r;
    add(a, buf_str(b));
    buf_reset(b);
}

/* QEMU option values: a ',' separates options, so a literal comma is written ",,". */
static int append_opt_value(struct buf *b, const char *s)
{
    for (; *s; s++) {
        int r = buf_append(b, s, 1);
        if (r >= 0 && *s == ',')
            r = buf_append(b, ",", 1);
        if (r < 0)
            return r;
    }
    return 0;
}

static bool has_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static int check_path(const char *p)
{
    if (!p || p[0] != '/' || has_control(p))
        return -EINVAL;
    return strlen(p) >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int check_socket(const char *p)
{
    int r = check_path(p);

    if (r < 0)
        return r;
    return strlen(p) > MICROVM_SUN_PATH_MAX ? -ENAMETOOLONG : 0;
}

static int check_tag(const char *t)
{
    size_t n = t ? strlen(t) : 0;

    if (n == 0 || n > MICROVM_TAG_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!ascii_isalnum(t[i]) && t[i] != '_' && t[i] != '-' && t[i] != '.')
            return -EINVAL;
    return 0;
}

static int check_config(const struct microvm_qemu_config *c)
{
    int r;

    if ((unsigned)c->accel >= MICROVM_ACCEL_MAX)
        return -EINVAL;
    if (c->cpus < 1 || c->cpus > MICROVM_MAX_CPUS)
        return -EINVAL;
    if (c->memory_mib < MICROVM_MIN_MEMORY_MIB || c->memory_mib > (UINT64_C(1) << 22))
        return -EINVAL;
    if (c->qemu && (c->qemu[0] == '\0' || has_control(c->qemu)))
        return -EINVAL;
    if (c->restore && (c->restore_fd <= 2 || c->template_boot))
        return -EINVAL;
    if (!c->restore && ((r = check_path(c->kernel)) < 0 || (r = check_path(c->initrd)) < 0))
        return r;
    if (c->template_boot && (!c->qmp_socket || (r = check_socket(c->qmp_socket)) < 0))
        return c->qmp_socket ? r : -EINVAL;
    if (c->console_socket && (r = check_socket(c->console_socket)) < 0)
        return r;
    if (c->ctl_socket && (r = check_socket(c->ctl_socket)) < 0)
        return r;
    if (c->chan_socket && (r = check_socket(c->chan_socket)) < 0)
        return r;
    if (c->cmdline_extra && has_control(c->cmdline_extra))
        return -EINVAL;
    if (c->n_shares > MICROVM_MAX_SHARES || (c->n_shares > 0 && !c->shares))
        return -EINVAL;
    for (size_t i = 0; i < c->n_shares; i++) {
        if ((r = check_tag(c->shares[i].tag)) < 0 || (r = check_path(c->shares[i].host_path)) < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->shares[i].tag, c->shares[j].tag) == 0)
                return -EINVAL;
    }
    return 0;
}

int microvm_kernel_cmdline(const struct microvm_qemu_config *c, char *ret, size_t size)
{
    struct buf b = BUF_INIT(MICROVM_CMDLINE_MAX);
    int r = check_config(c);

    if (r < 0)
        return r;
    r = buf_append_str(&b, CMDLINE_BASE);
    /* TCG only: without these, a slow emulated vCPU often fails PIT-based TSC calibration
     * and hangs at boot (notes: 10 of 12 TCG boots). KVM has kvm-clock. lpj is TSC cycles
     * per jiffy. */
    if (r >= 0 && c->accel == MICROVM_ACCEL_TCG && c->tsc_khz > 0)
        r = buf_printf(&b, " tsc_early_khz=%" PRIu64 " lpj=%" PRIu64 " no_timer_check", c->tsc_khz,
                       c->tsc_khz * 1000 / MICROVM_GUEST_HZ);
    /* TCG only: TCG's vCPU has no TSC-deadline timer, so the kernel calibrates the local APIC
     * timer against the PIT for 100 ms of guest time, 0.2-0.25 s of wall time here; without
     * the APIC timer the PIT drives the tick (broadcast to the other vCPUs). KVM's -cpu host
     * has TSC-deadline and skips the calibration. */
    if (r >= 0 && c->accel == MICROVM_ACCEL_TCG && !c->acpi)
        r = buf_append_str(&b, " noapictimer");
    /* TCG, either kernel: x86 always builds the clocksource watchdog, which checks the TSC
     * against jiffies; on an emulated vCPU the ticks lag, and the watchdog took the TSC away
     * during a bottle's start: the guest's clock then ran on jiffies, advancing in 4 ms steps
     * (clock_gettime in a bottle; every timer and poll timeout rounded to a tick, every guest
     * time measurement coarse). tsc=reliable keeps the TSC, which QEMU's TCG derives from the
     * host's clock. (The stock kernel with ACPI fell back to jiffies the same way.) */
    if (r >= 0 && c->accel == MICROVM_ACCEL_TCG)
        r = buf_append_str(&b, " tsc=reliable");
    if (r >= 0 && c->cmdline_extra && c->cmdline_extra[0])
        r = buf_printf(&b, " %s", c->cmdline_extra);
    if (r >= 0 && c->template_boot)
        r = buf_append_str(&b, " bbtemplate=1");
    if (r == -E2BIG)
        r = -ENAMETOOLONG;
    if (r >= 0)
        r = str_printf(ret, size, "%s", buf_str(&b));
    buf_done(&b);
    return r;
}

static void add_socket_chardev(struct argv_builder *a, struct buf *b, const char *id,
                               const char *path)
{
    int r;

    add(a, "-chardev");
    r = buf_printf(b, "socket,id=%s,path=", id);
    if (r >= 0)
        r = append_opt_value(b, path);
    if (r >= 0)
        r = buf_append_str(b, ",server=off");
    add_buf(a, b, r);
}

int microvm_qemu_argv(const struct microvm_qemu_config *c, char ***ret)
{
    char cmdline[MICROVM_CMDLINE_MAX + 1];
    struct argv_builder a = { .v = NULL, .n = 0, .err = 0 };
    struct buf b = BUF_INIT(2 * PATH_MAX + 256);
    bool kvm = c->accel == MICROVM_ACCEL_KVM;
    int r;

    r = microvm_kernel_cmdline(c, cmdline, sizeof(cmdline));
    if (r < 0)
        return r;
    a.v = xcalloc(MICROVM_ARGV_MAX, sizeof(char *));

    add(&a, c->qemu ? c->qemu : MICROVM_QEMU_NAME);
    add(&a, "-M");
    add(&a, c->acpi ? MACHINE_ACPI : MACHINE);
    add(&a, "-accel");
    /* TCG: the translation cache is QEMU's largest own allocation (1 GiB by default); capped
     * so that QEMU fits the bottle's memory limit (microvm.h, MICROVM_QEMU_OVERHEAD_MIB) */
    add(&a, kvm ? "kvm" : "tcg,tb-size=" MICROVM_TCG_TB_MIB_STR);
    add(&a, "-cpu");
    /* TCG: without ERMS/FSRM the guest's memset/memcpy use `rep stosq`/`rep movsq`, which
     * TCG runs 8 bytes per step instead of 1 */
    add(&a, kvm ? "host" : "max,-erms,-fsrm");
    /* no default devices (no NIC, no serial, no monitor), no config files, no display */
    add(&a, "-nodefaults");
    add(&a, "-no-user-config");
    add(&a, "-display");
    add(&a, "none");
    add(&a, "-no-reboot");
    add(&a, "-sandbox");
    add(&a, SANDBOX);
    add(&a, "-m");
    add_buf(&a, &b, buf_printf(&b, "%" PRIu64 "M", c->memory_mib));
    add(&a, "-smp");
    add_buf(&a, &b, buf_printf(&b, "%u", c->cpus));
    if (!c->restore) {
        add(&a, "-kernel");
        add(&a, c->kernel);
        add(&a, "-initrd");
        add(&a, c->initrd);
        add(&a, "-append");
        add(&a, cmdline);
    } else {
        add(&a, "-incoming");
        add_buf(&a, &b, buf_printf(&b, "fd:%d", c->restore_fd));
    }
    if (c->template_boot) {
        add(&a, "-global");
        add(&a, "migration.store-global-state=off");
        add_socket_chardev(&a, &b, "qmp", c->qmp_socket);
        add(&a, "-mon");
        add(&a, "chardev=qmp,mode=control");
    }
    /* modern (virtio 1.x) mmio transport */
    add(&a, "-global");
    add(&a, "virtio-mmio.force-legacy=off");
    /* entropy: QEMU's built-in backend (getrandom on the host), nothing to open */
    add(&a, "-device");
    add(&a, "virtio-rng-device");

    /* one virtio-serial device: hvc0 plus the named ports */
    add(&a, "-device");
    add(&a, "virtio-serial-device");
    if (c->console_socket) {
        add_socket_chardev(&a, &b, "con", c->console_socket);
    } else {
        add(&a, "-chardev");
        add(&a, "stdio,id=con,signal=off");
    }
    add(&a, "-device");
    add(&a, "virtconsole,chardev=con");
    if (c->ctl_socket) {
        add_socket_chardev(&a, &b, "ctl", c->ctl_socket);
        add(&a, "-device");
        add(&a, "virtserialport,chardev=ctl,name=" MICROVM_PORT_CTL);
    }
    if (c->chan_socket) {
        add_socket_chardev(&a, &b, "chan", c->chan_socket);
        add(&a, "-device");
        add(&a, "virtserialport,chardev=chan,name=" MICROVM_PORT_CHAN);
    }

    /* 9p shares; multidevs=remap keeps inode numbers unique when a share spans several host
     * file systems (git and tar rely on st_ino) */
    for (size_t i = 0; i < c->n_shares; i++) {
        const struct microvm_share *s = &c->shares[i];

        add(&a, "-fsdev");
        r = buf_printf(&b, "local,id=fs%zu,path=", i);
        if (r >= 0)
            r = append_opt_value(&b, s->host_path);
        if (r >= 0)
            r = buf_printf(&b, ",security_model=none,multidevs=remap%s",
                           s->readonly ? ",readonly=on" : "");
        add_buf(&a, &b, r);
        add(&a, "-device");
        add_buf(&a, &b, buf_printf(&b, "virtio-9p-device,fsdev=fs%zu,mount_tag=%s", i, s->tag));
    }
    buf_done(&b);

    if (a.err) {
        r = a.err;
        microvm_argv_free(a.v);
        return r;
    }
    *ret = a.v;
    return 0;
}

void microvm_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}
