//go:build integration

package caddyotp

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdpage "github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// TestSkippingThePasskeyOfferGoesOnAndIsNotOfferedAgain: "Not now" on the offer leads straight
// to where the visitor was going, query and all, makes no passkey, and a later code sign-in on
// the same browser is not offered one again.
func TestSkippingThePasskeyOfferGoesOnAndIsNotOfferedAgain(t *testing.T) {
	g := startGate(t, passkeyGate, withOwnStorage)
	b := newBrowser(t, "phone", 390, 844, "en-US")
	auth := addAuthenticator(b, false)

	b.open("/reports/q3?year=2026")
	b.typeNumber(alice)
	b.typeSMSCode(g, alice, 1)
	if p := b.path(); p != "/.otp/passkey/offer" {
		t.Fatalf("after the code at %s, want the passkey offer", p)
	}
	if href := eval[string](b, `document.getElementById("passkey-skip").getAttribute("href")`); href != "/reports/q3?year=2026" {
		t.Errorf("the skip link goes to %q", href)
	}
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.ID("passkey-skip"))); err != nil {
		t.Fatalf("following the skip link: %v", err)
	}
	b.waitLocation("/reports/q3?year=2026")
	if body := b.text("body"); !strings.Contains(body, "user="+alice) {
		t.Fatalf("after skipping the page says %q", body)
	}
	if creds := auth.credentials(); len(creds) != 0 {
		t.Errorf("skipping made %d credentials", len(creds))
	}
	b.open("/.otp/logout")
	if n := eval[int](b, `document.querySelectorAll(".passkeys li").length`); n != 0 {
		t.Errorf("skipping left %d passkeys on the sign-out page", n)
	}
	if e := logEvents(t, g.logs(), "passkey created"); len(e) != 0 {
		t.Errorf("skipping logged %v", e)
	}

	// Another number on the same browser (alice's is inside its resend cooldown): no offer.
	b.signOutHere()
	b.open("/.otp/login?next=" + url.QueryEscape("/docs?page=2"))
	b.typeNumber(bob)
	b.typeSMSCode(g, bob, 2)
	b.waitLocation("/docs?page=2")
	if body := b.text("body"); !strings.Contains(body, "user="+bob) {
		t.Fatalf("after the second code the page says %q", body)
	}
}

// TestAPasskeyRemovedOnTheSignOutPageNoLongerSignsIn: the sign-out page lists the visitor's
// passkey by browser and system, when it was made and last used; its Remove button takes it
// off the list and out of the gate, which then refuses it, and the log says so.
func TestAPasskeyRemovedOnTheSignOutPageNoLongerSignsIn(t *testing.T) {
	g, b, auth := aliceWithAPasskey(t)
	made := clock.Now().UTC().Format(time.DateOnly)

	b.open("/.otp/logout")
	if name := b.text(".passkeys .name"); name != "Chrome · Linux" {
		t.Errorf("the passkey is named %q", name)
	}
	if hint := b.text(".passkeys li .hint"); hint != "Made "+made+" · not used yet" {
		t.Errorf("a new passkey says %q", hint)
	}
	b.checkState("sign-out page with a passkey")

	b.signOutHere()
	b.passkeySignIn("/reports")
	used := clock.Now().UTC().Format(time.DateOnly)
	b.open("/.otp/logout")
	if hint := b.text(".passkeys li .hint"); hint != "Made "+made+" · last used "+used {
		t.Errorf("a used passkey says %q", hint)
	}

	b.submit(".passkeys button")
	if p := b.path(); p != "/.otp/logout" {
		t.Fatalf("after Remove at %s", p)
	}
	if n := eval[int](b, `document.querySelectorAll(".passkeys li").length`); n != 0 {
		t.Errorf("after Remove the page lists %d passkeys", n)
	}
	if strings.Contains(b.text("main"), "Your passkeys") {
		t.Errorf("after Remove the page still has its passkeys' heading")
	}
	if e := g.waitLogEvents("passkey removed", 1); len(e) != 1 || e[0]["phone"] != maskPhone(alice) {
		t.Errorf("passkey removed: %v", e)
	}

	// The authenticator still holds it; the gate no longer takes it.
	if creds := auth.credentials(); len(creds) != 1 {
		t.Fatalf("the authenticator holds %d credentials", len(creds))
	}
	b.signOutHere()
	b.passkeyRefused("a removed passkey")
	if e := g.waitLogEvents("passkey refused", 1); len(e) != 1 || e[0]["reason"] != "signature, origin, relying party or credential" {
		t.Errorf("passkey refused: %v", e)
	}
	b.open("/docs")
	if p := b.path(); p != "/.otp/login" {
		t.Errorf("after the refusal /docs is at %s, want the phone page", p)
	}
}

