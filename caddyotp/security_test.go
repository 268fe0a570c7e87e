package caddyotp

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func TestStoreDownFailsClosed(t *testing.T) {
	g := newGate(t)
	g.faulty = true
	g.start("")
	in := newVisitor(t)
	in.signIn(g, alice)
	pending := newVisitor(t)
	csrf, _ := pending.startSignIn("/", bob)
	_, code := g.code(2)

	storeDown.Store(true)
	defer storeDown.Store(false)
	r := in.get("/")
	wantStatus(t, "signed-in visitor while the store is down", r, http.StatusServiceUnavailable)
	if strings.Contains(r.body, "user=") || !strings.Contains(r.body, "not working right now") {
		t.Errorf("not the unavailable page: %.300s", r.body)
	}
	wantStatus(t, "verify while the store is down", pending.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusServiceUnavailable)
	fresh := newVisitor(t)
	login := fresh.get("/.otp/login")
	wantStatus(t, "send while the store is down", fresh.post("/.otp/send", url.Values{"csrf": {login.csrf()}, "phone": {alice}}), http.StatusServiceUnavailable)
	if n := len(g.sms.Messages()); n != 2 {
		t.Errorf("%d SMS, want no new one while the store is down", n)
	}
	if !strings.Contains(g.logs(), `"msg":"store error"`) {
		t.Errorf("no log line says the store failed")
	}

	storeDown.Store(false)
	wantStatus(t, "signed-in visitor after the store is back", in.get("/"), http.StatusOK)
	wantStatus(t, "verify after the store is back", pending.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
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

func TestIPLimitCountsCaddysClientIPBehindTrustedProxies(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t\tclient_ip_headers X-Forwarded-For\n\t}"
	g.start("ip_limit 3 10m\n\t\tresend_after 1s")
	from := func(ip string) *visitor {
		v := newVisitor(t)
		v.client.Transport = headerTransport{"X-Forwarded-For": ip}
		return v
	}
	_, r := from("203.0.113.5").startSignIn("/", alice)
	wantStatus(t, "send 1", r, http.StatusSeeOther)
	attacker := from("203.0.113.5")
	csrf := attacker.get("/.otp/login").csrf()
	for i := 2; i <= 3; i++ {
		clock.Advance(2 * time.Second) // past resend_after, which holds per phone
		wantStatus(t, "send "+strconv.Itoa(i), attacker.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {stranger}}), http.StatusSeeOther)
	}
	wantRetryAfter(t, "fourth send from one client IP", attacker.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {bob}}), 10*time.Minute)
	_, r = from("203.0.113.6").startSignIn("/", bob)
	wantStatus(t, "another client behind the same proxy", r, http.StatusSeeOther)
}

