/* Unit tests for src/backend/microvm/probe.c, over fake files in a temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <elf.h>
#include <stdbool.h>

#include "backend/microvm/probe.h"
#include "common/str.h"

static char tmp[] = "/tmp/test-microvm-probe.XXXXXX";

static const char *at(const char *rel)
{
    static char bufs[64][PATH_MAX]; /* enough for every path one test holds at once */
    static int next;
    char *b = bufs[next++ % 64];

    assert_int_equal(str_printf(b, PATH_MAX, "%s/%s", tmp, rel), 0);
    return b;
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(tmp));
    static const char *const dirs[] = { "bin",   "bin-old", "bin-noexec",    "bin-bad",
                                        "empty", "cache",   "nocache",       "badcache",
                                        "mod",   "modpvm",  "modpvm/kvm_pvm" };
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
        assert_int_equal(mkdir(at(dirs[i]), 0755), 0);
    write_file(at("bin/qemu-system-x86_64"),
               "#!/bin/sh\n"
               "echo 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)'\n"
               "echo 'Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers'\n",
               0755);
    write_file(at("bin-old/qemu-system-x86_64"),
               "#!/bin/sh\necho 'QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)'\n",
               0755);
    write_file(at("bin-noexec/qemu-system-x86_64"), "#!/bin/sh\necho nope\n", 0644);
    write_file(at("bin-bad/qemu-system-x86_64"), "#!/bin/sh\necho 'not QEMU at all'\n", 0755);
    write_file(at("cache/kernel.meta"),
               "# written by scripts/build-guest-kernel.sh\n"
               "version=6.1.192\nfragment_hash=0123456789abcdef\n"
               "vmlinux=vmlinux-6.1.192-bb0123456789abcdef\nconfig=config-6.1.192-bb01\n",
               0644);
    write_file(at("cache/vmlinux-6.1.192-bb0123456789abcdef"), "\177ELF", 0644);
    /* kernel.meta naming a vmlinux that is not there */
    write_file(at("nocache/kernel.meta"), "version=6.1.192\nvmlinux=vmlinux-gone\n", 0644);
    /* kernel.meta trying to point outside the cache */
    write_file(at("badcache/kernel.meta"), "vmlinux=../cache/vmlinux-6.1.192-bb01\n", 0644);
    write_file(at("cpuinfo"),
               "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Some CPU\n"
               "cpu MHz\t\t: 2445.406\ncache size\t: 16384 KB\n\nprocessor\t: 1\n"
               "cpu MHz\t\t: 1200.000\n",
               0644);
    write_file(at("cpuinfo-none"), "processor\t: 0\nvendor_id\t: ARM\n", 0644);
    write_file(at("notkvm"), "", 0644);
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    (void)state;

    assert_int_equal(str_printf(cmd, sizeof(cmd), "rm -rf '%s'", tmp), 0);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_accel_names(void **state)
{
    enum microvm_accel_request req;
    (void)state;

    assert_string_equal(microvm_accel_name(MICROVM_ACCEL_KVM), "kvm");
    assert_string_equal(microvm_accel_name(MICROVM_ACCEL_TCG), "tcg");
    assert_int_equal(microvm_accel_request_from_string("auto", &req), 0);
    assert_int_equal(req, MICROVM_ACCEL_REQ_AUTO);
    assert_int_equal(microvm_accel_request_from_string("kvm", &req), 0);
    assert_int_equal(req, MICROVM_ACCEL_REQ_KVM);
    assert_int_equal(microvm_accel_request_from_string("tcg", &req), 0);
    assert_int_equal(req, MICROVM_ACCEL_REQ_TCG);
    assert_int_equal(microvm_accel_request_from_string("KVM", &req), -EINVAL);
    assert_int_equal(microvm_accel_request_from_string("hvf", &req), -EINVAL);
}

