package caddyotp

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ceremony posts a passkey ceremony's JSON as the pages' scripts do: from the site's origin,
// with the CSRF token of the visitor's flow in X-CSRF-Token.
func (v *visitor) ceremony(step, csrf, body string) response {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, v.base+"/.otp/passkey/"+step, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("X-CSRF-Token", csrf)
	if v.origin != "" {
		req.Header.Set("Origin", v.origin)
	}
	return v.do(req)
}

// offerCSRF signs the visitor in with a code and returns the CSRF token of the passkey offer
// the gate leads to.
func (v *visitor) offerCSRF(g *gate, phone string) string {
	v.t.Helper()
	n := len(g.sms.Messages()) + 1
	csrf, _ := v.startSignIn("/docs", phone)
	_, code := g.code(n)
	r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/.otp/passkey/offer" {
		v.t.Fatalf("a right code answered %d to %q, want the passkey offer", r.status, r.header.Get("Location"))
	}
	offer := v.get("/.otp/passkey/offer")
	wantStatus(v.t, "the offer", offer, http.StatusOK)
	if !strings.Contains(offer.body, `id="passkey-create"`) || !strings.Contains(offer.body, `id="passkey-skip" href="/docs"`) {
		v.t.Fatalf("the offer lacks its button or its way on: %.600s", offer.body)
	}
	return offer.body[strings.Index(offer.body, `data-csrf="`)+len(`data-csrf="`):][:43]
}

