package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"
)

// Regression tests for attacks on the gate, each named for the attack it stops. Where the
// behaviour is visible over HTTP they run against a real Caddy.

// hostTransport sends every request with the Host header of the attacker's choice, as a
// client of a site block that answers any host can.
type hostTransport string

func (h hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = string(h)
	return http.DefaultTransport.RoundTrip(r)
}

func TestVoiceScriptURLIgnoresHostHeader(t *testing.T) {
	g := newGate(t)
	g.address = "http://:9080" // answers any host, like `:80` or a load balancer's backend
	g.senderOpts = []string{"voice"}
	g.start("public_url http://localhost:9080")
	v := newVisitor(t)
	v.client.Transport = hostTransport("attacker.example")
	askForCall(t, g, v)
	calls, err := g.sms.WaitCalls(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c := calls[0]; !strings.HasPrefix(c.URL, "http://localhost:9080/.otp/voice/") || c.FetchStatus != http.StatusOK {
		t.Fatalf("the provider was told to fetch the script from %q (status %d), want public_url", c.URL, c.FetchStatus)
	}
}

func TestSMSDoesNotFollowTheHostHeader(t *testing.T) {
	g := newGate(t)
	g.address = "http://:9080"
	g.start("site_name Example")
	v := newVisitor(t)
	v.client.Transport = hostTransport("accounts-login.evil.test")
	v.origin = "http://accounts-login.evil.test" // the attacker's client writes what it likes
	_, r := v.startSignIn("/", alice)
	wantStatus(t, "send", r, http.StatusSeeOther)
	msgs, err := g.sms.WaitMessages(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := msgs[0].Body
	if strings.Contains(body, "evil") || strings.Contains(body, "@") || !strings.Contains(body, "Example") {
		t.Fatalf("plain HTTP without public_url: SMS %q names the Host header or binds an autofill host", body)
	}

	g.reload("site_name Example\n\t\tpublic_url http://localhost:9080", "upstream")
	clock.Advance(31 * time.Second)
	w := newVisitor(t) // a visitor on the page public_url names
	w.client.Transport = hostTransport("accounts-login.evil.test")
	_, r = w.startSignIn("/", bob)
	wantStatus(t, "send with public_url", r, http.StatusSeeOther)
	msgs, err = g.sms.WaitMessages(2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if body := msgs[1].Body; strings.Contains(body, "evil") || !strings.HasSuffix(body, "\n@localhost #"+body[:6]) {
		t.Fatalf("with public_url: SMS %q, want the host of public_url only", body)
	}
}

func TestCookiesAreSecureBehindATLSProxy(t *testing.T) {
	startGate(t, "public_url https://login.example.com")
	r := newVisitor(t).get("/.otp/login")
	wantStatus(t, "phone page", r, http.StatusOK)
	cookies := r.header.Values("Set-Cookie")
	if len(cookies) == 0 {
		t.Fatal("no flow cookie")
	}
	for _, c := range cookies {
		if !strings.HasPrefix(c, "__Host-caddy_otp") || !strings.Contains(c, "; Secure") {
			t.Errorf("cookie %q behind a TLS-ending proxy lacks __Host- or Secure", c)
		}
	}
}

// TestLoginPageFloodStoresNothing: a stranger's cookie-less requests for the phone page (or a
// protected page) keep nothing on the server, with either store.
func TestLoginPageFloodStoresNothing(t *testing.T) {
	next := "/" + strings.Repeat("a", 2000)
	flood := func(t *testing.T, v *visitor) {
		for i := 0; i < 50; i++ {
			v.jar, _ = newJar()
			v.client.Jar = v.jar
			wantStatus(t, "phone page", v.get("/.otp/login?next="+url.QueryEscape(next+strconv.Itoa(i))), http.StatusOK)
			wantStatus(t, "protected page", v.get(next), http.StatusSeeOther)
			wantStatus(t, "sign-out page", v.get("/.otp/logout"), http.StatusOK)
		}
	}
	t.Run("memory", func(t *testing.T) {
		h, _ := newUnitHandler(t, nil)
		for i := 0; i < 1000; i++ {
			w := httptest.NewRecorder()
			if err := serve(h, w, httptest.NewRequest(http.MethodGet, "/.otp/login?next="+url.QueryEscape(next+strconv.Itoa(i)), nil)); err != nil || w.Code != http.StatusOK {
				t.Fatalf("phone page: %d %v", w.Code, err)
			}
		}
		if n := h.store.(*MemoryStore).mem.c.ItemCount(); n != 0 {
			t.Fatalf("1000 requests for the phone page left %d entries in the store", n)
		}
	})
	t.Run("redis", func(t *testing.T) {
		rs := startRedis(t)
		g := newGate(t)
		g.redis = rs.Addr()
		g.start("")
		flood(t, newVisitor(t))
		var left []string
		for _, k := range redisKeys(t, rs) {
			if !strings.HasSuffix(k, revocationsTag+":sweep") { // the background's minute lock, whatever the requests
				left = append(left, k)
			}
		}
		if len(left) != 0 {
			t.Fatalf("the flood left %d keys in Redis: %v", len(left), left)
		}
	})
}

func TestForgedFlowIDIsReplaced(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	forged := strings.Repeat("A", 43)
	v.setCookie("caddy_otp_flow", forged)
	r := v.get("/.otp/login")
	wantStatus(t, "phone page", r, http.StatusOK)
	if got := v.cookie("caddy_otp_flow"); got == forged || got == "" {
		t.Fatalf("the gate kept the flow id the client chose")
	}
	wantStatus(t, "send on the gate's own flow", v.post("/.otp/send", url.Values{"csrf": {r.csrf()}, "phone": {alice}}), http.StatusSeeOther)
	g.code(1)
}

// TestPasswordAloneCannotClaimACodeSentToAnotherPhone: where the first factor is optional and
// phones and users are combined, a flow started with alice's password cannot be finished with
// a code sent to another phone.
func TestPasswordAloneCannotClaimACodeSentToAnotherPhone(t *testing.T) {
	sms := startOptionalFirstFactorSite(t)
	v := newVisitor(t).as("alice")
	login := v.get("/.otp/login")
	wantStatus(t, "phone page with a password", login, http.StatusOK)
	csrf := login.csrf()
	wantStatus(t, "send to alice's phone", v.post("/.otp/send", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	smsCode(t, sms, 1)

	// The same browser, without the password: a code to the attacker's phone, on the list.
	v.client.Transport = nil
	clock.Advance(31 * time.Second)
	wantStatus(t, "send to the attacker's phone", v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {bob}}), http.StatusSeeOther)
	m, code := smsCode(t, sms, 2)
	if m.To != bob {
		t.Fatalf("second code went to %s", m.To)
	}
	v.as("alice")
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	if r := v.get("/docs"); r.status == http.StatusOK && strings.Contains(r.body, "user=alice") {
		t.Fatalf("alice's password and a code sent to another phone made alice's session")
	}
}

// startOptionalFirstFactorSite is a site where basic_auth runs only for requests that carry
// credentials; the gate binds alice to her phone and lets bob's phone sign in on its own.
func startOptionalFirstFactorSite(t *testing.T) *restcommtest.Server {
	t.Helper()
	sms := newRestcomm(t)
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	@creds header Authorization *
	basic_auth @creds {
		alice %[1]s
	}
	otp {
		%[2]s
		public_url http://localhost:9080
		users {
			alice %[3]s
		}
		phones %[4]s
		store memory %[5]s
	}
	respond "user={http.auth.user.id}"
}
`, passwordHash(t), senderBlock(sms, sms.AuthToken), alice, bob, storeName(t)))
	return sms
}

// TestSessionFromAnotherGateIsRefused: two site blocks with their own stores; a session of one
// is no session on the other, unless both name the same audience.
func TestSessionFromAnotherGateIsRefused(t *testing.T) {
	sms := newRestcomm(t)
	config := func(audienceA, audienceB string) string {
		return fmt.Sprintf(`http://localhost:9080 {
	otp {
		%[1]s
		public_url http://localhost:9080
		phones %[2]s
		store memory %[3]s-a
		%[4]s
	}
	respond "a"
}
http://127.0.0.1:9080 {
	otp {
		%[1]s
		public_url http://127.0.0.1:9080
		phones %[2]s
		store memory %[3]s-b
		session_ttl 1h
		%[5]s
	}
	respond "b"
}
`, senderBlock(sms, sms.AuthToken), alice, storeName(t), audienceA, audienceB)
	}
	tester := loadCaddyfile(t, nil, "", config("", ""))
	a := newVisitor(t)
	a.signInWith(sms, alice)
	wantStatus(t, "own gate", a.get("/"), http.StatusOK)
	b := newVisitorAt(t, "http://127.0.0.1:9080")
	b.setCookie("caddy_otp", a.cookie("caddy_otp"))
	wantStatus(t, "session of another gate", b.get("/"), http.StatusSeeOther)

	loadCaddyfile(t, tester, "", config("audience shared", "audience shared"))
	clock.Advance(31 * time.Second)
	a.signInWith(sms, alice)
	b.setCookie("caddy_otp", a.cookie("caddy_otp"))
	wantStatus(t, "session of a gate with the same audience", b.get("/"), http.StatusOK)
}

func TestSessionIsJudgedByTheGatesCurrentTTL(t *testing.T) {
	g := startGate(t, "session_ttl 12h\n\t\tsession_idle 1h")
	v := newVisitor(t)
	v.signIn(g, alice)
	g.reload("session_ttl 1h\n\t\tsession_idle 1h", "upstream")
	for i := 0; i < 2; i++ {
		clock.Advance(20 * time.Minute)
		wantStatus(t, "within the new session_ttl", v.get("/"), http.StatusOK)
	}
	clock.Advance(21 * time.Minute)
	wantStatus(t, "past the new session_ttl", v.get("/"), http.StatusSeeOther)
}

// TestClientCannotChooseItsAddressBehindTrustedProxy: behind a trusted proxy on a server that is
// not strict, the address the proxy saw is counted, not the one the client wrote in front of it.
func TestClientCannotChooseItsAddressBehindTrustedProxy(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}"
	g.start("ip_limit 3 10m\n\t\tresend_after 1s")
	send := func(i int) response {
		v := newVisitor(t)
		// The client wrote a new address each time; the proxy appended the one it saw.
		v.client.Transport = headerTransport{"X-Forwarded-For": "198.51.100." + strconv.Itoa(i) + ", 203.0.113.5"}
		_, r := v.startSignIn("/", stranger)
		clock.Advance(2 * time.Second)
		return r
	}
	for i := 1; i <= 3; i++ {
		wantStatus(t, "send "+strconv.Itoa(i), send(i), http.StatusSeeOther)
	}
	wantRetryAfter(t, "fourth send from one client behind the proxy", send(4), 10*time.Minute)
	if n := len(logEventsContaining(g.logs(), "trusted_proxies_strict")); n != 1 {
		t.Errorf("%d log lines ask for trusted_proxies_strict, want exactly 1", n)
	}
	if !strings.Contains(g.logs(), `"level":"error"`) {
		t.Errorf("the advice is not logged at error level")
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

// TestLoginPageGETSendsNothingInUsersMode: a prefetcher or a cross-site link that opens the
// phone page sends no SMS; the signed-in user presses a button to send the code.
func TestLoginPageGETSendsNothingInUsersMode(t *testing.T) {
	sms := startTwoFactorSite(t)
	v := newVisitor(t).as("alice")
	r := v.get("/.otp/login")
	wantStatus(t, "phone page", r, http.StatusOK)
	if !strings.Contains(r.body, `action="/.otp/send"`) || !strings.Contains(r.body, "Send the code to &#43;1\u00a0201\u2011***\u2011**23") {
		t.Errorf("the page does not offer to send the code to alice's masked phone: %.600s", r.body)
	}
	req, _ := http.NewRequest(http.MethodHead, site+"/.otp/login", nil)
	req.Header.Set("Accept", "text/html")
	wantStatus(t, "HEAD", v.do(req), http.StatusOK)
	if n := len(sms.Messages()); n != 0 {
		t.Fatalf("GET and HEAD sent %d SMS", n)
	}
	wantStatus(t, "send", v.post("/.otp/send", url.Values{"csrf": {r.csrf()}}), http.StatusSeeOther)
	if m, _ := smsCode(t, sms, 1); m.To != alice {
		t.Fatalf("code went to %s", m.To)
	}
}

func TestNextWithDotSegmentsCannotLeaveTheSite(t *testing.T) {
	for next, want := range map[string]string{
		"/..//evil.test":        "/evil.test",
		"/a/../..//evil.test":   "/evil.test",
		"/%2e%2e//evil.test":    "/evil.test",
		"/./a/./b/":             "/a/b/",
		"/reports?q=1":          "/reports?q=1",
		"/a/..":                 "/",
		"/.otp/../.otp/login":   "/",
		"/x/../.otp/verify?a=b": "/",
	} {
		if got := localPath(next, "/.otp"); got != want {
			t.Errorf("localPath(%q) = %q, want %q", next, got, want)
		}
	}
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/..//evil.test", alice)
	_, code := g.code(1)
	r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	wantStatus(t, "verify", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/evil.test" {
		t.Fatalf("after sign-in Location = %q, want /evil.test", loc)
	}
}

func TestFormFromAnotherSchemeIsRefused(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf := v.get("/.otp/login").csrf()
	v.origin = "https://localhost:9080"
	wantStatus(t, "Origin with another scheme", v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}}), http.StatusForbidden)
	if n := len(g.sms.Messages()); n != 0 {
		t.Fatalf("%d SMS sent", n)
	}
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

func TestIPv6ClientsCountByTheir64(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 2, "window": "10m"}})
	status := func(ip string) int {
		flowCookie, csrf := unitFlow(t, h)
		r := httptest.NewRequest(http.MethodPost, "/.otp/send", strings.NewReader("csrf="+csrf+"&phone=%2B12015550199"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(flowCookie)
		w := httptest.NewRecorder()
		if err := serveAs(h, w, r, ip); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"} {
		if got := status(ip); got != http.StatusSeeOther {
			t.Fatalf("send from %s: %d", ip, got)
		}
		clock.Advance(time.Minute)
	}
	if got := status("2001:db8:1:2:abcd::9"); got != http.StatusTooManyRequests {
		t.Fatalf("third send from one /64: %d, want 429", got)
	}
	if got := status("2001:db8:1:3::1"); got != http.StatusSeeOther {
		t.Fatalf("send from the next /64: %d", got)
	}
}

// TestAccessLogFilterDeletesThePhone proves the README's log filter: Caddy's access log records
// {http.auth.user.id}, the phone, as user_id unless the filter deletes it.
func TestAccessLogFilterDeletesThePhone(t *testing.T) {
	sms := newRestcomm(t)
	dir := t.TempDir()
	plain, filtered := filepath.Join(dir, "plain.log"), filepath.Join(dir, "filtered.log")
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	log plain {
		output file %[1]s
		format json
	}
	log filtered {
		output file %[2]s
		format filter {
			wrap json
			user_id delete
		}
	}
	otp {
		%[3]s
		public_url http://localhost:9080
		phones %[4]s
		store memory %[5]s
	}
	respond "ok"
}
`, plain, filtered, senderBlock(sms, sms.AuthToken), alice, storeName(t)))
	v := newVisitor(t)
	v.signInWith(sms, alice)
	wantStatus(t, "signed in", v.get("/"), http.StatusOK)
	read := func(path string) string {
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), `"uri":"/"`) || time.Now().After(deadline) {
				return string(b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if log := read(plain); !strings.Contains(log, `"user_id":"`+alice+`"`) {
		t.Fatalf("the unfiltered access log does not show the phone as user_id, so the filter proves nothing: %.500s", log)
	}
	if log := read(filtered); !strings.Contains(log, `"uri":"/"`) || strings.Contains(log, "user_id") || strings.Contains(log, alice[1:]) {
		t.Fatalf("the filtered access log still holds the phone: %.500s", log)
	}
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

func newRestcomm(t *testing.T) *restcommtest.Server {
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	return sms
}

func newJar() (http.CookieJar, error) { return cookiejar.New(nil) }

// passwordHash is basic_auth's hash of "correct horse", the test users' password.
func passwordHash(t *testing.T) string {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(hash)
}

// redisKeys lists every key in the Redis at rs.
func redisKeys(t *testing.T, rs *redisServer) []string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// withClientIP gives r what Caddy's server puts in every request's context, with the client
// address ip.
func withClientIP(r *http.Request, ip string) *http.Request {
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

// logEventsContaining returns the log lines that mention s.
func logEventsContaining(logs, s string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}