static void test_qemu_parse_version(void **state)
{
    unsigned v[3];
    (void)state;

    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2)\n"
                                                "Copyright (c) 2003-2022\n",
                                                v),
                     0);
    assert_int_equal(v[0], 7);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 22);
    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version 8.0\n", v), 0);
    assert_int_equal(v[0], 8);
    assert_int_equal(v[1], 0);
    assert_int_equal(v[2], 0);
    /* not on the first line is fine, as long as a line starts with it */
    assert_int_equal(microvm_qemu_parse_version("warning: x\nQEMU emulator version 9.1.3\n", v), 0);
    assert_int_equal(v[0], 9);
    assert_int_equal(microvm_qemu_parse_version("", v), -EINVAL);
    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version \n", v), -EINVAL);
    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version 7\n", v), -EINVAL);
    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version 7.x\n", v), -EINVAL);
    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version 7.2.\n", v), -EINVAL);
    assert_int_equal(microvm_qemu_parse_version("QEMU emulator version 99999.1\n", v), -EINVAL);
    assert_int_equal(microvm_qemu_parse_version("xQEMU emulator version 7.2.0\n", v), -EINVAL);
}

static void test_find_in_path(void **state)
{
    char path[PATH_MAX], env[4 * PATH_MAX];
    (void)state;

    /* a non-executable candidate is skipped; empty and relative elements are never searched */
    assert_int_equal(str_printf(env, sizeof(env), "::bin:%s:%s", at("bin-noexec"), at("bin")), 0);
    assert_int_equal(microvm_find_in_path("qemu-system-x86_64", env, path, sizeof(path)), 0);
    assert_string_equal(path, at("bin/qemu-system-x86_64"));
    /* first match wins */
    assert_int_equal(str_printf(env, sizeof(env), "%s:%s", at("bin-old"), at("bin")), 0);
    assert_int_equal(microvm_find_in_path("qemu-system-x86_64", env, path, sizeof(path)), 0);
    assert_string_equal(path, at("bin-old/qemu-system-x86_64"));
    assert_int_equal(microvm_find_in_path("qemu-system-x86_64", at("empty"), path, sizeof(path)),
                     -ENOENT);
    assert_int_equal(microvm_find_in_path("qemu-system-x86_64", "", path, sizeof(path)), -ENOENT);
    /* names with a slash are not searched */
    assert_int_equal(
        microvm_find_in_path("../bin/qemu-system-x86_64", at("bin"), path, sizeof(path)), -EINVAL);
    /* too small for the result */
    assert_int_equal(microvm_find_in_path("qemu-system-x86_64", at("bin"), path, 8), -ENAMETOOLONG);
}

static void test_qemu_version_exec(void **state)
{
    unsigned v[3];
    (void)state;

    assert_int_equal(microvm_qemu_version(at("bin/qemu-system-x86_64"), v), 0);
    assert_int_equal(v[0], 7);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[2], 22);
    assert_int_equal(microvm_qemu_version(at("bin-bad/qemu-system-x86_64"), v), -EINVAL);
    assert_int_equal(microvm_qemu_version(at("bin-noexec/qemu-system-x86_64"), v), -ENOEXEC);
    assert_int_equal(microvm_qemu_version(at("empty/none"), v), -ENOEXEC);
}

