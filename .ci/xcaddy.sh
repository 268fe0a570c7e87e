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

modules=$("$out/caddy" list-modules)
for m in http.handlers.otp http.handlers.otp.senders.log http.handlers.otp.senders.restcomm \
	http.handlers.otp.stores.memory http.handlers.otp.stores.redis admin.api.otp; do
	if ! grep -qx "$m" <<<"$modules"; then
		echo "xcaddy build lacks module $m" >&2
		exit 1
	fi
done
"$out/caddy" otp export-templates "$out/templates" >/dev/null
test -f "$out/templates/login.html"
echo "xcaddy build: every otp module and command present"
