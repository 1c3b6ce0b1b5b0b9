#!/bin/sh
# gen-man.sh BOT_BOTTLE OUTPUT: write the bot-bottle(1) man page from the binary's own help
# texts (bot-bottle --help, each verb's --help, each 'bot-bottle help TOPIC'), so the page
# never drifts from what the binary says. Run at build time by meson (installed to man1).
set -eu
bb=$1
out=$2
version=$("$bb" version | sed 's/^bot-bottle //')

# roff-escape: backslashes, and lines starting with . or '
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

{
    printf '.TH BOT-BOTTLE 1 "" "bot-bottle %s" "User Commands"\n' "$version"
    printf '.SH NAME\nbot-bottle \\- run AI coding agents in a sandbox with an allowlisting egress proxy\n'
    printf '.SH SYNOPSIS\n.B bot-bottle\n.I COMMAND\n[\n.I OPTIONS\n]\n'
    printf '.SH DESCRIPTION\n.nf\n'
    "$bb" --help | esc
    printf '.fi\n'
    # every verb the binary lists (but help, whose topics follow)
    for verb in $("$bb" --help | sed -n '/^Commands:/,/^$/s/^  \([a-z-]*\) .*/\1/p'); do
        [ "$verb" = help ] && continue
        printf '.SH "%s"\n.nf\n' "$(echo "bot-bottle $verb" | tr a-z A-Z)"
        "$bb" "$verb" --help | esc
        printf '.fi\n'
    done
    for topic in $("$bb" help | sed -n 's/^Help topics (bot-bottle help TOPIC)://p'); do
        printf '.SH "%s"\n.nf\n' "$(echo "$topic" | tr a-z A-Z)"
        "$bb" help "$topic" | esc
        printf '.fi\n'
    done
    printf '.SH "EXIT STATUS"\nThe command'"'"'s status; 125 when bot-bottle failed, 126 when the command is not\n'
    printf 'executable, 127 when not found; 130 after SIGINT to bot-bottle, 143 after SIGTERM.\n'
    printf '.SH "SEE ALSO"\n.BR jq (1)\n'
} >"$out.tmp"
mv "$out.tmp" "$out"