func TestLockoutAfterConsecutiveWrongCodes(t *testing.T) {
	g := startGate(t, "lockout 3 15m\n\t\tmax_attempts 5")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	for i := 0; i < 2; i++ {
		wantStatus(t, "wrong code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}}), http.StatusUnauthorized)
	}
	// The wrong code that locks says so, and counts no tries.
	locking := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	wantRetryAfter(t, "the wrong code that locks", locking, 15*time.Minute)
	if !strings.Contains(locking.body, "Locked for 15\u00a0minutes") || strings.Contains(locking.body, "tries left") || strings.Contains(locking.body, "try left") {
		t.Errorf("the locking code's page: %.600s", locking.body)
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

func TestNumberThatMayNotSignInIsIndistinguishable(t *testing.T) {
	g := startGate(t, "")
	known, unknown := newVisitor(t), newVisitor(t)
	ck, a := known.startSignIn("/", alice)
	cu, b := unknown.startSignIn("/", stranger)
	sameAnswer(t, "send", a, b)
	sameAnswer(t, "code page", known.get("/.otp/verify"), unknown.get("/.otp/verify"))
	sameAnswer(t, "wrong code", known.post("/.otp/verify", url.Values{"csrf": {ck}, "code": {"000000"}}),
		unknown.post("/.otp/verify", url.Values{"csrf": {cu}, "code": {"000000"}}))
	clock.Advance(31 * time.Second)
	sameAnswer(t, "resend", known.post("/.otp/resend", url.Values{"csrf": {ck}}), unknown.post("/.otp/resend", url.Values{"csrf": {cu}}))
	g.code(2)
	for _, m := range g.sms.Messages() {
		if m.To == stranger {
			t.Fatalf("an SMS went to a number that may not sign in")
		}
	}
}

// sameAnswer compares two answers as an attacker would: status, header names and the values
// that are not per-request (nonces, dates, cookie values), and the body with those masked.
func sameAnswer(t *testing.T, what string, a, b response) {
	t.Helper()
	mask := func(r response) string {
		var keys []string
		for k, v := range r.header {
			switch k {
			case "Date", "Content-Security-Policy":
				keys = append(keys, k)
			case "Set-Cookie":
				for _, c := range v {
					name, rest, _ := strings.Cut(c, "=")
					_, attrs, _ := strings.Cut(rest, ";")
					keys = append(keys, "Set-Cookie:"+name+";"+attrs)
				}
			default:
				keys = append(keys, k+":"+strings.Join(v, ","))
			}
		}
		body := regexpNonce.ReplaceAllString(r.body, "NONCE")
		body = regexpCSRF.ReplaceAllString(body, "CSRF")
		for _, p := range []string{alice, stranger} { // the number the visitor typed, as html/template writes it, masked or not
			body = strings.ReplaceAll(body, strings.ReplaceAll(unbreakable.Replace(maskPhoneDisplay(p)), "+", "&#43;"), "MASKED")
			body = strings.ReplaceAll(body, strings.ReplaceAll(unbreakable.Replace(formatPhone(p)), "+", "&#43;"), "SHOWN")
			body = strings.ReplaceAll(body, strings.ReplaceAll(p, "+", "&#43;"), "TYPED")
		}
		return strconv.Itoa(r.status) + "\n" + strings.Join(sortedCopy(keys), "\n") + "\n" + body
	}
	if ma, mb := mask(a), mask(b); ma != mb {
		t.Errorf("%s: answers differ:\n%s\n---\n%s", what, ma, mb)
	}
}

func TestSessionIdleLimitSlidesWithUseAndAbsoluteLimitHolds(t *testing.T) {
	g := startGate(t, "session_ttl 1h\n\t\tsession_idle 10m")
	v := newVisitor(t)
	v.signIn(g, alice)
	start := clock.Now()
	for clock.Now().Sub(start) < 54*time.Minute {
		clock.Advance(6 * time.Minute)
		r := v.get("/")
		wantStatus(t, "active visitor", r, http.StatusOK)
		if len(r.header.Values("Set-Cookie")) == 0 {
			t.Fatalf("cookie not re-issued after 6 minutes: the idle limit does not slide")
		}
	}
	clock.Advance(6 * time.Minute)
	wantStatus(t, "past session_ttl", v.get("/"), http.StatusSeeOther)

	idle := newVisitor(t)
	idle.signIn(g, bob)
	clock.Advance(11 * time.Minute)
	wantStatus(t, "after 11 idle minutes", idle.get("/"), http.StatusSeeOther)
}

func TestSessionSignedWithAnotherKeyIsRefused(t *testing.T) {
	g := startGate(t, "secret aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	v := newVisitor(t)
	v.signIn(g, alice)
	wantStatus(t, "same key", v.get("/"), http.StatusOK)
	g.reload("secret bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "upstream")
	wantStatus(t, "after the secret changed", v.get("/"), http.StatusSeeOther)
}

func TestEverySignInGetsAFreshSessionID(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, alice)
	first := sessionID(t, v.cookie("caddy_otp"))
	clock.Advance(31 * time.Second)
	v.signIn(g, alice)
	if second := sessionID(t, v.cookie("caddy_otp")); bytes.Equal(first, second) {
		t.Errorf("a second sign-in kept session id %x", first)
	}
}

func sessionID(t *testing.T, cookie string) []byte {
	t.Helper()
	payload, _, _ := strings.Cut(cookie, ".")
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || len(raw) < 17 {
		t.Fatalf("session cookie %q unreadable", cookie)
	}
	return raw[1:17]
}

func TestRemovedPhoneLosesItsSessions(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, bob)
	wantStatus(t, "bob signed in", v.get("/"), http.StatusOK)
	g.phones = alice
	g.reload("", "upstream")
	wantStatus(t, "bob after removal from phones", v.get("/"), http.StatusSeeOther)
}

func TestLogsNeverHoldCodesTokensCookiesOrFullNumbers(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	flowID := v.cookie("caddy_otp_flow")
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	clock.Advance(31 * time.Second)
	v.post("/.otp/resend", url.Values{"csrf": {csrf}})
	_, code2 := g.code(2)
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code2}})
	session := v.cookie("caddy_otp")
	v.get("/")
	refused := newVisitor(t)
	refused.startSignIn("/", stranger)
	refused.settled()
	g.sms.Fail(restcommtest.InternalError)
	failed := newVisitor(t)
	failed.startSignIn("/", bob)
	failed.settled()
	g.sms.Fail(restcommtest.None)
	v.signOut(false)

	logs := g.logs()
	for _, want := range []string{"code sent", "code failed", "code verified", "sender error", "session revoked"} {
		if !strings.Contains(logs, `"msg":"`+want+`"`) {
			t.Errorf("no %q event in the log", want)
		}
	}
	for name, secret := range map[string]string{
		"code": code, "second code": code2, "auth token": g.sms.AuthToken, "session cookie": session,
		"flow id": flowID, "csrf token": csrf, "alice": alice, "bob": bob, "stranger": stranger,
		"alice, national digits": alice[2:],
	} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("the log holds the %s", name)
		}
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
	if !strings.Contains(r.body, "try again in") && !strings.Contains(r.body, "Locked for") {
		t.Errorf("%s: the page does not say how long to wait: %.300s", what, r.body)
	}
}

