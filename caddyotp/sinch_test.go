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
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue is a counter's value now.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// sinchBlock is an otp block's sinch sender for the fake sn (its callback_secret if it has
// one), with extra lines.
func sinchBlock(sn *restcommtest.Sinch, extra ...string) string {
	if sn.CallbackSecret != "" {
		extra = append(extra, "callback_secret "+sn.CallbackSecret)
	}
	return fmt.Sprintf(`sinch {
				service_plan_id %s
				api_token %s
				from %s
				base_url %s
				timeout 2s
				%s
			}`, sn.ServicePlanID, sn.APIToken, fromNum, sn.BaseURL(), strings.Join(extra, "\n\t\t\t\t"))
}

// viaSinch makes the gate send through the Sinch fake sn.
func viaSinch(sn *restcommtest.Sinch) gateOption {
	return func(g *gate) {
		g.t.Cleanup(sn.Close)
		g.sender = "sender " + sinchBlock(sn)
	}
}

// sinchCode waits for the n-th batch the fake accepted and returns it with its code.
func sinchCode(t *testing.T, sn *restcommtest.Sinch, n int) (restcommtest.SinchBatch, string) {
	t.Helper()
	b, err := sn.WaitBatches(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return b[n-1], autofillCode(t, b[n-1].Body)
}

func TestSinchSignInWithSignedReceiptsOnTheCodePageAndForgeriesRefused(t *testing.T) {
	sn := restcommtest.NewSinch()
	sn.CallbackSecret = "sinch-callback-secret"
	g := startGate(t, "", viaSinch(sn))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	b, code := sinchCode(t, sn, 1)
	if b.To != alice || b.From != fromNum || b.DeliveryReport != "per_recipient_final" || !receiptURL.MatchString(b.CallbackURL) {
		t.Errorf("sent as %+v; want alice, from, final reports to a receipt URL of public_url", b)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("accepted, receipt to come: %q", state)
	}
	unchanged := func(what string, got int) {
		t.Helper()
		if got != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", what, got)
		}
		if _, state := v.status(); state != deliverySent {
			t.Errorf("%s changed the state to %q", what, state)
		}
	}
	delivered := sn.Report(b, "Delivered", 0)
	unchanged("an unsigned report", restcommtest.PostRaw(b.CallbackURL, delivered, nil))
	unchanged("a report signed with another secret", restcommtest.PostRaw(b.CallbackURL, delivered, restcommtest.SignedHeaders("guess", delivered, time.Now())))
	unchanged("a report signed an hour ago", restcommtest.PostRaw(b.CallbackURL, delivered, restcommtest.SignedHeaders(sn.CallbackSecret, delivered, time.Now().Add(-time.Hour))))
	unchanged("a body changed after signing", restcommtest.PostRaw(b.CallbackURL, delivered, restcommtest.SignedHeaders(sn.CallbackSecret, sn.Report(b, "Dispatched", 401), time.Now())))
	if line := lastLogLine(t, g.logs(), "delivery receipt"); line["result"] != "bad_signature" || line["provider"] != "sinch" {
		t.Errorf("the forged receipt's log line %v", line)
	}

	if got := sn.PostReceipt(b, "Delivered", 0); got != http.StatusNoContent {
		t.Errorf("the signed delivered report: %d", got)
	}
	page := v.get("/.otp/verify")
	if page.status != http.StatusOK || !strings.Contains(html.UnescapeString(page.body), "Delivered to "+unbreakable.Replace("+1 201-555-0123")) {
		t.Errorf("the code page does not say delivered: %d", page.status)
	}
	for _, st := range []string{"Failed", "Queued", "Delivered"} { // repeated and out of order: never backwards
		sn.PostReceipt(b, st, 404)
		if _, state := v.status(); state != deliveryDelivered {
			t.Errorf("%s after delivered moved the state to %q", st, state)
		}
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	// A failure the fake reports by itself, after a withheld while: the code page says not sent.
	clock.Advance(31 * time.Second)
	sn.AutoReceipts(restcommtest.ReceiptStep{Status: "Rejected", ErrorCode: 408, After: 50 * time.Millisecond})
	w := newVisitor(t)
	w.startSignIn("/", bob)
	sinchCode(t, sn, 2)
	if state := w.settledAt(deliveryFailed); state != deliveryFailed {
		t.Errorf("after a rejected report: %q", state)
	}
	if page := w.get("/.otp/verify"); page.status != http.StatusServiceUnavailable || !strings.Contains(page.body, "Code not sent") {
		t.Errorf("the code page of a rejected code: %d", page.status)
	}
}

func TestSinchErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	sn := restcommtest.NewSinch()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaSinch(sn))
	fail := func(f restcommtest.SinchFailure) func() { return func() { sn.Fail(f) } }
	none := fail(restcommtest.SinchNone)
	token := sn.APIToken
	checkErrorClasses(t, g, "sinch", []string{token}, []errorClass{
		numberClass("illegal number type", "invalid", fail(restcommtest.SinchIllegalNumberType), none),
		configClass("blocked account", fail(restcommtest.SinchBlockedAccount), none),
		configClass("wrong token", func() { sn.SetAPIToken("rotated") }, func() { sn.SetAPIToken(token) }),
		temporaryClass("429", fail(restcommtest.SinchTooManyRequests), none),
		temporaryClass("500", fail(restcommtest.SinchInternalError), none),
		temporaryClass("dropped", fail(restcommtest.SinchDropConnection), none),
	})
}

