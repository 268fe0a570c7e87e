package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// from is a visitor behind the trusted proxy, which saw it at addr.
func from(t *testing.T, base, addr string) *visitor {
	v := newVisitorAt(t, base)
	v.client.Transport = headerTransport{"X-Forwarded-For": addr}
	return v
}

// TestOneGatesVisitorsCannotSpendAnotherGatesHourlyBudget: two sites of one Caddy share a
// store and its key, the default. One address that spends a public gate's max_sms_per_hour,
// and tries on past it, must leave the strict gate's budget untouched.
func TestOneGatesVisitorsCannotSpendAnotherGatesHourlyBudget(t *testing.T) {
	clock.StartWindow(time.Hour)
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	gate := func(phones string) string {
		return fmt.Sprintf(`otp {
		%s
		phones %s
		store memory %s
		max_sms_per_hour 3
		send_limit 50 10m
		ip_limit 100 10m
	}
	respond "in"`, senderBlock(sms, sms.AuthToken), phones, storeName(t))
	}
	loadCaddyfile(t, nil, "", fmt.Sprintf("http://localhost:9080 {\n\t%s\n}\nhttp://127.0.0.1:9080 {\n\t%s\n}\n", gate("*"), gate(alice)))
	for i := 0; i < 11; i++ { // the public gate: its budget, and more
		newVisitor(t).startSignIn("/", fmt.Sprintf("+120155501%02d", 50+i))
	}
	strict := "http://127.0.0.1:9080"
	sent := len(sms.Messages())
	_, r := newVisitorAt(t, strict).startSignIn("/", alice)
	wantStatus(t, "the strict gate's owner", r, http.StatusSeeOther)
	if _, err := sms.WaitMessages(sent+1, 5*time.Second); err != nil {
		t.Fatalf("the strict gate's owner got no code: %v", err)
	}
}

// TestOneAddressRangeTakesAtMostAShareOfTheHourlyBudget: the addresses of one /24 (or one
// IPv6 /48) may spend at most a quarter of max_sms_per_hour, and its tries past that share
// count for nothing: the other ranges still get the rest.
func TestOneAddressRangeTakesAtMostAShareOfTheHourlyBudget(t *testing.T) {
	clock.StartWindow(time.Hour)
	g := newGate(t)
	g.phones = "*"
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8 ::1/128\n\t}"
	g.start("max_sms_per_hour 8\n\t\tsend_limit 50 10m\n\t\tip_limit 100 10m")
	n := 0
	send := func(addr string) response {
		n++
		_, r := from(t, site, addr).startSignIn("/", fmt.Sprintf("+120155501%02d", n))
		return r
	}
	for i := 0; i < 12; i++ { // one /24: 2 codes, then 10 tries past its share
		r := send(fmt.Sprintf("198.51.100.%d", i))
		if i < 2 {
			wantStatus(t, "within the range's share", r, http.StatusSeeOther)
		} else {
			wantRetryAfter(t, "past the range's share", r, time.Hour)
		}
	}
	for _, addr := range []string{"203.0.113.1", "203.0.113.2", "2001:db8:1:1::1", "2001:db8:1:2::1", "192.0.2.1", "192.0.2.200"} {
		wantStatus(t, "another range, from "+addr, send(addr), http.StatusSeeOther)
	}
	wantRetryAfter(t, "past the gate's budget", send("100.64.0.1"), time.Hour)
	if _, err := g.sms.WaitMessages(8, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if m := len(g.sms.Messages()); m != 8 {
		t.Errorf("%d SMS, want the budget's 8", m)
	}
}

// TestARangeOfAddressesGetsABoundedMultipleOfIPLimit: ip_limit counts an IPv4 address and an
// IPv6 /64; their /24 and /48 may make ip_range_factor times as many requests, not one more.
func TestARangeOfAddressesGetsABoundedMultipleOfIPLimit(t *testing.T) {
	clock.StartWindow(10 * time.Minute)
	g := newGate(t)
	g.phones = "*"
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8 ::1/128\n\t}"
	g.start("ip_limit 2 10m\n\t\tip_range_factor 3\n\t\tsend_limit 50 10m")
	phone := 0
	for _, tc := range []struct{ name, addr string }{{"IPv4 /24", "198.51.100.%d"}, {"IPv6 /48", "2001:db8:7:%x::1"}} {
		n := 0
		for i := 0; i < 4; i++ { // 4 addresses of the range, 2 requests each: 8, against 2 × 3
			for j := 0; j < 2; j++ {
				n++
				phone++
				_, r := from(t, site, fmt.Sprintf(tc.addr, i+1)).startSignIn("/", fmt.Sprintf("+12015551%03d", phone))
				if n <= 6 {
					wantStatus(t, fmt.Sprintf("%s: request %d", tc.name, n), r, http.StatusSeeOther)
				} else {
					wantRetryAfter(t, fmt.Sprintf("%s: request %d, past the range's limit", tc.name, n), r, 10*time.Minute)
				}
			}
		}
	}
}

