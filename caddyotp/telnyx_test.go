package caddyotp

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// telnyxBlock is an otp block's telnyx sender for the fake tf, with extra lines.
func telnyxBlock(tf *restcommtest.Telnyx, extra ...string) string {
	return fmt.Sprintf(`telnyx {
				api_key %s
				from %s
				public_key %s
				base_url %s
				timeout 2s
				%s
			}`, tf.APIKey, fromNum, tf.PublicKey, tf.URL, strings.Join(extra, "\n\t\t\t\t"))
}

// viaTelnyx makes the gate send through the Telnyx fake tf.
func viaTelnyx(tf *restcommtest.Telnyx) gateOption {
	return func(g *gate) {
		g.t.Cleanup(tf.Close)
		g.sender = "sender " + telnyxBlock(tf)
	}
}

// telnyxCode waits for the n-th message the fake accepted and returns it with its code.
func telnyxCode(t *testing.T, tf *restcommtest.Telnyx, n int) (restcommtest.TelnyxMessage, string) {
	t.Helper()
	msgs, err := tf.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Text)
}

// TestTelnyxSignInWithSignedReceipts: a sign-in through Telnyx; webhooks signed with its
// Ed25519 key move the state, forged, tampered and old ones get 403 and change nothing; a
// delivery_failed webhook fails the code and logs its reason.
func TestTelnyxSignInWithSignedReceipts(t *testing.T) {
	tf := restcommtest.NewTelnyx()
	g := startGate(t, "", viaTelnyx(tf))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := telnyxCode(t, tf, 1)
	if m.To != alice || m.From != fromNum || !receiptURL.MatchString(m.WebhookURL) {
		t.Errorf("message sent as %+v; want to alice from %s with a receipt URL", m, fromNum)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("accepted, receipt to come: state %q", state)
	}
	body := tf.ReceiptBody(m, "delivered", 0)
	now := strconv.FormatInt(time.Now().Unix(), 10)
	old := strconv.FormatInt(time.Now().Add(-6*time.Minute).Unix(), 10)
	other := restcommtest.NewTelnyx()
	defer other.Close()
	for what, c := range map[string]struct {
		body    []byte
		ts, sig string
	}{
		"no signature":             {body, now, ""},
		"signed by another key":    {body, now, other.Sign(now, body)},
		"a body changed":           {tf.ReceiptBody(m, "delivery_failed", 40001), now, tf.Sign(now, body)},
		"signed six minutes ago":   {body, old, tf.Sign(old, body)},
		"a timestamp changed":      {body, old, tf.Sign(now, body)},
		"no timestamp":             {body, "", tf.Sign(now, body)},
		"the body alone is signed": {body, now, tf.Sign("", body)},
	} {
		if got := restcommtest.PostTelnyxReceipt(m.WebhookURL, c.body, c.ts, c.sig); got != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", what, got)
		}
		if _, state := v.status(); state != deliverySent {
			t.Errorf("%s moved the state to %q", what, state)
		}
	}
	for _, st := range []string{"sending", "sent", "delivered", "sent", "delivery_failed"} {
		if got := tf.PostReceipt(m, st, 0); got != http.StatusNoContent {
			t.Errorf("%s webhook: %d", st, got)
		}
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after delivered, then sent and delivery_failed: %q", state)
	}
	if page := v.get("/.otp/verify"); page.status != http.StatusOK || !strings.Contains(html.UnescapeString(page.body), "Delivered to "+unbreakable.Replace("+1 201-555-0123")) {
		t.Errorf("the code page does not say delivered: %d", page.status)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	clock.Advance(31 * time.Second)
	tf.AutoReceipts(restcommtest.ReceiptStep{Status: "sent", After: 20 * time.Millisecond},
		restcommtest.ReceiptStep{Status: "delivery_failed", ErrorCode: 40001, After: 50 * time.Millisecond})
	w := newVisitor(t)
	w.startSignIn("/", bob)
	telnyxCode(t, tf, 2)
	if state := w.settledAt(deliveryFailed); state != deliveryFailed {
		t.Errorf("after a delivery_failed webhook: %q", state)
	}
	wantStatus(t, "code page of a failed delivery", w.get("/.otp/verify"), http.StatusServiceUnavailable)
	line := lastLogLine(t, g.logs(), "delivery receipt")
	if line["level"] != "info" || line["provider"] != "telnyx" || !strings.Contains(fmt.Sprint(line["reason"]), "Not routable (error 40001)") {
		t.Errorf("failed receipt log line %v", line)
	}
	if strings.Contains(g.logs(), tf.APIKey) {
		t.Error("the log holds the API key")
	}
}

func TestTelnyxErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	tf := restcommtest.NewTelnyx()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaTelnyx(tf))
	failing := func(f restcommtest.TelnyxFailure) (func(), func()) {
		return func() { tf.Fail(f) }, func() { tf.Fail(restcommtest.TelnyxNone) }
	}
	class := func(build func(string, string, func(), func()) errorClass, name, reason string, f restcommtest.TelnyxFailure) errorClass {
		fail, reset := failing(f)
		return build(name, reason, fail, reset)
	}
	checkErrorClasses(t, g, "telnyx", []string{"12015550123"}, []errorClass{
		class(numberClass, "blocked", "blocked", restcommtest.TelnyxBlocked),
		class(numberClass, "invalid", "invalid", restcommtest.TelnyxInvalidNumber),
		class(temporary, "too many requests", "", restcommtest.TelnyxTooManyRequests),
		class(temporary, "internal error", "", restcommtest.TelnyxInternalError),
	})
}

// TestTelnyxWrongKeyIsTheConfigurationsFault: a refused API key is misconfigured (502), and
// the log says what to fix without the key.
func TestTelnyxWrongKeyIsTheConfigurationsFault(t *testing.T) {
	tf := restcommtest.NewTelnyx()
	key := tf.APIKey
	g := newGate(t)
	viaTelnyx(tf)(g)
	tf.APIKey = "KEYrotated" // rotated in Mission Control before the first send: the gate's no longer matches
	g.start("")
	v := newVisitor(t)
	v.startSignIn("/", alice)
	if state := v.settled(); state != deliveryMisconfigured {
		t.Errorf("state %q, want misconfigured", state)
	}
	wantStatus(t, "code page", v.get("/.otp/verify"), http.StatusBadGateway)
	line := lastLogLine(t, g.logs(), "sender error")
	if line["class"] != "configuration" || !strings.Contains(fmt.Sprint(line["detail"]), "check api_key") || strings.Contains(g.logs(), key) {
		t.Errorf("log line %v", line)
	}
}
