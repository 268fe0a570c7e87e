#!/usr/bin/env bash
# Load test: plain Caddy, the otp gate with a valid session, and the forward_auth design, side
# by side on one Caddy, then a sign-in storm. Loopback only; bounded in time. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}           # interleaved rounds of the four targets
DURATION=${DURATION:-10s}     # wrk run length, per target and round
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}         # wrk threads; the rest of the 2 cores goes to Caddy
STORM=${STORM:-15s}           # 0: no sign-in storm
PIN=${PIN:-1}                 # pin Caddy (GOMAXPROCS=1) to CPU 0 and wrk to CPU 1, so req/s measure Caddy's CPU per request
CADDY=${CADDY:-}              # a Caddy binary built before (say, of another commit) instead of building this tree
AGAINST=${AGAINST:-}          # a second Caddy binary: both run, and every round runs every target on each, interleaved
PROFILE=${PROFILE:-}          # a directory: after the rounds, one more run per target with a CPU profile of Caddy there
PORTS=${PORTS:-18080}         # the sites listen on PORTS+1 to PORTS+5 (AGAINST's on PORTS+101 to PORTS+105)

command -v wrk >/dev/null || { echo "bench/load.sh needs wrk: apt-get install -y wrk" >&2; exit 1; }
work=$(mktemp -d)
declare -A pid
trap 'for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT

if [ -n "$CADDY" ]; then
	cp "$CADDY" "$work/caddy"
else
	echo "building Caddy with the gate..."
	go build -o "$work/caddy" ./cmd/caddy
fi
builds="A"
[ -z "$AGAINST" ] || { cp "$AGAINST" "$work/caddy-B"; builds="A B"; }
[ -z "$PROFILE" ] || mkdir -p "$PROFILE"

caddy_cpu=() wrk_cpu=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	caddy_cpu=(env GOMAXPROCS=1 taskset -c 0) wrk_cpu=(taskset -c 1)
fi

targets="plain one_handler otp forward_auth"
declare -A ports session
declare -A offsets=([plain]=1 [otp]=2 [forward_auth]=3 [one_handler]=5)

# start_caddy BUILD BINARY BASE runs one Caddy with the four sites on ports BASE+1 to BASE+5 (its
# admin endpoint, for PROFILE, on BASE+19) and signs in to its gate.
start_caddy() {
	local b=$1 bin=$2 base=$3 dir="$work/$1"
	mkdir -p "$dir"
	local admin="admin off"
	[ -z "$PROFILE" ] || admin="admin 127.0.0.1:$((base + 19))" # pprof on the admin endpoint
	cat >"$dir/Caddyfile" <<CADDY
{
	$admin
	storage file_system $dir/storage
	log {
		output file $dir/caddy.log
		format json
	}
}
# (1) plain Caddy: the route with no gate at all
:$((base + 1)) {
	respond "hello, visitor" 200
}
# (1b) control: the route with one near no-op handler before it, what any second handler costs
:$((base + 5)) {
	vars bench yes
	respond "hello, visitor" 200
}
# (2) the same route behind the otp gate. wrk replays one cookie and never stores the
# re-issued one that slides the idle limit (a browser does, once per session_idle/10), so a long
# session_idle keeps every request on the path a signed-in visitor's requests take.
:$((base + 2)) {
	otp {
		sender log
		public_url http://127.0.0.1:$((base + 2))
		phones +12015550123
		secret bench-secret-bench-secret-bench-secret
		session_ttl 12h
		session_idle 12h
	}
	respond "hello, visitor" 200
}
# (3) the same route behind forward_auth to a minimal auth endpoint that checks a cookie: the
# least an Authelia-style deployment pays (one extra HTTP round trip per request)
:$((base + 3)) {
	forward_auth 127.0.0.1:$((base + 4)) {
		uri /verify
	}
	respond "hello, visitor" 200
}
:$((base + 4)) {
	@ok header Cookie *auth_session=bench*
	respond @ok 200
	respond 401
}
CADDY
	"${caddy_cpu[@]}" "$bin" run --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.out" 2>&1 &
	pid[$b]=$!
	for t in $targets; do ports[$b/$t]=$((base + ${offsets[$t]})); done
	for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$((base + 1))/" && break; sleep 0.1; done

	# A real sign-in gives the session cookie for (2): the log sender writes the code to the log.
	local jar="$dir/jar" otp="http://127.0.0.1:$((base + 2))" login csrf code=
	login=$(curl -s -c "$jar" -b "$jar" "$otp/.otp/login")
	csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$login" | head -1)
	curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "phone=+12015550123" "$otp/.otp/send"
	for _ in $(seq 50); do # the gate sends in the background
		code=$(grep -o '#[0-9]\{6\}' "$dir/caddy.log" | tail -1 | tr -d '#' || true) # none yet is no failure
		[ -n "$code" ] && break
		sleep 0.1
	done
	curl -s -o /dev/null -c "$jar" -b "$jar" --data-urlencode "csrf=$csrf" --data-urlencode "code=$code" "$otp/.otp/verify"
	session[$b]=$(awk '$6 == "caddy_otp" {print $7}' "$jar")
	[ -n "${session[$b]}" ] || { echo "could not sign in for the benchmark" >&2; exit 1; }
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: caddy_otp=${session[$b]}" "$otp/")" = 200 ] || { echo "session refused" >&2; exit 1; }
	[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Cookie: auth_session=bench' "http://127.0.0.1:$((base + 3))/")" = 200 ] || { echo "forward_auth refused" >&2; exit 1; }
}

