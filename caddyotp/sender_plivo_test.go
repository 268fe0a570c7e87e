package caddyotp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
)

// TestPlivoSignatureMatchesPlivosPublishedExample: the V2 vector of Plivo's Go library's tests
// (TestValidateSignatureV2Pass), and what tampering with the URL, the nonce or the key does.
func TestPlivoSignatureMatchesPlivosPublishedExample(t *testing.T) {
	const want = "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc="
	if got := plivoSignature("my_auth_token", "https://answer.url", "12345"); got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
	if got := restcommtest.PlivoSignature("my_auth_token", "https://answer.url", "12345"); got != want {
		t.Errorf("the fake signs %q, want %q", got, want)
	}
	if !validPlivoSignature("my_auth_token", "https://answer.url", "12345", want) {
		t.Error("the published signature does not verify")
	}
	// The query string is not signed: Plivo signs scheme://host/path.
	if !validPlivoSignature("my_auth_token", "https://answer.url?a=b", "12345", want) {
		t.Error("a URL with a query does not verify with the signature of the URL without it")
	}
	for what, ok := range map[string]bool{
		"another URL":       validPlivoSignature("my_auth_token", "https://answer.url/other", "12345", want),
		"another host":      validPlivoSignature("my_auth_token", "https://evil.url", "12345", want),
		"another nonce":     validPlivoSignature("my_auth_token", "https://answer.url", "12346", want),
		"no nonce":          validPlivoSignature("my_auth_token", "https://answer.url", "", want),
		"another token":     validPlivoSignature("another_token", "https://answer.url", "12345", want),
		"no token":          validPlivoSignature("", "https://answer.url", "12345", want),
		"no signature":      validPlivoSignature("my_auth_token", "https://answer.url", "12345", ""),
		"a truncated one":   validPlivoSignature("my_auth_token", "https://answer.url", "12345", want[:20]),
		"the V1 of the URL": validPlivoSignature("my_auth_token", "https://answer.url", "12345", "EJEt0ELanhr8hjMPIJnLNLex0dE="),
	} {
		if ok {
			t.Errorf("%s verifies", what)
		}
	}
}

func newTestPlivo(t *testing.T, pf *restcommtest.Plivo, edit func(*Plivo)) (*Plivo, error) {
	t.Helper()
	return provisioned(t, &Plivo{AuthID: pf.AuthID, AuthToken: pf.AuthToken, From: fromNum, BaseURL: pf.URL, Timeout: caddy.Duration(2 * time.Second)}, edit)
}

func TestPlivoValidateNamesTheSettingAndEchoesNoSecret(t *testing.T) {
	pf := restcommtest.NewPlivo()
	defer pf.Close()
	wantRefused(t, func(t *testing.T, edit func(*Plivo)) (*Plivo, error) { return newTestPlivo(t, pf, edit) }, pf.AuthToken, []refusal[*Plivo]{
		{"no id", func(s *Plivo) { s.AuthID = "" }, "auth_id is empty"},
		{"a token from an unset variable", func(s *Plivo) { s.AuthToken = "{env.SURELY_UNSET_PLIVO_TOKEN}" }, "SURELY_UNSET_PLIVO_TOKEN is not set"},
		{"a token with a slash in the id's field", func(s *Plivo) { s.AuthID = "supersecret/token" }, "auth_id (17 characters)"},
		{"no token", func(s *Plivo) { s.AuthToken = "" }, "auth_token is empty"},
		{"no from", func(s *Plivo) { s.From = "" }, "from is empty"},
		{"a bad from", func(s *Plivo) { s.From = "12-34" }, "from \"12-34\""},
		{"voice", func(s *Plivo) { s.Voice = true }, "voice is not offered"},
		{"a bad base URL", func(s *Plivo) { s.BaseURL = "api.plivo.com" }, "base_url"},
		{"credentials in the URL", func(s *Plivo) { s.BaseURL = "https://MA:supersecret@api.plivo.com" }, "must not hold credentials"},
	})
	if _, err := newTestPlivo(t, pf, func(s *Plivo) { s.From = "ExampleCo" }); err != nil {
		t.Errorf("a sender id: %v", err)
	}
}