static int count_lines(const char *path)
{
    char buf[256];
    int fd = open(path, O_RDONLY | O_CLOEXEC), n = 0;
    ssize_t k;

    if (fd < 0)
        return 0;
    while ((k = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < k; i++)
            n += buf[i] == '\n';
    close(fd);
    return n;
}

/* `qemu -version` runs once per binary: then per process, and from cache_dir/qemu.version;
 * a changed binary runs again. */
static void test_qemu_version_cached(void **state)
{
    char script[PATH_MAX * 2];
    unsigned v[3];
    (void)state;

    assert_int_equal(mkdir(at("vcache"), 0755), 0);
    assert_int_equal(mkdir(at("bin-count"), 0755), 0);
    assert_int_equal(mkdir(at("bin-count2"), 0755), 0);
    assert_int_equal(str_printf(script, sizeof(script),
                                "#!/bin/sh\necho run >>'%s'\n"
                                "echo 'QEMU emulator version 8.1.3 (Debian)'\n",
                                at("count")),
                     0);
    write_file(at("bin-count/qemu-system-x86_64"), script, 0755);
    write_file(at("bin-count2/qemu-system-x86_64"), script, 0755);

    assert_int_equal(
        microvm_qemu_version_cached(at("bin-count/qemu-system-x86_64"), at("vcache"), v), 0);
    assert_int_equal(v[0], 8);
    assert_int_equal(v[1], 1);
    assert_int_equal(v[2], 3);
    assert_int_equal(count_lines(at("count")), 1);
    /* the same process: remembered */
    memset(v, 0, sizeof(v));
    assert_int_equal(
        microvm_qemu_version_cached(at("bin-count/qemu-system-x86_64"), at("vcache"), v), 0);
    assert_int_equal(v[0], 8);
    assert_int_equal(count_lines(at("count")), 1);
    /* another binary, no cache directory: runs (and replaces what the process remembers) */
    assert_int_equal(microvm_qemu_version_cached(at("bin-count2/qemu-system-x86_64"), NULL, v), 0);
    assert_int_equal(count_lines(at("count")), 2);
    /* the first one again: from vcache/qemu.version, not run */
    memset(v, 0, sizeof(v));
    assert_int_equal(
        microvm_qemu_version_cached(at("bin-count/qemu-system-x86_64"), at("vcache"), v), 0);
    assert_int_equal(v[0], 8);
    assert_int_equal(v[2], 3);
    assert_int_equal(count_lines(at("count")), 2);
    /* the binary changed (an upgrade): runs again */
    write_file(at("bin-count/qemu-system-x86_64"),
               "#!/bin/sh\necho 'QEMU emulator version 9.0.0 (Debian, upgraded)'\n", 0755);
    assert_int_equal(
        microvm_qemu_version_cached(at("bin-count/qemu-system-x86_64"), at("vcache"), v), 0);
    assert_int_equal(v[0], 9);
    /* a failing binary is an error, not cached */
    assert_int_equal(microvm_qemu_version_cached(at("bin-bad/qemu-system-x86_64"), at("vcache"), v),
                     -EINVAL);
    assert_int_equal(microvm_qemu_version_cached(at("bin-bad/qemu-system-x86_64"), at("vcache"), v),
                     -EINVAL);
}

/* A minimal x86-64 ELF: one PT_NOTE (Xen PVH entry when pvh), then body (strings). */
static void write_elf(const char *path, bool pvh, const char *body, size_t body_len)
{
    unsigned char img[4096] = { 0 };
    Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
    Elf64_Phdr *ph = (Elf64_Phdr *)(img + sizeof(*eh));
    Elf64_Nhdr *nh = (Elf64_Nhdr *)(img + 256);
    int fd;

    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_machine = EM_X86_64;
    eh->e_phoff = sizeof(*eh);
    eh->e_phentsize = sizeof(*ph);
    eh->e_phnum = 1;
    ph->p_type = PT_NOTE;
    ph->p_offset = 256;
    ph->p_filesz = sizeof(*nh) + 4 + 8;
    nh->n_namesz = 4;
    nh->n_descsz = 8;
    nh->n_type = pvh ? 18 : 5;
    memcpy(img + 256 + sizeof(*nh), "Xen", 4);
    assert_true(body_len < sizeof(img) - 512);
    memcpy(img + 512, body, body_len);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, sizeof(img)), (ssize_t)sizeof(img));
    close(fd);
}

/* [microvm] kernel = PATH: what the backend refuses before QEMU starts, and why. */
static void test_kernel_check(void **state)
{
    static const char all[] = "virtio_mmio.device\0virtio_console\09pnet_virtio\0"
                              "v9fs_inode_cache\0";
    static const char no9p[] = "virtio_mmio.device\0virtio_console\0";
    char reason[MICROVM_REASON_MAX];
    (void)state;

    write_elf(at("k-good"), true, all, sizeof(all));
    assert_int_equal(microvm_kernel_check(at("k-good"), reason, sizeof(reason)), 0);
    write_elf(at("k-nopvh"), false, all, sizeof(all));
    assert_int_equal(microvm_kernel_check(at("k-nopvh"), reason, sizeof(reason)), -ENOEXEC);
    assert_non_null(strstr(reason, "CONFIG_PVH=y"));
    /* Debian's stock kernel: 9p and virtio are modules */
    write_elf(at("k-no9p"), true, no9p, sizeof(no9p));
    assert_int_equal(microvm_kernel_check(at("k-no9p"), reason, sizeof(reason)), -ENOEXEC);
    assert_non_null(strstr(reason, "CONFIG_NET_9P_VIRTIO=y"));
    assert_non_null(strstr(reason, "scripts/build-guest-kernel.sh"));
    /* a bzImage (or anything else) */
    write_file(at("k-bz"),
               "MZ this stands for a bzImage: a boot sector and setup header, no ELF "
               "header, padded to more than an ELF header's 64 bytes",
               0644);
    assert_int_equal(microvm_kernel_check(at("k-bz"), reason, sizeof(reason)), -ENOEXEC);
    assert_non_null(strstr(reason, "not an x86-64 ELF vmlinux"));
    assert_int_equal(microvm_kernel_check(at("no-such-kernel"), reason, sizeof(reason)), -ENOENT);
    assert_int_equal(microvm_kernel_check(at("bin"), reason, sizeof(reason)), -EINVAL);

    /* the kernel scripts/build-guest-kernel.sh built here passes */
    {
        char dir[PATH_MAX];
        struct microvm_kernel k;
        if (microvm_cache_dir_default(dir, sizeof(dir)) == 0 && microvm_kernel_lookup(dir, &k) == 0)
            assert_int_equal(microvm_kernel_check(k.path, reason, sizeof(reason)), 0);
        else
            print_message("# no cached guest kernel: only the fake ones were checked\n");
    }
}

