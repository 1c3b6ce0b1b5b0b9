/* The microvm backend's host probe (probe.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <elf.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/microvm/probe.h"
#include "common/cleanup.h"
#include "common/macro.h"
#include "common/str.h"

#define QEMU_VERSION_OUT_MAX 4096
#define QEMU_VERSION_TIMEOUT_MS 5000

static const char *const accel_names[MICROVM_ACCEL_MAX] = {
    [MICROVM_ACCEL_TCG] = "tcg",
    [MICROVM_ACCEL_KVM] = "kvm",
};

const char *microvm_accel_name(enum microvm_accel a)
{
    return (unsigned)a < MICROVM_ACCEL_MAX ? accel_names[a] : "?";
}

int microvm_accel_request_from_string(const char *s, enum microvm_accel_request *ret)
{
    if (strcmp(s, "auto") == 0)
        *ret = MICROVM_ACCEL_REQ_AUTO;
    else if (strcmp(s, "kvm") == 0)
        *ret = MICROVM_ACCEL_REQ_KVM;
    else if (strcmp(s, "tcg") == 0)
        *ret = MICROVM_ACCEL_REQ_TCG;
    else
        return -EINVAL;
    return 0;
}

static const char *const finding_names[MICROVM_FINDING_MAX_ID] = {
    [MICROVM_FINDING_QEMU] = "qemu",
    [MICROVM_FINDING_KERNEL] = "kernel",
    [MICROVM_FINDING_KVM] = "kvm",
    [MICROVM_FINDING_CPU] = "cpu",
};

const char *microvm_finding_name(enum microvm_finding_id id)
{
    return (unsigned)id < MICROVM_FINDING_MAX_ID ? finding_names[id] : "?";
}

/* ---- QEMU ---- */

int microvm_find_in_path(const char *name, const char *path_env, char *ret, size_t size)
{
    const char *p = path_env;
    bool too_long = false;

    if (!name[0] || strchr(name, '/'))
        return -EINVAL;
    while (p && *p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char cand[PATH_MAX];
        struct stat st;

        /* empty elements would mean ".": never search the current directory */
        if (len > 0 && p[0] == '/') {
            if (str_printf(cand, sizeof(cand), "%.*s/%s", (int)len, p, name) < 0) {
                too_long = true;
            } else if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
                if (str_printf(ret, size, "%s", cand) < 0)
                    return -ENAMETOOLONG;
                return 0;
            }
        }
        p = colon ? colon + 1 : NULL;
    }
    return too_long ? -ENAMETOOLONG : -ENOENT;
}

static int parse_uint(const char **pp, unsigned *ret)
{
    const char *p = *pp;
    uint64_t v;
    size_t n = 0;

    while (ascii_isdigit(p[n]))
        n++;
    if (n == 0 || str_to_u64(slice_make(p, n), 9999, &v) < 0)
        return -EINVAL;
    *ret = (unsigned)v;
    *pp = p + n;
    return 0;
}

int microvm_qemu_parse_version(const char *text, unsigned ret[3])
{
    static const char prefix[] = "QEMU emulator version ";
    const char *line = text;

    while (line && *line) {
        if (strncmp(line, prefix, sizeof(prefix) - 1) == 0) {
            const char *p = line + sizeof(prefix) - 1;
            unsigned v[3] = { 0, 0, 0 };

            if (parse_uint(&p, &v[0]) < 0 || *p++ != '.' || parse_uint(&p, &v[1]) < 0)
                return -EINVAL;
            if (*p == '.' && (p++, parse_uint(&p, &v[2]) < 0))
                return -EINVAL;
            memcpy(ret, v, sizeof(v));
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -EINVAL;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int microvm_qemu_version(const char *qemu, unsigned ret[3])
{
    char out[QEMU_VERSION_OUT_MAX];
    size_t len = 0;
    int pipefd[2], status, r = 0;
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -errno;
    pid = fork();
    if (pid < 0) {
        r = -errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return r;
    }
    if (pid == 0) {
        char *const argv[] = { (char *)qemu, (char *)"-version", NULL };
        char *const envp[] = { (char *)"LC_ALL=C", NULL };
        int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pipefd[1], 1) < 0 || dup2(devnull, 2) < 0)
            _exit(127);
        execve(qemu, argv, envp);
        _exit(127);
    }
    close(pipefd[1]);

    int64_t deadline = now_ms() + QEMU_VERSION_TIMEOUT_MS;
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = { .fd = pipefd[0], .events = POLLIN };

        if (left <= 0) {
            r = -ETIMEDOUT;
            break;
        }
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        if (n == 0)
            continue;
        ssize_t k = RETRY_EINTR(read(pipefd[0], out + len, sizeof(out) - 1 - len));
        if (k < 0) {
            r = -errno;
            break;
        }
        if (k == 0)
            break;
        len += (size_t)k;
        if (len == sizeof(out) - 1)
            break; /* the version line is at the start; ignore the rest */
    }
    close(pipefd[0]);
    if (r < 0)
        kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return r < 0 ? r : -errno;
    }
    if (r < 0)
        return r;
    out[len] = '\0';
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && len == 0)
        return -ENOEXEC;
    return microvm_qemu_parse_version(out, ret);
}