// TestAFloodFromOneRangeLeavesBoundedStateBehind: 250 /64s of one /48, and 250 addresses of one
// /24, each asking twice on an allowlist gate for codes to numbers that may not sign in, get
// at most ip_limit × ip_range_factor flows between them; the rest is refused before anything is
// stored or started, so flows, goroutines and memory stay within what that bound allows.
func TestAFloodFromOneRangeLeavesBoundedStateBehind(t *testing.T) {
	clock.StartWindow(10 * time.Minute)
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8 ::1/128\n\t}"
	g.start("send_limit 50 10m") // ip_limit 20 10m and ip_range_factor 5: 100 a range
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	for _, format := range []string{"2001:db8:42:%x::1", "203.0.113.%d"} {
		accepted := 0
		for i := 0; i < 500; i++ {
			_, r := from(t, site, fmt.Sprintf(format, i/2)).startSignIn("/", fmt.Sprintf("+1201555%04d", 2000+i))
			if r.status == http.StatusSeeOther {
				accepted++
			} else if r.status != http.StatusTooManyRequests && r.status != http.StatusServiceUnavailable { // a limit, or the range's share of the outbox
				t.Fatalf("request %d: status %d", i, r.status)
			}
		}
		if accepted < outboxPerRange || accepted > 100 {
			t.Errorf("one range (%s) got %d flows, want at most ip_limit × ip_range_factor = 100", format, accepted)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	grew := runtime.NumGoroutine() - goroutines
	t.Logf("after 1000 requests from two ranges: %d more goroutines, heap %+.1f MB", grew, float64(int64(after.HeapInuse)-int64(before.HeapInuse))/1e6)
	if grew > 2*100+50 { // at most one simulated delivery (and its end) per flow, and the servers' own
		t.Errorf("%d more goroutines for 200 flows", grew)
	}
	// Let the simulated deliveries end here, not in the next test's metrics.
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > goroutines+20 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFailedTriesPerPhoneStayWithinTheStatedBound is the bound SECURITY.md states for guessing:
// an attacker with a thousand addresses who tries a phone's codes as fast as the lockout lets
// him, for two hours, gets fewer than 2 × 5 × lockout failed tries compared in any lockout
// window, and fewer than 250 in any hour, with the default lockout.
func TestFailedTriesPerPhoneStayWithinTheStatedBound(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	l := &limits{store: provisionStore(t, &MemoryStore{Name: t.Name()}), subjects: []byte("key"), lockout: defaultLockout,
		now: func() time.Time { return now }, obs: &observer{logger: zap.NewNop()}}
	ctx := t.Context()
	var fails []time.Time
	for step := 0; step < 2*3600; step++ {
		client := fmt.Sprintf("198.51.%d.%d", step%1000/250, step%250)
		n, wait, err := l.countTry(ctx, alice, client)
		if err != nil {
			t.Fatal(err)
		}
		if wait == 0 {
			fails = append(fails, now)
			if _, err := l.tryFailed(ctx, alice, client, n); err != nil {
				t.Fatal(err)
			}
		}
		now = now.Add(time.Second)
	}
	most := func(d time.Duration) int {
		best, j := 0, 0
		for i := range fails {
			for fails[i].Sub(fails[j]) >= d {
				j++
			}
			best = max(best, i-j+1)
		}
		return best
	}
	window := time.Duration(defaultLockout.Window)
	perWindow, perHour := most(window), most(time.Hour)
	t.Logf("%d failed tries in 2 hours; at most %d in any %s, %d in any hour", len(fails), perWindow, window, perHour)
	if bound := 2 * phoneLockFactor * defaultLockout.Count; perWindow >= bound {
		t.Errorf("%d failed tries in one lockout window, want fewer than %d", perWindow, bound)
	}
	if perHour >= 250 {
		t.Errorf("%d failed tries in one hour, want fewer than 250", perHour)
	}
	if perWindow < phoneLockFactor*defaultLockout.Count {
		t.Errorf("only %d failed tries in a window: the attack did not reach the phone's lock", perWindow)
	}
}

// TestGatesOfWildcardSitesKeepTheirOwnBudget: the name a gate's budget is kept under tells
// wildcard sites apart (an SMS is never bound to them), and is the same on every instance of a
// site, wherever each listens.
func TestGatesOfWildcardSitesKeepTheirOwnBudget(t *testing.T) {
	name := func(listen string, hosts ...string) string {
		h := &Handler{Path: "/.otp"}
		var routes caddyhttp.RouteList
		rt := caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{h}}
		if len(hosts) > 0 {
			rt.MatcherSets = caddyhttp.MatcherSets{{caddyhttp.MatchHost(hosts)}}
		}
		routes = append(routes, rt)
		srv := &caddyhttp.Server{Listen: []string{listen}, Routes: routes}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv))
		return new(sites).of(r, h).gate
	}
	if a, b := name(":80", "*.a.test"), name(":80", "*.b.test"); a == b {
		t.Errorf("two wildcard sites share the gate name %s, and with it one hourly budget", a)
	}
	if a, b := name(":80", "Example.com", "www.example.com"), name(":8080", "www.example.com", "example.com"); a != b {
		t.Errorf("one site's gate is named %s on one instance and %s on another", a, b)
	}
}

