# shellcheck shell=bash
# scripts/kernel-cache.sh: sourced by build-guest-kernel.sh, fetch-stock-kernel.sh, the microVM
# benchmarks and tests.
#
# kernel_cache_default: prints bot-bottle's kernel cache, where those scripts install when no
# --cache-dir is given: /var/cache/bot-bottle/kernel as root, else
# $XDG_CACHE_HOME/bot-bottle/kernel or ~/.cache/bot-bottle/kernel (a relative XDG_CACHE_HOME
# is ignored, as the XDG spec says). The microvm backend looks there too
# (microvm_cache_dir_for() in src/backend/microvm/probe.c), and so do the benchmarks and tests
# that read the cached kernel.
kernel_cache_default() {
    if [ "$(id -u)" -eq 0 ]; then
        echo /var/cache/bot-bottle/kernel
    else
        case ${XDG_CACHE_HOME:-} in
        /*) echo "$XDG_CACHE_HOME/bot-bottle/kernel" ;;
        *) echo "$HOME/.cache/bot-bottle/kernel" ;;
        esac
    fi
}
