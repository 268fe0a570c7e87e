package caddyotp

import (
	"net/http"
	"net/url"
	"testing"
	"time"
)

// Sign-out, named for the attacks it stops.

// TestSignOutWithTrustOffThenOnKeepsTheBrowserOut: switching trust_device off does not make
// sign-out skip the trusted-browser cookie, which would sign in again once trust is back.
func TestSignOutWithTrustOffThenOnKeepsTheBrowserOut(t *testing.T) {
	g := startGate(t, "trust_device 30d")
	v := newVisitor(t)
	v.signInTrusting(g.sms, alice)
	device := v.cookie("caddy_otp_device")
	g.reload("", "upstream")
	wantStatus(t, "sign out with trust off", v.signOut(false), http.StatusSeeOther)
	if v.cookie("caddy_otp_device") != "" {
		t.Errorf("sign-out with trust off left the trusted-browser cookie")
	}
	g.reload("trust_device 30d", "upstream")
	kept := newVisitor(t)
	kept.setCookie("caddy_otp_device", device)
	wantStatus(t, "the trusted browser once trust is back", kept.get("/"), http.StatusSeeOther)
}

// TestStolenTrustedBrowserStaysOutAfterTrustIsShortened: "sign out everywhere" made while
// trust_device is short still ends a trusted browser issued for longer, however the config
// changes afterwards.
func TestStolenTrustedBrowserStaysOutAfterTrustIsShortened(t *testing.T) {
	g := startGate(t, "trust_device 30d\n\t\tsession_ttl 1m\n\t\tsession_idle 1m")
	stolen := newVisitor(t)
	stolen.signInTrusting(g.sms, alice)
	device := stolen.cookie("caddy_otp_device")
	g.reload("trust_device 1m\n\t\tsession_ttl 1m\n\t\tsession_idle 1m", "upstream")
	clock.Advance(31 * time.Second)
	owner := newVisitor(t)
	owner.signIn(g, alice)
	wantStatus(t, "sign out everywhere", owner.signOut(true), http.StatusSeeOther)
	g.reload("trust_device 30d\n\t\tsession_ttl 1m\n\t\tsession_idle 1m", "upstream")
	clock.Advance(65 * time.Second)
	thief := newVisitor(t)
	thief.setCookie("caddy_otp_device", device)
	wantStatus(t, "the stolen trusted browser", thief.get("/"), http.StatusSeeOther)
}

// TestSignOutEverywhereIsKeptFourHundredDays: a subject's record outlives anything the gate
// can issue, whatever session_ttl and trust_device say at the time.
func TestSignOutEverywhereIsKeptFourHundredDays(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"session_ttl": "1m", "session_idle": "1m"})
	s, err := h.signins.sessions.issue(alice, h.now())
	if err != nil {
		t.Fatal(err)
	}
	w, r := postForm(t, h, "/.otp/logout", url.Values{"everywhere": {"1"}}, &http.Cookie{Name: "caddy_otp", Value: h.signins.sessions.encode(s)})
	if err := serve(h, w, r); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("sign out: %d %v", w.Code, err)
	}
	revs := &h.store.(*MemoryStore).mem.revs
	revs.mu.RLock()
	rec := revs.revs[s.subjectID]
	revs.mu.RUnlock()
	if left := time.Until(time.Unix(0, rec.until)); left < 399*24*time.Hour {
		t.Fatalf("the subject's record is kept for %s, want 400 days", left.Round(time.Hour))
	}
}

// TestRefusedSignOutKeepsTheCookies: a sign-out that a limit refused revokes nothing, so it must
// not take the cookies away either: the visitor can try again.
func TestRefusedSignOutKeepsTheCookies(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := startGate(t, "ip_limit 3 10m")
	v := newVisitor(t)
	v.signIn(g, alice) // two requests counted: the send and the check
	newVisitor(t).startSignIn("/", stranger)
	r := v.signOut(true)
	wantStatus(t, "sign-out over ip_limit", r, http.StatusTooManyRequests)
	if c := r.header.Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("a refused sign-out cleared cookies: %q", c)
	}
	wantStatus(t, "the session after a refused sign-out", v.get("/"), http.StatusOK)
}
