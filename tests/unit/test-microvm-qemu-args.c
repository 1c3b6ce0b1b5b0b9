/* Unit tests for src/backend/microvm/qemu-args.c: QEMU's argv for a microVM bottle. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/microvm/qemu-args.h"

static const struct microvm_share sample_shares[] = {
    { .tag = "usr", .host_path = "/usr", .readonly = true },
    { .tag = "ws", .host_path = "/home/u/project", .readonly = false },
};

static struct microvm_qemu_config sample(void)
{
    return (struct microvm_qemu_config){
        .qemu = "/usr/bin/qemu-system-x86_64",
        .accel = MICROVM_ACCEL_KVM,
        .tsc_khz = 2445406,
        .cpus = 2,
        .memory_mib = 1024,
        .kernel = "/var/cache/bot-bottle/kernel/vmlinux-6.1.192-bb0123",
        .initrd = "/run/bot-bottle/b1/initramfs.cpio",
        .cmdline_extra = "bottle.alias=127.77.0.2",
        .console_socket = "/run/bot-bottle/b1/console.sock",
        .ctl_socket = "/run/bot-bottle/b1/ctl.sock",
        .chan_socket = "/run/bot-bottle/b1/chan.sock",
        .shares = sample_shares,
        .n_shares = 2,
    };
}

static size_t argv_len(char **v)
{
    size_t n = 0;

    while (v[n])
        n++;
    return n;
}

/* Network devices must never appear, whatever the config: -nodefaults and no NIC options. */
static void assert_no_network(char **v)
{
    static const char *const forbidden[] = { "netdev", "-nic", "-net", "virtio-net", "vsock" };

    for (size_t i = 0; v[i]; i++)
        for (size_t j = 0; j < sizeof(forbidden) / sizeof(forbidden[0]); j++)
            if (strstr(v[i], forbidden[j]))
                fail_msg("argv[%zu] '%s' contains '%s'", i, v[i], forbidden[j]);
}

static void test_sample_kvm(void **state)
{
    static const char *const want[] = {
        "/usr/bin/qemu-system-x86_64",
        "-M",
        "microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=off",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        "-m",
        "1024M",
        "-smp",
        "2",
        "-kernel",
        "/var/cache/bot-bottle/kernel/vmlinux-6.1.192-bb0123",
        "-initrd",
        "/run/bot-bottle/b1/initramfs.cpio",
        "-append",
        /* KVM: no TCG timer hints even though tsc_khz is set */
        "console=hvc0 quiet panic=-1 reboot=t bottle.alias=127.77.0.2",
        "-global",
        "virtio-mmio.force-legacy=off",
        "-device",
        "virtio-rng-device",
        "-device",
        "virtio-serial-device",
        "-chardev",
        "socket,id=con,path=/run/bot-bottle/b1/console.sock,server=off",
        "-device",
        "virtconsole,chardev=con",
        "-chardev",
        "socket,id=ctl,path=/run/bot-bottle/b1/ctl.sock,server=off",
        "-device",
        "virtserialport,chardev=ctl,name=bottle.ctl",
        "-chardev",
        "socket,id=chan,path=/run/bot-bottle/b1/chan.sock,server=off",
        "-device",
        "virtserialport,chardev=chan,name=bottle.chan",
        "-fsdev",
        "local,id=fs0,path=/usr,security_model=none,multidevs=remap,readonly=on",
        "-device",
        "virtio-9p-device,fsdev=fs0,mount_tag=usr",
        "-fsdev",
        "local,id=fs1,path=/home/u/project,security_model=none,multidevs=remap",
        "-device",
        "virtio-9p-device,fsdev=fs1,mount_tag=ws",
    };
    struct microvm_qemu_config c = sample();
    char **v = NULL;
    (void)state;

    assert_int_equal(microvm_qemu_argv(&c, &v), 0);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]) && v[i]; i++)
        assert_string_equal(v[i], want[i]);
    assert_int_equal(argv_len(v), sizeof(want) / sizeof(want[0]));
    assert_no_network(v);
    microvm_argv_free(v);
}

