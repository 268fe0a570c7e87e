#!/usr/bin/env bash
# Runs the test suite with everything it needs: installs Chromium (browser tests), redis-server
# and redis-cli (Redis tests, a Redis Cluster among them) when they are missing, fetches
# axe-core (the browser tests' accessibility checks) with npm into .cache/axe, then
# `go test -race -count=1 -tags integration ./...`: every test, those that need Chromium,
# redis-server or a built Caddy (build tag integration) among them.
# Arguments go to `go test`, e.g. ./test.sh -run TestSignInEndToEnd ./caddyotp
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools) # forms the tests' Redis Cluster
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} for the tests" >&2
	sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
	# The tests start their own redis-server processes; the package's service is not needed.
	"${sudo[@]}" systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

# axe-core, which the browser tests inject into every page (they fail without it), pinned so
# that a new release cannot change their verdicts unseen.
axe=4.14.1
if ! grep -qs "\"version\": \"$axe\"" .cache/axe/node_modules/axe-core/package.json; then
	echo "fetching axe-core $axe for the browser tests" >&2
	npm install --silent --no-audit --no-fund --prefix .cache/axe "axe-core@$axe" >/dev/null
fi

# Without a package argument, every package.
packages=./...
for arg in "$@"; do
	case "$arg" in ./* | github.com/*) packages= ;; esac
done
echo "running go test -race -count=1 -tags integration $* $packages: a line per package as it finishes (./caddyotp, with its browsers, Redis and Caddy processes, takes about 7 minutes)" >&2
exec go test -race -count=1 -tags integration "$@" $packages