/*
 * The version of one QEMU binary does not change while the binary does not: the answer is
 * kept per process (create() probes again after probe()) and in cache_dir/qemu.version,
 * keyed by the binary's path, device, inode, size and mtime, so `run` does not exec
 * `qemu -version` (40-100 ms here) at all once it is known.
 */
#define QEMU_VERSION_CACHE "qemu.version"

static int qemu_version_key(const char *qemu, char *ret, size_t size)
{
    struct stat st;

    if (stat(qemu, &st) < 0)
        return -errno;
    return str_printf(ret, size, "%s\t%llu\t%llu\t%lld\t%lld.%09ld", qemu,
                      (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                      (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                      (long)st.st_mtim.tv_nsec);
}

static int qemu_version_cache_read(const char *file, const char *key, unsigned ret[3])
{
    char text[PATH_MAX + 256];
    size_t klen = strlen(key);
    ssize_t n;
    _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return -errno;
    n = RETRY_EINTR(read(fd, text, sizeof(text) - 1));
    if (n < 0)
        return -errno;
    text[n] = '\0';
    if ((size_t)n <= klen + 1 || memcmp(text, key, klen) != 0 || text[klen] != '\n')
        return -ESTALE;
    /* the line after the key is `qemu -version`'s first line, parsed as when fresh */
    return microvm_qemu_parse_version(text + klen + 1, ret);
}

static void qemu_version_cache_write(const char *dir, const char *file, const char *key,
                                     const unsigned v[3])
{
    char tmp[PATH_MAX], text[PATH_MAX + 256];
    size_t n;
    _cleanup_close_ int fd = -1;

    if (str_printf(tmp, sizeof(tmp), "%s/." QEMU_VERSION_CACHE ".%d", dir, (int)getpid()) < 0 ||
        str_printf(text, sizeof(text), "%s\nQEMU emulator version %u.%u.%u\n", key, v[0], v[1],
                   v[2]) < 0)
        return;
    n = strlen(text);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return; /* no cache directory yet (no kernel built): nothing to keep */
    if (RETRY_EINTR(write(fd, text, n)) != (ssize_t)n || rename(tmp, file) < 0)
        (void)unlink(tmp);
}

int microvm_qemu_version_cached(const char *qemu, const char *cache_dir, unsigned ret[3])
{
    static char memo_key[PATH_MAX + 128];
    static unsigned memo[3];
    char key[PATH_MAX + 128], file[PATH_MAX];
    bool have_file;
    int r;

    if (qemu_version_key(qemu, key, sizeof(key)) < 0 || strchr(qemu, '\n'))
        return microvm_qemu_version(qemu, ret);
    if (memo_key[0] && strcmp(memo_key, key) == 0) {
        memcpy(ret, memo, sizeof(memo));
        return 0;
    }
    have_file = cache_dir && cache_dir[0] &&
                str_printf(file, sizeof(file), "%s/" QEMU_VERSION_CACHE, cache_dir) >= 0;
    if (!have_file || qemu_version_cache_read(file, key, ret) < 0) {
        r = microvm_qemu_version(qemu, ret);
        if (r < 0)
            return r;
        if (have_file)
            qemu_version_cache_write(cache_dir, file, key, ret);
    }
    (void)str_printf(memo_key, sizeof(memo_key), "%s", key);
    memcpy(memo, ret, sizeof(memo));
    return 0;
}

/* ---- guest kernel ---- */

int microvm_cache_dir_for(uid_t uid, const char *xdg_cache_home, const char *home, char *ret,
                          size_t size)
{
    if (uid == 0)
        return str_printf(ret, size, "/var/cache/bot-bottle/kernel");
    /* relative values are ignored, as the XDG base directory spec says */
    if (xdg_cache_home && xdg_cache_home[0] == '/')
        return str_printf(ret, size, "%s/bot-bottle/kernel", xdg_cache_home);
    if (home && home[0] == '/')
        return str_printf(ret, size, "%s/.cache/bot-bottle/kernel", home);
    return -ENOENT;
}

int microvm_cache_dir_default(char *ret, size_t size)
{
    return microvm_cache_dir_for(geteuid(), getenv("XDG_CACHE_HOME"), getenv("HOME"), ret, size);
}

static bool plain_file_name(const char *s, size_t len)
{
    if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] == '/' || (unsigned char)s[i] < 0x20)
            return false;
    return true;
}