// TestOnlyASessionACodeJustMadeMayAddAPasskey: the session a code made may begin a passkey's
// registration, for its subject and without the number in what the authenticator is given; the
// same session cookie copied into another browser may not (no enrol cookie), and neither may the
// first browser once the session is older than five minutes.
func TestOnlyASessionACodeJustMadeMayAddAPasskey(t *testing.T) {
	g := startGate(t, passkeyConfig)
	v := newVisitor(t)
	csrf := v.offerCSRF(g, alice)

	r := v.ceremony("register/begin", csrf, "{}")
	wantStatus(t, "registration by the fresh session", r, http.StatusOK)
	var options struct {
		PublicKey struct {
			RP                     struct{ ID, Name string }
			User                   struct{ ID, Name, DisplayName string }
			AuthenticatorSelection struct {
				ResidentKey string `json:"residentKey"`
			} `json:"authenticatorSelection"`
			Challenge string
		} `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(r.body), &options); err != nil {
		t.Fatalf("options %q: %v", r.body, err)
	}
	pk := options.PublicKey
	if pk.RP.ID != "localhost" || pk.AuthenticatorSelection.ResidentKey != "required" || len(pk.Challenge) < 43 {
		t.Errorf("options %s: want rp localhost, a discoverable credential and a 32-byte challenge", r.body)
	}
	if strings.Contains(r.body, strings.TrimPrefix(alice, "+")) || strings.Contains(r.body, "0123") {
		t.Errorf("the authenticator would be given the number: %s", r.body)
	}

	thief := newVisitor(t)
	thief.setCookie("caddy_otp", v.cookie("caddy_otp"))
	thief.setCookie("caddy_otp_flow", v.cookie("caddy_otp_flow"))
	wantStatus(t, "a passkey for a copied session", thief.get("/"), http.StatusOK) // the session itself passes
	wantStatus(t, "registration by a copied session", thief.ceremony("register/begin", csrf, "{}"), http.StatusForbidden)
	if r := thief.get("/.otp/passkey/offer"); r.status != http.StatusSeeOther || r.header.Get("Location") != "/docs" {
		t.Errorf("the offer to a copied session: %d to %q, want on to /docs", r.status, r.header.Get("Location"))
	}

	clock.Advance(passkeyFreshness + time.Second)
	wantStatus(t, "registration by a session past five minutes", v.ceremony("register/begin", csrf, "{}"), http.StatusForbidden)
	wantStatus(t, "the session itself", v.get("/"), http.StatusOK)
}

// passkeyConfig turns passkeys on at the tests' site, http://localhost:9080.
const passkeyConfig = "passkeys"

// TestPasskeyCeremoniesAreFormsOfTheFlow: a ceremony needs the flow's CSRF token and the site's
// origin, takes POST only, and caps its body; a refused sign-in answers the same whatever was
// wrong, with or without a challenge, so that it tells nothing about which passkeys exist.
func TestPasskeyCeremoniesAreFormsOfTheFlow(t *testing.T) {
	g := startGate(t, passkeyConfig)
	v := newVisitor(t)
	login := v.get("/.otp/login?next=/docs")
	if !strings.Contains(login.body, `id="passkey-signin"`) || !strings.Contains(login.body, `autocomplete="username webauthn"`) {
		t.Fatalf("the phone page lacks the passkey sign-in: %.800s", login.body)
	}
	csrf := login.csrf()

	wantStatus(t, "no CSRF token", v.ceremony("signin/begin", "", "{}"), http.StatusForbidden)
	wantStatus(t, "another flow's token", v.ceremony("signin/begin", newVisitor(t).get("/.otp/login").csrf(), "{}"), http.StatusForbidden)
	evil := *v
	evil.origin = "http://evil.example"
	wantStatus(t, "a foreign origin", evil.ceremony("signin/begin", csrf, "{}"), http.StatusForbidden)
	wantStatus(t, "GET", v.get("/.otp/passkey/signin/begin"), http.StatusMethodNotAllowed)
	wantStatus(t, "an unknown ceremony", v.ceremony("signin/steal", csrf, "{}"), http.StatusNotFound)
	wantStatus(t, "a huge body", v.ceremony("signin/finish", csrf, `{"id":"`+strings.Repeat("A", 70<<10)+`"}`), http.StatusRequestEntityTooLarge)

	before := scrape(t)
	noChallenge := v.ceremony("signin/finish", csrf, `{"id":"AAAA","rawId":"AAAA","type":"public-key"}`)
	wantStatus(t, "a finish with no challenge", noChallenge, http.StatusUnauthorized)
	wantStatus(t, "begin", v.ceremony("signin/begin", csrf, "{}"), http.StatusOK)
	token := v.cookie("caddy_otp_passkey")
	if token == "" {
		t.Fatal("begin gave no challenge cookie")
	}
	forged := v.ceremony("signin/finish", csrf, `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","authenticatorData":"AAAA","signature":"AAAA","userHandle":"AAAA"}}`)
	wantStatus(t, "a forged assertion", forged, http.StatusUnauthorized)
	if forged.body != noChallenge.body || !strings.Contains(forged.body, `"passkey not accepted"`) {
		t.Errorf("refusals differ: %q and %q", noChallenge.body, forged.body)
	}
	// The forged answer used the challenge up: a second answer to it, with its token put back,
	// finds none, and says the same.
	v.setCookie("caddy_otp_passkey", token)
	if again := v.ceremony("signin/finish", csrf, `{}`); again.body != noChallenge.body {
		t.Errorf("a second answer to one challenge: %d %q", again.status, again.body)
	}
	if reasons := logEventsContaining(g.logs(), "passkey refused"); len(reasons) != 3 || !strings.Contains(reasons[2], "no live challenge") {
		t.Errorf("the refusals logged: %q", reasons)
	}
	if r := v.get("/"); r.status != http.StatusSeeOther {
		t.Errorf("a refused passkey let the visitor in: %d", r.status)
	}
	refused := `caddy_otp_passkeys_total{event="refused"}`
	if got := scrape(t)[refused] - before[refused]; got != 3 {
		t.Errorf("%s went up by %v, want 3", refused, got)
	}
}

// TestEveryPasskeyCeremonyCountsAgainstIPLimit: a sign-in's first step stores nothing and counts
// nothing, so that showing the phone page spends none of a visitor's ip_limit; its answer counts
// before anything is looked up or kept, and the limit answers 429 with Retry-After.
func TestEveryPasskeyCeremonyCountsAgainstIPLimit(t *testing.T) {
	startGate(t, passkeyConfig+"\n\t\tip_limit 3 10m")
	clock.StartWindow(10 * time.Minute)
	v := newVisitor(t)
	csrf := v.get("/.otp/login").csrf()
	for i := range 5 {
		wantStatus(t, fmt.Sprintf("begin %d", i+1), v.ceremony("signin/begin", csrf, "{}"), http.StatusOK)
	}
	for i := range 3 {
		wantStatus(t, fmt.Sprintf("answer %d", i+1), v.ceremony("signin/finish", csrf, "{}"), http.StatusUnauthorized)
	}
	r := v.ceremony("signin/finish", csrf, "{}")
	wantStatus(t, "answer 4", r, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
}

// TestPasskeysOffLeaveTheGateAsItWas: without passkeys, no button, no offer, and the passkey
// paths are not found; with them, the gate's passkey cookies never reach the site behind it.
func TestPasskeysOffLeaveTheGateAsItWas(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	if login := v.get("/.otp/login"); strings.Contains(login.body, "passkey-signin") || strings.Contains(login.body, "webauthn") || !strings.Contains(login.body, `autocomplete="tel"`) {
		t.Errorf("the phone page speaks of passkeys while they are off")
	}
	csrf := v.get("/.otp/login").csrf()
	wantStatus(t, "offer", v.get("/.otp/passkey/offer"), http.StatusNotFound)
	wantStatus(t, "begin", v.ceremony("signin/begin", csrf, "{}"), http.StatusNotFound)
	wantStatus(t, "remove", v.post("/.otp/passkey/remove", url.Values{"csrf": {csrf}, "id": {"AAAA"}}), http.StatusNotFound)
	v.signIn(g, alice)
	if r := v.get("/"); r.status != http.StatusOK {
		t.Fatalf("signed in: %d", r.status)
	}

	on := startGate(t, passkeyConfig)
	w := newVisitor(t)
	w.offerCSRF(on, bob)
	page := w.get("/")
	if strings.Contains(page.body, "caddy_otp_enrol") || strings.Contains(page.body, "caddy_otp_offered") || !strings.Contains(page.body, "user="+bob) {
		t.Errorf("the site behind the gate got %q", page.body)
	}
}

// TestAStrangersUserHandleNeverReachesTheVault: an answer whose user handle is not one the gate
// makes (a keyed hash of 16 bytes) is refused like any other, without asking the vault, so that
// no stranger can make the gate's storage fail, or log at length, at will.
func TestAStrangersUserHandleNeverReachesTheVault(t *testing.T) {
	g := startGate(t, passkeyConfig)
	v := newVisitor(t)
	csrf := v.get("/.otp/login").csrf()
	clientData := base64.RawURLEncoding.EncodeToString([]byte(`{"type":"webauthn.get","challenge":"AAAA","origin":"http://localhost:9080"}`))
	authData := base64.RawURLEncoding.EncodeToString(append(make([]byte, 32), 1, 0, 0, 0, 1))
	for _, n := range []int{300, 3000} {
		wantStatus(t, "begin", v.ceremony("signin/begin", csrf, "{}"), http.StatusOK)
		handle := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{'x'}, n))
		r := v.ceremony("signin/finish", csrf, `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"`+clientData+
			`","authenticatorData":"`+authData+`","signature":"AAAA","userHandle":"`+handle+`"}}`)
		wantStatus(t, fmt.Sprintf("a user handle of %d bytes", n), r, http.StatusUnauthorized)
	}
	if errs := logEventsContaining(g.logs(), `"level":"error"`); len(errs) > 0 {
		t.Errorf("a stranger's answer logged errors: %.300s", errs[0])
	}
}