// incrKeys is a Store that remembers every key it counted.
type incrKeys struct {
	Store
	keys map[string]bool
}

func (s incrKeys) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	s.keys[key] = true
	return s.Store.Incr(ctx, key, ttl)
}

// TestARangeOverItsCountLeavesNoCounterPerAddress: once a /48 has made its ip_limit ×
// ip_range_factor asks, asks from its other /64s are refused before anything is counted, so
// that its 65,536 /64s cannot leave a counter each.
func TestARangeOverItsCountLeavesNoCounterPerAddress(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	store := incrKeys{provisionStore(t, &MemoryStore{Name: t.Name()}), map[string]bool{}}
	l := &limits{store: store, subjects: []byte("key"), ip: Limit{Count: 2, Window: caddy.Duration(10 * time.Minute)}, rangeFactor: 5,
		now: func() time.Time { return now }, obs: &observer{logger: zap.NewNop()}}
	refused := 0
	for i := 0; i < 1000; i++ {
		wait, err := l.addressAndRange(t.Context(), fmt.Sprintf("2001:db8:42:%x::1", i))
		if err != nil {
			t.Fatal(err)
		}
		if wait > 0 {
			refused++
		}
	}
	if refused < 1000-10 || len(store.keys) > 10+1+1 { // 10 addresses counted, the range's count, and the one refused by it
		t.Errorf("1000 /64s of one /48 with a range count of 10: %d refused, %d counters left", refused, len(store.keys))
	}
}

// TestATryRefusedByTheBudgetSpendsNoPhonesLimits: a code the hourly budget refuses starts no
// cooldown for the phone and counts nothing against its send limit, so that whoever spends one
// gate's budget does not keep its visitors from a code on another gate of the same store.
func TestATryRefusedByTheBudgetSpendsNoPhonesLimits(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	store := provisionStore(t, &MemoryStore{Name: t.Name()})
	gate := func(perHour int) *limits {
		return &limits{store: store, subjects: []byte("key"), lockout: defaultLockout, send: Limit{Count: 1, Window: caddy.Duration(10 * time.Minute)},
			perHour: perHour, resendAfter: 30 * time.Second, now: func() time.Time { return now }, obs: &observer{logger: zap.NewNop()}}
	}
	a, b := gate(1), gate(0)
	if wait, limit, err := a.newCode(t.Context(), "+12015550150", "198.51.100.1", "a"); err != nil || wait > 0 {
		t.Fatalf("the budget's one code: %s %v %v", limit, wait, err)
	}
	if wait, limit, err := a.newCode(t.Context(), alice, "203.0.113.1", "a"); err != nil || limit != "site" {
		t.Fatalf("with gate a's budget spent: %s %v %v, want the budget's refusal", limit, wait, err)
	}
	if wait, limit, err := b.newCode(t.Context(), alice, "203.0.113.1", "b"); err != nil || wait > 0 {
		t.Errorf("gate b, right after gate a's budget refused the number: %s for %v (%v), want a code", limit, wait, err)
	}
}