static void test_tcg_minimal(void **state)
{
    struct microvm_qemu_config c = sample();
    char **v = NULL;
    (void)state;

    c.accel = MICROVM_ACCEL_TCG;
    c.qemu = NULL;
    c.console_socket = NULL;
    c.ctl_socket = NULL;
    c.chan_socket = NULL;
    c.cmdline_extra = NULL;
    c.n_shares = 0;
    c.shares = NULL;
    assert_int_equal(microvm_qemu_argv(&c, &v), 0);
    assert_string_equal(v[0], "qemu-system-x86_64");
    assert_string_equal(v[4], "tcg,tb-size=128");
    /* no ERMS/FSRM: memset/memcpy 8 bytes per TCG step, not 1 */
    assert_string_equal(v[6], "max,-erms,-fsrm");
    size_t n = argv_len(v);
    bool saw_append = false, saw_stdio = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i], "-append") == 0) {
            /* lpj = kHz * 1000 / HZ(250) */
            assert_string_equal(v[i + 1], "console=hvc0 quiet panic=-1 reboot=t "
                                          "tsc_early_khz=2445406 lpj=9781624 no_timer_check "
                                          "noapictimer tsc=reliable");
            saw_append = true;
        }
        if (strcmp(v[i], "stdio,id=con,signal=off") == 0)
            saw_stdio = true;
        assert_null(strstr(v[i], "virtserialport"));
        assert_null(strstr(v[i], "9p"));
    }
    assert_true(saw_append);
    assert_true(saw_stdio);
    assert_no_network(v);
    microvm_argv_free(v);

    /* TCG without a known CPU frequency: no hints rather than wrong ones */
    char line[MICROVM_CMDLINE_MAX + 1];
    c.tsc_khz = 0;
    assert_int_equal(microvm_kernel_cmdline(&c, line, sizeof(line)), 0);
    assert_string_equal(line, "console=hvc0 quiet panic=-1 reboot=t noapictimer tsc=reliable");
}

/* The stock kernel (acpi): microvm with ACPI, its own TCG timer hints, nothing else changed. */
static void test_acpi_stock(void **state)
{
    struct microvm_qemu_config c = sample();
    char **v = NULL, **plain = NULL;
    (void)state;

    c.accel = MICROVM_ACCEL_TCG;
    assert_int_equal(microvm_qemu_argv(&c, &plain), 0);
    c.acpi = true;
    assert_int_equal(microvm_qemu_argv(&c, &v), 0);
    assert_string_equal(plain[2], "microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=off");
    assert_string_equal(v[2], "microvm,x-option-roms=off,rtc=on,isa-serial=off,acpi=on");
    assert_int_equal(argv_len(v), argv_len(plain));
    for (size_t i = 0; v[i]; i++) {
        if (i != 2 && (i == 0 || strcmp(v[i - 1], "-append") != 0))
            assert_string_equal(v[i], plain[i]);
        if (strcmp(v[i], "-append") == 0) {
            /* the TSC hints stay; the APIC timer stays on (noapictimer hung the stock
             * kernel's sleeps); the clocksource watchdog is told the TSC is fine, as for
             * the minimal kernel */
            assert_string_equal(v[i + 1], "console=hvc0 quiet panic=-1 reboot=t "
                                          "tsc_early_khz=2445406 lpj=9781624 no_timer_check "
                                          "tsc=reliable bottle.alias=127.77.0.2");
            assert_non_null(strstr(plain[i + 1], "noapictimer"));
        }
    }
    assert_no_network(v);
    microvm_argv_free(v);
    microvm_argv_free(plain);
}

/* QEMU's option splitting: ',' separates, ",," is a literal comma. */
static size_t split_opts(const char *s, char out[][PATH_MAX], size_t max)
{
    size_t n = 0, len = 0;

    for (;; s++) {
        if (*s == ',' && s[1] == ',') {
            out[n][len++] = ',';
            s++;
            continue;
        }
        if (*s == ',' || *s == '\0') {
            out[n][len] = '\0';
            n++;
            len = 0;
            if (*s == '\0' || n == max)
                return n;
            continue;
        }
        out[n][len++] = *s;
    }
}

