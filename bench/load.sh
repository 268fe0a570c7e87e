#!/usr/bin/env bash
# Load test: plain Caddy, the otp gate with a valid session, and the forward_auth design, side
# by side on one Caddy, then a sign-in storm. Loopback only; bounded in time. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}           # interleaved rounds of the three targets
DURATION=${DURATION:-10s}     # wrk run length, per target and round
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}         # wrk threads; the rest of the 2 cores goes to Caddy
STORM=${STORM:-15s}
PIN=${PIN:-1}                 # pin Caddy (GOMAXPROCS=1) to CPU 0 and wrk to CPU 1, so req/s measure Caddy's CPU per request

command -v wrk >/dev/null || { echo "bench/load.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $caddy_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

echo "building Caddy with the gate..."
go build -o "$work/caddy" ./cmd/caddy

cat > "$work/Caddyfile" <<CADDY
{
	admin off
	storage file_system $work/storage
	log {
		output file $work/caddy.log
		format json
	}
}
# (1) plain Caddy: the route with no gate at all
:18081 {
	respond "hello, visitor" 200
}
# (1b) control: the route with one near no-op handler before it, what any second handler costs
:18085 {
	vars bench yes
	respond "hello, visitor" 200
}
# (2) the same route behind the otp gate. wrk replays one cookie and never stores the
# re-issued one that slides the idle limit (a browser does, once per session_idle/10), so a long
# session_idle keeps every request on the path a signed-in visitor's requests take.
:18082 {
	otp {
		sender log
		public_url http://127.0.0.1:18082
		phones +12015550123
		secret bench-secret-bench-secret-bench-secret
		session_ttl 12h
		session_idle 12h
	}
	respond "hello, visitor" 200
}
# (3) the same route behind forward_auth to a minimal auth endpoint that checks a cookie: the
# least an Authelia-style deployment pays (one extra HTTP round trip per request)
:18083 {
	forward_auth 127.0.0.1:18084 {
		uri /verify
	}
	respond "hello, visitor" 200
}
:18084 {
	@ok header Cookie *auth_session=bench*
	respond @ok 200
	respond 401
}
CADDY

caddy_cpu=() wrk_cpu=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	caddy_cpu=(env GOMAXPROCS=1 taskset -c 0) wrk_cpu=(taskset -c 1)
fi
"${caddy_cpu[@]}" "$work/caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.out" 2>&1 &
caddy_pid=$!
for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:18081/ && break; sleep 0.1; done

# A real sign-in gives the session cookie for (2): the log sender writes the code to the log.
jar="$work/jar"
login=$(curl -s -c "$jar" -b "$jar" "http://127.0.0.1:18082/.otp/login")
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$login" | head -1)
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "phone=+12015550123" http://127.0.0.1:18082/.otp/send
code=
for _ in $(seq 50); do # the gate sends in the background
	code=$(grep -o '#[0-9]\{6\}' "$work/caddy.log" | tail -1 | tr -d '#')
	[ -n "$code" ] && break
	sleep 0.1
done
curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "code=$code" http://127.0.0.1:18082/.otp/verify
session=$(awk '$6 == "caddy_otp" {print $7}' "$jar")
[ -n "$session" ] || { echo "could not sign in for the benchmark" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: caddy_otp=$session" http://127.0.0.1:18082/)" = 200 ] || { echo "session refused" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Cookie: auth_session=bench' http://127.0.0.1:18083/)" = 200 ] || { echo "forward_auth refused" >&2; exit 1; }

# Every target gets the same cookies, as a browser sends them to every route of a site: the
# difference between the targets is then what the gate (or forward_auth) costs, not header size.
cookies="Cookie: theme=dark; caddy_otp=$session; auth_session=bench"
declare -A headers=([plain]="$cookies" [one_handler]="$cookies" [otp]="$cookies" [forward_auth]="$cookies")
declare -A ports=([plain]=18081 [one_handler]=18085 [otp]=18082 [forward_auth]=18083)
targets="plain one_handler otp forward_auth"
declare -A rps p50 p99

to_ms() { # wrk latency (e.g. 812.00us, 1.20ms, 1.01s) in milliseconds
	awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

echo "wrk: $ROUNDS interleaved rounds of $DURATION per target, $CONNECTIONS connections, $THREADS thread(s)${caddy_cpu:+, Caddy on CPU 0 (GOMAXPROCS=1), wrk on CPU 1}"
for round in $(seq "$ROUNDS"); do
	for target in $targets; do
		out=$("${wrk_cpu[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "${headers[$target]}" "http://127.0.0.1:${ports[$target]}/")
		non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
		[ -z "$non2xx" ] || { echo "$target answered $non2xx non-2xx responses" >&2; exit 1; }
		r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
		l50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
		l99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
		printf '  round %d %-13s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms\n' "$round" "$target" "$r" "$l50" "$l99"
		rps[$target]="${rps[$target]:-} $r"; p50[$target]="${p50[$target]:-} $l50"; p99[$target]="${p99[$target]:-} $l99"
	done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "medians over $ROUNDS rounds"
printf '  %-13s %10s %10s %10s\n' target "req/s" "p50 ms" "p99 ms"
for target in $targets; do
	printf '  %-13s %10.0f %10.3f %10.3f\n' "$target" "$(median "${rps[$target]}")" "$(median "${p50[$target]}")" "$(median "${p99[$target]}")"
done
plain_rps=$(median "${rps[plain]}"); one_rps=$(median "${rps[one_handler]}"); otp_rps=$(median "${rps[otp]}"); fwd_rps=$(median "${rps[forward_auth]}")
awk -v o="$otp_rps" -v p="$plain_rps" -v h="$one_rps" -v f="$fwd_rps" 'BEGIN {
	printf "  otp / plain         %.3f   (target >= 0.95)\n", o / p
	printf "  one_handler / plain %.3f   (what any second handler costs Caddy)\n", h / p
	printf "  otp / one_handler   %.3f   (the gate beyond that)\n", o / h
	printf "  otp / forward_auth  %.2f    (target >= 2)\n", o / f }'

kill "$caddy_pid"; wait "$caddy_pid" 2>/dev/null || true
echo
go run ./bench/storm -caddy "$work/caddy" -duration "$STORM"
