# shellcheck shell=bash
# scripts/kernel-cache.sh: sourced by build-guest-kernel.sh and fetch-stock-kernel.sh.
#
# kernel_cache_default: prints bot-bottle's kernel cache, where those scripts install when no
# --cache-dir is given: /var/cache/bot-bottle/kernel as root, else
# $XDG_CACHE_HOME/bot-bottle/kernel or ~/.cache/bot-bottle/kernel. The microvm backend looks
# there too (microvm_cache_dir_for() in src/backend/microvm/probe.c).
kernel_cache_default() {
    if [ "$(id -u)" -eq 0 ]; then
        echo /var/cache/bot-bottle/kernel
    else
        echo "${XDG_CACHE_HOME:-$HOME/.cache}/bot-bottle/kernel"
    fi
}
