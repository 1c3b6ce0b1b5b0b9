/*
 * Agent profiles (docs/agents.md): what `bot-bottle run claude`, `run codex` and
 * `run --agent NAME` give the agent's bottle, and where bot-bottle keeps agents and their state.
 *
 * A profile names the agent's command, the hosts it needs (each justified in agent.c), the
 * host variables passed through when set (API keys, base URLs) plus fixed ones (telemetry and
 * auto-update off), the npm package `bot-bottle agent install` installs, and where the agent
 * keeps its state inside the bottle (a directory under $HOME and the variable that names it).
 * Built-in: claude, codex. A config file's [agent "NAME"] section (config/config.h) makes a
 * new profile, or adjusts a built-in one of the same name: its command, state, state_env and
 * package replace the built-in's, its allow and env lines add to them.
 *
 * Directories (all owned by bot-bottle, outside every bottle but for their own mounts):
 *   cache  $BOT_BOTTLE_AGENT_CACHE, else $XDG_CACHE_HOME/bot-bottle/agents, else
 *          ~/.cache/bot-bottle/agents; NAME/ is an npm --prefix (bin/, lib/node_modules/),
 *          mounted read-only at AGENT_BOTTLE_ROOT/NAME in the agent's bottles.
 *   state  $XDG_DATA_HOME/bot-bottle/agents, else ~/.local/share/bot-bottle/agents;
 *          NAME/WORKSPACE-HASH/ is the agent's state for one workspace, mounted read-write
 *          at $HOME/<state> in the bottle.
 * No function here logs; failures are -errno.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "config/config.h"

/* Where an agent's cache directory appears inside its bottles (read-only). */
#define AGENT_BOTTLE_ROOT "/opt/bot-bottle/agents"
/* The bottle's default PATH (guest/spec.c); an installed agent's bin/ goes before it. */
#define AGENT_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"

/*
 * An API key a built-in profile knows: the host variable that holds it, the request header it
 * goes into and the host it is for (or the host of base_url_var's URL when that is set). When
 * the variable is set on the host, `run` makes it a credential (docs/credentials.md): the
 * bottle gets a placeholder in the variable and the egress daemon puts the key into that
 * header of the requests to that host; the key itself never enters the bottle.
 */
struct agent_key {
    const char *var, *header, *host, *base_url_var;
};

/* A host a built-in profile leaves out on purpose, and why (for the blocked-host notice). */
struct agent_left_out {
    const char *host; /* a name, or *.SUFFIX */
    const char *why;
};

struct agent_profile {
    char *name;
    char *command;                /* program name (PATH lookup in the bottle) or absolute path */
    char *package;                /* npm package, NULL: not installable with `agent install` */
    struct strv allow;            /* host patterns the agent needs */
    struct strv env;              /* NAME (the host's value, when set) or NAME=VALUE */
    char *state;                  /* relative to $HOME in the bottle; NULL: no state directory */
    char *state_env;              /* set to $HOME/<state> in the bottle; NULL: none */
    const struct agent_key *keys; /* built-in profiles: their API keys ({ NULL } ends) */
    const struct agent_left_out *left_out; /* built-in: hosts left out ({ NULL } ends) */
    bool builtin;                       /* a built-in profile (possibly adjusted by the config) */
    const struct bb_config_agent *user; /* the config section, or NULL */
};

/* The i-th built-in profile's name, or NULL past the end. */
const char *agent_builtin_name(size_t i);

/*
 * The profile called name: a built-in one adjusted by cfg's [agent "name"] section if any, or
 * the section alone. Returns 0 and *ret (free with agent_profile_done), -ENOENT when there is
 * no such profile, -EINVAL when a section that makes a new profile has no command.
 * cfg may be NULL.
 */
int agent_profile_get(const struct bb_config *cfg, const char *name, struct agent_profile *ret);
void agent_profile_done(struct agent_profile *p);

/* The cache root (see above), without creating it; -ENOENT when no absolute base is set. */
int agent_cache_root(char **ret);
/* The state root (see above), without creating it; -ENOENT as above. */
int agent_state_root(char **ret);
/*
 * The state directory of agent name for workspace (canonical absolute path), without creating
 * it: <state root>/NAME/<last component of workspace>-<16 hex digits of its SHA-256>.
 */
int agent_state_dir(const char *name, const char *workspace, char **ret);

/* mkdir -p with mode for the directories it creates; an existing one must be a directory
 * owned by us (-EPERM otherwise). */
int agent_mkdir_p(const char *path, mode_t mode);

/*
 * The version of package installed under the npm prefix dir (its
 * lib/node_modules/PACKAGE/package.json "version"). Returns 0 and *ret (malloc'd), -ENOENT when
 * it is not installed there, -EINVAL when package.json is not what npm writes.
 */
int agent_installed_version(const char *prefix, const char *package, char **ret);
