package caddyotp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// viaHTTPAPI makes the gate send through the generic fake api with the http sender (its key
// from TEST_HTTP_API_KEY, as an operator keeps it out of the file).
func viaHTTPAPI(api *restcommtest.HTTPAPI, extra ...string) gateOption {
	return func(g *gate) {
		g.t.Setenv("TEST_HTTP_API_KEY", api.APIKey)
		g.t.Cleanup(api.Close)
		g.sender = "sender " + httpAPIBlock(api, extra...)
	}
}

func httpAPICode(t *testing.T, api *restcommtest.HTTPAPI, n int) (restcommtest.HTTPAPIMessage, string) {
	t.Helper()
	msgs, err := api.WaitMessages(n, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return msgs[n-1], autofillCode(t, msgs[n-1].Text)
}

func TestHTTPSenderSignInWithAJSONBodyAndTheAnswersID(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	g := startGate(t, "", viaHTTPAPI(api))
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	m, code := httpAPICode(t, api, 1)
	if m.To != alice || m.From != "ExampleCo" || m.ContentType != "application/json" || !json.Valid([]byte(m.RawBody)) {
		t.Errorf("sent as %+v", m)
	}
	if state := v.settled(); state != deliveryAccepted {
		t.Errorf("accepted, no receipts: state %q, want unknown", state)
	}
	line := lastLogLine(t, g.logs(), "code sent")
	if line["provider"] != "http" || line["message_id"] != m.ID {
		t.Errorf("the log line does not carry the id from data.id: %v", line)
	}
	if strings.Contains(g.logs(), api.APIKey) {
		t.Error("the log holds the API key")
	}
	wantStatus(t, "verify", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
}

func TestHTTPSenderErrorClassesEachWithItsPageAndLogLine(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaHTTPAPI(api))
	fail := func(f restcommtest.HTTPAPIFailure) func() { return func() { api.Fail(f) } }
	none := fail(restcommtest.HTTPAPINone)
	key := api.APIKey
	checkErrorClasses(t, g, "http", []string{key}, []errorClass{
		numberClass("number_error 422 error.code=invalid_number", "invalid", fail(restcommtest.HTTPAPIInvalidNumber), none),
		numberClass("number_error blocked 409", "blocked", fail(restcommtest.HTTPAPIOptedOut), none),
		configClass("402 no balance", fail(restcommtest.HTTPAPINoBalance), none),
		configClass("401 wrong key", func() { api.SetAPIKey("rotated") }, func() { api.SetAPIKey(key) }),
		temporaryClass("429", fail(restcommtest.HTTPAPIRateLimited), none),
		temporaryClass("500", fail(restcommtest.HTTPAPIInternalError), none),
		temporaryClass("timeout", func() { api.Delay(3 * time.Second) }, func() { api.Delay(0) }),
	})
	if line := lastLogLine(t, g.logs(), "sender error"); !strings.Contains(line["detail"].(string), "no answer before the timeout") {
		t.Errorf("the timeout's log line %v", line)
	}
}

// TestHTTPSenderCallbackIsAuthenticatedByItsTokenAndChangesNothing: an API given {callback}
// may post to it; the gate answers, reads nothing from it, and a forged token is unknown.
func TestHTTPSenderCallbackIsAuthenticatedByItsTokenAndChangesNothing(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	g := newGate(t)
	viaHTTPAPI(api)(g)
	g.sender = strings.Replace(g.sender, `"text": "{text}"}`, `"text": "{text}", "status_url": "{callback}"}`, 1)
	g.start("")
	v := newVisitor(t)
	v.startSignIn("/", alice)
	m, _ := httpAPICode(t, api, 1)
	if !receiptURL.MatchString(m.StatusURL) {
		t.Fatalf("status_url %q is not a receipt URL of public_url", m.StatusURL)
	}
	if state := v.settled(); state != deliveryAccepted {
		t.Errorf("state %q, want unknown: this sender reads no receipts", state)
	}
	if got := api.PostStatus(m, "delivered"); got != http.StatusNoContent {
		t.Errorf("a post to the callback: %d, want 204", got)
	}
	if _, state := v.status(); state != deliveryAccepted {
		t.Errorf("a post to the callback moved the state to %q", state)
	}
	forged := m
	forged.StatusURL = site + "/.otp/receipt/" + strings.Repeat("A", 60)
	if got := api.PostStatus(forged, "delivered"); got != http.StatusNotFound {
		t.Errorf("a post with a token the gate did not seal: %d, want 404", got)
	}
}

// TestFailoverFromTheHTTPSenderToTwilioMovesOnWhenTheAPIFails: the http sender works inside a
// failover: a 500 moves on, a refusal of the number does not.
func TestFailoverFromTheHTTPSenderToTwilioMovesOnWhenTheAPIFails(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	tw := restcommtest.NewTwilio()
	t.Cleanup(tw.Close)
	g := newGate(t)
	viaHTTPAPI(api)(g)
	g.sender = "sender failover {\n\t\t\t" + strings.TrimPrefix(g.sender, "sender ") + "\n\t\t\t" + twilioBlock(tw) + "\n\t\t}"
	g.start("send_limit 50 10m")
	api.Fail(restcommtest.HTTPAPIInternalError)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	twilioCode(t, tw, 1)
	if failed := lastLogLine(t, g.logs(), "provider failed, trying the next"); failed["provider"] != "http" {
		t.Errorf("the failover's log line %v", failed)
	}
	clock.Advance(31 * time.Second)
	api.Fail(restcommtest.HTTPAPIOptedOut)
	w := newVisitor(t)
	w.startSignIn("/", bob)
	if state := w.settled(); state != deliveryFailed || w.statusReason() != "blocked" {
		t.Errorf("an opted-out number: state %q, reason %q", state, w.statusReason())
	}
	if n := len(tw.Messages()); n != 1 {
		t.Errorf("twilio was tried for a number the http sender's API refused: %d messages", n)
	}
}