func TestPlivoSendsWhatTheAPIWantsAndClassifiesEachFailure(t *testing.T) {
	pf := restcommtest.NewPlivo()
	defer pf.Close()
	s, err := newTestPlivo(t, pf, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code",
		Receipts: func(p string) string { return "https://gate.example/.otp/receipt/" + p }})
	msgs := pf.Messages()
	if err != nil || len(msgs) != 1 || sent.ID != msgs[0].UUID || !sent.Receipts || sent.Provider != "plivo" {
		t.Fatalf("send: %+v %v (%d messages)", sent, err, len(msgs))
	}
	if m := msgs[0]; m.To != alice || m.From != fromNum || m.Text != "987654 is your code" || m.URL != "https://gate.example/.otp/receipt/plivo" || m.Method != "POST" {
		t.Errorf("message as sent: %+v", m)
	}
	for _, tc := range []struct {
		failure restcommtest.PlivoFailure
		fault   Fault
		status  int
		says    string
	}{
		{restcommtest.PlivoTooManyRequests, TemporaryFault, 429, "too many requests"},
		{restcommtest.PlivoInternalError, TemporaryFault, 500, "provider failure"},
		{restcommtest.PlivoDropConnection, TemporaryFault, 0, "connection failed"},
		{restcommtest.PlivoInsufficientCredit, ConfigFault, 400, "top up"},
	} {
		pf.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok || se.Fault != tc.fault || se.Status != tc.status || !strings.Contains(se.Detail, tc.says) {
			t.Errorf("%d: %#v, want %v %d saying %q", tc.failure, err, tc.fault, tc.status, tc.says)
		}
	}
	pf.Fail(restcommtest.PlivoNone)
	s.AuthToken = "wrong"
	_, err = s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
	if se, ok := err.(*SendError); !ok || se.Fault != ConfigFault || se.Status != 401 || !strings.Contains(se.Detail, "check auth_id and auth_token") {
		t.Errorf("a wrong token: %v", err)
	}
	for _, secret := range []string{"987654", alice, pf.AuthToken} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error holds %q: %v", secret, err)
		}
	}
}

func TestPlivoReceiptsVerifyTheirSignatureAndMapFinalStates(t *testing.T) {
	pf := restcommtest.NewPlivo()
	defer pf.Close()
	s, err := newTestPlivo(t, pf, nil)
	if err != nil {
		t.Fatal(err)
	}
	const callback = "https://gate.example/.otp/receipt/token"
	m := restcommtest.PlivoMessage{UUID: "5b40a428-bfc7-4daf-9d06-726c558bf3b8", From: fromNum, To: alice, URL: callback}
	read := func(form url.Values, nonce, signature string) (Receipt, error) {
		r := httptest.NewRequest(http.MethodPost, "/.otp/receipt/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if nonce != "" {
			r.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
		}
		r.Header.Set("X-Plivo-Signature-V2", signature)
		return s.ReadReceipt(r, "plivo", callback)
	}
	for _, tc := range []struct {
		status string
		code   int
		want   ReceiptStatus
		reason string
	}{
		{"queued", 0, ReceiptPending, ""},
		{"sent", 0, ReceiptPending, ""},
		{"delivered", 0, ReceiptDelivered, ""},
		{"undelivered", 200, ReceiptFailed, "undelivered: the recipient replied STOP to this sender (ErrorCode 200)"},
		{"failed", 50, ReceiptFailed, "failed: invalid destination number (or a landline) (ErrorCode 50)"},
		{"failed", 900, ReceiptFailed, "failed: insufficient credit: top up the Plivo account (ErrorCode 900)"},
		{"rejected", 0, ReceiptFailed, "rejected"},
	} {
		nonce := restcommtest.PlivoNonce()
		got, err := read(pf.ReceiptForm(m, tc.status, tc.code), nonce, restcommtest.PlivoSignature(pf.AuthToken, callback, nonce))
		if err != nil || got.Status != tc.want || got.Reason != tc.reason {
			t.Errorf("%s %d: %+v %v, want %v %q", tc.status, tc.code, got, err, tc.want, tc.reason)
		}
	}
	form := pf.ReceiptForm(m, "delivered", 0)
	nonce := restcommtest.PlivoNonce()
	good := restcommtest.PlivoSignature(pf.AuthToken, callback, nonce)
	for what, c := range map[string]struct{ nonce, sig string }{
		"no signature":                    {nonce, ""},
		"no nonce":                        {"", good},
		"another nonce":                   {restcommtest.PlivoNonce(), good},
		"signed for another URL":          {nonce, restcommtest.PlivoSignature(pf.AuthToken, "http://attacker.example/.otp/receipt/token", nonce)},
		"signed with another token":       {nonce, restcommtest.PlivoSignature("guess", callback, nonce)},
		"signed with the token as base64": {nonce, strings.ToLower(good)},
	} {
		if _, err := read(form, c.nonce, c.sig); err != ErrForgedReceipt {
			t.Errorf("%s: %v, want ErrForgedReceipt", what, err)
		}
	}
}
