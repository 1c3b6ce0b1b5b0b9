/*
 * Unit tests for the seccomp program the microvm backend builds on the host
 * (guest_seccomp_export, src/guest/seccomp-filter.c): the kernel must hold exactly the same
 * program whether a command's filter was loaded by libseccomp from guest_seccomp_build()'s
 * context (the namespace backend and bottle-init without a shipped program) or from the
 * exported bytes (a microVM's bottle-init, guest_seccomp_load_bpf). The kernel's copy is read
 * back with PTRACE_SECCOMP_GET_FILTER (needs CAP_SYS_ADMIN: skipped, saying so, without it).
 */
#include <errno.h>
#include <linux/filter.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/seccomp-filter.h"

enum how { BY_LIBSECCOMP, BY_EXPORT };

/* A child that loads the filter one way and stops; returns the kernel's copy of it
 * (malloc'd, *len bytes) and the flags it was installed with, or NULL with *err set. */
static void *loaded_program(enum how how, const void *bpf, size_t bpf_len, size_t *len,
                            uint64_t *flags, int *err)
{
    struct {
        uint64_t filter_off, flags;
    } meta = { 0, 0 };
    struct sock_filter *prog;
    pid_t pid;
    long n;
    int status;

    *err = 0;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        scmp_filter_ctx ctx = NULL;
        int r;
        if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0)
            _exit(10);
        if (how == BY_LIBSECCOMP) {
            if (guest_seccomp_build(EPERM, EAFNOSUPPORT, &ctx) < 0)
                _exit(11);
            r = seccomp_load(ctx); /* (sets no_new_privs itself) */
        } else {
            r = guest_seccomp_load_bpf(bpf, bpf_len);
        }
        if (r < 0)
            _exit(12);
        raise(SIGSTOP);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSTOPPED(status))
        fail_msg("the child did not stop (status 0x%x)", status);
    n = ptrace((enum __ptrace_request)PTRACE_SECCOMP_GET_FILTER, pid, 0L, NULL);
    if (n < 0) {
        *err = errno;
        kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        return NULL;
    }
    prog = calloc((size_t)n, sizeof(*prog));
    assert_non_null(prog);
    assert_int_equal(ptrace((enum __ptrace_request)PTRACE_SECCOMP_GET_FILTER, pid, 0L, prog), n);
    assert_int_equal(ptrace((enum __ptrace_request)PTRACE_SECCOMP_GET_METADATA, pid,
                            (void *)sizeof(meta), &meta),
                     (long)sizeof(meta));
    *flags = meta.flags;
    kill(pid, SIGKILL);
    (void)waitpid(pid, &status, 0);
    *len = (size_t)n * sizeof(*prog);
    return prog;
}

static void test_export_is_what_libseccomp_loads(void **state)
{
    void *bpf = NULL, *by_lib, *by_export;
    size_t bpf_len = 0, lib_len = 0, exp_len = 0;
    uint64_t lib_flags = 1, exp_flags = 2;
    int err;

    (void)state;
    assert_int_equal(guest_seccomp_export(EPERM, EAFNOSUPPORT, &bpf, &bpf_len), 0);
    assert_true(bpf_len > 0 && bpf_len % 8 == 0 && bpf_len <= GUEST_SECCOMP_BPF_MAX);
    by_lib = loaded_program(BY_LIBSECCOMP, NULL, 0, &lib_len, &lib_flags, &err);
    if (!by_lib && (err == EACCES || err == EPERM || err == EIO)) {
        free(bpf);
        skip(); /* PTRACE_SECCOMP_GET_FILTER needs CAP_SYS_ADMIN: run as root */
    }
    assert_non_null(by_lib);
    by_export = loaded_program(BY_EXPORT, bpf, bpf_len, &exp_len, &exp_flags, &err);
    assert_non_null(by_export);
    /* the exported bytes are the kernel's program, whichever way it was loaded */
    assert_int_equal(lib_len, bpf_len);
    assert_memory_equal(by_lib, bpf, bpf_len);
    assert_int_equal(exp_len, bpf_len);
    assert_memory_equal(by_export, bpf, bpf_len);
    /* ... installed with the same flags (none: no TSYNC, no LOG, no SPEC_ALLOW) */
    assert_true(lib_flags == exp_flags);
    free(by_lib);
    free(by_export);
    free(bpf);
}

static void test_export_is_stable(void **state)
{
    void *a = NULL, *b = NULL;
    size_t al = 0, bl = 0;

    (void)state;
    assert_int_equal(guest_seccomp_export(EPERM, EAFNOSUPPORT, &a, &al), 0);
    assert_int_equal(guest_seccomp_export(EPERM, EAFNOSUPPORT, &b, &bl), 0);
    assert_int_equal(al, bl);
    assert_memory_equal(a, b, al);
    free(b);
    /* another errno is another program */
    assert_int_equal(guest_seccomp_export(EACCES, EAFNOSUPPORT, &b, &bl), 0);
    assert_true(al != bl || memcmp(a, b, al) != 0);
    free(a);
    free(b);
}

static void test_load_refuses_partial_programs(void **state)
{
    static const struct sock_filter allow[2] = { BPF_STMT(BPF_RET | BPF_K, 0x7fff0000u) };

    (void)state;
    assert_int_equal(guest_seccomp_load_bpf(NULL, 8), -EINVAL);
    assert_int_equal(guest_seccomp_load_bpf(allow, 0), -EINVAL);
    assert_int_equal(guest_seccomp_load_bpf(allow, 7), -EINVAL);
    assert_int_equal(guest_seccomp_load_bpf(allow, GUEST_SECCOMP_BPF_MAX + 8), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_is_what_libseccomp_loads),
        cmocka_unit_test(test_export_is_stable),
        cmocka_unit_test(test_load_refuses_partial_programs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
