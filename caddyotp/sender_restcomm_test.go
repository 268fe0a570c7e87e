package caddyotp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
)

func newTestRestcomm(t *testing.T, sms *restcommtest.Server) *Restcomm {
	t.Helper()
	t.Setenv("TEST_RESTCOMM_TOKEN", sms.AuthToken)
	s := &Restcomm{AccountSID: sms.AccountSID, AuthToken: "{env.TEST_RESTCOMM_TOKEN}", From: fromNum,
		BaseURL: sms.BaseURL() + "/", Timeout: caddy.Duration(time.Second)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
	return s
}

func TestRestcommSendPostsTheFormWithBasicAuth(t *testing.T) {
	sms := restcommtest.NewServer()
	defer sms.Close()
	s := newTestRestcomm(t, sms)
	if s.AuthToken != sms.AuthToken {
		t.Fatal("{env.*} placeholder in auth_token not resolved at Provision")
	}
	body := "123456 is your example.com sign-in code.\n\n@example.com #123456"
	sent, err := s.Send(context.Background(), Message{To: alice, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	msgs := sms.Messages()
	if len(msgs) != 1 || msgs[0].From != fromNum || msgs[0].To != alice || msgs[0].Body != body {
		t.Fatalf("received %+v", msgs)
	}
	if sent.ID != msgs[0].SID || sent.Provider != "restcomm" || sent.Receipts {
		t.Errorf("Send returned %+v; the provider's id is %q, and no receipts were asked for", sent, msgs[0].SID)
	}
}

func TestRestcommErrorsAreClassifiedAndHoldNoSecrets(t *testing.T) {
	sms := restcommtest.NewServer()
	defer sms.Close()
	cases := []struct {
		name      string
		setup     func(*Restcomm)
		failure   restcommtest.Failure
		delay     time.Duration
		status    int
		temporary bool
		mentions  string
	}{
		{"wrong token", func(s *Restcomm) { s.api.pass = "wrong-token-value" }, restcommtest.None, 0, 401, false, "auth_token"},
		{"another account in the path", func(s *Restcomm) {
			s.endpoint = strings.Replace(s.endpoint, sms.AccountSID, "AC00000000000000000000000000000000", 1)
		}, restcommtest.None, 0, 403, false, "no permission"},
		{"account inactive", nil, restcommtest.AccountInactive, 0, 403, false, "Provided Account is not active"},
		{"extension limit", nil, restcommtest.LimitExceeded, 0, 403, false, "SMS_LIMIT_EXCEEDED"},
		{"number rejected", nil, restcommtest.NumberRejected, 0, 400, false, "bad request"},
		{"internal error", nil, restcommtest.InternalError, 0, 500, true, "provider failure"},
		{"dropped connection", nil, restcommtest.DropConnection, 0, 0, true, "connection failed"},
		{"timeout", nil, restcommtest.None, 1500 * time.Millisecond, 0, true, "timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestRestcomm(t, sms)
			if tc.setup != nil {
				tc.setup(s)
			}
			sms.Fail(tc.failure)
			sms.Delay(tc.delay)
			defer func() { sms.Fail(restcommtest.None); sms.Delay(0) }()

			body := "987654 is your code"
			_, err := s.Send(context.Background(), Message{To: alice, Body: body})
			var se *SendError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SendError", err)
			}
			if se.Status != tc.status || (se.Fault == TemporaryFault) != tc.temporary {
				t.Errorf("status %d temporary %v, want %d %v", se.Status, (se.Fault == TemporaryFault), tc.status, tc.temporary)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Errorf("error %q does not mention %q", err, tc.mentions)
			}
			for _, secret := range []string{sms.AuthToken, s.AuthToken, "987654", alice} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds %q", err, secret)
				}
			}
		})
	}
}

func TestRestcommValidateExplainsMissingSettings(t *testing.T) {
	const sid = "AC0123456789abcdef0123456789abcdef"
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for name, tc := range map[string]struct {
		s    Restcomm
		want string
	}{
		"no sid":          {Restcomm{AuthToken: "t", From: fromNum}, "account_sid is empty"},
		"unset env token": {Restcomm{AccountSID: sid, AuthToken: "{env.SURELY_UNSET_TOKEN_VAR}", From: fromNum}, "auth_token is empty: SURELY_UNSET_TOKEN_VAR is not set"},
		"unset env sid":   {Restcomm{AccountSID: "{env.SURELY_UNSET_SID_VAR}", AuthToken: "t", From: fromNum}, "account_sid is empty: SURELY_UNSET_SID_VAR is not set"},
		"bad sid":         {Restcomm{AccountSID: "AC1", AuthToken: "t", From: fromNum}, `account_sid (3 characters) is neither AC and 32 hex digits`},
		"no from":         {Restcomm{AccountSID: sid, AuthToken: "t"}, "from is empty"},
		"bad from":        {Restcomm{AccountSID: sid, AuthToken: "t", From: "12345"}, "neither a phone number in E.164"},
		"bad base_url":    {Restcomm{AccountSID: sid, AuthToken: "t", From: fromNum, BaseURL: "ftp://x"}, "base_url"},
		"long sender id":  {Restcomm{AccountSID: sid, AuthToken: "t", From: "Example Company"}, "neither a phone number in E.164"},
		"voice from id":   {Restcomm{AccountSID: sid, AuthToken: "t", From: "ExampleCo", Voice: true}, "voice needs from to be a phone number"},
	} {
		s := tc.s
		if err := s.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", name, err, tc.want)
		}
	}
}

// TestRestcomm400AboutFromIsAConfigurationFault: Restcomm's 400 also refuses the gate's own From
// (say an alphanumeric sender id it cannot normalise): that is the operator's to fix, and the
// next provider can send.
func TestRestcomm400AboutFromIsAConfigurationFault(t *testing.T) {
	for _, body := range []string{"Invalid From number: ExampleCo", "From can not be null.", "Bad request"} {
		if se := restcommError(400, []byte(body)); (se.Fault == NumberFault) || (se.Fault == TemporaryFault) {
			t.Errorf("400 %q read as the number's (%v) or transient (%v)", body, (se.Fault == NumberFault), (se.Fault == TemporaryFault))
		}
	}
	if se := restcommError(400, []byte("Invalid To number: +2348012345678")); !(se.Fault == NumberFault) {
		t.Errorf("400 naming To not read as the number's")
	}
}

// TestRestcomm400NamesToAsAWord: "Total" and "Token" do not name the To field.
func TestRestcomm400NamesToAsAWord(t *testing.T) {
	for _, body := range []string{"Total message length exceeds the limit", "Token is not valid for this account"} {
		if se := restcommError(400, []byte(body)); se.Fault == NumberFault {
			t.Errorf("400 %q read as the number's", body)
		}
	}
}
