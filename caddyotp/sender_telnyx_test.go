package caddyotp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
)

// TestTelnyxSignatureIsEd25519OverTimestampAndBody: Telnyx publishes no fixed vector (its
// libraries' tests make a key pair each run), so the test signs "timestamp|body" itself, as
// Telnyx's library verifies it, and checks tampered bodies, timestamps and keys.
func TestTelnyxSignatureIsEd25519OverTimestampAndBody(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Unix(1700000000, 0)
	body := []byte(`{"data":{"event_type":"message.finalized","payload":{"to":[{"status":"delivered"}]}}}`)
	sign := func(ts string, b []byte) string {
		return base64.StdEncoding.EncodeToString(ed25519.Sign(priv, append([]byte(ts+"|"), b...)))
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	if !validTelnyxSignature(pub, ts, body, sign(ts, body), now) {
		t.Fatal("a good signature does not verify")
	}
	for _, d := range []time.Duration{-4*time.Minute - 59*time.Second, 4*time.Minute + 59*time.Second} {
		if !validTelnyxSignature(pub, ts, body, sign(ts, body), now.Add(d)) {
			t.Errorf("a timestamp %v away does not verify", d)
		}
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	old := strconv.FormatInt(now.Add(-6*time.Minute).Unix(), 10)
	future := strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10)
	for what, ok := range map[string]bool{
		"a changed body":          validTelnyxSignature(pub, ts, []byte(strings.Replace(string(body), "delivered", "delivery_failed", 1)), sign(ts, body), now),
		"a body with a space":     validTelnyxSignature(pub, ts, append(body, ' '), sign(ts, body), now),
		"another timestamp":       validTelnyxSignature(pub, strconv.FormatInt(now.Unix()+1, 10), body, sign(ts, body), now),
		"a 6-minute-old one":      validTelnyxSignature(pub, old, body, sign(old, body), now),
		"one 6 minutes ahead":     validTelnyxSignature(pub, future, body, sign(future, body), now),
		"the body alone signed":   validTelnyxSignature(pub, ts, body, base64.StdEncoding.EncodeToString(ed25519.Sign(priv, body)), now),
		"another key":             validTelnyxSignature(other, ts, body, sign(ts, body), now),
		"no key":                  validTelnyxSignature(nil, ts, body, sign(ts, body), now),
		"no timestamp":            validTelnyxSignature(pub, "", body, sign("", body), now),
		"a timestamp not numeric": validTelnyxSignature(pub, ts+"x", body, sign(ts+"x", body), now),
		"no signature":            validTelnyxSignature(pub, ts, body, "", now),
		"not base64":              validTelnyxSignature(pub, ts, body, "!"+sign(ts, body)[1:], now),
	} {
		if ok {
			t.Errorf("%s verifies", what)
		}
	}
	// The fake signs the same way.
	tf := restcommtest.NewTelnyx()
	defer tf.Close()
	key, _ := base64.StdEncoding.DecodeString(tf.PublicKey)
	if !validTelnyxSignature(key, ts, body, tf.Sign(ts, body), now) {
		t.Error("the fake's signature does not verify with its public key")
	}
}

func newTestTelnyx(t *testing.T, tf *restcommtest.Telnyx, edit func(*Telnyx)) (*Telnyx, error) {
	t.Helper()
	return provisioned(t, &Telnyx{APIKey: tf.APIKey, From: fromNum, PublicKey: tf.PublicKey, BaseURL: tf.URL, Timeout: caddy.Duration(2 * time.Second)}, edit)
}

func TestTelnyxValidateNamesTheSettingAndEchoesNoSecret(t *testing.T) {
	tf := restcommtest.NewTelnyx()
	defer tf.Close()
	wantRefused(t, func(t *testing.T, edit func(*Telnyx)) (*Telnyx, error) { return newTestTelnyx(t, tf, edit) }, tf.APIKey, []refusal[*Telnyx]{
		{"no key", func(s *Telnyx) { s.APIKey = "" }, "api_key is empty"},
		{"a key from an unset variable", func(s *Telnyx) { s.APIKey = "{env.SURELY_UNSET_TELNYX_KEY}" }, "SURELY_UNSET_TELNYX_KEY is not set"},
		{"no sender", func(s *Telnyx) { s.From = "" }, "give from"},
		{"a sender id without a profile", func(s *Telnyx) { s.From = "ExampleCo" }, "needs messaging_profile_id"},
		{"a bad from", func(s *Telnyx) { s.From = "12-34" }, "from \"12-34\""},
		{"the API key as public key", func(s *Telnyx) { s.PublicKey = "supersecretapikey" }, "public_key (17 characters)"},
		{"voice", func(s *Telnyx) { s.Voice = true }, "voice is not offered"},
		{"a bad base URL", func(s *Telnyx) { s.BaseURL = "api.telnyx.com" }, "base_url"},
		{"credentials in the URL", func(s *Telnyx) { s.BaseURL = "https://supersecret@api.telnyx.com" }, "must not hold credentials"},
	})
	for name, edit := range map[string]func(*Telnyx){
		"a profile alone":           func(s *Telnyx) { s.From, s.MessagingProfileID = "", "400174d7-7ca2-4b55-9d3c-eb5b15f2b7c4" },
		"a sender id and a profile": func(s *Telnyx) { s.From, s.MessagingProfileID = "ExampleCo", "400174d7-7ca2-4b55-9d3c-eb5b15f2b7c4" },
		"a short code":              func(s *Telnyx) { s.From = "54321" },
		"no public key":             func(s *Telnyx) { s.PublicKey = "" },
	} {
		if _, err := newTestTelnyx(t, tf, edit); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestTelnyxSendsWhatTheAPIWantsAndClassifiesEachFailure(t *testing.T) {
	tf := restcommtest.NewTelnyx()
	defer tf.Close()
	s, err := newTestTelnyx(t, tf, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb := func(p string) string { return "https://gate.example/.otp/receipt/" + p }
	sent, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code", Receipts: cb})
	msgs := tf.Messages()
	if err != nil || len(msgs) != 1 || sent.ID != msgs[0].ID || !sent.Receipts || sent.Provider != "telnyx" {
		t.Fatalf("send: %+v %v (%d messages)", sent, err, len(msgs))
	}
	if m := msgs[0]; m.To != alice || m.From != fromNum || m.WebhookURL != "https://gate.example/.otp/receipt/telnyx" {
		t.Errorf("message as sent: %+v", m)
	}
	for _, tc := range []struct {
		failure restcommtest.TelnyxFailure
		fault   Fault
		reason  string
		status  int
		says    string
	}{
		{restcommtest.TelnyxBlocked, NumberFault, "blocked", 409, "replied STOP"},
		{restcommtest.TelnyxInvalidNumber, NumberFault, "invalid", 400, "error 10002"},
		{restcommtest.TelnyxTooManyRequests, TemporaryFault, "", 429, "Retry-After 7s"},
		{restcommtest.TelnyxInternalError, TemporaryFault, "", 500, "provider failure"},
		{restcommtest.TelnyxDropConnection, TemporaryFault, "", 0, "connection failed"},
	} {
		tf.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok || se.Fault != tc.fault || se.Reason != tc.reason || se.Status != tc.status || !strings.Contains(se.Detail, tc.says) {
			t.Errorf("%d: %#v, want %v %q %d saying %q", tc.failure, err, tc.fault, tc.reason, tc.status, tc.says)
			continue
		}
		for _, secret := range []string{"987654", alice, "12015550123", tf.APIKey} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%d: the error holds %q: %v", tc.failure, secret, err)
			}
		}
	}
	tf.Fail(restcommtest.TelnyxNone)
	s.APIKey = "KEYwrong"
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "x"}); err == nil || !strings.Contains(err.Error(), "check api_key") || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("a wrong key: %v", err)
	}
	// Without a public key no receipts are asked for: they could not be verified.
	nokey, _ := newTestTelnyx(t, tf, func(s *Telnyx) { s.PublicKey = "" })
	if sent, err := nokey.Send(context.Background(), Message{To: alice, Body: "x", Receipts: cb}); err != nil || sent.Receipts || tf.Messages()[1].WebhookURL != "" {
		t.Errorf("without public_key: %+v %v %+v", sent, err, tf.Messages()[1])
	}
}

