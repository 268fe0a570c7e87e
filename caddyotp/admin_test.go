package caddyotp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// adminRevoke posts body to the admin API's /otp/revoke, as an operator's curl would.
func adminRevoke(t *testing.T, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/otp/revoke", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestAdminAPIRevokesEverySessionOfAPhone(t *testing.T) {
	g := startGate(t, "trust_device 30d")
	laptop, phone, other := newVisitor(t), newVisitor(t), newVisitor(t)
	laptop.signIn(g, alice)
	clockPastResend()
	phone.signInTrusting(g.sms, alice)
	other.signIn(g, bob)

	status, body := adminRevoke(t, `{"phone": "nope"}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "not a phone number") {
		t.Fatalf("a bad phone: %d %s", status, body)
	}
	for _, bad := range []string{`{}`, `{"phone": "+12015550123", "user": "alice"}`, `phone=1`, `{"phone": 1}`, `{"who": "alice"}`} {
		if status, body := adminRevoke(t, bad); status != http.StatusBadRequest {
			t.Errorf("body %s: %d %s, want 400", bad, status, body)
		}
	}
	wantStatus(t, "alice after bad requests", laptop.get("/"), http.StatusOK)

	status, body = adminRevoke(t, `{"phone": "+1 (201) 555-0123"}`)
	var answer struct{ Revoked string }
	if status != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil || answer.Revoked != maskPhone(alice) {
		t.Fatalf("revoke alice: %d %s", status, body)
	}
	wantStatus(t, "alice's laptop", laptop.get("/"), http.StatusSeeOther)
	wantStatus(t, "alice's phone", phone.get("/"), http.StatusSeeOther)
	wantStatus(t, "bob", other.get("/"), http.StatusOK)
	if e := g.waitLogEvents("session revoked", 1); len(e) == 0 || e[len(e)-1]["phone"] != maskPhone(alice) {
		t.Errorf("no masked log line for the revocation: %v", e)
	}
}

func TestAdminAPIRevokesAUser(t *testing.T) {
	sms := startGate(t, "", withFirstFactor).sms
	a, b := newVisitor(t).as("alice"), newVisitor(t).as("alice")
	signInAs(t, a, sms, 1)
	clockPastResend()
	signInAs(t, b, sms, 2)
	if status, body := adminRevoke(t, `{"user": "carol"}`); status != http.StatusBadRequest {
		t.Errorf("a user without a phone: %d %s", status, body)
	}
	if status, body := adminRevoke(t, `{"user": "alice"}`); status != http.StatusOK {
		t.Fatalf("revoke alice: %d %s", status, body)
	}
	wantStatus(t, "alice's first browser", a.get("/docs"), http.StatusSeeOther)
	wantStatus(t, "alice's second browser", b.get("/docs"), http.StatusSeeOther)
}

// signInAs walks a users-mode sign-in: the button, then the n-th SMS's code.
func signInAs(t *testing.T, v *visitor, sms *restcommtest.Server, n int) {
	t.Helper()
	page := v.get("/.otp/login")
	wantStatus(t, "phone page", page, http.StatusOK)
	wantStatus(t, "send", v.post("/.otp/send", url.Values{"csrf": {page.csrf()}}), http.StatusSeeOther)
	_, code := smsCode(t, sms, n)
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {page.csrf()}, "code": {code}}), http.StatusSeeOther)
}

// clockPastResend moves the gate's clock past resend_after, which holds per phone.
func clockPastResend() { clock.Advance(31 * time.Second) }

// TestRevokeThatOneGateCannotReadRevokesNothing: a number some gate reads otherwise, or cannot
// read, is refused before anything is written.
func TestRevokeThatOneGateCannotReadRevokesNothing(t *testing.T) {
	sms := newRestcomm(t)
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	otp {
		%[1]s
		public_url http://localhost:9080
		phones %[2]s
		default_region US
		store memory %[3]s-us
	}
	respond "us"
}
http://127.0.0.1:9080 {
	otp {
		%[1]s
		public_url http://127.0.0.1:9080
		phones %[2]s
		store memory %[3]s-none
	}
	respond "none"
}
`, senderBlock(sms, sms.AuthToken), alice, storeName(t)))
	v := newVisitor(t)
	v.signInWith(sms, alice)
	if status, body := adminRevoke(t, `{"phone": "201 555 0123"}`); status != http.StatusBadRequest {
		t.Fatalf("a national number one gate cannot read: %d %s", status, body)
	}
	wantStatus(t, "alice after a refused revoke", v.get("/"), http.StatusOK)
}