int microvm_kernel_meta_parse(const char *text, const char *cache_dir, struct microvm_kernel *ret)
{
    struct microvm_kernel k = { 0 };
    bool have_vmlinux = false;
    const char *line = text;

    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        const char *eq = memchr(line, '=', len);

        if (len > 0 && line[0] != '#' && eq) {
            struct slice key = slice_make(line, (size_t)(eq - line));
            const char *v = eq + 1;
            size_t vlen = len - (size_t)(v - line);

            if (slice_eq(key, SLICE_LIT("vmlinux"))) {
                if (!plain_file_name(v, vlen) ||
                    str_printf(k.path, sizeof(k.path), "%s/%.*s", cache_dir, (int)vlen, v) < 0)
                    return -EINVAL;
                have_vmlinux = true;
            } else if (slice_eq(key, SLICE_LIT("version"))) {
                if (str_printf(k.version, sizeof(k.version), "%.*s", (int)vlen, v) < 0)
                    return -EINVAL;
            } else if (slice_eq(key, SLICE_LIT("modules"))) {
                if (!plain_file_name(v, vlen) || str_printf(k.modules, sizeof(k.modules), "%s/%.*s",
                                                            cache_dir, (int)vlen, v) < 0)
                    return -EINVAL;
            } else if (slice_eq(key, SLICE_LIT("fragment_hash"))) {
                if (str_printf(k.fragment_hash, sizeof(k.fragment_hash), "%.*s", (int)vlen, v) < 0)
                    return -EINVAL;
            }
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    if (!have_vmlinux)
        return -EINVAL;
    *ret = k;
    return 0;
}

int microvm_kernel_lookup(const char *cache_dir, struct microvm_kernel *ret)
{
    char meta[PATH_MAX], text[MICROVM_KERNEL_META_MAX];
    _cleanup_close_ int fd = -1;
    struct microvm_kernel k;
    struct stat st;
    size_t len = 0;
    int r;

    r = str_printf(meta, sizeof(meta), "%s/%s", cache_dir, MICROVM_KERNEL_META);
    if (r < 0)
        return r;
    fd = open(meta, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n = RETRY_EINTR(read(fd, text + len, sizeof(text) - 1 - len));
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == sizeof(text) - 1)
            return -EINVAL; /* far larger than the script ever writes */
    }
    text[len] = '\0';
    r = microvm_kernel_meta_parse(text, cache_dir, &k);
    if (r < 0)
        return r;
    if (stat(k.path, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    if (access(k.path, R_OK) < 0)
        return -errno;
    *ret = k;
    return 0;
}

int microvm_stock_lookup(const char *cache_dir, struct microvm_kernel *ret)
{
    char dir[PATH_MAX], load[PATH_MAX];
    struct microvm_kernel k;
    int r;

    r = str_printf(dir, sizeof(dir), "%s/" MICROVM_STOCK_SUBDIR, cache_dir);
    if (r < 0)
        return r;
    r = microvm_kernel_lookup(dir, &k);
    if (r < 0)
        return r;
    /* microvm_kernel_lookup() fails with -errno, never 0 (the analyzer thinks errno may be 0) */
    /* NOLINTNEXTLINE(clang-analyzer-core.uninitialized.Branch) */
    if (!k.modules[0])
        return -EINVAL;
    r = str_printf(load, sizeof(load), "%s/" MICROVM_MODULES_LOAD, k.modules);
    if (r < 0)
        return r;
    if (access(load, R_OK) < 0)
        return -errno;
    *ret = k;
    return 0;
}

/*
 * What a user's own kernel ([microvm] kernel) must have for this backend, checked before
 * QEMU starts so that a stock kernel fails with a sentence instead of a silent guest: an x86-64
 * ELF vmlinux with the Xen PVH entry note (QEMU boots it directly; no bzImage, no firmware),
 * and, built in, the drivers the guest needs before anything can be loaded. Built-in code
 * leaves its module name in the image; a driver built as a module does not.
 */
static const struct {
    const char *needle;
    const char *what;
    const char *module; /* the module that stands in for it (a kernel booted with ACPI) */
} kernel_needs[] = {
    { "virtio_mmio.device",
      "virtio-mmio devices from the command line (CONFIG_VIRTIO_MMIO=y, "
      "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y)",
      "virtio_mmio.ko" },
    { "virtio_console", "the virtio console and ports (CONFIG_VIRTIO_CONSOLE=y)",
      "virtio_console.ko" },
    { "9pnet_virtio", "9p over virtio (CONFIG_NET_9P=y, CONFIG_NET_9P_VIRTIO=y)",
      "9pnet_virtio.ko" },
    { "v9fs_inode_cache", "the 9p file system (CONFIG_9P_FS=y)", "9p.ko" },
};

/* modules_dir/modules.load names module (one file name a line). */
static bool modules_list_has(const char *modules_dir, const char *module)
{
    char path[PATH_MAX], text[8192];
    _cleanup_close_ int fd = -1;
    size_t len = 0, mlen = strlen(module);
    ssize_t n;

    if (str_printf(path, sizeof(path), "%s/" MICROVM_MODULES_LOAD, modules_dir) < 0)
        return false;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return false;
    while ((n = RETRY_EINTR(read(fd, text + len, sizeof(text) - 1 - len))) > 0)
        len += (size_t)n;
    text[len] = '\0';
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t ll = nl ? (size_t)(nl - l) : strlen(l);

        if (ll == mlen && memcmp(l, module, mlen) == 0)
            return true;
        if (!nl)
            break;
        l = nl + 1;
    }
    return false;
}

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MICROVM_KERNEL_MAX_BYTES (512ULL << 20)

static bool elf_has_pvh_note(const unsigned char *p, size_t size)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)p;

    if (eh->e_phoff > size || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_phnum > (size - eh->e_phoff) / sizeof(Elf64_Phdr))
        return false;
    for (size_t i = 0; i < eh->e_phnum; i++) {
        const Elf64_Phdr *ph = (const Elf64_Phdr *)(p + eh->e_phoff + i * sizeof(Elf64_Phdr));
        size_t off, end;

        if (ph->p_type != PT_NOTE || ph->p_offset > size || ph->p_filesz > size - ph->p_offset)
            continue;
        off = ph->p_offset;
        end = off + ph->p_filesz;
        while (end - off >= sizeof(Elf64_Nhdr)) {
            const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(p + off);
            size_t name = (nh->n_namesz + 3) & ~(size_t)3, desc = (nh->n_descsz + 3) & ~(size_t)3;

            off += sizeof(*nh);
            if (name > end - off || desc > end - off - name)
                break;
            if (nh->n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh->n_namesz == 4 &&
                memcmp(p + off, "Xen", 4) == 0)
                return true;
            off += name + desc;
        }
    }
    return false;
}

