//go:build integration

package caddyotp

import (
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
)

// passkeyGate is a gate with passkeys on, at http://localhost:9080 (a domain, so a relying party).
const passkeyGate = "passkeys\n\t\tip_limit 200 10m"

// TestPasskeyAfterTheFirstCodeSignsInWithNoSMS is the whole course in real Chromium with a
// virtual authenticator: a code signs the visitor in and leads to the offer; the passkey made
// there signs in after a sign-out with no SMS sent, as the same subject, where the visitor was
// going; and the browser is not offered one again.
func TestPasskeyAfterTheFirstCodeSignsInWithNoSMS(t *testing.T) {
	g := startGate(t, passkeyGate, withOwnStorage)
	b := newBrowser(t, "phone", 390, 844, "en-US")
	auth := addAuthenticator(b, false)

	b.smsSignIn(g, alice, 1)
	if p := b.path(); p != "/.otp/passkey/offer" {
		t.Fatalf("after the code at %s, want the passkey offer", p)
	}
	if text := b.text("main"); !strings.Contains(text, "Next time, sign in with your fingerprint, face or screen lock instead of a text message.") {
		t.Errorf("the offer says %q", text)
	}
	b.checkPage("passkey offer")
	b.createPasskey("/docs")
	if body := b.text("body"); !strings.Contains(body, "user="+alice) {
		t.Fatalf("after making the passkey the page says %q", body)
	}
	creds := auth.credentials()
	if len(creds) != 1 || !creds[0].IsResidentCredential || creds[0].RpID != "localhost" {
		t.Fatalf("the authenticator holds %+v, want one discoverable credential for localhost", creds)
	}
	if strings.Contains(string(creds[0].UserHandle), alice) || strings.Contains(creds[0].UserName, "555") {
		t.Errorf("the authenticator was given the number: handle %q, name %q", creds[0].UserHandle, creds[0].UserName)
	}

	b.signOutHere()
	if got := eval[string](b, `document.getElementById("phone").getAttribute("autocomplete")`); got != "username webauthn" {
		t.Errorf("the number field's autocomplete is %q, want the passkeys' autofill", got)
	}
	sent := len(g.sms.Messages())
	b.passkeySignIn("/reports")
	if body := b.text("body"); !strings.Contains(body, "user="+alice) {
		t.Fatalf("after the passkey sign-in the page says %q", body)
	}
	if n := len(g.sms.Messages()); n != sent {
		t.Errorf("a passkey sign-in sent %d SMS", n-sent)
	}
	logs := g.logs()
	for _, event := range []string{"passkey created", "passkey used"} {
		if !strings.Contains(logs, event) {
			t.Errorf("the log lacks %q", event)
		}
	}
	if strings.Contains(logs, alice) {
		t.Errorf("the log holds the whole number")
	}

	// A later sign-in with a code on this browser goes straight on: it was offered one already.
	b.signOutHere()
	b.smsSignIn(g, bob, 2)
	if p := b.path(); p != "/docs" {
		t.Errorf("a second code on the same browser landed on %s, want /docs with no offer", p)
	}
}

// TestPasskeyAutofillSignsIn: where the browser offers passkeys in the number field's
// autofill (conditional mediation), picking one there signs in, with nothing typed or pressed.
func TestPasskeyAutofillSignsIn(t *testing.T) {
	g := startGate(t, passkeyGate, withOwnStorage)
	b := newBrowser(t, "desktop", 1280, 800, "en-US")
	addAuthenticator(b, true)
	b.smsSignIn(g, bob, 1)
	b.createPasskey("/docs")
	cdpCall(b, network.ClearBrowserCookies, cdp.Empty{}) // a new session, as days later
	b.open("/.otp/login?next=/reports")
	b.waitPath("/reports")
	if body := b.text("body"); !strings.Contains(body, "user="+bob) {
		t.Fatalf("after the autofill the page says %q", body)
	}
}
