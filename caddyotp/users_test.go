package caddyotp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// as makes the visitor's browser send the user's basic_auth credentials.
func (v *visitor) as(user string) *visitor {
	v.client.Transport = headerTransport{"Authorization": basicAuth(user, "correct horse")}
	return v
}

func TestPasswordThenSMSCodeIsTwoFactors(t *testing.T) {
	sms := startGate(t, "", withFirstFactor).sms
	v := newVisitor(t)
	wantStatus(t, "no password", v.get("/"), http.StatusUnauthorized)

	v.as("alice")
	r := v.get("/docs")
	wantStatus(t, "password, no code", r, http.StatusSeeOther)
	// No phone to type: one button sends the code to alice's phone (a GET sends nothing).
	r = v.get(r.header.Get("Location"))
	wantStatus(t, "login with a first factor", r, http.StatusOK)
	r = v.post("/.otp/send", url.Values{"csrf": {r.csrf()}, "phone": {bob}})
	wantStatus(t, "send", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/.otp/verify" {
		t.Fatalf("send went to %q, want the code page", loc)
	}
	m, code := smsCode(t, sms, 1)
	if m.To != alice {
		t.Fatalf("code went to %s, want alice's phone", m.To)
	}
	page := v.get("/.otp/verify")
	if !strings.Contains(page.body, "&#43;1\u00a0201\u2011***\u2011**23") {
		t.Errorf("code page does not show alice's masked phone")
	}
	// Opening the phone page again sends nothing; pressing the button again within
	// resend_after sends nothing either.
	wantStatus(t, "login again", v.get("/.otp/login"), http.StatusOK)
	wantStatus(t, "send again", v.post("/.otp/send", url.Values{"csrf": {page.csrf()}}), http.StatusTooManyRequests)
	if n := len(sms.Messages()); n != 1 {
		t.Errorf("%d SMS, want 1", n)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {page.csrf()}, "code": {code}}), http.StatusSeeOther)
	if r := v.get("/docs"); r.status != http.StatusOK || r.body != "user=alice" {
		t.Fatalf("alice after both factors: %d %q", r.status, r.body)
	}

	// The same browser, with bob's password now: alice's session does not count for bob.
	v.as("bob")
	wantStatus(t, "bob with alice's session", v.get("/docs"), http.StatusSeeOther)
	// Without a password, the session alone is not enough either (basic_auth answers first).
	v.client.Transport = nil
	wantStatus(t, "session without password", v.get("/docs"), http.StatusUnauthorized)
}

// TestAUsersLockSpeaksOfTheAccount: a signed-in user's lock says it protects their account, and
// offers no other number, since the code goes only to the account's phone.
func TestAUsersLockSpeaksOfTheAccount(t *testing.T) {
	g := startGate(t, "lockout 2 15m", withFirstFactor)
	v := newVisitor(t)
	v.as("alice")
	r := v.get(v.get("/").header.Get("Location"))
	wantStatus(t, "send", v.post("/.otp/send", url.Values{"csrf": {r.csrf()}}), http.StatusSeeOther)
	_, code := g.code(1)
	page := v.get("/.otp/verify")
	v.post("/.otp/verify", url.Values{"csrf": {page.csrf()}, "code": {otherCode(code)}})
	locking := v.post("/.otp/verify", url.Values{"csrf": {page.csrf()}, "code": {otherCode(code)}})
	wantRetryAfter(t, "the wrong code that locks", locking, 15*time.Minute)
	if !strings.Contains(locking.body, "To protect your account, sign-in is paused.") || strings.Contains(locking.body, "Use another number") {
		t.Errorf("a user's lock page: %.1500s", locking.body)
	}
}

func TestUserWithoutPhoneIsToldClearly(t *testing.T) {
	sms := startGate(t, "", withFirstFactor).sms
	v := newVisitor(t).as("carol")
	r := v.get("/.otp/login")
	wantStatus(t, "carol", r, http.StatusForbidden)
	if !strings.Contains(r.body, "Your account has no phone number for sign-in codes") {
		t.Errorf("page: %.300s", r.body)
	}
	if n := len(sms.Messages()); n != 0 {
		t.Errorf("%d SMS sent", n)
	}
}

func TestUsersFileAndItsErrors(t *testing.T) {
	u := userPhones{}
	path := t.TempDir() + "/users.txt"
	writeFile(t, path, "# staff\nalice +12015550123\n\nbob (201) 555-0145  # national form\ncarol\n")
	err := u.addFile(path, "US")
	if err == nil || !strings.Contains(err.Error(), path+":5: expected a user and a phone number") {
		t.Errorf("error %v", err)
	}
	if u["alice"] != alice || u["bob"] != bob {
		t.Errorf("read %v", u)
	}
}

// TestUserSessionHoldsOnlyWhereTheUserHasThatPhone: a session of user admin, whose code went to
// one phone, is no session on a gate that binds admin to another phone (another site with the
// same user name, or this one after the operator rebound the user).
func TestUserSessionHoldsOnlyWhereTheUserHasThatPhone(t *testing.T) {
	a, _ := newUnitHandler(t, map[string]any{"users": map[string]string{"admin": alice}, "phones": nil})
	b, _ := newUnitHandler(t, map[string]any{"users": map[string]string{"admin": bob}, "phones": nil})
	s, _, err := a.signins.newSessions(userSubject("admin", alice), false)
	if err != nil {
		t.Fatal(err)
	}
	get := func(h *Handler) int {
		r := withCaddyContext(httptest.NewRequest(http.MethodGet, "/", nil))
		r.Header.Set("Accept", "text/html")
		r.AddCookie(&http.Cookie{Name: "caddy_otp", Value: h.signins.sessions.encode(s)})
		r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.auth.user.id", "admin")
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, upstream); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	if code := get(a); code != http.StatusOK {
		t.Fatalf("admin's session where admin has that phone: %d", code)
	}
	if code := get(b); code != http.StatusSeeOther {
		t.Fatalf("admin's session where admin is bound to another phone: %d, want the phone page", code)
	}
}

// TestRegionsApplyToAUsersPhone: in users mode the code goes to the user's phone, which must be
// in a region codes may go to, as a typed one must.
func TestRegionsApplyToAUsersPhone(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"users": map[string]string{"alice": alice}, "phones": nil, "regions": []string{"GB"}})
	v := unitVisit(t)
	v.user = "alice"
	if o := h.flows.start(context.Background(), v, "", ""); o.kind != badPhone || o.key != "err_region" {
		t.Fatalf("a user's US phone with regions GB: %+v", o)
	}
}

// TestPasswordAloneCannotClaimACodeSentToAnotherPhone: where the first factor is optional and
// phones and users are combined, a flow started with alice's password cannot be finished with
// a code sent to another phone.
func TestPasswordAloneCannotClaimACodeSentToAnotherPhone(t *testing.T) {
	sms := startGate(t, "", withOptionalFirstFactor).sms
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

// TestLoginPageGETSendsNothingInUsersMode: a prefetcher or a cross-site link that opens the
// phone page sends no SMS; the signed-in user presses a button to send the code.
func TestLoginPageGETSendsNothingInUsersMode(t *testing.T) {
	sms := startGate(t, "", withFirstFactor).sms
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