int microvm_kernel_check(const char *path, char *reason, size_t reason_size)
{
    return microvm_kernel_check_modules(path, NULL, reason, reason_size);
}

int microvm_kernel_check_modules(const char *path, const char *modules_dir, char *reason,
                                 size_t reason_size)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    const unsigned char *p;
    struct stat st;
    int r = 0;

    if (fd < 0 || fstat(fd, &st) < 0) {
        r = -errno;
        (void)str_printf(reason, reason_size, "cannot read the guest kernel %s (%s)", path,
                         strerror(-r));
        return r;
    }
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(Elf64_Ehdr) ||
        (uint64_t)st.st_size > MICROVM_KERNEL_MAX_BYTES) {
        (void)str_printf(reason, reason_size,
                         "the guest kernel %s is not a regular file of a kernel's size", path);
        return -EINVAL;
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        r = -errno;
        (void)str_printf(reason, reason_size, "cannot read the guest kernel %s (%s)", path,
                         strerror(-r));
        return r;
    }
    if (memcmp(p, ELFMAG, SELFMAG) != 0 || p[EI_CLASS] != ELFCLASS64 ||
        ((const Elf64_Ehdr *)p)->e_machine != EM_X86_64) {
        (void)str_printf(reason, reason_size,
                         "the guest kernel %s is not an x86-64 ELF vmlinux (a bzImage/vmlinuz "
                         "cannot be booted without firmware; give the uncompressed vmlinux, "
                         "e.g. from scripts/build-guest-kernel.sh)",
                         path);
        r = -ENOEXEC;
    } else if (!elf_has_pvh_note(p, (size_t)st.st_size)) {
        (void)str_printf(reason, reason_size,
                         "the guest kernel %s has no PVH entry note (CONFIG_PVH=y), so QEMU "
                         "cannot boot it directly",
                         path);
        r = -ENOEXEC;
    } else {
        for (size_t i = 0; i < ARRAY_SIZE(kernel_needs); i++) {
            if (!memmem(p, (size_t)st.st_size, kernel_needs[i].needle,
                        strlen(kernel_needs[i].needle) + 1)) {
                if (modules_dir && modules_list_has(modules_dir, kernel_needs[i].module))
                    continue;
                if (modules_dir) {
                    (void)str_printf(reason, reason_size,
                                     "the guest kernel %s lacks %s, built in or as %s in "
                                     "%s/" MICROVM_MODULES_LOAD
                                     "; fetch it again with scripts/fetch-stock-kernel.sh --force",
                                     path, kernel_needs[i].what, kernel_needs[i].module,
                                     modules_dir);
                    r = -ENOEXEC;
                    break;
                }
                (void)str_printf(reason, reason_size,
                                 "the guest kernel %s lacks %s built in (modules cannot be "
                                 "loaded before the shares are mounted); build one with "
                                 "scripts/build-guest-kernel.sh, or boot Debian's with its "
                                 "modules: [microvm] kernel = " MICROVM_STOCK_NAME,
                                 path, kernel_needs[i].what);
                r = -ENOEXEC;
                break;
            }
        }
    }
    munmap((void *)p, (size_t)st.st_size);
    return r;
}