static void test_option_injection(void **state)
{
    /* A host path that tries to smuggle QEMU options in through commas. */
    static const struct microvm_share evil[] = {
        { .tag = "ws",
          .host_path = "/w/x,security_model=passthrough,readonly=off,id=fs9",
          .readonly = true },
    };
    struct microvm_qemu_config c = sample();
    char opts[16][PATH_MAX];
    char **v = NULL;
    (void)state;

    c.shares = evil;
    c.n_shares = 1;
    c.ctl_socket = "/run/a,server=on,path=/tmp/x";
    assert_int_equal(microvm_qemu_argv(&c, &v), 0);
    bool saw_fsdev = false, saw_ctl = false;
    for (size_t i = 0; v[i]; i++) {
        if (strcmp(v[i], "-fsdev") == 0) {
            size_t n = split_opts(v[i + 1], opts, 16);
            assert_int_equal(n, 6);
            assert_string_equal(opts[0], "local");
            assert_string_equal(opts[1], "id=fs0");
            assert_string_equal(opts[2],
                                "path=/w/x,security_model=passthrough,readonly=off,id=fs9");
            assert_string_equal(opts[3], "security_model=none");
            assert_string_equal(opts[4], "multidevs=remap");
            assert_string_equal(opts[5], "readonly=on");
            saw_fsdev = true;
        }
        if (strncmp(v[i], "socket,id=ctl,", 14) == 0) {
            size_t n = split_opts(v[i], opts, 16);
            assert_int_equal(n, 4);
            assert_string_equal(opts[2], "path=/run/a,server=on,path=/tmp/x");
            assert_string_equal(opts[3], "server=off");
            saw_ctl = true;
        }
    }
    assert_true(saw_fsdev);
    assert_true(saw_ctl);
    assert_no_network(v);
    microvm_argv_free(v);
}

static void test_refused(void **state)
{
    struct microvm_share shares[MICROVM_MAX_SHARES + 1];
    struct microvm_qemu_config c;
    char longsock[MICROVM_SUN_PATH_MAX + 2];
    char *longline = NULL;
    char **v = NULL;
    (void)state;

#define REFUSED(err, ...)                                                                          \
    do {                                                                                           \
        c = sample();                                                                              \
        __VA_ARGS__;                                                                               \
        v = NULL;                                                                                  \
        assert_int_equal(microvm_qemu_argv(&c, &v), err);                                          \
        assert_null(v);                                                                            \
    } while (0)

    REFUSED(-EINVAL, c.kernel = NULL);
    REFUSED(-EINVAL, c.kernel = "vmlinux");
    REFUSED(-EINVAL, c.initrd = "initramfs.cpio");
    REFUSED(-EINVAL, c.cpus = 0);
    REFUSED(-EINVAL, c.cpus = MICROVM_MAX_CPUS + 1);
    REFUSED(-EINVAL, c.memory_mib = 32);
    REFUSED(-EINVAL, c.accel = MICROVM_ACCEL_MAX);
    REFUSED(-EINVAL, c.cmdline_extra = "a\nb");
    REFUSED(-EINVAL, c.kernel = "/k\n-netdev");
    REFUSED(-EINVAL, c.console_socket = "rel.sock");

    memset(longsock, 'a', sizeof(longsock));
    longsock[0] = '/';
    longsock[sizeof(longsock) - 1] = '\0'; /* 108 characters: one over sun_path */
    REFUSED(-ENAMETOOLONG, c.chan_socket = longsock);
    longsock[sizeof(longsock) - 2] = '\0'; /* 107: fits */
    c = sample();
    c.chan_socket = longsock;
    assert_int_equal(microvm_qemu_argv(&c, &v), 0);
    microvm_argv_free(v);

    longline = malloc(MICROVM_CMDLINE_MAX + 1);
    assert_non_null(longline);
    memset(longline, 'x', MICROVM_CMDLINE_MAX);
    longline[MICROVM_CMDLINE_MAX] = '\0';
    REFUSED(-ENAMETOOLONG, c.cmdline_extra = longline);
    free(longline);

    /* shares: tags, paths, duplicates, count */
    static const struct microvm_share bad_tag[] = { { "us r", "/usr", true } };
    static const struct microvm_share long_tag[] = { { "abcdefghijklmnopqrstuvwxyz0123456", "/usr",
                                                       true } };
    static const struct microvm_share empty_tag[] = { { "", "/usr", true } };
    static const struct microvm_share rel_path[] = { { "ws", "project", false } };
    static const struct microvm_share dup_tag[] = { { "ws", "/a", false }, { "ws", "/b", false } };
    REFUSED(-EINVAL, c.shares = bad_tag; c.n_shares = 1);
    REFUSED(-EINVAL, c.shares = long_tag; c.n_shares = 1);
    REFUSED(-EINVAL, c.shares = empty_tag; c.n_shares = 1);
    REFUSED(-EINVAL, c.shares = rel_path; c.n_shares = 1);
    REFUSED(-EINVAL, c.shares = dup_tag; c.n_shares = 2);
    REFUSED(-EINVAL, c.shares = NULL; c.n_shares = 1);
    for (size_t i = 0; i < MICROVM_MAX_SHARES + 1; i++) {
        static char tags[MICROVM_MAX_SHARES + 1][8];
        snprintf(tags[i], sizeof(tags[i]), "t%zu", i);
        shares[i] = (struct microvm_share){ tags[i], "/usr", true };
    }
    REFUSED(-EINVAL, c.shares = shares; c.n_shares = MICROVM_MAX_SHARES + 1);
    /* the maximum is fine, and still no network device */
    c = sample();
    c.shares = shares;
    c.n_shares = MICROVM_MAX_SHARES;
    assert_int_equal(microvm_qemu_argv(&c, &v), 0);
    assert_no_network(v);
    microvm_argv_free(v);
#undef REFUSED
}