/* [microvm] kernel = stock: the stock/ kernel.meta, and drivers counted as listed modules. */
static void test_stock_kernel(void **state)
{
    /* Debian's: virtio-mmio without the command-line devices, the rest as modules */
    static const char stock[] = "virtio_mmio\0";
    char reason[MICROVM_REASON_MAX];
    struct microvm_kernel k;
    (void)state;

    assert_int_equal(mkdir(at("sc"), 0755), 0);
    assert_int_equal(mkdir(at("sc/stock"), 0755), 0);
    assert_int_equal(mkdir(at("sc/stock/modules-6.1.0-57-amd64"), 0755), 0);
    /* not fetched */
    assert_int_equal(microvm_stock_lookup(at("sc"), &k), -ENOENT);
    write_elf(at("sc/stock/vmlinux-6.1.0-57-amd64"), true, stock, sizeof(stock));
    write_file(at("sc/stock/kernel.meta"),
               "# written by scripts/fetch-stock-kernel.sh\nversion=6.1.0-57-amd64\n"
               "package=linux-image-6.1.0-57-amd64 6.1.192-3\nvmlinux=vmlinux-6.1.0-57-amd64\n"
               "modules=modules-6.1.0-57-amd64\n",
               0644);
    /* no modules.load yet */
    assert_int_equal(microvm_stock_lookup(at("sc"), &k), -ENOENT);
    write_file(at("sc/stock/modules-6.1.0-57-amd64/modules.load"),
               "virtio_ring.ko\nvirtio.ko\nvirtio_mmio.ko\nvirtio_console.ko\n9pnet.ko\n"
               "9pnet_virtio.ko\n9p.ko\n",
               0644);
    assert_int_equal(microvm_stock_lookup(at("sc"), &k), 0);
    assert_string_equal(k.path, at("sc/stock/vmlinux-6.1.0-57-amd64"));
    assert_string_equal(k.modules, at("sc/stock/modules-6.1.0-57-amd64"));
    assert_string_equal(k.version, "6.1.0-57-amd64");
    /* built in only: refused, and the message points at the stock kernel */
    assert_int_equal(microvm_kernel_check(k.path, reason, sizeof(reason)), -ENOEXEC);
    assert_non_null(strstr(reason, "[microvm] kernel = stock"));
    /* with its modules: accepted */
    assert_int_equal(microvm_kernel_check_modules(k.path, k.modules, reason, sizeof(reason)), 0);
    /* a module missing from the list: refused, naming it */
    write_file(at("sc/stock/modules-6.1.0-57-amd64/modules.load"),
               "virtio_ring.ko\nvirtio.ko\nvirtio_mmio.ko\nvirtio_console.ko\n9pnet.ko\n"
               "9p.ko\n",
               0644);
    assert_int_equal(microvm_kernel_check_modules(k.path, k.modules, reason, sizeof(reason)),
                     -ENOEXEC);
    assert_non_null(strstr(reason, "9pnet_virtio.ko"));
    assert_non_null(strstr(reason, "scripts/fetch-stock-kernel.sh"));
    /* a modules= that leaves the cache */
    write_file(at("sc/stock/kernel.meta"), "vmlinux=vmlinux-6.1.0-57-amd64\nmodules=../../etc\n",
               0644);
    assert_int_equal(microvm_stock_lookup(at("sc"), &k), -EINVAL);
    /* a kernel.meta without modules= is not the stock kernel */
    write_file(at("sc/stock/kernel.meta"), "vmlinux=vmlinux-6.1.0-57-amd64\n", 0644);
    assert_int_equal(microvm_stock_lookup(at("sc"), &k), -EINVAL);

    /* the probe with kernel = stock names it in its kernel finding */
    {
        struct microvm_probe_paths pp = { .qemu = at("bin/qemu-system-x86_64"),
                                          .cache_dir = at("sc"),
                                          .kvm_dev = at("no-kvm"),
                                          .sys_module = at("mod"),
                                          .cpuinfo = at("no-cpuinfo"),
                                          .kernel = MICROVM_STOCK_NAME };
        struct microvm_probe p;

        assert_int_equal(microvm_probe_run(&pp, &p), 0);
        assert_false(p.available);
        assert_non_null(strstr(p.reason, "scripts/fetch-stock-kernel.sh"));
        write_file(at("sc/stock/kernel.meta"),
                   "version=6.1.0-57-amd64\nvmlinux=vmlinux-6.1.0-57-amd64\n"
                   "modules=modules-6.1.0-57-amd64\n",
                   0644);
        write_file(at("sc/stock/modules-6.1.0-57-amd64/modules.load"),
                   "virtio_mmio.ko\nvirtio_console.ko\n9pnet_virtio.ko\n9p.ko\n", 0644);
        assert_int_equal(microvm_probe_run(&pp, &p), 0);
        assert_true(p.available);
        assert_true(p.kernel.acpi);
        assert_non_null(strstr(p.findings[MICROVM_FINDING_KERNEL].text, "stock kernel 6.1.0-57"));
    }
}

