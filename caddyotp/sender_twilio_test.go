package caddyotp

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestTwilioSignatureMatchesTwiliosPublishedExample: the vector of Twilio's request-validation
// documentation and its libraries' tests.
func TestTwilioSignatureMatchesTwiliosPublishedExample(t *testing.T) {
	const callback = "https://mycompany.com/myapp.php?foo=1&bar=2"
	form := url.Values{"CallSid": {"CA1234567890ABCDE"}, "Caller": {"+14158675309"}, "Digits": {"1234"},
		"From": {"+14158675309"}, "To": {"+18005551212"}}
	const want = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
	if got := twilioSignature("12345", callback, form); got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
	if got := restcommtest.Signature("12345", callback, form); got != want {
		t.Errorf("the fake signs %q, want %q", got, want)
	}
	if !validTwilioSignature("12345", callback, form, want) {
		t.Error("the published signature does not verify")
	}
	tampered := url.Values{}
	for k, v := range form {
		tampered[k] = v
	}
	tampered.Set("Digits", "9999")
	for what, ok := range map[string]bool{
		"a changed field":  validTwilioSignature("12345", callback, tampered, want),
		"another URL":      validTwilioSignature("12345", "https://evil.example/myapp.php?foo=1&bar=2", form, want),
		"another key":      validTwilioSignature("54321", callback, form, want),
		"no signature":     validTwilioSignature("12345", callback, form, ""),
		"no key":           validTwilioSignature("", callback, form, want),
		"a truncated one":  validTwilioSignature("12345", callback, form, want[:10]),
		"another encoding": validTwilioSignature("12345", callback, form, strings.ToLower(want)),
	} {
		if ok {
			t.Errorf("%s verifies", what)
		}
	}
}

func newTestTwilio(t *testing.T, tw *restcommtest.Twilio, edit func(*Twilio)) (*Twilio, error) {
	t.Helper()
	return provisioned(t, &Twilio{AccountSID: tw.AccountSID, AuthToken: tw.AuthToken, From: fromNum, BaseURL: tw.BaseURL()}, edit)
}

func TestTwilioValidateNamesTheSettingAndEchoesNoSecret(t *testing.T) {
	tw := restcommtest.NewTwilio()
	defer tw.Close()
	wantRefused(t, func(t *testing.T, edit func(*Twilio)) (*Twilio, error) { return newTestTwilio(t, tw, edit) }, tw.AuthToken, []refusal[*Twilio]{
		{"no account", func(s *Twilio) { s.AccountSID = "" }, "account_sid is empty"},
		{"a token in the account's field", func(s *Twilio) { s.AccountSID = "supersecrettoken" }, "account_sid (16 characters)"},
		{"no token", func(s *Twilio) { s.AuthToken = "" }, "auth_token is empty"},
		{"a token from an unset variable", func(s *Twilio) { s.AuthToken = "{env.SURELY_UNSET_TWILIO_TOKEN}" }, "SURELY_UNSET_TWILIO_TOKEN is not set"},
		{"an API key in the account's field", func(s *Twilio) { s.AccountSID = "SK0123456789abcdef0123456789abcdef" }, "put it in api_key"},
		{"a key without its secret", func(s *Twilio) { s.AuthToken, s.APIKey = "", "SK0123456789abcdef0123456789abcdef" }, "api_key and api_secret go together"},
		{"a malformed key", func(s *Twilio) { s.AuthToken, s.APIKey, s.APISecret = "", "secretkey", "x" }, "api_key (9 characters) is not SK"},
		{"no sender", func(s *Twilio) { s.From = "" }, "give from"},
		{"both senders", func(s *Twilio) { s.MessagingServiceSID = "MG0123456789abcdef0123456789abcdef" }, "not both"},
		{"a bad service", func(s *Twilio) { s.From, s.MessagingServiceSID = "", "MGxyz" }, "messaging_service_sid"},
		{"voice from a sender id", func(s *Twilio) { s.From, s.Voice = "ExampleCo", true }, "voice needs from to be a phone number"},
		{"voice with a service", func(s *Twilio) {
			s.From, s.MessagingServiceSID, s.Voice = "", "MG0123456789abcdef0123456789abcdef", true
		}, "voice needs from"},
		{"a bad base URL", func(s *Twilio) { s.BaseURL = "ftp://api.twilio.com" }, "base_url"},
		{"credentials in the URL", func(s *Twilio) { s.BaseURL = "https://AC:tok@api.twilio.com/2010-04-01" }, "must not hold credentials"},
	})
	if _, err := newTestTwilio(t, tw, nil); err != nil {
		t.Errorf("a good config: %v", err)
	}
}

