/*
 * The microvm guest's initramfs: an uncompressed newc cpio archive ("070701", the format the
 * kernel's init/initramfs.c unpacks) written here rather than by an external tool, so its
 * exact content is ours: /dev/console, empty /proc /sys /dev /tmp /usr /etc /run, the
 * usrmerge symlinks /bin /lib /lib64 /sbin -> usr/..., and the static /init.
 *
 * Uncompressed on purpose: gzip -1 gained nothing under TCG (docs/microvm.md), and the
 * kernel then needs no decompressor for it.
 *
 * Nothing here logs; functions return 0 or a negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"

/* Longest path name of one archive entry, without the NUL. */
#define INITRAMFS_NAME_MAX 255
/* Longest symlink target. */
#define INITRAMFS_LINK_MAX 255
/* The largest /init we accept (bottle-init is a few MB). */
#define INITRAMFS_INIT_MAX (64u * 1024 * 1024)
/* Kernel modules (the stock kernel's, initramfs_bottle.modules_dir): one, and all together. */
#define INITRAMFS_MODULE_MAX (8u * 1024 * 1024)
#define INITRAMFS_MODULES_MAX (32u * 1024 * 1024)
#define INITRAMFS_MODULES_COUNT_MAX 64
/* Cap on the whole archive. */
#define INITRAMFS_MAX (INITRAMFS_INIT_MAX + INITRAMFS_MODULES_MAX + 1024 * 1024)

/* A writer appending entries to a caller-owned buffer. Inode numbers start at 1. */
struct cpio_writer {
    struct buf *out;
    uint32_t next_ino;
    uint32_t mtime; /* 0: reproducible archives */
    bool finished;
};

void cpio_writer_init(struct cpio_writer *w, struct buf *out);

/*
 * Entry names are relative ("dev/console", never "/dev"), made of components that are not
 * empty, "." or "..", with no control characters, at most INITRAMFS_NAME_MAX bytes: a name
 * the kernel would resolve outside the archive's root, or that a reader could misparse, is
 * refused with -EINVAL (-ENAMETOOLONG when too long). mode holds only permission bits
 * (07777); the file type comes from the function. On failure nothing is appended except when
 * the buffer's cap is hit (-E2BIG, and the buffer is emptied, see buf.h).
 */
int cpio_add_dir(struct cpio_writer *w, const char *name, mode_t mode);
int cpio_add_file(struct cpio_writer *w, const char *name, mode_t mode, const void *data,
                  size_t len);
int cpio_add_symlink(struct cpio_writer *w, const char *name, const char *target);
int cpio_add_chardev(struct cpio_writer *w, const char *name, mode_t mode, uint32_t major,
                     uint32_t minor);
/* Appends the TRAILER!!! entry and pads the archive to a multiple of 512 bytes. */
int cpio_finish(struct cpio_writer *w);

/* Returns 0 when name is acceptable as an archive entry name (rules above). */
int cpio_name_check(const char *name);

/* The guest's initramfs around an init binary already in memory. Appends to out. */
int initramfs_build(const void *init, size_t init_len, struct buf *out);

/*
 * Reads the static init binary at init_path (a regular file, at most INITRAMFS_INIT_MAX
 * bytes) and writes the initramfs to out_path atomically (a temporary file in the same
 * directory, then rename), mode 0644. Returns 0 or a negative errno; -EFBIG for an init too
 * large, -EINVAL when init_path is not a regular file.
 */
int initramfs_write(const char *init_path, const char *out_path);

/*
 * A bottle's own initramfs (the microvm backend writes one per bottle): the image above plus
 *
 *   bottle/            0700
 *   bottle/spec        0400, the encoded bottle spec bottle-init reads when it is PID 1 with
 *                      no arguments (GUEST_VM_SPEC)
 *   bottle/seccomp.bpf 0400, the command's seccomp program built on the host
 *                      (guest_seccomp_export; GUEST_VM_SECCOMP), when given
 *   bottle/etc/...     the host's public files bottle-init copies into the bottle's /etc
 *                      (GUEST_ETC_PUBLIC_FILES, read through symlinks; missing ones are left
 *                      out) and bottle/etc/alternatives/ with the symlinks of
 *                      host_etc/alternatives (GUEST_VM_ETC): the guest has no host /etc.
 *   bottle/modules/NN-NAME.ko   0400, with modules_dir: the modules listed in
 *                      modules_dir/modules.load (plain file names ending in .ko, one a line),
 *                      numbered in that order; bottle-init loads them in name order before
 *                      it looks for its console (VM_MODULES_DIR in guest/init.c); an
 *                      empty list gives the directory alone
 */
#define INITRAMFS_BOTTLE_DIR "bottle"
#define INITRAMFS_SPEC_PATH "bottle/spec"
#define INITRAMFS_ETC_DIR "bottle/etc"
#define INITRAMFS_SECCOMP_PATH "bottle/seccomp.bpf"
#define INITRAMFS_ETC_FILE_MAX (8u * 1024 * 1024) /* one copied /etc file */
#define INITRAMFS_MODULES_DIR "bottle/modules"

struct initramfs_bottle {
    const void *spec; /* encoded spec (bottle_spec_encode), not empty */
    size_t spec_len;
    const void *seccomp; /* guest_seccomp_export()'s program; NULL: the guest builds it */
    size_t seccomp_len;
    const char *host_etc;    /* "/etc" normally (tests may point elsewhere); NULL: no files */
    const char *modules_dir; /* the stock kernel's modules (modules.load); NULL: none */
};

int initramfs_build_bottle(const void *init, size_t init_len, const struct initramfs_bottle *b,
                           struct buf *out);
/*
 * The bottle's files alone (bottle/, spec, seccomp.bpf, etc/; no base image, no modules:
 * modules_dir must be NULL), a finished archive: what the host sends a microVM restored from
 * a snapshot, whose initramfs was unpacked when the snapshot was made (guest/unpack.h).
 */
int initramfs_build_bundle(const struct initramfs_bottle *b, struct buf *out);
/* As initramfs_write(), with the bottle's files. */
int initramfs_write_bottle(const char *init_path, const struct initramfs_bottle *b,
                           const char *out_path);
