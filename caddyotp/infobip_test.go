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

// infobipBlock is an otp block's infobip sender for the fake ib, with extra lines.
func infobipBlock(ib *restcommtest.Infobip, extra ...string) string {
	return fmt.Sprintf(`infobip {
				api_key %s
				from ExampleCo
				base_url %s
				timeout 2s
				%s
			}`, ib.APIKey, ib.BaseURL(), strings.Join(extra, "\n\t\t\t\t"))
}

// viaInfobip makes the gate send through the Infobip fake ib.
func viaInfobip(ib *restcommtest.Infobip) gateOption {
	return func(g *gate) {
		g.t.Cleanup(ib.Close)
		g.sender = "sender " + infobipBlock(ib)
	}
}

// infobipCode waits for the n-th message the fake accepted and returns it with its code.
func infobipCode(t *testing.T, ib *restcommtest.Infobip, n int) (restcommtest.InfobipMessage, string) {
	t.Helper()
	msgs, err := ib.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Text)
}

// errorClass is one way a provider refuses or fails, and what the visitor and the log see.
type errorClass struct {
	name   string
	fail   func() // makes the provider fail so
	reset  func() // undoes it
	msg    string // the log line
	class  string // its class
	reason string // the number's reason, if it is the number's fault
	state  string // the delivery state
	page   int    // the code page's status
	detail string // what the log line's detail holds, if it must hold something
}

func numberClass(name, reason string, fail, reset func()) errorClass {
	return errorClass{name: name, fail: fail, reset: reset, msg: "number refused by the provider", class: "number", reason: reason,
		state: deliveryFailed, page: http.StatusServiceUnavailable}
}

func configClass(name string, fail, reset func()) errorClass {
	return errorClass{name: name, fail: fail, reset: reset, msg: "sender error", class: "configuration",
		state: deliveryMisconfigured, page: http.StatusBadGateway}
}

// configuration and temporary are configClass and temporaryClass with numberClass's shape, for
// tables that build every class alike; their reason is always "".
func configuration(name, _ string, fail, reset func()) errorClass {
	return configClass(name, fail, reset)
}

func temporary(name, _ string, fail, reset func()) errorClass {
	return temporaryClass(name, fail, reset)
}

func temporaryClass(name string, fail, reset func()) errorClass {
	return errorClass{name: name, fail: fail, reset: reset, msg: "sender error", class: "temporary",
		state: deliveryFailed, page: http.StatusServiceUnavailable}
}

// checkErrorClasses signs in once per class, with the provider failing so, and checks the
// delivery state, the reason the status gives, the code page and the log line (naming the
// provider, holding no secret).
func checkErrorClasses(t *testing.T, g *gate, provider string, secrets []string, cases []errorClass) {
	t.Helper()
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%d_%s", i, tc.name), func(t *testing.T) {
			clock.Advance(31 * time.Second)
			tc.fail()
			defer tc.reset()
			v := newVisitor(t)
			v.startSignIn("/", alice)
			if state := v.settled(); state != tc.state {
				t.Errorf("state %q, want %q", state, tc.state)
			}
			if reason := v.statusReason(); reason != tc.reason {
				t.Errorf("status reason %q, want %q", reason, tc.reason)
			}
			wantStatus(t, "code page", v.get("/.otp/verify"), tc.page)
			line := lastLogLine(t, g.logs(), tc.msg)
			if line["class"] != tc.class || line["reason"] != tc.reason || line["provider"] != provider || !strings.Contains(fmt.Sprint(line["detail"]), tc.detail) {
				t.Errorf("log line %v, want class %q reason %q provider %s detail %q", line, tc.class, tc.reason, provider, tc.detail)
			}
			logs := g.logs()
			for _, secret := range append([]string{alice}, secrets...) {
				if strings.Contains(logs, secret) {
					t.Errorf("the log holds a secret %q", secret)
				}
			}
		})
	}
}

func TestInfobipSignInWithReceiptsDeliveredAndFailedOnTheCodePage(t *testing.T) {
	ib := restcommtest.NewInfobip()
	g := startGate(t, "", viaInfobip(ib))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := infobipCode(t, ib, 1)
	if m.To != strings.TrimPrefix(alice, "+") || m.Sender != "ExampleCo" || !receiptURL.MatchString(m.DeliveryURL) {
		t.Errorf("sent as %+v; want alice without +, from ExampleCo, a receipt URL of public_url", m)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("accepted, receipt to come: %q", state)
	}
	if got := ib.PostReceipt(m, "PENDING_ENROUTE", 0); got != http.StatusNoContent {
		t.Errorf("a pending report: %d", got)
	}
	if got := ib.PostReceipt(m, "DELIVERED_TO_HANDSET", 0); got != http.StatusNoContent {
		t.Errorf("the delivered report: %d", got)
	}
	page := v.get("/.otp/verify")
	if page.status != http.StatusOK || !strings.Contains(html.UnescapeString(page.body), "Delivered to "+unbreakable.Replace("+1 201-555-0123")) {
		t.Errorf("the code page does not say delivered: %d", page.status)
	}
	if got := ib.PostReceipt(m, "UNDELIVERABLE_NOT_DELIVERED", 1); got != http.StatusNoContent {
		t.Errorf("a late failed report: %d", got)
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("a failed report after delivered moved the state to %q", state)
	}
	line := lastLogLine(t, g.logs(), "code sent")
	if line["provider"] != "infobip" || line["message_id"] != m.MessageID {
		t.Errorf("log line %v", line)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)

	// Undeliverable, as the fake posts it by itself: the code page says it was not sent.
	clock.Advance(31 * time.Second)
	ib.AutoReceipts(restcommtest.ReceiptStep{Status: "PENDING_ENROUTE"}, restcommtest.ReceiptStep{Status: "UNDELIVERABLE_NOT_DELIVERED", ErrorCode: 1, After: 10 * time.Millisecond})
	w := newVisitor(t)
	w.startSignIn("/", bob)
	infobipCode(t, ib, 2)
	if state := w.settledAt(deliveryFailed); state != deliveryFailed {
		t.Errorf("after an undeliverable report: %q", state)
	}
	if page := w.get("/.otp/verify"); page.status != http.StatusServiceUnavailable || !strings.Contains(page.body, "Code not sent") {
		t.Errorf("the code page of an undelivered code: %d", page.status)
	}
}

func TestInfobipErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	ib := restcommtest.NewInfobip()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaInfobip(ib))
	fail := func(f restcommtest.InfobipFailure) func() { return func() { ib.Fail(f) } }
	none := fail(restcommtest.InfobipNone)
	key := ib.APIKey
	checkErrorClasses(t, g, "infobip", []string{key}, []errorClass{
		numberClass("rejected destination", "invalid", fail(restcommtest.InfobipRejectedDestination), none),
		numberClass("do not disturb", "blocked", fail(restcommtest.InfobipRejectedDND), none),
		configClass("no credit", fail(restcommtest.InfobipNotEnoughCredits), none),
		configClass("sender refused", fail(restcommtest.InfobipRejectedSender), none),
		configClass("wrong key", func() { ib.SetAPIKey("rotated") }, func() { ib.SetAPIKey(key) }),
		temporaryClass("429", fail(restcommtest.InfobipTooManyRequests), none),
		temporaryClass("500", fail(restcommtest.InfobipInternalError), none),
		temporaryClass("timeout", func() { ib.Delay(3 * time.Second) }, func() { ib.Delay(0) }),
	})
}
