#!/usr/bin/env bash
# bot-bottle policy check: exit 0 for allowed, 1 for denied with the reason on stdout.
source "$(dirname "$0")/lib.sh"
plan 18

pc() { "$BB" policy check "$@"; }
out=$(pc -a example.com https://example.com/x); rc=$?
is "an allowlisted URL exits 0" "$rc" "0"
like "... and says allow" "$out" "^allow: example.com port 443"
out=$(pc -a example.com evil.com); rc=$?
is "a non-allowlisted host exits 1" "$rc" "1"
like "... and prints the reason" "$out" "^deny: not-allowlisted: evil.com"
out=$(pc -a example.com example.com:8443); rc=$?
is "a port outside the pattern exits 1" "$rc" "1"
like "... with port-not-allowed" "$out" "port-not-allowed"
out=$(pc -a '*.example.com' example.com); rc=$?
is "*.example.com does not admit the apex" "$rc" "1"
out=$(pc -a '*.example.com' http://a.b.example.com/); rc=$?
is "*.example.com admits any depth below" "$rc" "0"
out=$(pc -a example.com 'http://example.com@evil.com/'); rc=$?
is "userinfo trick is denied" "$rc" "1"
like "... and the reason names the userinfo and the real host, not a wrong scheme" "$out" \
    "^deny: bad-host: the URL has userinfo \\('example.com@' before its host\\).*\\('evil.com'\\)"
unlike "... (not 'give an http:// or https:// URL', which it is)" "$out" "give an http"
out=$(pc -a example.com 'https://u:hunter2@example.com/'); rc=$?
like "a userinfo with a password: denied, the password not repeated" "$rc:$out" "^1:deny: bad-host: .*'u:...@'"
unlike "... (hunter2 not shown)" "$out" "hunter2"
out=$(pc -a example.com 10.0.0.1); rc=$?
like "an IP literal is denied as ip-literal" "$rc:$out" "^1:deny: ip-literal"
out=$(pc -a example.com --allow-cidr 10.0.0.0/8 10.0.0.1:5432); rc=$?
is "an IP literal inside allow_cidr is allowed" "$rc" "0"
out=$(pc -a example.com 2130706433); rc=$?
like "a decimal IPv4 is denied" "$rc:$out" "^1:deny: "
out=$(pc -a 'bücher.example' 'http://xn--bcher-kva.example/'); rc=$?
is "an IDN pattern matches its punycode form" "$rc" "0"
pc -a 'bad pattern' example.com >/dev/null 2>&1; rc=$?
is "an invalid pattern is a usage error (125)" "$rc" "125"
done_testing
