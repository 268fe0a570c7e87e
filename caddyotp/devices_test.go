package caddyotp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// signInTrusting walks the sign-in and ticks "trust this browser".
func (v *visitor) signInTrusting(sms *restcommtest.Server, phone string) {
	v.t.Helper()
	n := len(sms.Messages()) + 1
	csrf, sent := v.startSignIn("/", phone)
	wantStatus(v.t, "send", sent, http.StatusSeeOther)
	_, code := smsCode(v.t, sms, n)
	wantStatus(v.t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}, "trust": {"1"}}), http.StatusSeeOther)
}

func TestTrustedBrowserSkipsTheSMSUntilItExpires(t *testing.T) {
	g := startGate(t, "trust_device 30d")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	page := v.get("/.otp/verify")
	if !strings.Contains(page.body, `name="trust"`) || !strings.Contains(page.body, "Trust this browser for 30\u00a0days") {
		t.Fatalf("the code page offers no trust checkbox")
	}
	_, code := g.code(1)
	r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}, "trust": {"1"}})
	wantStatus(t, "verify", r, http.StatusSeeOther)
	assertCookieFlags(t, r.header, "caddy_otp_device", 30*24*time.Hour)
	wantStatus(t, "signed in", v.get("/"), http.StatusOK)

	// The session ends (session_ttl 12h); the trusted browser signs in again without an SMS.
	clock.Advance(13 * time.Hour)
	r = v.get("/")
	if r.status != http.StatusOK || !strings.Contains(r.body, "user="+alice) {
		t.Fatalf("trusted browser after the session ended: %d %q", r.status, r.body)
	}
	if !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), ";"), "caddy_otp=") {
		t.Errorf("no new session cookie was issued")
	}
	if n := len(g.sms.Messages()); n != 1 {
		t.Errorf("%d SMS, want none more", n)
	}
	if strings.Contains(r.body, "caddy_otp_device") {
		t.Errorf("the trusted-browser cookie reached the upstream: %q", r.body)
	}

	clock.Advance(31 * 24 * time.Hour)
	wantStatus(t, "after trust_device", v.get("/"), http.StatusSeeOther)

	// Without the checkbox ticked, no trust.
	w := newVisitor(t)
	w.signIn(g, bob)
	if w.cookie("caddy_otp_device") != "" {
		t.Errorf("a browser became trusted without asking")
	}
}

func TestTrustedBrowserCookieMustBeGenuine(t *testing.T) {
	g := startGate(t, "trust_device 30d")
	v := newVisitor(t)
	v.signInTrusting(g.sms, alice)
	device, session := v.cookie("caddy_otp_device"), v.cookie("caddy_otp")
	clock.Advance(13 * time.Hour)
	for name, c := range map[string][2]string{
		"tampered device cookie":        {"caddy_otp_device", device[:len(device)-2] + otherChar(device[len(device)-2]) + "A"},
		"device cookie as session":      {"caddy_otp", device},
		"session cookie as device":      {"caddy_otp_device", session},
		"device cookie with flow name":  {"caddy_otp_flow", device},
		"truncated device cookie":       {"caddy_otp_device", device[:40]},
		"garbage":                       {"caddy_otp_device", "x.y"},
		"a session's signature, reused": {"caddy_otp_device", device[:strings.IndexByte(device, '.')] + session[strings.IndexByte(session, '.'):]},
	} {
		m := newVisitor(t)
		m.setCookie(c[0], c[1])
		wantStatus(t, name, m.get("/"), http.StatusSeeOther)
	}
}

func TestTrustedBrowserIsBoundToItsUser(t *testing.T) {
	sms := startGate(t, "trust_device 30d", withFirstFactor).sms
	v := newVisitor(t).as("alice")
	r := v.get("/.otp/login")
	wantStatus(t, "login", r, http.StatusOK)
	wantStatus(t, "send", v.post("/.otp/send", url.Values{"csrf": {r.csrf()}}), http.StatusSeeOther)
	_, code := smsCode(t, sms, 1)
	page := v.get("/.otp/verify")
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {page.csrf()}, "code": {code}, "trust": {"1"}}), http.StatusSeeOther)
	clock.Advance(13 * time.Hour)
	if r := v.get("/"); r.status != http.StatusOK || r.body != "user=alice" {
		t.Fatalf("alice's trusted browser: %d %q", r.status, r.body)
	}
	clock.Advance(13 * time.Hour)
	v.as("bob")
	wantStatus(t, "bob with alice's trusted browser", v.get("/"), http.StatusSeeOther)
}

func TestSignOutEverywhereEndsEverySessionAndTrustedBrowser(t *testing.T) {
	g := startGate(t, "trust_device 30d")
	laptop, phone := newVisitor(t), newVisitor(t)
	laptop.signIn(g, alice)
	clock.Advance(31 * time.Second) // resend_after holds per phone
	phone.signInTrusting(g.sms, alice)
	other := newVisitor(t)
	other.signIn(g, bob)
	phoneDevice := phone.cookie("caddy_otp_device")

	page := laptop.get("/.otp/logout")
	if !strings.Contains(page.body, `value="1"`) || !strings.Contains(page.body, "Sign out everywhere") {
		t.Fatalf("the logout page offers no sign-out everywhere")
	}
	wantStatus(t, "sign out everywhere", laptop.post("/.otp/logout", url.Values{"csrf": {page.csrf()}, "everywhere": {"1"}}), http.StatusSeeOther)
	wantStatus(t, "laptop", laptop.get("/"), http.StatusSeeOther)
	wantStatus(t, "phone's session", phone.get("/"), http.StatusSeeOther)
	clock.Advance(13 * time.Hour)
	thief := newVisitor(t)
	thief.setCookie("caddy_otp_device", phoneDevice)
	wantStatus(t, "phone's trusted browser", thief.get("/"), http.StatusSeeOther)
	wantStatus(t, "bob, another subject", other.get("/"), http.StatusSeeOther) // past his session_ttl
	// A sign-in after the sign-out everywhere is a new start.
	clock.Advance(time.Second)
	fresh := newVisitor(t)
	fresh.signIn(g, alice)
	wantStatus(t, "a new sign-in afterwards", fresh.get("/"), http.StatusOK)
}

func TestSignOutOnThisBrowserForgetsItsTrust(t *testing.T) {
	g := startGate(t, "trust_device 30d")
	v := newVisitor(t)
	v.signInTrusting(g.sms, alice)
	device := v.cookie("caddy_otp_device")
	wantStatus(t, "sign out here", v.signOut(false), http.StatusSeeOther)
	if v.cookie("caddy_otp_device") != "" {
		t.Errorf("the trusted-browser cookie was not cleared")
	}
	kept := newVisitor(t)
	kept.setCookie("caddy_otp_device", device)
	wantStatus(t, "a kept copy of the trusted-browser cookie", kept.get("/"), http.StatusSeeOther)
}

// assertCookieFlags checks a Set-Cookie: HttpOnly, SameSite=Lax, Path=/, and Max-Age near want.
func assertCookieFlags(t *testing.T, h http.Header, name string, want time.Duration) {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name != name {
			continue
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
			t.Errorf("%s flags: %+v", name, c)
		}
		if got := time.Duration(c.MaxAge) * time.Second; got < want-time.Minute || got > want {
			t.Errorf("%s Max-Age %s, want %s", name, got, want)
		}
		return
	}
	t.Errorf("no Set-Cookie for %s", name)
}
