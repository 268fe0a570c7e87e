package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
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
	for k, format := range []string{"2001:db8:42:%x::1", "203.0.113.%d"} {
		accepted := 0
		for i := 0; i < 500; i++ {
			// Numbers of each range's own, so that no ask meets a cooldown the other range's started.
			_, r := from(t, site, fmt.Sprintf(format, i/2)).startSignIn("/", fmt.Sprintf("+1201555%04d", 2000+500*k+i))
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
		wait, err := l.countAddressAndRange(t.Context(), fmt.Sprintf("2001:db8:42:%x::1", i))
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
	if wait, limit, err := a.admitCode(t.Context(), "+12015550150", "198.51.100.1", "a"); err != nil || wait > 0 {
		t.Fatalf("the budget's one code: %s %v %v", limit, wait, err)
	}
	if wait, limit, err := a.admitCode(t.Context(), alice, "203.0.113.1", "a"); err != nil || limit != "site" {
		t.Fatalf("with gate a's budget spent: %s %v %v, want the budget's refusal", limit, wait, err)
	}
	if wait, limit, err := b.admitCode(t.Context(), alice, "203.0.113.1", "b"); err != nil || wait > 0 {
		t.Errorf("gate b, right after gate a's budget refused the number: %s for %v (%v), want a code", limit, wait, err)
	}
}

// TestOneAddressCannotRaiseThePhonesFailureCount: tries refused because the address's count is
// over do not count towards the phone's own lock.
func TestOneAddressCannotRaiseThePhonesFailureCount(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"lockout": map[string]any{"count": 3, "window": "15m"}})
	ctx := context.Background()
	for i := 0; i < 20; i++ { // parallel tries, all counted before any was compared
		if _, _, err := h.limits.countTry(ctx, alice, "203.0.113.5"); err != nil {
			t.Fatal(err)
		}
	}
	n, wait, err := h.limits.countTry(ctx, alice, "198.51.100.7")
	if err != nil || wait != 0 {
		t.Fatalf("the owner's try from elsewhere: %+v, locked for %s, %v", n, wait, err)
	}
	if n.phone > 4 {
		t.Errorf("the phone's count is %d after 3 tries that could be compared and the owner's", n.phone)
	}
}

// TestOneClientCannotTakeEveryOutboxSlot: codes in flight are capped per address, so one client
// cannot keep every other visitor from getting a code.
func TestOneClientCannotTakeEveryOutboxSlot(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 100, "window": "10m"},
		"send_limit": map[string]any{"count": 100, "window": "10m"}, "phones": []string{"*"}})
	release := make(chan struct{})
	defer close(release)
	h.flows.deliveries.sender = blockingSender(release)
	send := func(phone, ip string) int {
		w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {phone}})
		if err := serveAs(h, w, r, ip); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	for i := 0; i < outboxPerClient; i++ {
		if code := send(fmt.Sprintf("+1201555017%d", i), "203.0.113.9"); code != http.StatusSeeOther {
			t.Fatalf("send %d: %d", i, code)
		}
	}
	if code := send("+12015550179", "203.0.113.9"); code != http.StatusServiceUnavailable {
		t.Fatalf("one more code in flight for the same client: %d, want 503", code)
	}
	if code := send(alice, "198.51.100.4"); code != http.StatusSeeOther {
		t.Fatalf("another client: %d", code)
	}
}

// TestBusyOutboxUsesUpNoLimit: a code that could not go out because every sender was busy
// starts no cooldown and counts against no send limit.
func TestBusyOutboxUsesUpNoLimit(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"send_limit": map[string]any{"count": 1, "window": "10m"}})
	release := make(chan struct{})
	h.flows.deliveries.sender = blockingSender(release)
	h.flows.deliveries.outbox = newOutbox(1, 1, 1)
	unitSend(t, h, bob) // holds the only slot
	w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {alice}})
	if err := serve(h, w, r); err != nil || w.Code != http.StatusServiceUnavailable {
		t.Fatalf("send while busy: %d %v", w.Code, err)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {alice}})
		if err := serve(h, w, r); err != nil {
			t.Fatal(err)
		}
		if w.Code == http.StatusSeeOther {
			return
		}
		if w.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("send once a sender is free: %d, want 303 (no cooldown, no send limit used)", w.Code)
		}
	}
}

func TestResendAfterCannotBeSkippedThroughSend(t *testing.T) {
	g := startGate(t, "resend_after 30s")
	v := newVisitor(t)
	csrf, r := v.startSignIn("/", alice)
	wantStatus(t, "first send", r, http.StatusSeeOther)
	wantResendWait(t, "second send on the same flow", v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}}))
	_, r = newVisitor(t).startSignIn("/", alice)
	wantResendWait(t, "send on another flow to the same phone", r)
	g.code(1) // the first code goes out in the background
	if n := len(g.sms.Messages()); n != 1 {
		t.Fatalf("%d SMS inside resend_after, want 1", n)
	}
	clock.Advance(31 * time.Second)
	_, r = newVisitor(t).startSignIn("/", alice)
	wantStatus(t, "send after resend_after", r, http.StatusSeeOther)
}

