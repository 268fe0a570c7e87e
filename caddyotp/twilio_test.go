package caddyotp

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// twilioBlock is an otp block's twilio sender for the Twilio-style fake tw, with extra lines.
func twilioBlock(tw *restcommtest.Twilio, extra ...string) string {
	return fmt.Sprintf(`twilio {
				account_sid %s
				auth_token %s
				from %s
				base_url %s
				timeout 2s
				%s
			}`, tw.AccountSID, tw.AuthToken, fromNum, tw.BaseURL(), strings.Join(extra, "\n\t\t\t\t"))
}

var receiptURL = regexp.MustCompile(`^http://localhost:9080/\.otp/receipt/[A-Za-z0-9_-]{100,220}$`)

func TestTwilioSignInWithValidityAndStatusCallbackFromPublicURL(t *testing.T) {
	tw := restcommtest.NewTwilio()
	t.Cleanup(tw.Close)
	g := newGate(t)
	g.address = "http://:9080" // answers any host, like a load balancer's backend
	g.sender = "sender " + twilioBlock(tw)
	g.start("public_url http://localhost:9080\n\t\tcode_ttl 5m")
	v := newVisitor(t)
	v.client.Transport = hostTransport("attacker.example") // the callback must not come from the Host
	csrf, sent := v.startSignIn("/", alice)
	wantStatus(t, "send", sent, http.StatusSeeOther)
	m, code := twilioCode(t, tw, 1)
	if m.To != alice || m.From != fromNum || m.User != tw.AccountSID || m.ValidityPeriod != "300" {
		t.Errorf("message sent as %+v; want To alice, From %s, the account's credentials, ValidityPeriod 300", m, fromNum)
	}
	if !receiptURL.MatchString(m.StatusCallback) {
		t.Errorf("StatusCallback %q is not public_url + /.otp/receipt/{token}", m.StatusCallback)
	}
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Errorf("accepted, receipt to come: state %q, want sent", state)
	}
	line := lastLogLine(t, g.logs(), "code sent")
	if line["provider"] != "twilio" || line["message_id"] != m.SID {
		t.Errorf("log line does not name the message: %v", line)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
}

func TestTwilioAPIKeyAndMessagingService(t *testing.T) {
	tw := restcommtest.NewTwilio()
	t.Cleanup(tw.Close)
	g := newGate(t)
	g.sender = fmt.Sprintf(`sender twilio {
			account_sid %s
			api_key %s
			api_secret %s
			messaging_service_sid MG0123456789abcdef0123456789abcdef
			base_url %s
		}`, tw.AccountSID, tw.APIKey, tw.APISecret, tw.BaseURL())
	g.start("")
	v := newVisitor(t)
	v.startSignIn("/", alice)
	m, _ := twilioCode(t, tw, 1)
	if m.User != tw.APIKey || m.MessagingServiceSID == "" || m.From != "" {
		t.Errorf("message sent as %+v; want the API key and the messaging service, no From", m)
	}
	if m.StatusCallback != "" {
		t.Errorf("receipts asked for without a key to check them: %q", m.StatusCallback)
	}
	if state := v.settled(); state != deliveryAccepted {
		t.Errorf("accepted without receipts: state %q, want unknown", state)
	}
}

func TestSignalWireSignInAndReceiptsSignedWithItsSigningKey(t *testing.T) {
	sw := restcommtest.NewSignalWire()
	g := startGate(t, "", viaTwilio(sw, "signing_key "+sw.SigningKey))
	if !strings.Contains(sw.BaseURL(), "/api/laml/2010-04-01") {
		t.Fatalf("not a SignalWire-style base URL: %s", sw.BaseURL())
	}
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := twilioCode(t, sw, 1)
	v.settledAt(deliverySent)

	// A receipt signed with the auth token, not the Signing Key, is refused.
	form := sw.ReceiptForm(m, "delivered", 0)
	if got := restcommtest.PostUnsigned(m.StatusCallback, form, restcommtest.Signature(sw.AuthToken, m.StatusCallback, form)); got != http.StatusForbidden {
		t.Errorf("receipt signed with the wrong key: %d, want 403", got)
	}
	if _, state := v.status(); state != deliverySent {
		t.Errorf("a refused receipt changed the state to %q", state)
	}
	if got := sw.PostReceipt(m, "delivered", 0); got != http.StatusNoContent {
		t.Errorf("signed receipt: %d, want 204", got)
	}
	if _, state := v.status(); state != deliveryDelivered {
		t.Errorf("after the delivered receipt: state %q", state)
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	_ = g
}

func TestTwilioErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	tw := restcommtest.NewTwilio()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaTwilio(tw))
	cases := []struct {
		failure restcommtest.TwilioFailure
		token   string // the configured token, when it is not the account's
		msg     string // the log line
		class   string
		reason  string
		state   string
		page    int
	}{
		{restcommtest.TwilioInvalidNumber, "", "number refused by the provider", "number", "invalid", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.TwilioNotMobile, "", "number refused by the provider", "number", "landline", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.TwilioUnsubscribed, "", "number refused by the provider", "number", "blocked", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.TwilioRegionForbidden, "", "sender error", "configuration", "", deliveryMisconfigured, http.StatusBadGateway},
		{restcommtest.TwilioTooManyRequests, "", "sender error", "temporary", "", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.TwilioInternalError, "", "sender error", "temporary", "", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.TwilioDropConnection, "", "sender error", "temporary", "", deliveryFailed, http.StatusServiceUnavailable},
		{restcommtest.TwilioNone, "wrong", "sender error", "configuration", "", deliveryMisconfigured, http.StatusBadGateway},
	}
	token := tw.AuthToken
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%d_%s_%s", i, tc.class, tc.reason), func(t *testing.T) {
			clock.Advance(31 * time.Second)
			tw.Fail(tc.failure)
			defer tw.Fail(restcommtest.TwilioNone)
			if tc.token != "" {
				tw.SetAuthToken(tc.token + token) // the operator's token no longer matches
				defer tw.SetAuthToken(token)
			}
			v := newVisitor(t)
			v.startSignIn("/", alice)
			if state := v.settled(); state != tc.state {
				t.Errorf("state %q, want %q", state, tc.state)
			}
			if reason := v.statusReason(); reason != tc.reason {
				t.Errorf("status reason %q, want %q", reason, tc.reason)
			}
			r := v.get("/.otp/verify")
			wantStatus(t, "code page", r, tc.page)
			line := lastLogLine(t, g.logs(), tc.msg)
			if line["class"] != tc.class || line["reason"] != tc.reason || line["provider"] != "twilio" {
				t.Errorf("log line %v, want class %q reason %q provider twilio", line, tc.class, tc.reason)
			}
			logs := g.logs()
			for _, secret := range []string{token, alice, "+12015550123"} {
				if strings.Contains(logs, secret) {
					t.Errorf("the log holds a secret %q", secret)
				}
			}
		})
	}
}