func TestTwilioErrorsAreClassifiedAndHoldNoSecrets(t *testing.T) {
	tw := restcommtest.NewTwilio()
	defer tw.Close()
	s, err := newTestTwilio(t, tw, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		failure           restcommtest.TwilioFailure
		status            int
		temporary, number bool
		reason, mentions  string
	}{
		{restcommtest.TwilioInvalidNumber, 400, false, true, "invalid", "error 21211"},
		{restcommtest.TwilioNotMobile, 400, false, true, "landline", "error 21614"},
		{restcommtest.TwilioUnsubscribed, 400, false, true, "blocked", "error 21610"},
		{restcommtest.TwilioRegionForbidden, 400, false, false, "", "geographic permissions"},
		{restcommtest.TwilioTooManyRequests, 429, true, false, "", "error 20429"},
		{restcommtest.TwilioInternalError, 500, true, false, "", "provider failure"},
		{restcommtest.TwilioDropConnection, 0, true, false, "", "connection failed"},
	}
	for _, tc := range cases {
		tw.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok {
			t.Fatalf("%v: error %v is not a *SendError", tc.failure, err)
		}
		if se.Status != tc.status || (se.Fault == TemporaryFault) != tc.temporary || (se.Fault == NumberFault) != tc.number || se.Reason != tc.reason || !strings.Contains(se.Detail, tc.mentions) {
			t.Errorf("%v: %+v, want status %d temporary %v number %v reason %q, mentioning %q", tc.failure, se, tc.status, tc.temporary, tc.number, tc.reason, tc.mentions)
		}
		for _, secret := range []string{"987654", alice, tw.AuthToken} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%v: the error holds %q: %v", tc.failure, secret, err)
			}
		}
	}
	tw.Fail(restcommtest.TwilioNone)
	s.api.pass = "wrong"
	_, err = s.Send(context.Background(), Message{To: alice, Body: "x"})
	if se, ok := err.(*SendError); !ok || se.Status != 401 || (se.Fault == TemporaryFault) || (se.Fault == NumberFault) || !strings.Contains(se.Detail, "auth_token") {
		t.Errorf("wrong token: %v", err)
	}
}

// TestTwilioErrorsSayWhoseFaultTheyAre: each error of the API's table is the number's (no
// provider would text it: no failover, and never the breaker's), the region's (geographic
// permissions), the provider's own trouble (the breaker's), or the request's.
func TestTwilioErrorsSayWhoseFaultTheyAre(t *testing.T) {
	for _, tc := range []struct {
		status, code int
		number       bool
		reason       string
		region       bool
		trouble      bool
	}{
		{400, 21211, true, "invalid", false, false},
		{400, 21217, true, "invalid", false, false},
		{400, 21265, true, "invalid", false, false},
		{400, 21266, true, "invalid", false, false},
		{400, 21612, true, "landline", false, false},
		{400, 21614, true, "landline", false, false},
		{400, 21610, true, "blocked", false, false},
		{400, 13223, true, "invalid", false, false}, // calls
		{400, 13224, true, "invalid", false, false},
		{400, 21408, false, "", true, false},
		{400, 21215, false, "", true, false},
		{400, 21602, false, "", false, false},
		{401, 20003, false, "", false, true},
		{403, 20403, false, "", false, true},
		{429, 20429, false, "", false, true},
		{500, 20500, false, "", false, true},
		{503, 0, false, "", false, true},
	} {
		se := twilioError(tc.status, []byte(fmt.Sprintf(`{"code":%d,"message":"m","status":%d}`, tc.code, tc.status)))
		se.Status = tc.status // as apiClient sets it
		if (se.Fault == NumberFault) != tc.number || se.Reason != tc.reason || (se.Fault == DestinationFault) != tc.region || providerTrouble(se) != tc.trouble {
			t.Errorf("%d %d: number %v (%q), region %v, trouble %v; want %v (%q), %v, %v",
				tc.status, tc.code, (se.Fault == NumberFault), se.Reason, (se.Fault == DestinationFault), providerTrouble(se), tc.number, tc.reason, tc.region, tc.trouble)
		}
	}
}
