#!/usr/bin/env bash
# Builds Caddy with this module through xcaddy, with the README's command, and checks that the
# result has every module and command of ours.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$tools" "$out"' EXIT

GOBIN="$tools" go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
# The README's command (with --output, so the clone stays clean):
"$tools/xcaddy" build v2.11.9 --output "$out/caddy" \
	--with github.com/caddy-otp/caddy-otp@v0.0.0-00010101000000-000000000000=.

# Every module this repository registers: the non-standard ones of its own cmd/caddy, which
# adds nothing else to Caddy's standard modules.
go build -o "$out/repo-caddy" ./cmd/caddy
ours=$("$out/repo-caddy" list-modules | sed -n '/Standard modules:/,/Non-standard modules:/p' | grep -v 'modules:' | grep . || true)
if ! grep -qx http.handlers.otp <<<"$ours"; then
	echo "cmd/caddy lists no otp modules: $ours" >&2
	exit 1
fi
modules=$("$out/caddy" list-modules)
for m in $ours; do
	if ! grep -qx "$m" <<<"$modules"; then
		echo "xcaddy build lacks module $m" >&2
		exit 1
	fi
done
"$out/caddy" otp export-templates "$out/templates" >/dev/null
test -f "$out/templates/login.html"
echo "xcaddy build: all $(wc -w <<<"$ours") otp modules and the otp command present"
