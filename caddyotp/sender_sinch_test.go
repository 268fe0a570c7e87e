package caddyotp

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// The published vector of Sinch's Python SDK (test_conversation_sinch_event.py): SMS reports
// are signed by the same validator.
const (
	sinchVectorSecret = "foo_secret1234"
	sinchVectorNonce  = "01FJA8B4A7BM43YGWSG9GBV067"
	sinchVectorTime   = "1634579353"
	sinchVectorBody   = `{"app_id":"01EB37HMH1M6SV18BSNS3G135H","accepted_time":"2020-11-17T15:09:11.659Z","project_id":"c36f3d3d-1513-2edd-ae42-11995557ff61","message_delivery_report":{"message_id":"01EQBC1A3BEK731GY4YXEN0C2R","conversation_id":"01EPYATA64TMNZ1FV02JKF12JF","status":"QUEUED_ON_CHANNEL","contact_id":"01EXA07N79THJ20WSN6AS30TMW"}}`
	sinchVectorSig    = "Yc+3R1pIS78xLASybulhs8BsSo9BPB3Pr92QCUoczfk="
)

func TestSinchSignatureMatchesSinchsPublishedExample(t *testing.T) {
	at := time.Unix(1634579353, 0)
	if got := sinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime); got != sinchVectorSig {
		t.Errorf("signature %q, want %q", got, sinchVectorSig)
	}
	if !validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at.Add(time.Minute)) {
		t.Fatal("the published signature does not verify")
	}
	tampered := strings.Replace(sinchVectorBody, "QUEUED_ON_CHANNEL", "DELIVERED", 1)
	for what, ok := range map[string]bool{
		"a changed body":            validSinchSignature(sinchVectorSecret, []byte(tampered), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at),
		"a trailing space":          validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody+" "), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at),
		"another nonce":             validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), "01FJA8B4A7BM43YGWSG9GBV068", sinchVectorTime, sinchVectorSig, at),
		"another timestamp":         validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, "1634579354", sinchVectorSig, at),
		"another secret":            validSinchSignature("foo_secret1235", []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at),
		"no signature":              validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, "", at),
		"no nonce":                  validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), "", sinchVectorTime, sinchVectorSig, at),
		"no secret":                 validSinchSignature("", []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at),
		"a hex signature":           validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, "61cfb7475a484bbf", at),
		"an old timestamp":          validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at.Add(16*time.Minute)),
		"a timestamp far ahead":     validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, sinchVectorSig, at.Add(-16*time.Minute)),
		"a timestamp in ms":         validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime+"000", sinchVectorSig, at),
		"a non-numeric timestamp":   validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, "yesterday", sinchVectorSig, at),
		"the vector verified today": validSinchSignature(sinchVectorSecret, []byte(sinchVectorBody), sinchVectorNonce, sinchVectorTime, sinchVectorSig, time.Now()),
	} {
		if ok {
			t.Errorf("%s verifies", what)
		}
	}
}

func newTestSinch(t *testing.T, sn *restcommtest.Sinch, edit func(*Sinch)) (*Sinch, error) {
	t.Helper()
	return provisioned(t, &Sinch{ServicePlanID: sn.ServicePlanID, APIToken: sn.APIToken, From: fromNum, BaseURL: sn.BaseURL(), CallbackSecret: sn.CallbackSecret}, edit)
}

func TestSinchValidateNamesTheSettingAndEchoesNoSecret(t *testing.T) {
	sn := restcommtest.NewSinch()
	defer sn.Close()
	wantRefused(t, func(t *testing.T, edit func(*Sinch)) (*Sinch, error) { return newTestSinch(t, sn, edit) }, sn.APIToken, []refusal[*Sinch]{
		{"no plan", func(s *Sinch) { s.ServicePlanID = "" }, "service_plan_id is empty"},
		{"a token pasted in the plan", func(s *Sinch) { s.ServicePlanID = "Bearer supersecrettoken" }, "service_plan_id (23 characters)"},
		{"no token", func(s *Sinch) { s.APIToken = "" }, "api_token is empty"},
		{"a token from an unset variable", func(s *Sinch) { s.APIToken = "{env.SURELY_UNSET_SINCH_TOKEN}" }, "SURELY_UNSET_SINCH_TOKEN is not set"},
		{"a secret from an unset variable", func(s *Sinch) { s.CallbackSecret = "{env.SURELY_UNSET_SINCH_SECRET}" }, "callback_secret is empty"},
		{"region and base URL", func(s *Sinch) { s.Region = "eu" }, "not both"},
		{"an unknown region", func(s *Sinch) { s.BaseURL, s.Region = "", "mars" }, "not one of us, eu, au, br, ca"},
		{"a bad sender", func(s *Sinch) { s.From = "+1 not a number" }, "neither a phone number"},
		{"a bad base URL", func(s *Sinch) { s.BaseURL = "supersecrettoken" }, "must be an http(s) URL"},
		{"voice", func(s *Sinch) { s.Voice = true }, "voice is not offered"},
	})
	s, err := newTestSinch(t, sn, func(s *Sinch) { s.BaseURL, s.Region = "", "eu" })
	if err != nil || s.endpoint != "https://eu.sms.api.sinch.com/xms/v1/"+sn.ServicePlanID+"/batches" {
		t.Errorf("region eu: %v, %s", err, s.endpoint)
	}
	if s, _ := newTestSinch(t, sn, func(s *Sinch) { s.BaseURL = "" }); !strings.HasPrefix(s.endpoint, "https://us.sms.api.sinch.com/") {
		t.Errorf("the default region: %s", s.endpoint)
	}
}