static void test_real_qemu(void **state)
{
    char path[PATH_MAX];
    unsigned v[3];
    (void)state;

    /* scripts/install-deps.sh installs Debian's QEMU; a machine set up before it did may
     * lack it */
    if (microvm_find_in_path(MICROVM_QEMU_NAME, "/usr/local/bin:/usr/bin:/bin", path,
                             sizeof(path)) < 0) {
        print_message("# skip: no " MICROVM_QEMU_NAME " (run scripts/install-deps.sh)\n");
        skip();
    }
    assert_int_equal(microvm_qemu_version(path, v), 0);
    assert_true(v[0] > MICROVM_QEMU_MIN_MAJOR ||
                (v[0] == MICROVM_QEMU_MIN_MAJOR && v[1] >= MICROVM_QEMU_MIN_MINOR));
}

static void test_cache_dir(void **state)
{
    char d[PATH_MAX];
    (void)state;

    assert_int_equal(microvm_cache_dir_for(0, "/x", "/root", d, sizeof(d)), 0);
    assert_string_equal(d, "/var/cache/bot-bottle/kernel");
    assert_int_equal(microvm_cache_dir_for(1000, "/x/cache", "/home/u", d, sizeof(d)), 0);
    assert_string_equal(d, "/x/cache/bot-bottle/kernel");
    /* a relative XDG_CACHE_HOME is ignored (XDG base directory spec) */
    assert_int_equal(microvm_cache_dir_for(1000, "rel", "/home/u", d, sizeof(d)), 0);
    assert_string_equal(d, "/home/u/.cache/bot-bottle/kernel");
    assert_int_equal(microvm_cache_dir_for(1000, "", "/home/u", d, sizeof(d)), 0);
    assert_string_equal(d, "/home/u/.cache/bot-bottle/kernel");
    assert_int_equal(microvm_cache_dir_for(1000, NULL, NULL, d, sizeof(d)), -ENOENT);
    assert_int_equal(microvm_cache_dir_for(1000, NULL, "relhome", d, sizeof(d)), -ENOENT);
}