// TestARevokedPhonesPasskeyIsRefused: the admin API's revocation of a phone removes its
// passkeys, says how many, and the passkey no longer signs in.
func TestARevokedPhonesPasskeyIsRefused(t *testing.T) {
	g, b, _ := aliceWithAPasskey(t)

	status, body := adminRevoke(t, fmt.Sprintf(`{"phone": %q}`, alice))
	var answer struct{ Passkeys int }
	if status != http.StatusOK || json.Unmarshal([]byte(body), &answer) != nil || answer.Passkeys != 1 {
		t.Fatalf("revoke alice: %d %s, want 200 with \"passkeys\": 1", status, body)
	}
	if e := g.waitLogEvents("passkey removed", 1); len(e) != 1 || e[0]["client_ip"] != "admin API" {
		t.Errorf("passkey removed: %v", e)
	}
	b.open("/docs")
	if p := b.path(); p != "/.otp/login" {
		t.Fatalf("after the revocation /docs is at %s", p)
	}
	b.passkeyRefused("a revoked phone's passkey")
	if e := g.waitLogEvents("passkey refused", 1); len(e) != 1 {
		t.Errorf("passkey refused: %v", e)
	}
}

// captureFinishJS records, for this tab's origin, the last body the page posts to
// P/passkey/signin/finish: it outlives the page, which moves on after a sign-in.
const captureFinishJS = `(function () {
  var send = window.fetch;
  window.fetch = function (url, init) {
    if (String(url).endsWith("/passkey/signin/finish") && init && init.body) { sessionStorage.setItem("finish", init.body); }
    return send.apply(this, arguments);
  };
})();`

// replayJS posts a captured answer again from the phone page, with its CSRF token, after
// asking for a new challenge when begin is true.
const replayJS = `(function (body, begin) {
  var csrf = document.getElementById("passkey-signin").dataset.csrf;
  function post(op, body) {
    return fetch("/.otp/passkey/" + op, {method: "POST", credentials: "same-origin", body: body,
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf}})
      .then(function (r) { return r.text().then(function (t) { return {status: r.status, body: t.trim()}; }); });
  }
  return (begin ? post("signin/begin", "{}") : Promise.resolve({status: 200})).then(function (b) {
    if (b.status !== 200) { return b; }
    return post("signin/finish", body);
  });
})`