/* ---- KVM ---- */

void microvm_kvm_gather(const char *kvm_dev, const char *sys_module, struct microvm_kvm_facts *ret)
{
    char pvm[PATH_MAX];
    struct microvm_kvm_facts f = { .open_err = 0, .api_version = -EBADF, .pvm = false };
    int fd = open(kvm_dev, O_RDWR | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        f.open_err = errno;
    } else {
        int v = ioctl(fd, KVM_GET_API_VERSION, 0);
        f.api_version = v < 0 ? -errno : v;
        close(fd);
    }
    if (str_printf(pvm, sizeof(pvm), "%s/kvm_pvm", sys_module) == 0 && access(pvm, F_OK) == 0)
        f.pvm = true;
    *ret = f;
}

bool microvm_kvm_decide(const char *kvm_dev, const struct microvm_kvm_facts *facts,
                        microvm_boot_probe_fn boot_probe, void *userdata, char *reason,
                        size_t reason_size)
{
    static const char tail[] = "): running under TCG emulation";

    if (facts->open_err) {
        (void)str_printf(reason, reason_size, "no usable KVM (%s: %s%s%s", kvm_dev,
                         strerror(facts->open_err),
                         facts->open_err == EACCES ? "; add yourself to the kvm group" : "", tail);
        return false;
    }
    if (facts->pvm) {
        /* PVM runs only PVM-enlightened guests; ours dies in KVM's instruction emulator
         * (docs/microvm.md). */
        (void)str_printf(reason, reason_size, "no usable KVM (PVM host%s", tail);
        return false;
    }
    if (facts->api_version < 0) {
        (void)str_printf(reason, reason_size, "no usable KVM (%s is not a KVM device: %s%s",
                         kvm_dev, strerror(-facts->api_version), tail);
        return false;
    }
    if (facts->api_version != MICROVM_KVM_API_VERSION) {
        (void)str_printf(reason, reason_size, "no usable KVM (%s: KVM API version %d, want %d%s",
                         kvm_dev, facts->api_version, MICROVM_KVM_API_VERSION, tail);
        return false;
    }
    if (boot_probe) {
        char why[MICROVM_REASON_MAX / 2] = "";
        int r = boot_probe(userdata, why, sizeof(why));
        if (r < 0) {
            (void)str_printf(reason, reason_size, "no usable KVM (a test boot failed: %s%s",
                             why[0] ? why : strerror(-r), tail);
            return false;
        }
    }
    (void)str_printf(reason, reason_size, "KVM (%s, API version %d)", kvm_dev, facts->api_version);
    return true;
}