static void test_kernel_meta(void **state)
{
    struct microvm_kernel k;
    (void)state;

    assert_int_equal(microvm_kernel_meta_parse("version=6.1.192\nfragment_hash=ab\n"
                                               "vmlinux=vmlinux-6.1.192-bbab\n",
                                               "/c", &k),
                     0);
    assert_string_equal(k.path, "/c/vmlinux-6.1.192-bbab");
    assert_string_equal(k.version, "6.1.192");
    assert_string_equal(k.fragment_hash, "ab");
    /* the vmlinux entry is required and must be a plain file name */
    assert_int_equal(microvm_kernel_meta_parse("version=6.1.192\n", "/c", &k), -EINVAL);
    assert_int_equal(microvm_kernel_meta_parse("vmlinux=../../etc/passwd\n", "/c", &k), -EINVAL);
    assert_int_equal(microvm_kernel_meta_parse("vmlinux=/boot/vmlinuz\n", "/c", &k), -EINVAL);
    assert_int_equal(microvm_kernel_meta_parse("vmlinux=..\n", "/c", &k), -EINVAL);
    assert_int_equal(microvm_kernel_meta_parse("vmlinux=\n", "/c", &k), -EINVAL);
    assert_int_equal(microvm_kernel_meta_parse("#vmlinux=vmlinux-x\n", "/c", &k), -EINVAL);

    assert_int_equal(microvm_kernel_lookup(at("cache"), &k), 0);
    assert_string_equal(k.path, at("cache/vmlinux-6.1.192-bb0123456789abcdef"));
    assert_string_equal(k.version, "6.1.192");
    assert_string_equal(k.fragment_hash, "0123456789abcdef");
    assert_int_equal(microvm_kernel_lookup(at("nocache"), &k), -ENOENT);
    assert_int_equal(microvm_kernel_lookup(at("badcache"), &k), -EINVAL);
    assert_int_equal(microvm_kernel_lookup(at("empty"), &k), -ENOENT);
}

static void test_kvm_gather(void **state)
{
    struct microvm_kvm_facts f;
    (void)state;

    microvm_kvm_gather(at("empty/kvm"), at("mod"), &f);
    assert_int_equal(f.open_err, ENOENT);
    assert_false(f.pvm);
    /* something that opens but is not a KVM device */
    microvm_kvm_gather(at("notkvm"), at("modpvm"), &f);
    assert_int_equal(f.open_err, 0);
    assert_int_equal(f.api_version, -ENOTTY);
    assert_true(f.pvm);
}

struct boot_probe_state {
    int calls;
    int result;
};

static int fake_boot_probe(void *userdata, char *reason, size_t size)
{
    struct boot_probe_state *s = userdata;

    s->calls++;
    if (s->result < 0)
        (void)str_printf(reason, size, "guest did not print its marker within 10 s");
    return s->result;
}

static void test_kvm_decide(void **state)
{
    struct boot_probe_state bp = { 0, 0 };
    char reason[MICROVM_REASON_MAX];
    (void)state;

    struct microvm_kvm_facts good = { .open_err = 0, .api_version = 12, .pvm = false };
    assert_true(microvm_kvm_decide("/dev/kvm", &good, NULL, NULL, reason, sizeof(reason)));
    assert_string_equal(reason, "KVM (/dev/kvm, API version 12)");
    assert_true(
        microvm_kvm_decide("/dev/kvm", &good, fake_boot_probe, &bp, reason, sizeof(reason)));
    assert_int_equal(bp.calls, 1);

    /* the PVM host: /dev/kvm works, but it cannot boot our kernel */
    struct microvm_kvm_facts pvm = { .open_err = 0, .api_version = 12, .pvm = true };
    bp.calls = 0;
    assert_false(
        microvm_kvm_decide("/dev/kvm", &pvm, fake_boot_probe, &bp, reason, sizeof(reason)));
    assert_string_equal(reason, "no usable KVM (PVM host): running under TCG emulation");
    assert_int_equal(bp.calls, 0); /* no point booting there */

    struct microvm_kvm_facts missing = { .open_err = ENOENT, .api_version = -EBADF };
    assert_false(microvm_kvm_decide("/dev/kvm", &missing, NULL, NULL, reason, sizeof(reason)));
    assert_string_equal(
        reason, "no usable KVM (/dev/kvm: No such file or directory): running under TCG emulation");

    struct microvm_kvm_facts denied = { .open_err = EACCES, .api_version = -EBADF };
    assert_false(microvm_kvm_decide("/dev/kvm", &denied, NULL, NULL, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "kvm group"));

    struct microvm_kvm_facts notdev = { .open_err = 0, .api_version = -ENOTTY };
    assert_false(microvm_kvm_decide("/x", &notdev, NULL, NULL, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "not a KVM device"));

    struct microvm_kvm_facts oldapi = { .open_err = 0, .api_version = 11 };
    assert_false(microvm_kvm_decide("/dev/kvm", &oldapi, NULL, NULL, reason, sizeof(reason)));
    assert_non_null(strstr(reason, "API version 11, want 12"));

    /* the boot probe has the last word */
    bp = (struct boot_probe_state){ 0, -EIO };
    assert_false(
        microvm_kvm_decide("/dev/kvm", &good, fake_boot_probe, &bp, reason, sizeof(reason)));
    assert_string_equal(reason, "no usable KVM (a test boot failed: guest did not print its "
                                "marker within 10 s): running under TCG emulation");
}

