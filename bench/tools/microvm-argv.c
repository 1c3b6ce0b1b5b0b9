/* bench/tools/microvm-argv.c: the microvm backend's own initramfs writer and QEMU argv
 * builder (src/backend/microvm/), driven from the command line for bench/boot-floor.sh, so
 * the benchmark boots exactly what the backend will.
 *
 * Usage: microvm-argv --init PATH --initramfs OUT --kernel VMLINUX [--accel kvm|tcg]
 *                     [--tsc-khz N] [--cpus N] [--memory MIB] [--share TAG:PATH[:ro]]...
 *                     [--append TEXT] [--chan-socket PATH]
 * Writes the initramfs around the init binary to OUT, then prints QEMU's argv on stdout, each
 * element followed by a NUL (read it with bash's `mapfile -d ''`). The console is QEMU's
 * stdio. --chan-socket adds the bottle.chan port on a unix socket QEMU connects to (the caller
 * listens first), as the backend does (bench/microvm-chan.sh). Exit status 0, or 2 with a
 * message on stderr.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/microvm/initramfs.h"
#include "backend/microvm/qemu-args.h"
#include "common/str.h"

static int usage(const char *msg)
{
    fprintf(stderr, "microvm-argv: %s\n", msg);
    return 2;
}

int main(int argc, char **argv)
{
    struct microvm_share shares[MICROVM_MAX_SHARES];
    struct microvm_qemu_config c = { .accel = MICROVM_ACCEL_TCG, .cpus = 1, .memory_mib = 256 };
    const char *init = NULL, *out = NULL;
    char **qargv = NULL;
    uint64_t v;
    int r;

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (!val)
            return usage("every option takes a value");
        i++;
        if (strcmp(o, "--init") == 0) {
            init = val;
        } else if (strcmp(o, "--initramfs") == 0) {
            out = val;
            c.initrd = val;
        } else if (strcmp(o, "--kernel") == 0) {
            c.kernel = val;
        } else if (strcmp(o, "--accel") == 0) {
            if (strcmp(val, "kvm") == 0)
                c.accel = MICROVM_ACCEL_KVM;
            else if (strcmp(val, "tcg") == 0)
                c.accel = MICROVM_ACCEL_TCG;
            else
                return usage("--accel wants kvm or tcg");
        } else if (strcmp(o, "--tsc-khz") == 0) {
            if (str_to_u64_cstr(val, UINT32_MAX, &v) < 0)
                return usage("bad --tsc-khz");
            c.tsc_khz = v;
        } else if (strcmp(o, "--cpus") == 0) {
            if (str_to_u64_cstr(val, MICROVM_MAX_CPUS, &v) < 0)
                return usage("bad --cpus");
            c.cpus = (unsigned)v;
        } else if (strcmp(o, "--memory") == 0) {
            if (str_to_u64_cstr(val, UINT32_MAX, &v) < 0)
                return usage("bad --memory");
            c.memory_mib = v;
        } else if (strcmp(o, "--chan-socket") == 0) {
            c.chan_socket = val;
        } else if (strcmp(o, "--append") == 0) {
            c.cmdline_extra = val;
        } else if (strcmp(o, "--share") == 0) {
            if (c.n_shares == MICROVM_MAX_SHARES)
                return usage("too many --share");
            char *s = strdup(val), *colon = s ? strchr(s, ':') : NULL;
            if (!colon)
                return usage("--share wants TAG:PATH[:ro]");
            *colon = '\0';
            struct microvm_share *sh = &shares[c.n_shares++];
            sh->tag = s;
            sh->host_path = colon + 1;
            size_t n = strlen(sh->host_path);
            sh->readonly = n > 3 && strcmp(sh->host_path + n - 3, ":ro") == 0;
            if (sh->readonly)
                colon[1 + n - 3] = '\0';
            c.shares = shares;
        } else {
            return usage("unknown option");
        }
    }
    if (!init || !out || !c.kernel)
        return usage("--init, --initramfs and --kernel are required");
    r = initramfs_write(init, out);
    if (r < 0) {
        fprintf(stderr, "microvm-argv: writing %s around %s: %s\n", out, init, strerror(-r));
        return 2;
    }
    r = microvm_qemu_argv(&c, &qargv);
    if (r < 0) {
        fprintf(stderr, "microvm-argv: building QEMU's argv: %s\n", strerror(-r));
        return 2;
    }
    for (char **p = qargv; *p; p++)
        fwrite(*p, 1, strlen(*p) + 1, stdout);
    microvm_argv_free(qargv);
    return fflush(stdout) == 0 ? 0 : 2;
}