/* ---- host CPU ---- */

int microvm_cpuinfo_khz_parse(const char *text, uint64_t *ret)
{
    const char *line = text;

    while (line && *line) {
        if (strncmp(line, "cpu MHz", 7) == 0) {
            const char *p = line + 7;
            uint64_t mhz, frac = 0;
            size_t n = 0, fn = 0;

            while (*p == ' ' || *p == '\t')
                p++;
            if (*p++ != ':')
                return -EINVAL;
            while (*p == ' ')
                p++;
            while (ascii_isdigit(p[n]))
                n++;
            if (str_to_u64(slice_make(p, n), 1000000, &mhz) < 0)
                return -EINVAL;
            p += n;
            if (*p == '.') {
                p++;
                /* three decimals are kHz; more are noise */
                while (fn < 3 && ascii_isdigit(p[fn])) {
                    frac = frac * 10 + (uint64_t)(p[fn] - '0');
                    fn++;
                }
                for (size_t i = fn; i < 3; i++)
                    frac *= 10;
            }
            if (mhz == 0)
                return -EINVAL;
            *ret = mhz * 1000 + frac;
            return 0;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -ENOENT;
}

int microvm_host_cpu_khz(const char *cpuinfo_path, uint64_t *ret)
{
    /* the first processor's block is all we need */
    char text[8192];
    _cleanup_close_ int fd = open(cpuinfo_path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t len = 0;

    if (fd < 0)
        return -errno;
    while (len < sizeof(text) - 1) {
        ssize_t n = RETRY_EINTR(read(fd, text + len, sizeof(text) - 1 - len));
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    text[len] = '\0';
    return microvm_cpuinfo_khz_parse(text, ret);
}

/* ---- all together ---- */

#define FINDING(p, id, good, ...)                                                                  \
    do {                                                                                           \
        (p)->findings[id].ok = (good);                                                             \
        (void)str_printf((p)->findings[id].text, sizeof((p)->findings[id].text), __VA_ARGS__);     \
    } while (0)

static void probe_qemu(const struct microvm_probe_paths *paths, struct microvm_probe *p, bool *ok)
{
    const char *path_env = paths->path_env ? paths->path_env : getenv("PATH");
    int r;

    *ok = false;
    if (!path_env)
        path_env = "/usr/local/bin:/usr/bin:/bin";
    if (paths->qemu) {
        r = str_printf(p->qemu, sizeof(p->qemu), "%s", paths->qemu);
        if (r == 0 && access(p->qemu, X_OK) < 0) {
            FINDING(p, MICROVM_FINDING_QEMU, false,
                    "QEMU %s: %s (install Debian's qemu-system-x86: scripts/install-deps.sh)",
                    paths->qemu, strerror(errno));
            p->qemu[0] = '\0';
            return;
        }
    } else
        r = microvm_find_in_path(MICROVM_QEMU_NAME, path_env, p->qemu, sizeof(p->qemu));
    if (r < 0) {
        FINDING(p, MICROVM_FINDING_QEMU, false,
                "%s not found in PATH (install Debian's qemu-system-x86: "
                "scripts/install-deps.sh)",
                MICROVM_QEMU_NAME);
        p->qemu[0] = '\0';
        return;
    }
    {
        char dir[PATH_MAX];
        if (paths->cache_dir)
            r = str_printf(dir, sizeof(dir), "%s", paths->cache_dir);
        else
            r = microvm_cache_dir_default(dir, sizeof(dir));
        r = microvm_qemu_version_cached(p->qemu, r < 0 ? NULL : dir, p->qemu_version);
    }
    if (r < 0) {
        FINDING(p, MICROVM_FINDING_QEMU, false,
                "%s -version failed (%s); reinstall qemu-system-x86: scripts/install-deps.sh",
                p->qemu, strerror(-r));
        return;
    }
    unsigned *v = p->qemu_version;
    if (v[0] < MICROVM_QEMU_MIN_MAJOR ||
        (v[0] == MICROVM_QEMU_MIN_MAJOR && v[1] < MICROVM_QEMU_MIN_MINOR)) {
        FINDING(p, MICROVM_FINDING_QEMU, false,
                "QEMU %u.%u.%u at %s is older than %d.%d, the oldest this backend was tested "
                "with",
                v[0], v[1], v[2], p->qemu, MICROVM_QEMU_MIN_MAJOR, MICROVM_QEMU_MIN_MINOR);
        return;
    }
    FINDING(p, MICROVM_FINDING_QEMU, true, "QEMU %u.%u.%u at %s", v[0], v[1], v[2], p->qemu);
    *ok = true;
}

static void probe_kernel(const struct microvm_probe_paths *paths, struct microvm_probe *p, bool *ok)
{
    char dir[PATH_MAX];
    int r;

    *ok = false;
    if (paths->cache_dir)
        r = str_printf(dir, sizeof(dir), "%s", paths->cache_dir);
    else
        r = microvm_cache_dir_default(dir, sizeof(dir));
    if (r < 0) {
        FINDING(p, MICROVM_FINDING_KERNEL, false,
                "no cache directory for the guest kernel (set HOME or XDG_CACHE_HOME)");
        return;
    }
    if (paths->kernel && strcmp(paths->kernel, MICROVM_STOCK_NAME) == 0) {
        char why[MICROVM_REASON_MAX];

        r = microvm_stock_lookup(dir, &p->kernel);
        if (r < 0) {
            FINDING(p, MICROVM_FINDING_KERNEL, false,
                    "[microvm] kernel = stock, but Debian's kernel is not usable in "
                    "%s/" MICROVM_STOCK_SUBDIR
                    " (%s; fetch it once: scripts/fetch-stock-kernel.sh)",
                    dir, r == -ENOENT ? "not fetched" : strerror(-r));
            return;
        }
        r = microvm_kernel_check_modules(p->kernel.path, p->kernel.modules, why, sizeof(why));
        if (r < 0) {
            FINDING(p, MICROVM_FINDING_KERNEL, false, "[microvm] kernel = stock: %s", why);
            return;
        }
        p->kernel.acpi = true;
        FINDING(p, MICROVM_FINDING_KERNEL, true,
                "Debian's stock kernel %s at %s, modules from %s ([microvm] kernel = stock)",
                p->kernel.version[0] ? p->kernel.version : "?", p->kernel.path, p->kernel.modules);
        *ok = true;
        return;
    }
    r = microvm_kernel_lookup(dir, &p->kernel);
    if (r == -ENOENT) {
        FINDING(p, MICROVM_FINDING_KERNEL, false,
                "no guest kernel in %s (build it once: scripts/build-guest-kernel.sh)", dir);
        return;
    }
    if (r < 0) {
        FINDING(p, MICROVM_FINDING_KERNEL, false,
                "the guest kernel in %s is unusable (%s; rebuild it: "
                "scripts/build-guest-kernel.sh --force)",
                dir, r == -EINVAL ? "bad " MICROVM_KERNEL_META : strerror(-r));
        return;
    }
    FINDING(p, MICROVM_FINDING_KERNEL, true, "guest kernel %s (fragment %s) at %s",
            p->kernel.version[0] ? p->kernel.version : "?",
            p->kernel.fragment_hash[0] ? p->kernel.fragment_hash : "?", p->kernel.path);
    *ok = true;
}

int microvm_probe_run(const struct microvm_probe_paths *paths, struct microvm_probe *ret)
{
    static const struct microvm_probe_paths no_paths = { 0 };
    const char *kvm_dev, *sys_module, *cpuinfo;
    struct microvm_kvm_facts facts;
    char kvm_reason[MICROVM_REASON_MAX];
    bool qemu_ok, kernel_ok;

    if (!paths)
        paths = &no_paths;
    kvm_dev = paths->kvm_dev ? paths->kvm_dev : "/dev/kvm";
    sys_module = paths->sys_module ? paths->sys_module : "/sys/module";
    cpuinfo = paths->cpuinfo ? paths->cpuinfo : "/proc/cpuinfo";
    memset(ret, 0, sizeof(*ret));

    probe_qemu(paths, ret, &qemu_ok);
    probe_kernel(paths, ret, &kernel_ok);

    microvm_kvm_gather(kvm_dev, sys_module, &facts);
    /* the boot probe needs QEMU and a kernel; without them there is nothing to run anyway */
    ret->kvm_usable =
        microvm_kvm_decide(kvm_dev, &facts, qemu_ok && kernel_ok ? paths->boot_probe : NULL,
                           paths->boot_probe_userdata, kvm_reason, sizeof(kvm_reason));
    ret->accel = ret->kvm_usable ? MICROVM_ACCEL_KVM : MICROVM_ACCEL_TCG;
    FINDING(ret, MICROVM_FINDING_KVM, ret->kvm_usable, "%s", kvm_reason);

    if (microvm_host_cpu_khz(cpuinfo, &ret->cpu_khz) == 0)
        FINDING(ret, MICROVM_FINDING_CPU, true, "host CPU at %" PRIu64 " kHz (TCG timer hints)",
                ret->cpu_khz);
    else
        FINDING(ret, MICROVM_FINDING_CPU, !!ret->kvm_usable,
                "no \"cpu MHz\" in %s: TCG guests boot without timer hints and may hang in "
                "TSC calibration",
                cpuinfo);

    ret->available = qemu_ok && kernel_ok;
    if (!qemu_ok)
        (void)str_printf(ret->reason, sizeof(ret->reason), "%s",
                         ret->findings[MICROVM_FINDING_QEMU].text);
    else if (!kernel_ok)
        (void)str_printf(ret->reason, sizeof(ret->reason), "%s",
                         ret->findings[MICROVM_FINDING_KERNEL].text);
    else
        (void)str_printf(ret->reason, sizeof(ret->reason), "%s", kvm_reason);
    return 0;
}

int microvm_accel_choose(enum microvm_accel_request req, const struct microvm_probe *p,
                         enum microvm_accel *ret, char *reason, size_t reason_size)
{
    switch (req) {
    case MICROVM_ACCEL_REQ_AUTO:
        *ret = p->accel;
        (void)str_printf(reason, reason_size, "%s", p->findings[MICROVM_FINDING_KVM].text);
        return 0;
    case MICROVM_ACCEL_REQ_TCG:
        *ret = MICROVM_ACCEL_TCG;
        (void)str_printf(reason, reason_size, "TCG emulation (--accel tcg)");
        return 0;
    case MICROVM_ACCEL_REQ_KVM:
        if (!p->kvm_usable) {
            /* "no usable KVM (why): running under TCG emulation" without the last part: here
             * nothing runs */
            const char *t = p->findings[MICROVM_FINDING_KVM].text;
            const char *cut = strstr(t, ": running under TCG emulation");
            (void)str_printf(reason, reason_size,
                             "--accel kvm: %.*s, so the VM cannot run under KVM here; use "
                             "--accel tcg (emulation, slow) or auto",
                             (int)(cut ? (size_t)(cut - t) : strlen(t)), t);
            return -ENODEV;
        }
        *ret = MICROVM_ACCEL_KVM;
        (void)str_printf(reason, reason_size, "%s", p->findings[MICROVM_FINDING_KVM].text);
        return 0;
    case MICROVM_ACCEL_REQ_MAX:
    default:
        return -EINVAL;
    }
}