static void test_cpuinfo(void **state)
{
    uint64_t khz = 0;
    (void)state;

    assert_int_equal(microvm_cpuinfo_khz_parse("cpu MHz\t\t: 2445.406\n", &khz), 0);
    assert_int_equal(khz, 2445406);
    assert_int_equal(microvm_cpuinfo_khz_parse("x: y\ncpu MHz : 3000\n", &khz), 0);
    assert_int_equal(khz, 3000000);
    assert_int_equal(microvm_cpuinfo_khz_parse("cpu MHz\t: 1999.9999\n", &khz), 0);
    assert_int_equal(khz, 1999999);
    assert_int_equal(microvm_cpuinfo_khz_parse("cpu MHz\t: 0.000\n", &khz), -EINVAL);
    assert_int_equal(microvm_cpuinfo_khz_parse("cpu MHz\t: fast\n", &khz), -EINVAL);
    assert_int_equal(microvm_cpuinfo_khz_parse("BogoMIPS: 48.00\n", &khz), -ENOENT);
    assert_int_equal(microvm_host_cpu_khz(at("cpuinfo"), &khz), 0);
    assert_int_equal(khz, 2445406); /* the first CPU's */
    assert_int_equal(microvm_host_cpu_khz(at("cpuinfo-none"), &khz), -ENOENT);
}

static struct microvm_probe_paths fake_paths(void)
{
    return (struct microvm_probe_paths){
        .path_env = at("bin"),
        .kvm_dev = at("empty/kvm"),
        .sys_module = at("mod"),
        .cache_dir = at("cache"),
        .cpuinfo = at("cpuinfo"),
    };
}