/* The argv builder's assumptions about the guest kernel hold in the repository's fragment:
 * acpi=off needs the virtio-mmio command-line devices, lpj= is computed for its HZ, -smp is
 * capped at its NR_CPUS, and it has no network driver and no io_uring. */
static void test_kernel_fragment(void **state)
{
    static const char *const want[] = {
        "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y",
        "CONFIG_VIRTIO_CONSOLE=y",
        "CONFIG_9P_FS=y",
        "CONFIG_PVH=y",
        "CONFIG_ACPI=n",
        "CONFIG_PCI=n",
        "CONFIG_MODULES=n",
        "CONFIG_NETDEVICES=n",
        "CONFIG_VIRTIO_NET=n",
        "CONFIG_VSOCKETS=n",
        "CONFIG_PACKET=n",
        "CONFIG_IO_URING=n",
    };
    char path[PATH_MAX], hz[32], cpus[32], text[16384];
    const char *src = __FILE__;
    const char *cut = strstr(src, "tests/unit/");
    (void)state;

    /* meson compiles the test from its absolute source path */
    assert_non_null(cut);
    assert_true(src[0] == '/');
    assert_true(snprintf(path, sizeof(path), "%.*sguest/kernel/bottle.config", (int)(cut - src),
                         src) < (int)sizeof(path));
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    assert_true(n > 0 && n < sizeof(text) - 1);
    text[n] = '\0';
    fclose(f);

    snprintf(hz, sizeof(hz), "\nCONFIG_HZ=%d\n", MICROVM_GUEST_HZ);
    snprintf(cpus, sizeof(cpus), "\nCONFIG_NR_CPUS=%d\n", MICROVM_MAX_CPUS);
    assert_non_null(strstr(text, hz));
    assert_non_null(strstr(text, cpus));
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char line[64];
        snprintf(line, sizeof(line), "\n%s\n", want[i]);
        if (!strstr(text, line))
            fail_msg("%s lacks %s", path, want[i]);
    }
    /* and nothing turns a network driver on */
    static const char *const never[] = { "CONFIG_VIRTIO_NET=y", "CONFIG_VSOCKETS=y",
                                         "CONFIG_VIRTIO_VSOCKETS=y", "CONFIG_NETDEVICES=y",
                                         "CONFIG_IO_URING=y" };
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        assert_null(strstr(text, never[i]));
}

