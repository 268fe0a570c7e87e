package caddyotp

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// plivoBlock is an otp block's plivo sender for the fake pf, with extra lines.
func plivoBlock(pf *restcommtest.Plivo, extra ...string) string {
	return fmt.Sprintf(`plivo {
				auth_id %s
				auth_token %s
				from %s
				base_url %s
				timeout 2s
				%s
			}`, pf.AuthID, pf.AuthToken, fromNum, pf.URL, strings.Join(extra, "\n\t\t\t\t"))
}

// viaPlivo makes the gate send through the Plivo fake pf.
func viaPlivo(pf *restcommtest.Plivo, senderExtra ...string) gateOption {
	return func(g *gate) {
		g.t.Cleanup(pf.Close)
		g.sender = "sender " + plivoBlock(pf, senderExtra...)
	}
}

// plivoCode waits for the n-th message the fake accepted and returns it with its code.
func plivoCode(t *testing.T, pf *restcommtest.Plivo, n int) (restcommtest.PlivoMessage, string) {
	t.Helper()
	msgs, err := pf.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Text)
}

// TestPlivoSignInWithSignedReceipts: a sign-in through Plivo; receipts signed with the auth
// token move the state, forged ones (no signature, another nonce, another URL's, another
// token's) get 403 and change nothing; a number Plivo cannot reach fails by receipt, with its
// reason in the log.
func TestPlivoSignInWithSignedReceipts(t *testing.T) {
	pf := restcommtest.NewPlivo()
	g := startGate(t, "", viaPlivo(pf))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := plivoCode(t, pf, 1)
	if m.To != alice || m.From != fromNum || m.Method != http.MethodPost || !receiptURL.MatchString(m.URL) {
		t.Errorf("message sent as %+v; want to alice from %s with a receipt URL posted to", m, fromNum)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("accepted, receipt to come: state %q", state)
	}
	form := pf.ReceiptForm(m, "delivered", 0)
	nonce := restcommtest.PlivoNonce()
	token := strings.TrimPrefix(m.URL, site+"/.otp/receipt/")
	for what, c := range map[string]struct{ nonce, sig string }{
		"no signature":            {nonce, ""},
		"another nonce":           {restcommtest.PlivoNonce(), restcommtest.PlivoSignature(pf.AuthToken, m.URL, nonce)},
		"signed for another host": {nonce, restcommtest.PlivoSignature(pf.AuthToken, "http://attacker.example/.otp/receipt/"+token, nonce)},
		"signed with a guess":     {nonce, restcommtest.PlivoSignature("guess", m.URL, nonce)},
	} {
		if got := restcommtest.PostPlivoReceipt(m.URL, form, c.nonce, c.sig); got != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", what, got)
		}
		if _, state := v.status(); state != deliverySent {
			t.Errorf("%s moved the state to %q", what, state)
		}
	}
	for _, st := range []string{"queued", "sent", "delivered", "sent", "undelivered"} {
		if got := pf.PostReceipt(m, st, 0); got != http.StatusNoContent {
			t.Errorf("%s receipt: %d", st, got)
		}
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after delivered, then sent and undelivered: %q", state)
	}
	if page := v.get("/.otp/verify"); page.status != http.StatusOK || !strings.Contains(html.UnescapeString(page.body), "Delivered to "+unbreakable.Replace("+1 201-555-0123")) {
		t.Errorf("the code page does not say delivered: %d", page.status)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	// A number Plivo cannot reach: accepted, then a failed receipt with ErrorCode 50.
	clock.Advance(31 * time.Second)
	pf.Refuse(bob, 50)
	w := newVisitor(t)
	w.startSignIn("/", bob)
	plivoCode(t, pf, 2)
	if state := w.settledAt(deliveryFailed); state != deliveryFailed {
		t.Errorf("a number Plivo cannot reach: %q", state)
	}
	wantStatus(t, "code page of a failed delivery", w.get("/.otp/verify"), http.StatusServiceUnavailable)
	line := lastLogLine(t, g.logs(), "delivery receipt")
	if line["level"] != "info" || line["provider"] != "plivo" || !strings.Contains(fmt.Sprint(line["reason"]), "ErrorCode 50") {
		t.Errorf("failed receipt log line %v", line)
	}
	if strings.Contains(g.logs(), pf.AuthToken) {
		t.Error("the log holds the auth token")
	}
}

func TestPlivoErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	pf := restcommtest.NewPlivo()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaPlivo(pf))
	token := pf.AuthToken
	cases := []struct {
		failure restcommtest.PlivoFailure
		class   string
		state   string
		page    int
	}{
		{restcommtest.PlivoInsufficientCredit, "configuration", deliveryMisconfigured, http.StatusBadGateway},
		{restcommtest.PlivoTooManyRequests, "temporary", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.PlivoInternalError, "temporary", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.PlivoDropConnection, "temporary", deliveryFailed, http.StatusServiceUnavailable},
		{-1, "configuration", deliveryMisconfigured, http.StatusBadGateway}, // the token was rotated
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%d_%s", i, tc.class), func(t *testing.T) {
			clock.Advance(31 * time.Second)
			if tc.failure < 0 {
				pf.SetAuthToken("rotated" + token)
				defer pf.SetAuthToken(token)
			} else {
				pf.Fail(tc.failure)
				defer pf.Fail(restcommtest.PlivoNone)
			}
			v := newVisitor(t)
			v.startSignIn("/", alice)
			if state := v.settled(); state != tc.state {
				t.Errorf("state %q, want %q", state, tc.state)
			}
			wantStatus(t, "code page", v.get("/.otp/verify"), tc.page)
			line := lastLogLine(t, g.logs(), "sender error")
			if line["class"] != tc.class || line["provider"] != "plivo" {
				t.Errorf("log line %v, want class %q provider plivo", line, tc.class)
			}
			if tc.failure < 0 && !strings.Contains(fmt.Sprint(line["detail"]), "check auth_id and auth_token") {
				t.Errorf("a refused token's line does not say what to fix: %v", line)
			}
			for _, secret := range []string{token, alice} {
				if strings.Contains(g.logs(), secret) {
					t.Errorf("the log holds a secret %q", secret)
				}
			}
		})
	}
}