func TestEachHandlerOwnsItsLimits(t *testing.T) {
	a, _ := newUnitHandler(t, nil)
	a.SendLimit.Count, a.IPLimit.Count, a.Lockout.Count = 99, 99, 99
	b, _ := newUnitHandler(t, nil)
	if b.SendLimit.Count != 5 || b.IPLimit.Count != 20 || b.Lockout.Count != 10 {
		t.Fatalf("one handler's limits changed another's: %+v %+v %+v", b.SendLimit, b.IPLimit, b.Lockout)
	}
}

// TestOneAddressCannotLockTheOwnerOut: wrong codes from one address lock that address out for
// the phone, not the owner elsewhere; only 5×N failures from any addresses lock the phone.
func TestOneAddressCannotLockTheOwnerOut(t *testing.T) {
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t\ttrusted_proxies_strict\n\t}"
	g.start("lockout 3 15m\n\t\tresend_after 1s\n\t\tsend_limit 50 10m\n\t\tip_limit 100 10m")
	from := func(ip string) *visitor {
		v := newVisitor(t)
		v.client.Transport = headerTransport{"X-Forwarded-For": ip}
		return v
	}
	n := 0
	attack := func(ip string) {
		t.Helper()
		v := from(ip)
		csrf, r := v.startSignIn("/", alice)
		wantStatus(t, "attacker's send from "+ip, r, http.StatusSeeOther)
		n++
		_, code := g.code(n)
		clock.Advance(2 * time.Second)
		for i := 0; i < 2; i++ {
			wantStatus(t, "wrong code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}}), http.StatusUnauthorized)
		}
		wantRetryAfter(t, "the wrong code that locks", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}}), 15*time.Minute)
		wantRetryAfter(t, "the attacker's address is locked out", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), 15*time.Minute)
	}
	attack("203.0.113.66")
	owner := from("198.51.100.7")
	csrf, r := owner.startSignIn("/", alice)
	wantStatus(t, "owner's send", r, http.StatusSeeOther)
	n++
	_, code := g.code(n)
	clock.Advance(2 * time.Second)
	wantStatus(t, "owner's right code", owner.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	for i := 1; i <= 5; i++ {
		attack("203.0.113." + strconv.Itoa(100+i))
	}
	_, r = from("198.51.100.8").startSignIn("/", alice)
	wantRetryAfter(t, "phone after 5×N failures from many addresses", r, 15*time.Minute)
}

// wantResendWait checks the answer to a code asked for inside resend_after: 429, Retry-After
// within 30 seconds, and a page that says when a new code can be sent.
func wantResendWait(t *testing.T, what string, r response) {
	t.Helper()
	wantStatus(t, what, r, http.StatusTooManyRequests)
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs < 1 || secs > 30 {
		t.Errorf("%s: Retry-After %q", what, r.header.Get("Retry-After"))
	}
	if !strings.Contains(r.body, "You can try again in") || !strings.Contains(r.body, `id="clock"`) {
		t.Errorf("%s: the page does not say when a new code can be sent: %.300s", what, r.body)
	}
}