static void test_probe_run(void **state)
{
    struct microvm_probe_paths paths = fake_paths();
    struct microvm_probe *p = calloc(1, sizeof(*p));
    enum microvm_accel accel;
    char reason[MICROVM_REASON_MAX];
    (void)state;

    assert_non_null(p);
    /* everything there, no /dev/kvm: available, under TCG, and it says so */
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_true(p->available);
    assert_false(p->kvm_usable);
    assert_int_equal(p->accel, MICROVM_ACCEL_TCG);
    assert_non_null(strstr(p->reason, "no usable KVM ("));
    assert_non_null(strstr(p->reason, "running under TCG emulation"));
    assert_string_equal(p->qemu, at("bin/qemu-system-x86_64"));
    assert_int_equal(p->qemu_version[0], 7);
    assert_string_equal(p->kernel.version, "6.1.192");
    assert_int_equal(p->cpu_khz, 2445406);
    assert_true(p->findings[MICROVM_FINDING_QEMU].ok);
    char want[PATH_MAX + 32];
    assert_int_equal(
        str_printf(want, sizeof(want), "QEMU 7.2.22 at %s", at("bin/qemu-system-x86_64")), 0);
    assert_string_equal(p->findings[MICROVM_FINDING_QEMU].text, want);
    assert_true(p->findings[MICROVM_FINDING_KERNEL].ok);
    assert_false(p->findings[MICROVM_FINDING_KVM].ok);
    assert_true(p->findings[MICROVM_FINDING_CPU].ok);
    assert_string_equal(microvm_finding_name(MICROVM_FINDING_KVM), "kvm");

    /* --accel: auto and tcg work, kvm is refused with what to do instead */
    assert_int_equal(
        microvm_accel_choose(MICROVM_ACCEL_REQ_AUTO, p, &accel, reason, sizeof(reason)), 0);
    assert_int_equal(accel, MICROVM_ACCEL_TCG);
    assert_int_equal(microvm_accel_choose(MICROVM_ACCEL_REQ_TCG, p, &accel, reason, sizeof(reason)),
                     0);
    assert_int_equal(accel, MICROVM_ACCEL_TCG);
    assert_int_equal(microvm_accel_choose(MICROVM_ACCEL_REQ_KVM, p, &accel, reason, sizeof(reason)),
                     -ENODEV);
    assert_non_null(strstr(reason, "--accel tcg"));

    /* a PVM host with a /dev/kvm that opens: still TCG, with the PVM sentence */
    paths.kvm_dev = at("notkvm");
    paths.sys_module = at("modpvm");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_true(p->available);
    assert_int_equal(p->accel, MICROVM_ACCEL_TCG);
    assert_string_equal(p->reason, "no usable KVM (PVM host): running under TCG emulation");
    /* --accel kvm on a PVM host: refused, saying why and what to use */
    assert_int_equal(microvm_accel_choose(MICROVM_ACCEL_REQ_KVM, p, &accel, reason, sizeof(reason)),
                     -ENODEV);
    assert_string_equal(reason, "--accel kvm: no usable KVM (PVM host), so the VM cannot run "
                                "under KVM here; use --accel tcg (emulation, slow) or auto");

    /* no QEMU */
    paths = fake_paths();
    paths.path_env = at("empty");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_false(p->available);
    assert_non_null(strstr(p->reason, "qemu-system-x86_64 not found"));
    assert_non_null(strstr(p->reason, "scripts/install-deps.sh"));

    /* QEMU too old */
    paths.path_env = at("bin-old");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_false(p->available);
    assert_non_null(strstr(p->reason, "QEMU 6.2.0"));
    assert_non_null(strstr(p->reason, "older than 7.2"));

    /* an explicit QEMU path is used as given */
    paths.path_env = at("empty");
    paths.qemu = at("bin/qemu-system-x86_64");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_true(p->available);

    /* no kernel */
    paths = fake_paths();
    paths.cache_dir = at("empty");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_false(p->available);
    assert_non_null(strstr(p->reason, "scripts/build-guest-kernel.sh"));
    paths.cache_dir = at("badcache");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_false(p->available);
    assert_non_null(strstr(p->reason, "--force"));

    /* no cpu MHz: the finding says TCG boots may hang */
    paths = fake_paths();
    paths.cpuinfo = at("cpuinfo-none");
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    assert_true(p->available);
    assert_int_equal(p->cpu_khz, 0);
    assert_false(p->findings[MICROVM_FINDING_CPU].ok);
    free(p);
}

static void test_this_host(void **state)
{
    struct microvm_probe *p = calloc(1, sizeof(*p));
    (void)state;

    assert_non_null(p);
    /* Whatever this host is, the decision must be consistent with its facts: on a kvm-pvm
     * host (the project's build machines) KVM must never be chosen. */
    struct microvm_probe_paths paths = { .cache_dir = at("cache") };
    assert_int_equal(microvm_probe_run(&paths, p), 0);
    if (access("/sys/module/kvm_pvm", F_OK) == 0) {
        assert_false(p->kvm_usable);
        assert_string_equal(p->findings[MICROVM_FINDING_KVM].text,
                            "no usable KVM (PVM host): running under TCG emulation");
    }
    if (access("/dev/kvm", F_OK) != 0)
        assert_false(p->kvm_usable);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accel_names),
        cmocka_unit_test(test_qemu_parse_version),
        cmocka_unit_test(test_find_in_path),
        cmocka_unit_test(test_qemu_version_exec),
        cmocka_unit_test(test_qemu_version_cached),
        cmocka_unit_test(test_kernel_check),
        cmocka_unit_test(test_stock_kernel),
        cmocka_unit_test(test_real_qemu),
        cmocka_unit_test(test_cache_dir),
        cmocka_unit_test(test_kernel_meta),
        cmocka_unit_test(test_kvm_gather),
        cmocka_unit_test(test_kvm_decide),
        cmocka_unit_test(test_cpuinfo),
        cmocka_unit_test(test_probe_run),
        cmocka_unit_test(test_this_host),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
