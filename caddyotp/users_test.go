package caddyotp

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"golang.org/x/crypto/bcrypt"
)

// startTwoFactorSite is a site with Caddy's basic_auth (alice, bob, carol) and the gate binding
// alice and bob to their phones; carol has no phone.
func startTwoFactorSite(t *testing.T, extra ...string) *restcommtest.Server {
	t.Helper()
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	basic_auth {
		alice %[1]s
		bob %[1]s
		carol %[1]s
	}
	otp {
		%[2]s
		public_url http://localhost:9080
		users {
			alice %[3]s
			bob %[4]s
		}
		store memory %[5]s
		%[6]s
	}
	respond "user={http.auth.user.id}"
}
`, hash, senderBlock(sms, sms.AuthToken), alice, bob, storeName(t), strings.Join(extra, "\n\t\t")))
	return sms
}

// as makes the visitor's browser send the user's basic_auth credentials.
func (v *visitor) as(user string) *visitor {
	v.client.Transport = headerTransport{"Authorization": "Basic " + basicAuth(user, "correct horse")}
	return v
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestPasswordThenSMSCodeIsTwoFactors(t *testing.T) {
	sms := startTwoFactorSite(t)
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

func TestUserWithoutPhoneIsToldClearly(t *testing.T) {
	sms := startTwoFactorSite(t)
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
