/*
 * What every command run in a bottle goes through just before exec, shared by bottle-init
 * (the bottle's command) and the namespace backend's exec (a later command joining a running
 * bottle), so both get exactly the same confinement.
 */
#pragma once

#include <stdint.h>

/*
 * Drop every capability for good: ambient and bounding sets, securebits that stop uid 0 from
 * regaining any on exec, then the ids (uid, gid; supplementary groups = gid where allowed),
 * then the permitted/effective/inheritable sets, then no_new_privs; read back to verify.
 * Returns 0 or -errno.
 */
int guest_drop_privileges(uint32_t uid, uint32_t gid);

/* execvpe() with PATH taken from envp, not from our environment. Returns -errno (-ENOENT not
 * found, -EACCES not executable). */
int guest_exec_command(char *const argv[], char **envp);