// headerTransport adds headers to every request, as a proxy in front of Caddy would.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestPagesCarrySecurityHeadersAndNoExternalAssets(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	g.code(1)
	pages := map[string]response{
		"phone page":   v.get("/.otp/login"),
		"code page":    v.get("/.otp/verify"),
		"wrong code":   v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {"000000"}}),
		"rate limited": v.post("/.otp/resend", url.Values{"csrf": {csrf}}),
		"logout page":  v.get("/.otp/logout"),
		"not found":    v.get("/.otp/nope"),
	}
	for name, r := range pages {
		csp := r.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", name, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows unsafe-inline", name)
		}
		for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
			if got := r.header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", name, h, got, want)
			}
		}
		if strings.Contains(r.body, "src=\"http") || strings.Contains(r.body, "href=\"http") || strings.Contains(r.body, "url(") {
			t.Errorf("%s references an external asset", name)
		}
		if !strings.Contains(r.body, `<html lang="en">`) {
			t.Errorf("%s has no language", name)
		}
	}
}

func TestStoreKeysHoldNoPhoneNumberOrIP(t *testing.T) {
	h, _ := newUnitHandler(t, nil)
	flowCookie, csrf := unitFlow(t, h)
	r := httptest.NewRequest(http.MethodPost, "/.otp/send", strings.NewReader("csrf="+csrf+"&phone=%2B12015550123"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(flowCookie)
	w := httptest.NewRecorder()
	if err := serve(h, w, r); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("send: %d %v", w.Code, err)
	}
	items := h.store.(*MemoryStore).mem.c.Items()
	if len(items) < 3 {
		t.Fatalf("only %d store keys after a send: the limits did not count", len(items))
	}
	for key := range items {
		if strings.Contains(key, "2015550123") || strings.Contains(key, "192.0.2.1") {
			t.Errorf("store key %q holds the phone or the client IP", key)
		}
	}
}