func TestTelnyxReceiptsVerifyTheirSignatureAndMapFinalStates(t *testing.T) {
	tf := restcommtest.NewTelnyx()
	defer tf.Close()
	s, err := newTestTelnyx(t, tf, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := restcommtest.TelnyxMessage{ID: "40385f64-5717-4562-b3fc-2c963f66afa6", From: fromNum, To: alice}
	read := func(body []byte, ts, sig string) (Receipt, error) {
		r := httptest.NewRequest(http.MethodPost, "/.otp/receipt/x", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("telnyx-timestamp", ts)
		r.Header.Set("telnyx-signature-ed25519", sig)
		return s.ReadReceipt(r, "telnyx", "")
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	for _, tc := range []struct {
		status string
		code   int
		want   ReceiptStatus
		reason string
	}{
		{"queued", 0, ReceiptPending, ""},
		{"sending", 0, ReceiptPending, ""},
		{"sent", 0, ReceiptSent, ""},
		{"delivered", 0, ReceiptDelivered, ""},
		{"delivery_unconfirmed", 0, ReceiptPending, ""},
		{"delivery_failed", 40001, ReceiptFailed, "delivery_failed: Not routable (error 40001)"},
		{"sending_failed", 40300, ReceiptFailed, "sending_failed: Blocked due to STOP message (error 40300)"},
		{"expired", 0, ReceiptFailed, "expired"},
	} {
		body := tf.ReceiptBody(m, tc.status, tc.code)
		got, err := read(body, now, tf.Sign(now, body))
		if err != nil || got.Status != tc.want || got.Reason != tc.reason {
			t.Errorf("%s %d: %+v %v, want %v %q", tc.status, tc.code, got, err, tc.want, tc.reason)
		}
	}
	body := tf.ReceiptBody(m, "delivered", 0)
	old := strconv.FormatInt(time.Now().Add(-6*time.Minute).Unix(), 10)
	for what, c := range map[string]struct {
		body    []byte
		ts, sig string
	}{
		"no signature":      {body, now, ""},
		"no timestamp":      {body, "", tf.Sign(now, body)},
		"a tampered body":   {tf.ReceiptBody(m, "delivery_failed", 40001), now, tf.Sign(now, body)},
		"an old timestamp":  {body, old, tf.Sign(old, body)},
		"another timestamp": {body, old, tf.Sign(now, body)},
	} {
		if _, err := read(c.body, c.ts, c.sig); err != ErrForgedReceipt {
			t.Errorf("%s: %v, want ErrForgedReceipt", what, err)
		}
	}
}
