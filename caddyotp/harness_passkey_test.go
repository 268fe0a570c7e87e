//go:build integration

package caddyotp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdpage "github.com/chromedp/cdproto/page"
	cdpwebauthn "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// cdpCall runs one DevTools command in the browser's tab and returns its result.
func cdpCall[P, R any](b *browser, c cdp.Command[P, R], params P) R {
	b.t.Helper()
	var out R
	b.do(c.Method, chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		r, err := cdp.Call(ctx, tg, c, params)
		out = r
		return chromedp.Void{}, err
	}))
	return out
}

// authenticator is a virtual authenticator in a browser, as the WebAuthn domain of the DevTools
// protocol makes it: a platform one (a fingerprint reader, say) that keeps discoverable
// credentials, verifies its user, and is touched at once.
type authenticator struct {
	b  *browser
	id cdpwebauthn.AuthenticatorID
}

// addAuthenticator gives the browser a virtual authenticator. With autofill, the phone page's
// number field offers its passkeys as a browser with conditional mediation does, and the
// virtual authenticator picks one at once; without, the browser is one that lacks conditional
// mediation, and the visitor presses "Sign in with a passkey".
func addAuthenticator(b *browser, autofill bool) *authenticator {
	b.t.Helper()
	if !autofill {
		cdpCall(b, cdpage.AddScriptToEvaluateOnNewDocument, cdpage.AddScriptToEvaluateOnNewDocumentParams{
			Source: `if (window.PublicKeyCredential) { PublicKeyCredential.isConditionalMediationAvailable = function () { return Promise.resolve(false); }; }`})
	}
	cdpCall(b, cdpwebauthn.Enable, cdpwebauthn.EnableParams{})
	r := cdpCall(b, cdpwebauthn.AddVirtualAuthenticator, cdpwebauthn.AddVirtualAuthenticatorParams{Options: &cdpwebauthn.VirtualAuthenticatorOptions{
		Protocol: cdpwebauthn.AuthenticatorProtocolCtap2, Ctap2version: cdpwebauthn.Ctap2versionCtap21, Transport: cdpwebauthn.AuthenticatorTransportInternal,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true}})
	return &authenticator{b: b, id: r.AuthenticatorID}
}

// credentials are the credentials the authenticator holds.
func (a *authenticator) credentials() []*cdpwebauthn.Credential {
	a.b.t.Helper()
	return cdpCall(a.b, cdpwebauthn.GetCredentials, cdpwebauthn.GetCredentialsParams{AuthenticatorID: a.id}).Credentials
}

