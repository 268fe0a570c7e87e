package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestFailoverVonagePlivoTelnyxMovesOnAndReadsEachOnesReceipts: failover { vonage plivo telnyx }:
// Vonage's 500 moves on to Plivo, whose signed receipt is read by Plivo's sender; Plivo's 429
// then moves on to Telnyx; a number Vonage refuses is refused, and no other provider is tried.
// The provider label of the metrics names each.
func TestFailoverVonagePlivoTelnyxMovesOnAndReadsEachOnesReceipts(t *testing.T) {
	vf, pf, tf := restcommtest.NewVonage(), restcommtest.NewPlivo(), restcommtest.NewTelnyx()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", func(g *gate) {
		for _, c := range []func(){vf.Close, pf.Close, tf.Close} {
			g.t.Cleanup(c)
		}
		g.sender = "sender failover {\n\t\t\t" + vonageBlock(vf) + "\n\t\t\t" + plivoBlock(pf) + "\n\t\t\t" + telnyxBlock(tf) + "\n\t\t}"
	})
	before := scrape(t)

	vf.Fail(restcommtest.VonageHTTP500)
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := plivoCode(t, pf, 1)
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("sent through plivo: state %q", state)
	}
	if line := lastLogLine(t, g.logs(), "code sent"); line["provider"] != "plivo" || line["message_id"] != m.UUID {
		t.Errorf("code sent line %v, want plivo's message", line)
	}
	if line := lastLogLine(t, g.logs(), "provider failed, trying the next"); line["provider"] != "vonage" || line["temporary"] != true {
		t.Errorf("failure line %v, want vonage's temporary failure", line)
	}
	if got := pf.PostReceipt(m, "delivered", 0); got != http.StatusNoContent {
		t.Errorf("plivo's receipt through the failover: %d", got)
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after plivo's delivered receipt: %q", state)
	}
	// A receipt signed as Telnyx signs, to the URL made for Plivo, is not Plivo's: refused.
	body := tf.ReceiptBody(restcommtest.TelnyxMessage{ID: m.UUID, To: alice, WebhookURL: m.URL}, "delivery_failed", 40001)
	ts := fmt.Sprint(time.Now().Unix())
	if got := restcommtest.PostTelnyxReceipt(m.URL, body, ts, tf.Sign(ts, body)); got != http.StatusForbidden {
		t.Errorf("another provider's receipt to plivo's URL: %d, want 403", got)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	clock.Advance(31 * time.Second)
	pf.Fail(restcommtest.PlivoTooManyRequests)
	w := newVisitor(t)
	w.startSignIn("/", bob)
	tm, _ := telnyxCode(t, tf, 1)
	w.settledAt(deliverySent)
	if got := tf.PostReceipt(tm, "delivered", 0); got != http.StatusNoContent {
		t.Errorf("telnyx's receipt through the failover: %d", got)
	}
	if _, state := w.status(); state != deliveryDelivered {
		t.Errorf("after telnyx's delivered receipt: %q", state)
	}
	if line := lastLogLine(t, g.logs(), "code sent"); line["provider"] != "telnyx" {
		t.Errorf("code sent line %v, want telnyx", line)
	}

	// The number's fault stops the failover: neither Plivo nor Telnyx is tried.
	clock.Advance(31 * time.Second)
	vf.Fail(restcommtest.VonageNone)
	pf.Fail(restcommtest.PlivoNone)
	vf.Refuse(alice, restcommtest.VonageNumberBarred)
	x := newVisitor(t)
	x.startSignIn("/", alice)
	if state := x.settled(); state != deliveryFailed || x.statusReason() != "blocked" {
		t.Errorf("a barred number: state %q reason %q, want failed blocked", state, x.statusReason())
	}
	if len(pf.Messages()) != 1 || len(tf.Messages()) != 1 {
		t.Errorf("another provider was tried for a number vonage refused: plivo %d, telnyx %d", len(pf.Messages()), len(tf.Messages()))
	}

	after := scrape(t)
	for series, want := range map[string]float64{
		`caddy_otp_provider_sends_total{provider="vonage",result="failed_temporary"}`: 2,
		`caddy_otp_provider_sends_total{provider="vonage",result="refused_number"}`:   1,
		`caddy_otp_provider_sends_total{provider="plivo",result="sent"}`:              1,
		`caddy_otp_provider_sends_total{provider="plivo",result="failed_temporary"}`:  1,
		`caddy_otp_provider_sends_total{provider="telnyx",result="sent"}`:             1,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s rose by %v, want %v", series, got, want)
		}
	}
}

// TestSendTestWorksThroughVonagePlivoAndTelnyx: `caddy otp send-test` sends through each, and
// through a failover of them names the provider that answered.
func TestSendTestWorksThroughVonagePlivoAndTelnyx(t *testing.T) {
	vf, pf, tf := restcommtest.NewVonage(), restcommtest.NewPlivo(), restcommtest.NewTelnyx()
	defer vf.Close()
	defer pf.Close()
	defer tf.Close()
	run := func(sender string) (string, error) {
		config := filepath.Join(t.TempDir(), "Caddyfile")
		cfg := fmt.Sprintf("http://localhost:1 {\n\totp {\n\t\tsender %s\n\t\tphones %s\n\t}\n\trespond \"in\"\n}\n", sender, alice)
		if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		err := sendTest(context.Background(), &out, config, "", bob)
		return out.String(), err
	}
	if out, err := run(vonageBlock(vf)); err != nil || len(vf.Messages()) != 1 || !strings.Contains(out, "through vonage: accepted, message id "+vf.Messages()[0].ID) {
		t.Errorf("send-test through vonage: %v %q", err, out)
	}
	if out, err := run(plivoBlock(pf)); err != nil || len(pf.Messages()) != 1 || !strings.Contains(out, "through plivo: accepted, message id "+pf.Messages()[0].UUID) {
		t.Errorf("send-test through plivo: %v %q", err, out)
	}
	if out, err := run(telnyxBlock(tf)); err != nil || len(tf.Messages()) != 1 || !strings.Contains(out, "through telnyx: accepted, message id "+tf.Messages()[0].ID) {
		t.Errorf("send-test through telnyx: %v %q", err, out)
	}
	vf.Fail(restcommtest.VonageQuotaExceeded)
	out, err := run("failover {\n\t\t\t" + vonageBlock(vf) + "\n\t\t\t" + plivoBlock(pf) + "\n\t\t}")
	if err != nil || !strings.Contains(out, "through failover, provider plivo: accepted") {
		t.Errorf("send-test through a failover whose vonage has no credit: %v %q", err, out)
	}
	pf.Fail(restcommtest.PlivoInsufficientCredit)
	_, err = run(plivoBlock(pf))
	if err == nil || !strings.Contains(err.Error(), "not sent through plivo") || !strings.Contains(err.Error(), "top up") || strings.Contains(err.Error(), pf.AuthToken) {
		t.Errorf("send-test through plivo without credit: %v", err)
	}
}