// TestFailoverFromSinchToInfobipMovesOnWhenSinchFails: a failover of the two moves on when the
// first answers 500, names the provider that sent in the log and in the metrics, and reads
// each one's receipts with its own sender.
func TestFailoverFromSinchToInfobipMovesOnWhenSinchFails(t *testing.T) {
	sn := restcommtest.NewSinch()
	sn.CallbackSecret = "sinch-callback-secret"
	ib := restcommtest.NewInfobip()
	t.Cleanup(sn.Close)
	t.Cleanup(ib.Close)
	g := newGate(t)
	g.sender = "sender failover {\n\t\t\t" + sinchBlock(sn) + "\n\t\t\t" + infobipBlock(ib) + "\n\t\t}"
	g.start("")
	failedBefore := counterValue(metrics.providerSends.WithLabelValues("sinch", "failed_temporary"))
	sentBefore := counterValue(metrics.providerSends.WithLabelValues("infobip", "sent"))
	sn.Fail(restcommtest.SinchInternalError)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	m, _ := infobipCode(t, ib, 1)
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("state %q, want sent", state)
	}
	if failed := lastLogLine(t, g.logs(), "provider failed, trying the next"); failed["provider"] != "sinch" || failed["temporary"] != true {
		t.Errorf("the failover's log line %v", failed)
	}
	if line := lastLogLine(t, g.logs(), "code sent"); line["provider"] != "infobip" {
		t.Errorf("the code sent line %v", line)
	}
	if d := counterValue(metrics.providerSends.WithLabelValues("sinch", "failed_temporary")) - failedBefore; d != 1 {
		t.Errorf("provider_sends_total{provider=sinch,result=failed_temporary} rose by %v, want 1", d)
	}
	if d := counterValue(metrics.providerSends.WithLabelValues("infobip", "sent")) - sentBefore; d != 1 {
		t.Errorf("provider_sends_total{provider=infobip,result=sent} rose by %v, want 1", d)
	}
	// Infobip's unsigned report is read by the infobip sender, not refused for Sinch's secret.
	if got := ib.PostReceipt(m, "DELIVERED_TO_HANDSET", 0); got != http.StatusNoContent {
		t.Errorf("infobip's report: %d", got)
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after infobip's report: %q", state)
	}
	if n := countLines(g.logs(), "provider failed, trying the next", "provider", "sinch"); n != 1 {
		t.Errorf("%d failover lines for sinch, want 1", n)
	}
	sn.Fail(restcommtest.SinchNone)
	clock.Advance(31 * time.Second)
	w := newVisitor(t)
	w.startSignIn("/", bob)
	b, _ := sinchCode(t, sn, 1)
	if got := restcommtest.PostRaw(b.CallbackURL, sn.Report(b, "Delivered", 0), nil); got != http.StatusForbidden {
		t.Errorf("an unsigned report of sinch's message inside the failover: %d, want 403", got)
	}
	if got := sn.PostReceipt(b, "Delivered", 0); got != http.StatusNoContent {
		t.Errorf("sinch's signed report inside the failover: %d", got)
	}
}
