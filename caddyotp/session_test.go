package caddyotp

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
)

func testCodec() *sessionCodec {
	return newSessionCodec(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-one"), 12*time.Hour, 30*time.Minute)
}

func TestSessionRoundTrip(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, err := c.issue(alice, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.decode(c.encode(s), t0.Add(time.Minute))
	if err != nil || got != s {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, s)
	}
	s2, _ := c.issue(alice, t0)
	if s2.ID == s.ID {
		t.Error("two sign-ins got the same session id")
	}
}

func TestSessionRejectsTamperingAnywhere(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := c.issue(alice, t0)
	v := c.encode(s)
	for i := 0; i < len(v); i++ {
		b := []byte(v)
		b[i] ^= 1
		if _, err := c.decode(string(b), t0); err == nil {
			t.Errorf("flipping byte %d was accepted", i)
		}
	}
	for _, bad := range []string{"", ".", v[:len(v)-1], v[:20], v + "A", strings.Repeat("A", 500), strings.Replace(v, ".", "", 1)} {
		if _, err := c.decode(bad, t0); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	foreign := newSessionCodec(bytes.Repeat([]byte{8}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-one"), 12*time.Hour, 30*time.Minute)
	if _, err := foreign.decode(v, t0); err != errSessionSignature {
		t.Errorf("a cookie signed with another key: %v", err)
	}
	other := newSessionCodec(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-two"), 12*time.Hour, 30*time.Minute)
	if _, err := other.decode(v, t0); err != errSessionAudience {
		t.Errorf("a cookie of another gate, signed with the same key: %v", err)
	}
}

// TestSessionIsJudgedByTheCodecsCurrentLimits: a cookie issued for 12 hours is refused once
// the gate's own session_ttl, shortened since, has passed.
func TestSessionIsJudgedByTheCodecsCurrentLimits(t *testing.T) {
	t.Parallel() // no server, no shared clock
	long := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := long.issue(alice, t0)
	v := long.encode(s)
	short := newSessionCodec(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{9}, 32), []byte("gate-one"), time.Hour, 30*time.Minute)
	if _, err := short.decode(v, t0.Add(59*time.Minute)); err != errSessionIdle {
		t.Errorf("59 idle minutes under a 30-minute idle limit: %v", err)
	}
	s.Seen = t0.Add(50 * time.Minute)
	if _, err := short.decode(long.encode(s), t0.Add(time.Hour)); err != errSessionExpired {
		t.Errorf("an hour after issue under a 1h session_ttl: %v", err)
	}
}

func TestSessionAbsoluteAndIdleLimits(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := c.issue(alice, t0)
	v := c.encode(s)
	if _, err := c.decode(v, t0.Add(31*time.Minute)); err != errSessionIdle {
		t.Errorf("after 31 idle minutes: %v", err)
	}
	// Sliding: a visitor active every 20 minutes keeps the session until the absolute limit.
	at := t0
	for at.Before(t0.Add(12*time.Hour - 20*time.Minute)) {
		at = at.Add(20 * time.Minute)
		got, err := c.decode(v, at)
		if err != nil {
			t.Fatalf("active visitor refused at %s: %v", at.Sub(t0), err)
		}
		if !c.needsSlide(got, at) {
			t.Fatalf("no slide after 20 minutes")
		}
		got.Seen = at
		v = c.encode(got)
	}
	if _, err := c.decode(v, t0.Add(12*time.Hour)); err != errSessionExpired {
		t.Errorf("at session_ttl: %v", err)
	}
}

// TestSessionOfASiteWithAnotherPublicURLIsRefused: two site blocks on one store, path and
// cookie name, each with its own public_url, are two gates.
func TestSessionOfASiteWithAnotherPublicURLIsRefused(t *testing.T) {
	sms := newRestcomm(t)
	twoGates(t, nil, sms, "phones *\nstore memory "+storeName(t), "phones *\nstore memory "+storeName(t))
	a := newVisitor(t)
	a.signInWith(sms, alice)
	b := newVisitorAt(t, siteB)
	b.setCookie("caddy_otp", a.cookie("caddy_otp"))
	wantStatus(t, "the other site's session", b.get("/"), http.StatusSeeOther)
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

// TestSessionFromAnotherGateIsRefused: two site blocks with their own stores; a session of one
// is no session on the other, unless both name the same audience.
func TestSessionFromAnotherGateIsRefused(t *testing.T) {
	sms := newRestcomm(t)
	config := func(tester *caddytest.Tester, audience string) *caddytest.Tester {
		return twoGates(t, tester, sms,
			fmt.Sprintf("phones %s\nstore memory %s-a\n%s", alice, storeName(t), audience),
			fmt.Sprintf("phones %s\nstore memory %s-b\nsession_ttl 1h\n%s", alice, storeName(t), audience))
	}
	tester := config(nil, "")
	a := newVisitor(t)
	a.signInWith(sms, alice)
	wantStatus(t, "own gate", a.get("/"), http.StatusOK)
	b := newVisitorAt(t, siteB)
	b.setCookie("caddy_otp", a.cookie("caddy_otp"))
	wantStatus(t, "session of another gate", b.get("/"), http.StatusSeeOther)

	config(tester, "audience shared")
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