type replayed struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// TestAReplayedPasskeyAssertionIsRefused: the very answer the page posted for a successful
// passkey sign-in, posted again on a new flow of the same browser (with the page's CSRF token,
// and again after a fresh challenge), is refused with 401 and makes no session; the passkey
// itself still signs in.
func TestAReplayedPasskeyAssertionIsRefused(t *testing.T) {
	g := startGate(t, passkeyGate, withOwnStorage)
	b := newBrowser(t, "desktop", 1280, 800, "en-US")
	cdpCall(b, cdpage.AddScriptToEvaluateOnNewDocument, cdpage.AddScriptToEvaluateOnNewDocumentParams{Source: captureFinishJS})
	addAuthenticator(b, false)
	b.smsSignIn(g, alice, 1)
	b.createPasskey("/docs")
	b.signOutHere()
	b.passkeySignIn("/reports")
	captured := eval[string](b, `sessionStorage.getItem("finish") || ""`)
	if !strings.Contains(captured, `"signature"`) {
		t.Fatalf("captured %q, want the page's answer", captured)
	}

	b.signOutHere()
	for _, c := range []struct {
		what  string
		begin bool
	}{{"replayed on a new flow", false}, {"replayed over a fresh challenge", true}} {
		b.open("/.otp/login?next=/docs")
		r, err := chromedp.Run(b.ctx, chromedp.Evaluate[replayed](fmt.Sprintf("%s(%q, %t)", replayJS, captured, c.begin), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if r.Status != http.StatusUnauthorized || r.Body != `{"error":"passkey not accepted"}` {
			t.Errorf("%s: %d %s, want 401 passkey not accepted", c.what, r.Status, r.Body)
		}
		if v := sessionCookieOf(b); v != "" {
			t.Errorf("%s: the browser holds a session cookie", c.what)
		}
		b.open("/docs")
		if p := b.path(); p != "/.otp/login" {
			t.Errorf("%s: /docs is at %s, want the phone page", c.what, p)
		}
	}
	reasons := []string{}
	for _, e := range logEvents(t, g.logs(), "passkey refused") {
		reasons = append(reasons, fmt.Sprint(e["reason"]))
	}
	// Over a fresh challenge the challenge is the reason, not the counter (which a replay also
	// fails, but an authenticator that keeps none would not).
	if strings.Join(reasons, "|") != "no live challenge|signature, origin, relying party or credential" {
		t.Errorf("the refusals' reasons: %q", reasons)
	}
	b.passkeySignIn("/reports") // the passkey itself is fine
}

// passkeyRefused presses "Sign in with a passkey" on the phone page and expects the refusal:
// the error shown, the page still the phone page, no new session. A sign-in that goes through
// fails the test at once rather than at the browser's deadline.
func (b *browser) passkeyRefused(what string) {
	b.t.Helper()
	b.open("/.otp/login?next=/docs")
	before := sessionCookieOf(b)
	b.do("sign in with a passkey", chromedp.WaitVisible(chromedp.ID("passkey-signin")), chromedp.Click(chromedp.ID("passkey-signin")))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if loc, err := chromedp.Run(b.ctx, chromedp.Location()); err == nil && pathOf(loc) != "/.otp/login" {
			b.t.Fatalf("%s: a passkey that should be refused signed in, to %s", what, loc)
		}
		if sessionCookieOf(b) != before {
			b.t.Fatalf("%s: a passkey that should be refused made a session", what)
		}
		if shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`!document.getElementById("passkey-error").hidden`)); err == nil && shown {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: no refusal shown within 10s; the page says %q", what, b.text("main"))
		}
	}
}

// sessionCookieOf is the value of the gate's session cookie in the browser, or "".
func sessionCookieOf(b *browser) string {
	b.t.Helper()
	for _, c := range cdpCall(b, network.GetCookies, network.GetCookiesParams{URLs: []string{site + "/"}}).Cookies {
		if c.Name == "caddy_otp" {
			return c.Value
		}
	}
	return ""
}

// signInOptions opens the phone page as the visitor and asks for a sign-in challenge; it
// returns the page's CSRF token and the options.
func (v *visitor) signInOptions() (csrf, options string) {
	v.t.Helper()
	login := v.get("/.otp/login?next=/docs")
	wantStatus(v.t, "phone page", login, http.StatusOK)
	r := v.ceremony("signin/begin", login.csrf(), "{}")
	wantStatus(v.t, "signin/begin", r, http.StatusOK)
	return login.csrf(), r.body
}

// assertion runs call (a script that resolves to an assertion's JSON, such as assertionJS
// applied to options) in the page, as a click would, and returns the JSON.
func (b *browser) assertion(call string) string {
	b.t.Helper()
	gesture := func(p *cdpruntime.EvaluateParams) { yes := true; p.UserGesture = &yes }
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](call, chromedp.EvalAwaitPromise, gesture))
	if err != nil {
		b.t.Fatalf("getting an assertion: %v", err)
	}
	return s
}