// waitPath waits until the page's path is want, after a script moved it.
func (b *browser) waitPath(want string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		if err == nil && pathOf(loc) == want {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("still at %s, want %s; page says %q", loc, want, b.text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func pathOf(loc string) string {
	loc = strings.TrimPrefix(strings.TrimPrefix(loc, "http://"), "https://")
	if i := strings.IndexByte(loc, '/'); i >= 0 {
		loc = loc[i:]
	}
	p, _, _ := strings.Cut(loc, "?")
	return p
}

// smsSignIn signs in from the phone page with the n-th SMS's code: typed number, typed code.
// It leaves the browser wherever the gate sent it after the code.
func (b *browser) smsSignIn(g *gate, phone string, n int) {
	b.t.Helper()
	b.open("/.otp/login?next=" + "/docs")
	b.typeNumber(phone)
	m, code := g.code(n)
	if m.To != phone {
		b.t.Fatalf("SMS %d went to %s, want %s", n, m.To, phone)
	}
	if _, err := chromedp.RunResponse(b.ctx, chromedp.SendKeys(chromedp.ID("code"), code)); err != nil {
		b.t.Fatalf("typing the code: %v", err)
	}
}

// createPasskey presses the offer's button and waits for the page the visitor was going to.
func (b *browser) createPasskey(next string) {
	b.t.Helper()
	b.do("create a passkey", chromedp.WaitVisible(chromedp.ID("passkey-create")), chromedp.Click(chromedp.ID("passkey-create")))
	b.waitPath(next)
}

// passkeySignIn presses "Sign in with a passkey" on the phone page and waits for next.
func (b *browser) passkeySignIn(next string) {
	b.t.Helper()
	b.open("/.otp/login?next=" + next)
	b.do("sign in with a passkey", chromedp.WaitVisible(chromedp.ID("passkey-signin")), chromedp.Click(chromedp.ID("passkey-signin")))
	b.waitPath(next)
}

// signOutHere presses "Sign out" on the sign-out page.
func (b *browser) signOutHere() {
	b.t.Helper()
	b.open("/.otp/logout")
	b.submit("form[action$='/logout'] button[value='0']")
	if p := b.path(); p != "/.otp/login" {
		b.t.Fatalf("after sign-out at %s", p)
	}
}

// typeSMSCode waits for the n-th SMS, checks it went to phone, and types its code on the code
// page, whose last digit sends it.
func (b *browser) typeSMSCode(g *gate, phone string, n int) {
	b.t.Helper()
	m, code := g.code(n)
	if m.To != phone {
		b.t.Fatalf("SMS %d went to %s, want %s", n, m.To, phone)
	}
	if _, err := chromedp.RunResponse(b.ctx, chromedp.SendKeys(chromedp.ID("code"), code)); err != nil {
		b.t.Fatalf("typing the code: %v", err)
	}
}

// waitLocation waits until the page is at want, a path with its query, after a script moved it.
func (b *browser) waitLocation(want string) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		if err == nil && strings.TrimPrefix(loc, site) == want {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("still at %s, want %s; page says %q", loc, want, b.text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setSignCount sets the sign counter of the authenticator's credential id: the next assertion
// reports count + 1.
func (a *authenticator) setSignCount(id []byte, count float64) {
	a.b.t.Helper()
	cdpCall(a.b, cdpwebauthn.SetCredentialProperties, cdpwebauthn.SetCredentialPropertiesParams{AuthenticatorID: a.id, CredentialID: id, SignCount: &count})
}

// assertionJS is a function of a sign-in's options (the JSON of P/passkey/signin/begin) that
// asks the browser's authenticators for an assertion, as the phone page does, and resolves
// to the JSON the phone page would post to P/passkey/signin/finish.
const assertionJS = `function (options) {
  function fromB64(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) { s += "="; }
    return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }).buffer;
  }
  function toB64(buf) {
    var s = "", b = new Uint8Array(buf);
    for (var i = 0; i < b.length; i++) { s += String.fromCharCode(b[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  var pk = options.publicKey;
  pk.challenge = fromB64(pk.challenge);
  (pk.allowCredentials || []).forEach(function (c) { c.id = fromB64(c.id); });
  return navigator.credentials.get({publicKey: pk}).then(function (c) {
    return JSON.stringify({id: c.id, rawId: toB64(c.rawId), type: c.type, clientExtensionResults: c.getClientExtensionResults(),
      response: {clientDataJSON: toB64(c.response.clientDataJSON), authenticatorData: toB64(c.response.authenticatorData),
        signature: toB64(c.response.signature), userHandle: c.response.userHandle ? toB64(c.response.userHandle) : undefined}});
  });
}`

// withOwnStorage gives the gate Caddy storage of the test's own: its passkeys (and the key
// that names their owners) start empty, whatever other tests on the machine made.
func withOwnStorage(g *gate) { g.global = "storage file_system " + g.t.TempDir() }

// aliceWithAPasskey starts a passkey gate with storage of its own, and a desktop Chromium with
// a virtual authenticator in which alice, after her first code, made a passkey; it is on /docs.
func aliceWithAPasskey(t *testing.T) (*gate, *browser, *authenticator) {
	t.Helper()
	g := startGate(t, passkeyGate, withOwnStorage)
	b := newBrowser(t, "desktop", 1280, 800, "en-US")
	auth := addAuthenticator(b, false)
	b.smsSignIn(g, alice, 1)
	b.createPasskey("/docs")
	return g, b, auth
}
