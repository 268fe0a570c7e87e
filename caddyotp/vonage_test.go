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

// vonageBlock is an otp block's vonage sender for the fake vf, with extra lines.
func vonageBlock(vf *restcommtest.Vonage, extra ...string) string {
	return fmt.Sprintf(`vonage {
				api_key %s
				api_secret %s
				from %s
				base_url %s
				timeout 2s
				%s
			}`, vf.APIKey, vf.APISecret, fromNum, vf.URL, strings.Join(extra, "\n\t\t\t\t"))
}

// viaVonage makes the gate send through the Vonage fake vf (its block with senderExtra).
func viaVonage(vf *restcommtest.Vonage, senderExtra ...string) gateOption {
	return func(g *gate) {
		g.t.Cleanup(vf.Close)
		g.sender = "sender " + vonageBlock(vf, senderExtra...)
	}
}

// vonageCode waits for the n-th message the fake accepted and returns it with its code.
func vonageCode(t *testing.T, vf *restcommtest.Vonage, n int) (restcommtest.VonageMessage, string) {
	t.Helper()
	msgs, err := vf.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Text)
}

// TestVonageSignInWithSignedReceipts: a sign-in through Vonage with signed requests and
// receipts; delivered shows on the code page; a forged receipt is refused and changes nothing;
// repeated and reordered receipts never move the state back; a failed receipt logs its reason
// and lets the visitor ask again at once.
func TestVonageSignInWithSignedReceipts(t *testing.T) {
	vf := restcommtest.NewVonage()
	vf.SignWith("sha256", "the-signature-secret")
	g := startGate(t, "", viaVonage(vf, "signature_secret the-signature-secret", "signature_method sha256"))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := vonageCode(t, vf, 1)
	if m.To != "12015550123" || !m.Signed || !receiptURL.MatchString(m.Callback) || m.TTL != "300000" {
		t.Errorf("message sent as %+v; want to alice, signed, with a receipt URL and the code's ttl", m)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("accepted, receipt to come: state %q", state)
	}
	delivered := vf.ReceiptParams(m, "delivered", 0)
	for what, p := range map[string]map[string]string{
		"no sig":          withField(delivered, "sig", ""),
		"a forged sig":    withField(delivered, "sig", restcommtest.VonageSignature("sha256", "guess", delivered)),
		"a changed field": withField(delivered, "status", "failed"),
	} {
		if got := restcommtest.PostVonageReceipt(m.Callback, p); got != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", what, got)
		}
		if _, state := v.status(); state != deliverySent {
			t.Errorf("%s moved the state to %q", what, state)
		}
	}
	if line := lastLogLine(t, g.logs(), "delivery receipt"); line["result"] != "bad_signature" || line["provider"] != "vonage" || line["level"] != "warn" || !strings.Contains(fmt.Sprint(line["fix"]), "signature_secret") {
		t.Errorf("forged receipt log line %v", line)
	}
	for _, st := range []string{"accepted", "buffered", "delivered", "accepted", "failed"} {
		if got := vf.PostReceipt(m, st, 0); got != http.StatusNoContent {
			t.Errorf("%s receipt: %d", st, got)
		}
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after delivered, then accepted and failed: %q", state)
	}
	if page := v.get("/.otp/verify"); page.status != http.StatusOK || !strings.Contains(html.UnescapeString(page.body), "Delivered to "+unbreakable.Replace("+1 201-555-0123")) {
		t.Errorf("the code page does not say delivered: %d", page.status)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	// A failed receipt: the state is failed, the log says why, and the visitor may ask again.
	clock.Advance(31 * time.Second)
	w := newVisitor(t)
	csrf, _ = w.startSignIn("/", bob)
	m, _ = vonageCode(t, vf, 2)
	w.settledAt(deliverySent)
	if got := vf.PostReceipt(m, "failed", 9); got != http.StatusNoContent {
		t.Fatalf("failed receipt: %d", got)
	}
	if _, state := w.status(); state != deliveryFailed {
		t.Errorf("after the failed receipt: %q", state)
	}
	wantStatus(t, "code page of a failed delivery", w.get("/.otp/verify"), http.StatusServiceUnavailable)
	line := lastLogLine(t, g.logs(), "delivery receipt")
	if line["level"] != "info" || line["delivery"] != deliveryFailed || !strings.Contains(fmt.Sprint(line["reason"]), "opted out") {
		t.Errorf("failed receipt log line %v, want its reason at info", line)
	}
	wantStatus(t, "resend at once after a failed delivery", w.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	vonageCode(t, vf, 3)
	if logs := g.logs(); strings.Contains(logs, vf.APISecret) || strings.Contains(logs, "the-signature-secret") {
		t.Error("the log holds a secret")
	}
}

// TestVonageReceiptsDelayedOrWithheld: receipts the fake posts on its own, late and out of
// order, end as the last final one says; withheld, the state stays sent.
func TestVonageReceiptsDelayedOrWithheld(t *testing.T) {
	vf := restcommtest.NewVonage()
	startGate(t, "", viaVonage(vf))
	vf.AutoReceipts(restcommtest.ReceiptStep{Status: "accepted", After: 50 * time.Millisecond},
		restcommtest.ReceiptStep{Status: "delivered", After: 100 * time.Millisecond},
		restcommtest.ReceiptStep{Status: "buffered"}, restcommtest.ReceiptStep{Status: "delivered"})
	v := newVisitor(t)
	v.startSignIn("/", alice)
	vonageCode(t, vf, 1)
	if state := v.settledAt(deliveryDelivered); state != deliveryDelivered {
		t.Errorf("unsigned receipts without signature_secret: state %q, want delivered", state)
	}
	vf.AutoReceipts()
	clock.Advance(31 * time.Second)
	w := newVisitor(t)
	w.startSignIn("/", bob)
	vonageCode(t, vf, 2)
	w.settledAt(deliverySent)
	time.Sleep(200 * time.Millisecond)
	if _, state := w.status(); state != deliverySent {
		t.Errorf("no receipt: state %q, want sent", state)
	}
}

// TestVonageErrorClassesEachWithItsPageAndLogLine: the refusals inside a 200 are the number's
// (failed, its reason), the configuration's (misconfigured, 502) or a passing fault (failed,
// 503), each with its log line and no secret in the log.
func TestVonageErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	vf := restcommtest.NewVonage()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaVonage(vf))
	class := func(build func(string, string, func(), func()) errorClass, name, reason string, f restcommtest.VonageFailure) errorClass {
		c := build(name, reason, func() { vf.Fail(f) }, func() { vf.Fail(restcommtest.VonageNone) })
		if f != restcommtest.VonageHTTP500 {
			c.detail = "status" // the code Vonage answered in its 200
		}
		return c
	}
	checkErrorClasses(t, g, "vonage", []string{vf.APISecret, "12015550123"}, []errorClass{
		class(numberClass, "invalid message", "invalid", restcommtest.VonageInvalidMessage),
		class(numberClass, "number barred", "blocked", restcommtest.VonageNumberBarred),
		class(configuration, "invalid credentials", "", restcommtest.VonageInvalidCredentials),
		class(configuration, "quota exceeded", "", restcommtest.VonageQuotaExceeded),
		class(configuration, "invalid sender", "", restcommtest.VonageInvalidSender),
		class(temporary, "throttled", "", restcommtest.VonageThrottled),
		class(temporary, "HTTP 500", "", restcommtest.VonageHTTP500),
	})
}