// sessionSet says whether the answer set the gate's session cookie to a value.
func sessionSet(r response) bool {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "caddy_otp" && c.Value != "" {
			return true
		}
	}
	return false
}

// TestAPasskeyChallengeSignsInOnce: two assertions over one challenge (the authenticator
// signs it twice): the first signs in, the second, posted on the same flow, is refused.
func TestAPasskeyChallengeSignsInOnce(t *testing.T) {
	g, b, _ := aliceWithAPasskey(t)

	v := newVisitor(t)
	csrf, options := v.signInOptions()
	// The flow and its sealed challenge, as the visitor's browser holds them.
	kept := map[string]string{"caddy_otp_flow": v.cookie("caddy_otp_flow"), "caddy_otp_passkey": v.cookie("caddy_otp_passkey")}
	if kept["caddy_otp_flow"] == "" || kept["caddy_otp_passkey"] == "" {
		t.Fatalf("after begin the visitor holds %v, want the flow and its challenge", kept)
	}
	b.open("/.otp/login")
	first := b.assertion(fmt.Sprintf("(%s)(%s)", assertionJS, options))
	second := b.assertion(fmt.Sprintf("(%s)(%s)", assertionJS, options))
	if first == second {
		t.Fatalf("the authenticator gave the same assertion twice")
	}

	r := v.ceremony("signin/finish", csrf, first)
	if r.status != http.StatusOK || !sessionSet(r) {
		t.Fatalf("the first assertion: %d %s, want 200 and a session", r.status, r.body)
	}
	for name, value := range kept { // the sign-in cleared them: as one who kept them
		v.setCookie(name, value)
	}
	r = v.ceremony("signin/finish", csrf, second)
	if r.status != http.StatusUnauthorized || strings.TrimSpace(r.body) != `{"error":"passkey not accepted"}` || sessionSet(r) {
		t.Errorf("the second assertion over the same challenge: %d %s, want 401 and no session", r.status, r.body)
	}
	if e := logEvents(t, g.logs(), "passkey refused"); len(e) != 1 || e[0]["reason"] != "no live challenge" {
		t.Errorf("passkey refused: %v", e)
	}
}

// TestAPasskeyAssertionFromAnotherOriginIsRefused: a phishing page on another origin of the
// same host (so that the relying party id "localhost" holds there too) gets the gate's
// challenge from a relaying phisher, has the visitor's authenticator sign it, and the phisher
// posts the answer to the gate with the gate's flow cookie, CSRF token and Origin: refused.
// The same relay from the gate's own origin signs in, which shows the origin is the reason.
func TestAPasskeyAssertionFromAnotherOriginIsRefused(t *testing.T) {
	g, b, _ := aliceWithAPasskey(t)

	phish := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>Sign in</title><script>window.relay = %s;</script><p>Sign in</p>", assertionJS)
	}))
	defer phish.Close()
	phishOrigin := fmt.Sprintf("http://localhost:%d", phish.Listener.Addr().(*net.TCPAddr).Port)

	phisher := newVisitor(t) // the gate's flow, CSRF token and Origin are the phisher's to send
	csrf, options := phisher.signInOptions()
	b.do("open the phishing page", chromedp.Navigate(phishOrigin+"/"))
	phished := b.assertion(fmt.Sprintf("relay(%s)", options))
	if origin := clientDataOrigin(t, phished); origin != phishOrigin {
		t.Fatalf("the phished assertion is for %q, want %q", origin, phishOrigin)
	}
	r := phisher.ceremony("signin/finish", csrf, phished)
	if r.status != http.StatusUnauthorized || sessionSet(r) {
		t.Errorf("an assertion made on %s: %d %s, want 401 and no session", phishOrigin, r.status, r.body)
	}
	if e := logEvents(t, g.logs(), "passkey refused"); len(e) != 1 || e[0]["reason"] != "signature, origin, relying party or credential" {
		t.Errorf("passkey refused: %v", e)
	}

	csrf, options = phisher.signInOptions()
	b.open("/.otp/login")
	genuine := b.assertion(fmt.Sprintf("(%s)(%s)", assertionJS, options))
	if r := phisher.ceremony("signin/finish", csrf, genuine); r.status != http.StatusOK || !sessionSet(r) {
		t.Errorf("the same relay from the gate's origin: %d %s, want 200 and a session", r.status, r.body)
	}
}

