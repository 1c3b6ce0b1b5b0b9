/*
 * Unit tests for the seccomp filter of QEMU's jail (src/backend/microvm/jail.c): each call
 * runs in a forked child that installed the filter (with no_new_privs), over files in a
 * temporary directory; the child's exit status is the call's errno (0: it succeeded).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/seccomp.h>
#include <stdbool.h>

#include "backend/microvm/jail.h"
#include "common/str.h"

static char tmp[] = "/tmp/test-microvm-jail.XXXXXX";
static struct microvm_jail jail;

static const char *at(const char *rel)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 8];

    assert_int_equal(str_printf(b, PATH_MAX, "%s/%s", tmp, rel), 0);
    return b;
}

/* fn's result (0 or an errno) under the filter */
static int filtered(int (*fn)(void))
{
    pid_t pid = fork();
    int st;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct sock_fprog prog = { .len = jail.n_filter, .filter = jail.filter };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
            syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            _exit(255);
        _exit(fn());
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_not_equal(WEXITSTATUS(st), 255);
    return WEXITSTATUS(st);
}

#define E(expr) ((expr) < 0 ? errno : 0)

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode;
}

static int setup(void **state)
{
    int fd;

    (void)state;
    assert_non_null(mkdtemp(tmp));
    fd = open(at("f"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    close(fd);
    jail.uid = getuid();
    jail.gid = getgid();
    assert_int_equal(jail_build_filter(&jail), 0);
    assert_true(jail.n_filter > 10 && jail.n_filter <= JAIL_FILTER_MAX);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    (void)unlink(at("f"));
    (void)unlink(at("fifo"));
    (void)unlink(at("new"));
    (void)unlink(at("plain"));
    (void)rmdir(tmp);
    return 0;
}

static int chmod_suid(void)
{
    return E(chmod(at("f"), 04755));
}
static int chmod_sgid(void)
{
    return E(chmod(at("f"), 02755));
}
static int chmod_plain(void)
{
    return E(chmod(at("f"), 0700));
}
static int fchmodat_suid(void)
{
    return E(fchmodat(AT_FDCWD, at("f"), 04755, 0));
}
static int fchmod_suid(void)
{
    int fd = open(at("f"), O_RDONLY | O_CLOEXEC);
    return fd < 0 ? errno : E(fchmod(fd, 06755));
}

/* S_ISUID is refused, S_ISGID alone is a no-op, plain modes work */
static void test_chmod(void **state)
{
    (void)state;
    assert_int_equal(filtered(chmod_suid), EPERM);
    assert_int_equal(filtered(fchmodat_suid), EPERM);
    assert_int_equal(filtered(fchmod_suid), EPERM);
    assert_false(mode_of(at("f")) & (S_ISUID | S_ISGID));
    assert_int_equal(filtered(chmod_sgid), 0);
    assert_false(mode_of(at("f")) & S_ISGID);
    assert_int_equal(filtered(chmod_plain), 0);
    assert_int_equal(mode_of(at("f")) & 07777, 0700);
}

static int open_creat_suid(void)
{
    return E(open(at("new"), O_WRONLY | O_CREAT, 04755));
}
static int openat_creat_sgid(void)
{
    return E(openat(AT_FDCWD, at("new"), O_WRONLY | O_CREAT, 02755));
}
static int creat_sgid(void)
{
    return E(creat(at("new"), 02755));
}
static int open_creat_plain(void)
{
    return E(open(at("plain"), O_WRONLY | O_CREAT, 0644));
}
/* without O_CREAT the mode argument is ignored by the kernel, and by the filter */
static int open_nocreat_junk(void)
{
    return E(syscall(SYS_openat, AT_FDCWD, at("f"), O_RDONLY, 04755));
}

static void test_create(void **state)
{
    (void)state;
    assert_int_equal(filtered(open_creat_suid), EPERM);
    assert_int_equal(filtered(openat_creat_sgid), EPERM);
    assert_int_equal(filtered(creat_sgid), EPERM);
    assert_int_equal(access(at("new"), F_OK), -1);
    assert_int_equal(filtered(open_creat_plain), 0);
    assert_int_equal(filtered(open_nocreat_junk), 0);
}

static int mknod_chr(void)
{
    return E(mknod(at("new"), S_IFCHR | 0666, makedev(1, 1)));
}
static int mknod_blk(void)
{
    return E(mknodat(AT_FDCWD, at("new"), S_IFBLK | 0666, makedev(7, 0)));
}
static int mknod_fifo(void)
{
    return E(mknod(at("fifo"), S_IFIFO | 0644, 0));
}
static int mknod_fifo_suid(void)
{
    return E(mknod(at("new"), S_IFIFO | 04644, 0));
}

static void test_mknod(void **state)
{
    (void)state;
    assert_int_equal(filtered(mknod_chr), EPERM);
    assert_int_equal(filtered(mknod_blk), EPERM);
    assert_int_equal(filtered(mknod_fifo_suid), EPERM);
    assert_int_equal(filtered(mknod_fifo), 0);
    assert_true(S_ISFIFO(mode_of(at("fifo"))));
}

static int set_cap(void)
{
    static const uint32_t cap[5] = { 0x02000001, 2, 0, 0, 0 };
    return E(setxattr(at("f"), "security.capability", cap, sizeof(cap), 0));
}
static int set_user(void)
{
    return E(lsetxattr(at("f"), "user.x", "1", 1, 0));
}
static int remove_user(void)
{
    return E(removexattr(at("f"), "user.x"));
}
static int list_xattrs(void)
{
    return E(listxattr(at("f"), NULL, 0));
}

static void test_xattr(void **state)
{
    (void)state;
    assert_int_equal(filtered(set_cap), EOPNOTSUPP);
    assert_int_equal(filtered(set_user), EOPNOTSUPP);
    assert_int_equal(filtered(remove_user), EOPNOTSUPP);
    assert_int_equal(filtered(list_xattrs), 0);
}

static int chown_self(void)
{
    return E(chown(at("f"), getuid(), getgid()));
}
static int chown_unchanged(void)
{
    return E(lchown(at("f"), (uid_t)-1, (gid_t)-1));
}
static int chown_other_uid(void)
{
    return E(chown(at("f"), getuid() + 1, (gid_t)-1));
}
static int chown_other_gid(void)
{
    return E(fchownat(AT_FDCWD, at("f"), (uid_t)-1, getgid() + 1, AT_SYMLINK_NOFOLLOW));
}

static void test_chown(void **state)
{
    (void)state;
    assert_int_equal(filtered(chown_self), 0);
    assert_int_equal(filtered(chown_unchanged), 0);
    assert_int_equal(filtered(chown_other_uid), EPERM);
    assert_int_equal(filtered(chown_other_gid), EPERM);
}

static int sock_inet(void)
{
    return E(socket(AF_INET, SOCK_STREAM, 0));
}
static int sock_inet6(void)
{
    return E(socket(AF_INET6, SOCK_DGRAM, 0));
}
static int sock_netlink(void)
{
    return E(socket(AF_NETLINK, SOCK_RAW, 0));
}
static int sock_unix(void)
{
    return E(socket(AF_UNIX, SOCK_STREAM, 0));
}

static void test_socket(void **state)
{
    (void)state;
    assert_int_equal(filtered(sock_inet), EAFNOSUPPORT);
    assert_int_equal(filtered(sock_inet6), EAFNOSUPPORT);
    assert_int_equal(filtered(sock_netlink), EAFNOSUPPORT);
    assert_int_equal(filtered(sock_unix), 0);
}

static void *thread_fn(void *arg)
{
    return arg;
}
/* glibc's pthread_create falls back from clone3 (ENOSYS) to clone */
static int thread(void)
{
    pthread_t t;
    void *ret = NULL;
    int r = pthread_create(&t, NULL, thread_fn, (void *)(uintptr_t)7);
    if (r)
        return r;
    pthread_join(t, &ret);
    return ret == (void *)(uintptr_t)7 ? 0 : EIO;
}
static int do_clone3(void)
{
    return E(syscall(SYS_clone3, NULL, 0));
}
static int do_io_uring(void)
{
    return E(syscall(SYS_io_uring_setup, 1, NULL));
}
static int do_openat2(void)
{
    return E(syscall(SYS_openat2, AT_FDCWD, "/", NULL, 0));
}
static int do_unshare(void)
{
    return E(unshare(CLONE_NEWUSER));
}
static int do_ptrace(void)
{
    return E(ptrace(PTRACE_TRACEME, 0, NULL, NULL));
}
static int do_mount(void)
{
    return E(mount("none", tmp, "tmpfs", 0, NULL));
}
static int do_setuid(void)
{
    return E(setuid(getuid()));
}
static int do_tiocsti(void)
{
    char c = 'x';
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? errno : E(ioctl(fd, TIOCSTI, &c));
}
static int do_tcgets(void)
{
    struct termios t;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? errno : E(ioctl(fd, TCGETS, &t));
}

static void test_process(void **state)
{
    (void)state;
    assert_int_equal(filtered(thread), 0);
    assert_int_equal(filtered(do_clone3), ENOSYS);
    assert_int_equal(filtered(do_io_uring), ENOSYS);
    assert_int_equal(filtered(do_openat2), ENOSYS);
    assert_int_equal(filtered(do_unshare), EPERM);
    assert_int_equal(filtered(do_ptrace), EPERM);
    assert_int_equal(filtered(do_mount), EPERM);
    assert_int_equal(filtered(do_setuid), EPERM);
    assert_int_equal(filtered(do_tiocsti), EPERM);
    /* other ioctls pass (ENOTTY from the kernel, not the filter) */
    assert_int_equal(filtered(do_tcgets), ENOTTY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chmod),   cmocka_unit_test(test_create),
        cmocka_unit_test(test_mknod),   cmocka_unit_test(test_xattr),
        cmocka_unit_test(test_chown),   cmocka_unit_test(test_socket),
        cmocka_unit_test(test_process),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