/* Index of the first argument equal to s, or -1. */
static long find_arg(char **v, const char *s)
{
    for (long i = 0; v[i]; i++)
        if (strcmp(v[i], s) == 0)
            return i;
    return -1;
}

/*
 * Start-up snapshots: the template's boot tells bottle-init (bbtemplate=1), adds QMP and
 * leaves the global state out; the restore reads the state from its fd and boots nothing;
 * both keep every device of the cold boot, in the same order (QEMU restores by position).
 */
static void test_snapshot(void **state)
{
    struct microvm_qemu_config c = sample();
    char **cold = NULL, **tpl = NULL, **rst = NULL;
    long i;
    (void)state;

    c.accel = MICROVM_ACCEL_TCG;
    assert_int_equal(microvm_qemu_argv(&c, &cold), 0);
    c.template_boot = true;
    assert_int_equal(microvm_qemu_argv(&c, &tpl), -EINVAL); /* no QMP socket */
    c.qmp_socket = "/run/bot-bottle/b1/qmp.sock";
    assert_int_equal(microvm_qemu_argv(&c, &tpl), 0);
    i = find_arg(tpl, "-append");
    assert_true(i > 0);
    assert_non_null(strstr(tpl[i + 1], " bbtemplate=1"));
    assert_null(strstr(cold[find_arg(cold, "-append") + 1], "bbtemplate"));
    assert_true(find_arg(tpl, "migration.store-global-state=off") > 0);
    assert_true(find_arg(tpl, "socket,id=qmp,path=/run/bot-bottle/b1/qmp.sock,server=off") > 0);
    assert_true(find_arg(tpl, "chardev=qmp,mode=control") > 0);
    assert_int_equal(find_arg(tpl, "-incoming"), -1);

    c.template_boot = false;
    c.qmp_socket = NULL;
    c.restore = true;
    c.restore_fd = 2; /* stdio: refused */
    assert_int_equal(microvm_qemu_argv(&c, &rst), -EINVAL);
    c.restore_fd = 7;
    c.kernel = NULL; /* not needed: nothing boots */
    c.initrd = NULL;
    assert_int_equal(microvm_qemu_argv(&c, &rst), 0);
    i = find_arg(rst, "-incoming");
    assert_true(i > 0);
    assert_string_equal(rst[i + 1], "fd:7");
    assert_int_equal(find_arg(rst, "-kernel"), -1);
    assert_int_equal(find_arg(rst, "-initrd"), -1);
    assert_int_equal(find_arg(rst, "-append"), -1);
    assert_int_equal(find_arg(rst, "-mon"), -1);
    /* the devices: the same, in the same order, in all three */
    {
        char **all[3] = { cold, tpl, rst };
        size_t n[3] = { 0 };
        const char *dev[3][16];
        for (size_t k = 0; k < 3; k++)
            for (size_t j = 0; all[k][j]; j++)
                if (strcmp(all[k][j], "-device") == 0 && n[k] < 16)
                    dev[k][n[k]++] = all[k][j + 1];
        assert_true(n[0] >= 5);
        for (size_t k = 1; k < 3; k++) {
            assert_int_equal(n[k], n[0]);
            for (size_t j = 0; j < n[0]; j++)
                assert_string_equal(dev[k][j], dev[0][j]);
        }
    }
    /* both at once: refused */
    c.template_boot = true;
    c.qmp_socket = "/q";
    assert_int_equal(microvm_qemu_argv(&c, &tpl), -EINVAL);
    microvm_argv_free(cold);
    microvm_argv_free(tpl);
    microvm_argv_free(rst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sample_kvm), cmocka_unit_test(test_tcg_minimal),
        cmocka_unit_test(test_snapshot),   cmocka_unit_test(test_option_injection),
        cmocka_unit_test(test_refused),    cmocka_unit_test(test_kernel_fragment),
        cmocka_unit_test(test_acpi_stock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