func TestSinchSendsABatchAndClassifiesEachRefusal(t *testing.T) {
	sn := restcommtest.NewSinch()
	defer sn.Close()
	s, err := newTestSinch(t, sn, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code",
		Receipts: func(p string) string { return "https://example.com/.otp/receipt/" + p }})
	b := sn.Batches()
	if err != nil || len(b) != 1 || sent.ID != b[0].ID || !sent.Receipts || sent.Provider != "sinch" {
		t.Fatalf("send: %+v %v %+v", sent, err, b)
	}
	if b[0].To != alice || b[0].From != fromNum || b[0].Body != "987654 is your code" || b[0].CallbackURL != "https://example.com/.otp/receipt/sinch" || b[0].DeliveryReport != "per_recipient_final" {
		t.Errorf("sent as %+v", b[0])
	}
	for _, tc := range []struct {
		failure  restcommtest.SinchFailure
		status   int
		fault    Fault
		reason   string
		mentions string
	}{
		{restcommtest.SinchIllegalNumberType, 403, NumberFault, "invalid", "illegal_number_type"},
		{restcommtest.SinchBlockedAccount, 403, ConfigFault, "", "account is blocked"},
		{restcommtest.SinchTooManyRequests, 429, TemporaryFault, "", "too many requests"},
		{restcommtest.SinchInternalError, 500, TemporaryFault, "", "provider failure"},
		{restcommtest.SinchDropConnection, 0, TemporaryFault, "", "connection failed"},
	} {
		sn.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok || se.Status != tc.status || se.Fault != tc.fault || se.Reason != tc.reason || !strings.Contains(se.Detail, tc.mentions) || se.Provider != "sinch" {
			t.Errorf("failure %d: %+v, want %d %v %q mentioning %q", tc.failure, err, tc.status, tc.fault, tc.reason, tc.mentions)
			continue
		}
		for _, secret := range []string{"987654", alice, sn.APIToken} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("failure %d: the error holds %q", tc.failure, secret)
			}
		}
	}
	sn.Fail(restcommtest.SinchNone)
	s.APIToken = "wrong"
	_, err = s.Send(context.Background(), Message{To: alice, Body: "x"})
	if se, ok := err.(*SendError); !ok || se.Status != 401 || se.Fault != ConfigFault || !strings.Contains(se.Detail, "check api_token") || !providerTrouble(se) {
		t.Errorf("a wrong token: %v", err)
	}
}

func TestSinchReceiptsMapFinalStatesAndRefuseBadSignatures(t *testing.T) {
	sn := restcommtest.NewSinch()
	sn.CallbackSecret = "callback-secret"
	defer sn.Close()
	b := restcommtest.SinchBatch{ID: "B1", From: fromNum, To: alice}
	read := func(s *Sinch, body []byte, sign func([]byte) map[string][]string) (Receipt, error) {
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		for k, v := range sign(body) {
			r.Header[k] = v
		}
		return s.ReadReceipt(r, "sinch", "")
	}
	signed := func(body []byte) map[string][]string {
		return restcommtest.SignedHeaders(sn.CallbackSecret, body, time.Now())
	}
	s := &Sinch{CallbackSecret: sn.CallbackSecret}
	for _, tc := range []struct {
		status string
		code   int
		want   ReceiptStatus
		reason string
	}{
		{"Queued", 400, ReceiptPending, ""},
		{"Dispatched", 401, ReceiptSent, ""},
		{"Delivered", 0, ReceiptDelivered, ""},
		{"DELIVERED", 0, ReceiptDelivered, ""},
		{"Failed", 404, ReceiptFailed, "failed (code 404)"},
		{"Aborted", 402, ReceiptFailed, "aborted (code 402)"},
		{"Rejected", 408, ReceiptFailed, "rejected (code 408)"},
		{"Deleted", 0, ReceiptFailed, "deleted (code 0)"},
		{"Expired", 406, ReceiptFailed, "expired (code 406)"},
		{"Cancelled", 407, ReceiptFailed, "cancelled (code 407)"},
		{"Unknown", 0, ReceiptPending, ""},
	} {
		got, err := read(s, sn.Report(b, tc.status, tc.code), signed)
		if err != nil || got.Status != tc.want || got.Reason != tc.reason {
			t.Errorf("%s: %+v %v, want %v %q", tc.status, got, err, tc.want, tc.reason)
		}
	}
	delivered := sn.Report(b, "Delivered", 0)
	for what, sign := range map[string]func([]byte) map[string][]string{
		"unsigned":       func([]byte) map[string][]string { return nil },
		"another secret": func(body []byte) map[string][]string { return restcommtest.SignedHeaders("guess", body, time.Now()) },
		"an old timestamp": func(body []byte) map[string][]string {
			return restcommtest.SignedHeaders(sn.CallbackSecret, body, time.Now().Add(-time.Hour))
		},
		"a tampered body": func([]byte) map[string][]string {
			return restcommtest.SignedHeaders(sn.CallbackSecret, sn.Report(b, "Failed", 404), time.Now())
		},
	} {
		if _, err := read(s, delivered, sign); err != ErrForgedReceipt {
			t.Errorf("%s: %v, want ErrForgedReceipt", what, err)
		}
	}
	if got, err := read(&Sinch{}, delivered, func([]byte) map[string][]string { return nil }); err != nil || got.Status != ReceiptDelivered {
		t.Errorf("without callback_secret, an unsigned report: %+v %v", got, err)
	}
	batch := []byte(`{"type":"delivery_report_sms","batch_id":"B1","statuses":[{"code":0,"status":"Delivered","count":1}]}`)
	if got, err := read(s, batch, signed); err != nil || got.Status != ReceiptPending {
		t.Errorf("a batch report: %+v %v", got, err)
	}
}