for base in $PORTS ${AGAINST:+$((PORTS + 100))}; do # fail early, not with a Caddy that could not listen
	for p in $(seq $((base + 1)) $((base + 5))) $((base + 19)); do
		! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "port $p is taken: choose other PORTS" >&2; exit 1; }
	done
done
start_caddy A "$work/caddy" "$PORTS"
[ -z "$AGAINST" ] || start_caddy B "$work/caddy-B" $((PORTS + 100))

# Every target gets the same cookies, as a browser sends them to every route of a site: the
# difference between the targets is then what the gate (or forward_auth) costs, not header size.
header() { echo "Cookie: theme=dark; caddy_otp=${session[$1]}; auth_session=bench"; }
declare -A rps p50 p99 cpu
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/${pid[$1]}/stat"; } # a Caddy's user + system time

to_ms() { # wrk latency (e.g. 812.00us, 1.20ms, 1.01s) in milliseconds
	awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

echo "wrk: $ROUNDS interleaved rounds of $DURATION per target, $CONNECTIONS connections, $THREADS thread(s)${caddy_cpu:+, Caddy on CPU 0 (GOMAXPROCS=1), wrk on CPU 1}"
[ -z "$AGAINST" ] || echo "  build A: ${CADDY:-this tree}; build B: $AGAINST"
for round in $(seq "$ROUNDS"); do
	for target in $targets; do
		for b in $builds; do
			t0=$(cpu_ticks "$b")
			out=$("${wrk_cpu[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -H "$(header "$b")" "http://127.0.0.1:${ports[$b/$target]}/")
			t1=$(cpu_ticks "$b")
			non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
			[ -z "$non2xx" ] || { echo "$target answered $non2xx non-2xx responses" >&2; exit 1; }
			r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
			l50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
			l99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
			n=$(awk '/requests in/ {print $1}' <<<"$out")
			us=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
			label=$target
			[ -z "$AGAINST" ] || label="$b $target"
			printf '  round %d %-15s %10.0f req/s   p50 %7.3f ms   p99 %7.3f ms   Caddy CPU %6.2f us/req\n' "$round" "$label" "$r" "$l50" "$l99" "$us"
			k=$b/$target
			rps[$k]="${rps[$k]:-} $r"; p50[$k]="${p50[$k]:-} $l50"; p99[$k]="${p99[$k]:-} $l99"; cpu[$k]="${cpu[$k]:-} $us"
		done
	done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for b in $builds; do
	echo
	echo "medians over $ROUNDS rounds${AGAINST:+, build $b}"
	printf '  %-13s %10s %10s %10s %12s\n' target "req/s" "p50 ms" "p99 ms" "CPU us/req"
	for target in $targets; do
		k=$b/$target
		printf '  %-13s %10.0f %10.3f %10.3f %12.2f\n' "$target" "$(median "${rps[$k]}")" "$(median "${p50[$k]}")" "$(median "${p99[$k]}")" "$(median "${cpu[$k]}")"
	done
	awk -v o="$(median "${rps[$b/otp]}")" -v p="$(median "${rps[$b/plain]}")" -v h="$(median "${rps[$b/one_handler]}")" -v f="$(median "${rps[$b/forward_auth]}")" 'BEGIN {
		printf "  otp / plain         %.3f   (target >= 0.95)\n", o / p
		printf "  one_handler / plain %.3f   (what any second handler costs Caddy)\n", h / p
		printf "  otp / one_handler   %.3f   (the gate beyond that)\n", o / h
		printf "  otp / forward_auth  %.2f    (target >= 2)\n", o / f }'
	# The same ratios from Caddy's CPU time per request (plain's over otp's, and so on): what the
	# gate costs even when the machine is shared and req/s follow whoever else runs.
	awk -v o="$(median "${cpu[$b/otp]}")" -v p="$(median "${cpu[$b/plain]}")" -v h="$(median "${cpu[$b/one_handler]}")" -v f="$(median "${cpu[$b/forward_auth]}")" 'BEGIN {
		print "  by Caddy CPU per request:"
		printf "  otp / plain         %.3f\n", p / o
		printf "  one_handler / plain %.3f\n", p / h
		printf "  otp / one_handler   %.3f\n", h / o
		printf "  otp / forward_auth  %.2f\n", f / o }'
done

if [ -n "$PROFILE" ]; then
	# Outside the measured rounds: the profiler's own cost stays out of the numbers above.
	secs=${DURATION%s}
	[[ "$secs" =~ ^[0-9]+$ ]] && [ "$secs" -gt 3 ] && secs=$((secs - 2)) || secs=5
	base=$PORTS
	for b in $builds; do
		for target in $targets; do
			curl -s -o "$PROFILE/$b-$target.pprof" "http://127.0.0.1:$((base + 19))/debug/pprof/profile?seconds=$secs" &
			"${wrk_cpu[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -H "$(header "$b")" "http://127.0.0.1:${ports[$b/$target]}/" >/dev/null
			wait $!
		done
		base=$((PORTS + 100))
	done
	cp "$work/caddy" "$PROFILE/caddy-A"
	[ -z "$AGAINST" ] || cp "$work/caddy-B" "$PROFILE/caddy-B"
	echo "CPU profiles of Caddy under each target in $PROFILE (go tool pprof $PROFILE/caddy-A $PROFILE/A-otp.pprof)"
fi

for p in "${pid[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
[ "$STORM" = 0 ] && exit 0
echo
go run ./bench/storm -caddy "$work/caddy" -duration "$STORM"