// clientDataOrigin is the origin an assertion's client data names.
func clientDataOrigin(t *testing.T, assertion string) string {
	t.Helper()
	var a struct {
		Response struct {
			ClientDataJSON string `json:"clientDataJSON"`
		} `json:"response"`
	}
	var cd struct {
		Origin string `json:"origin"`
	}
	if err := json.Unmarshal([]byte(assertion), &a); err != nil {
		t.Fatalf("assertion %q: %v", assertion, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(a.Response.ClientDataJSON)
	if err != nil || json.Unmarshal(raw, &cd) != nil {
		t.Fatalf("client data %q: %v", a.Response.ClientDataJSON, err)
	}
	return cd.Origin
}

// TestAPasskeyWhoseSignCounterWentDownIsRefused: after a passkey sign-in the gate knows its
// counter; an authenticator that then reports a lower one (a clone) is refused, and the log
// says why; the counter going up again signs in.
func TestAPasskeyWhoseSignCounterWentDownIsRefused(t *testing.T) {
	g, b, auth := aliceWithAPasskey(t)
	b.signOutHere()
	b.passkeySignIn("/reports")
	creds := auth.credentials()
	if len(creds) != 1 || creds[0].SignCount < 1 {
		t.Fatalf("the authenticator holds %+v, want one credential with a counter", creds)
	}
	known := creds[0].SignCount // the gate's, since the sign-in

	auth.setSignCount(creds[0].CredentialID, 0)
	b.signOutHere()
	b.passkeyRefused("a counter that went down")
	if e := g.waitLogEvents("passkey refused", 1); len(e) != 1 || !strings.Contains(fmt.Sprint(e[0]["reason"]), "sign counter") {
		t.Errorf("passkey refused: %v", e)
	}
	b.open("/docs")
	if p := b.path(); p != "/.otp/login" {
		t.Fatalf("after the refusal /docs is at %s", p)
	}

	auth.setSignCount(creds[0].CredentialID, known+10)
	b.passkeySignIn("/reports")
}

// TestAUsersPasskeyNeedsTheFirstFactor: in users mode (basic_auth, then the code to the user's
// phone), a user's passkey stands for the code, never for the password: without the
// first factor it is refused; with it, it signs in as the user, until the operator revokes
// the user.
func TestAUsersPasskeyNeedsTheFirstFactor(t *testing.T) {
	g := startGate(t, passkeyGate, withOptionalFirstFactor, withOwnStorage)
	b := newBrowser(t, "desktop", 1280, 800, "en-US")
	addAuthenticator(b, false)
	password := func(on bool) {
		headers := network.Headers{}
		if on {
			headers["Authorization"] = basicAuth("alice", "correct horse")
		}
		cdpCall(b, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers})
	}

	password(true)
	b.open("/docs")
	b.submit("form[action$='/send'] button") // "Send the code to ..."
	b.typeSMSCode(g, alice, 1)
	b.createPasskey("/docs")
	if body := b.text("body"); body != "user=alice" {
		t.Fatalf("after both factors and the passkey the page says %q", body)
	}

	password(false)
	cdpCall(b, network.ClearBrowserCookies, cdp.Empty{})
	b.passkeyRefused("alice's passkey without her password")
	if e := g.waitLogEvents("passkey refused", 1); len(e) != 1 || e[0]["reason"] != "its subject may not sign in here" {
		t.Errorf("passkey refused: %v", e)
	}

	password(true)
	b.passkeySignIn("/reports")
	if body := b.text("body"); body != "user=alice" {
		t.Fatalf("after the password and the passkey the page says %q", body)
	}

	// The operator revokes the user: her passkey goes too, password or not.
	status, answer := adminRevoke(t, `{"user": "alice"}`)
	var revoked struct{ Passkeys int }
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &revoked) != nil || revoked.Passkeys != 1 {
		t.Fatalf("revoke the user alice: %d %s, want 200 with \"passkeys\": 1", status, answer)
	}
	b.passkeyRefused("a revoked user's passkey, with her password")
}

