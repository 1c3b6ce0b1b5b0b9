/*
 * Start-up from a snapshot (docs/microvm.md, "Start-up from a snapshot"): a microVM bottle
 * under TCG does not boot its kernel; QEMU restores a saved VM that had booted to the point
 * where bottle-init waits for its bottle (guest/init.c, vm_template_wait).
 *
 * The saved state (the "template") depends on everything that shaped that VM: QEMU's build,
 * the guest kernel, bottle-init, the devices, -m, -smp, the machine, the accelerator and the
 * kernel command line. Its name is a SHA-256 over those (snapshot_key), so a changed input
 * makes a new template rather than restoring a wrong one. Templates live in the kernel cache
 * (<cache>/snapshot/<key>.vmstate, the directory 0700, each file 0600 and ours), written
 * under a lock by the first bottle that needs one, atomically (a temporary file renamed).
 *
 * Nothing here starts QEMU: microvm.c boots the template VM and hands its QMP connection to
 * snapshot_save.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* How many templates the cache keeps (the most recently used); each is ~50-60 MB. */
#define SNAPSHOT_KEEP 4
#define SNAPSHOT_KEY_HEX 32 /* the name: the first 128 bits of the SHA-256, in hex */

/*
 * The key: SHA-256 over a version tag, the identity (device, inode, size, modification and
 * change times) of each file in files (QEMU, the kernel, bottle-init) and the template
 * boot's argv with its per-bottle paths replaced (the caller's canonical argv). ret gets
 * SNAPSHOT_KEY_HEX hex digits and a NUL. 0 or -errno (a file that cannot be stat'ed).
 */
int snapshot_key(const char *const *files, size_t n_files, char *const *canon_argv,
                 char ret[SNAPSHOT_KEY_HEX + 1]);

/*
 * The host CPU's "model name" from cpuinfo_path (/proc/cpuinfo), for the key in place of the
 * TCG timer hints: those come from "cpu MHz", which on a host with frequency scaling is the
 * current frequency and changes from one read to the next (every bottle would make a new
 * template), while the TSC whose rate they stand for is the same for a given CPU. "" when
 * there is none. 0 or -errno.
 */
int snapshot_cpu_model(const char *cpuinfo_path, char *ret, size_t size);

/* <cache_dir>/snapshot, made (0700) when missing. 0 or -errno. */
int snapshot_dir(const char *cache_dir, char *ret, size_t size);

/*
 * Opens <dir>/<key>.vmstate for QEMU to read (O_RDONLY, close-on-exec): a regular file of
 * ours that nobody else can write. The fd, -ENOENT when there is none, -EPERM for one that
 * fails those checks (it is left alone; the caller says so), or another -errno.
 */
int snapshot_open(const char *dir, const char *key);

/*
 * The lock that serializes making a template (<dir>/lock, flock LOCK_EX): the fd, or
 * -ETIMEDOUT after timeout_ms. Bounded: the holder may be another user's supervisor that was
 * stopped (a ^Z in its terminal reaches it through sudo), and no bottle waits on it for ever.
 */
int snapshot_lock(const char *dir, int timeout_ms);

/* A new temporary state file in dir (0600) to save into: the fd; its path in tmp_path. */
int snapshot_create_tmp(const char *dir, const char *key, char *tmp_path, size_t size);

/* Renames the finished temporary file to <dir>/<key>.vmstate (after fsync), then keeps only
 * the SNAPSHOT_KEEP most recent templates. 0 or -errno. */
int snapshot_commit(int fd, const char *tmp_path, const char *dir, const char *key);

/* Removes <dir>/<key>.vmstate if it is still the file fd (a template QEMU failed to restore).
 * true when it was removed. */
bool snapshot_discard(const char *dir, const char *key, int fd);

/*
 * Saves the VM behind the QMP connection qmp_fd into state_fd: QMP's greeting and
 * capabilities, stop, the bandwidth limit raised, the fd passed (getfd), migrate fd:, then
 * query-migrate until it completed, then quit. Waits at most timeout_ms in all. On failure
 * why holds QEMU's words or ours. 0 or -errno.
 */
int snapshot_save(int qmp_fd, int state_fd, int timeout_ms, char *why, size_t why_size);