func TestSendLimitPerPhoneStopsSMSBombing(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := startGate(t, "send_limit 2 10m\n\t\tresend_after 1s")
	for i := 0; i < 2; i++ {
		_, r := newVisitor(t).startSignIn("/", alice)
		wantStatus(t, "send", r, http.StatusSeeOther)
		clock.Advance(2 * time.Second) // past resend_after, which holds per phone
	}
	_, r := newVisitor(t).startSignIn("/", alice)
	wantRetryAfter(t, "third send to one phone", r, 10*time.Minute)
	_, r = newVisitor(t).startSignIn("/", bob)
	wantStatus(t, "another phone", r, http.StatusSeeOther)
	if _, err := g.sms.WaitMessages(3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(g.sms.Messages()); n != 3 {
		t.Errorf("%d SMS, want 3", n)
	}
	clock.Advance(10 * time.Minute)
	_, r = newVisitor(t).startSignIn("/", alice)
	wantStatus(t, "send in the next window", r, http.StatusSeeOther)
}

func TestLockoutAfterConsecutiveWrongCodes(t *testing.T) {
	g := startGate(t, "lockout 3 15m\n\t\tmax_attempts 5")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	for i := 0; i < 2; i++ {
		wantStatus(t, "wrong code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}}), http.StatusUnauthorized)
	}
	// The wrong code that locks says so, counts no tries, says the wait once (its countdown),
	// speaks of no account where there is none, and offers another number.
	locking := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	wantRetryAfter(t, "the wrong code that locks", locking, 15*time.Minute)
	for _, want := range []string{"Sign-in paused", "Too many wrong codes were typed for this number.", "You can try again in <span id=\"clock\" class=\"clock\">15:00</span>", `href="/.otp/login">Use another number`} {
		if !strings.Contains(locking.body, want) {
			t.Errorf("the locking code's page lacks %q: %.1500s", want, locking.body)
		}
	}
	for _, unwanted := range []string{"tries left", "try left", "15\u00a0minutes", "account"} {
		if strings.Contains(locking.body, unwanted) {
			t.Errorf("the locking code's page says %q: %.1500s", unwanted, locking.body)
		}
	}
	wantRetryAfter(t, "right code while locked", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), 15*time.Minute)
	_, r := newVisitor(t).startSignIn("/", alice)
	wantRetryAfter(t, "new send while locked", r, 15*time.Minute)
	_, r = newVisitor(t).startSignIn("/", bob)
	wantStatus(t, "another phone", r, http.StatusSeeOther)
	g.code(2) // bob's code has gone out, so that the next sign-in waits for its own

	clock.Advance(15 * time.Minute)
	wantStatus(t, "right code after the lock (but past code_ttl)", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusUnauthorized)
	w := newVisitor(t)
	w.signIn(g, alice)
	wantStatus(t, "sign-in after the lock", w.get("/"), http.StatusOK)
}

func TestRegionAllowlistStopsSMSPumping(t *testing.T) {
	g := newGate(t)
	g.phones = "*"
	g.start("regions US CA")
	_, r := newVisitor(t).startSignIn("/", "+442079460000")
	wantStatus(t, "UK number", r, http.StatusBadRequest)
	if !strings.Contains(r.body, "This site sends codes only to numbers in: United States, Canada.") {
		t.Errorf("page does not explain: %.300s", r.body)
	}
	_, r = newVisitor(t).startSignIn("/", "+12015550177")
	wantStatus(t, "US number", r, http.StatusSeeOther)
	if _, err := g.sms.WaitMessages(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(g.sms.Messages()); n != 1 {
		t.Errorf("%d SMS, want 1", n)
	}
}

func TestSiteWideSMSCapStopsABotRunningUpTheBill(t *testing.T) {
	clock.StartWindow(time.Hour) // the requests below count in one window
	g := newGate(t)
	g.phones = "*"
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}"
	g.start("max_sms_per_hour 3")
	for i := 0; i < 3; i++ { // from three /24s: one may spend only a share of the budget
		_, r := from(t, site, "198.51."+strconv.Itoa(i)+".1").startSignIn("/", "+1201555017"+strconv.Itoa(i))
		wantStatus(t, "send", r, http.StatusSeeOther)
	}
	_, r := from(t, site, "198.51.9.1").startSignIn("/", "+12015550179")
	wantRetryAfter(t, "fourth SMS in the hour", r, time.Hour)
	g.code(3) // the three accepted codes go out in the background
	if n := len(g.sms.Messages()); n != 3 {
		t.Errorf("%d SMS, want 3", n)
	}
}

// wantRetryAfter checks a 429 with a Retry-After of at least one second and at most max.
func wantRetryAfter(t *testing.T, what string, r response, max time.Duration) {
	t.Helper()
	wantStatus(t, what, r, http.StatusTooManyRequests)
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > max {
		t.Errorf("%s: Retry-After %q, want 1..%d seconds", what, r.header.Get("Retry-After"), int(max.Seconds()))
	}
	if !strings.Contains(r.body, "try again in") {
		t.Errorf("%s: the page does not say how long to wait: %.300s", what, r.body)
	}
}

// TestALockThatSaysNoTimeFailsClosed: a lock whose value is no time in decimal digits (the gate
// writes none such, but a store is shared) holds, in the memory store here and in Redis in
// TestALockThatSaysNoTimeFailsClosedInRedis: no try is compared, counted or not.
func TestALockThatSaysNoTimeFailsClosed(t *testing.T) {
	lockThatSaysNoTimeFailsClosed(t, provisionStore(t, &MemoryStore{Name: t.Name()}))
}

func lockThatSaysNoTimeFailsClosed(t *testing.T, s Store) {
	l := &limits{store: s, subjects: []byte("key"), lockout: defaultLockout, now: time.Now, obs: &observer{logger: zap.NewNop()}}
	ctx := t.Context()
	for i, v := range []string{"-1000000000000000000", "01900000000000000000000", "not a time at all....", "1.9e18"} {
		client := fmt.Sprintf("198.51.100.%d", i+1)
		phoneKey, pairKey := l.lockKeys(alice, client)
		if err := s.Set(ctx, lockKey(pairKey), []byte(v), time.Minute); err != nil {
			t.Fatal(err)
		}
		for try := 0; try < 3; try++ {
			n, wait, err := l.countTry(ctx, alice, client)
			if err != nil {
				t.Fatal(err)
			}
			if wait <= 0 {
				t.Fatalf("lock %q: try %d may be compared (counts %+v)", v, try, n)
			}
		}
		if wait, err := l.lockedFor(ctx, phoneKey, pairKey); err != nil || wait <= 0 {
			t.Errorf("lock %q: a new code is not refused (%v, %v)", v, wait, err)
		}
		if err := s.Delete(ctx, lockKey(pairKey)); err != nil {
			t.Fatal(err)
		}
	}
}