// TestPasskeyPagesPassAxeInEveryLanguage: the phone page with its passkey button, and the
// passkey offer, in every language, light and dark, pass checkState (axe-core, contrast,
// targets, focus); the button is shown when checked.
func TestPasskeyPagesPassAxeInEveryLanguage(t *testing.T) {
	axe := axeSource(t)
	g := startGate(t, passkeyGate, withOwnStorage, func(g *gate) { g.phones = "*" })
	for i, l := range [][2]string{{"en", "en-US"}, {"de", "de-DE"}, {"es", "es-ES"}, {"fr", "fr-FR"}} {
		t.Run(l[0], func(t *testing.T) {
			say := func(key string) string { return words(catalog[l[0]]).Say(key) }
			b := newBrowser(t, "phone", 390, 844, l[1])
			b.axe = axe
			look := func(what string) {
				t.Helper()
				for _, scheme := range []string{"light", "dark"} {
					b.scheme(scheme)
					b.checkState(what + " (" + scheme + ")")
				}
			}

			b.open("/.otp/login?next=/docs")
			b.do("wait for the passkey button", chromedp.WaitVisible(chromedp.ID("passkey-signin")))
			if present, enabled := b.shown("#passkey-signin"); !present || !enabled {
				t.Fatalf("the passkey button: shown %t, enabled %t", present, enabled)
			}
			if text := b.text("#passkey-signin"); text != say("passkey_signin") {
				t.Errorf("the passkey button says %q", text)
			}
			look("phone page with passkeys")

			phone := fmt.Sprintf("+1201555011%d", i)
			b.typeNumber(phone)
			b.typeSMSCode(g, phone, i+1)
			if p := b.path(); p != "/.otp/passkey/offer" {
				t.Fatalf("after the code at %s, want the offer", p)
			}
			if h := b.text("h1"); h != say("passkey_offer_title") {
				t.Errorf("the offer's heading %q", h)
			}
			if present, enabled := b.shown("#passkey-create"); !present || !enabled {
				t.Fatalf("the create button: shown %t, enabled %t", present, enabled)
			}
			look("passkey offer")
		})
	}
}

// TestAPasskeySignInLandsWhereTheVisitorWasGoingQueryAndAll: a protected URL with a query
// leads to the phone page; the passkey signs in there and lands on that URL, query and all.
func TestAPasskeySignInLandsWhereTheVisitorWasGoingQueryAndAll(t *testing.T) {
	g := startGate(t, passkeyGate, withOwnStorage)
	b := newBrowser(t, "phone", 390, 844, "en-US")
	addAuthenticator(b, false)
	b.smsSignIn(g, alice, 1)
	b.createPasskey("/docs")
	b.signOutHere()

	b.open("/reports/q3?year=2026")
	if p := b.path(); p != "/.otp/login" {
		t.Fatalf("without a session at %s, want the phone page", p)
	}
	b.do("sign in with a passkey", chromedp.WaitVisible(chromedp.ID("passkey-signin")), chromedp.Click(chromedp.ID("passkey-signin")))
	b.waitLocation("/reports/q3?year=2026")
	if body := b.text("body"); !strings.Contains(body, "user="+alice) {
		t.Fatalf("after the passkey the page says %q", body)
	}
}
