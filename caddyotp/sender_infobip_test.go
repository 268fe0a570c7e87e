package caddyotp

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func newTestInfobip(t *testing.T, ib *restcommtest.Infobip, edit func(*Infobip)) (*Infobip, error) {
	t.Helper()
	return provisioned(t, &Infobip{APIKey: ib.APIKey, From: "ExampleCo", BaseURL: ib.BaseURL()}, edit)
}

func TestInfobipValidateNamesTheSettingAndEchoesNoSecret(t *testing.T) {
	ib := restcommtest.NewInfobip()
	defer ib.Close()
	wantRefused(t, func(t *testing.T, edit func(*Infobip)) (*Infobip, error) { return newTestInfobip(t, ib, edit) }, ib.APIKey, []refusal[*Infobip]{
		{"no key", func(s *Infobip) { s.APIKey = "" }, "api_key is empty"},
		{"a key from an unset variable", func(s *Infobip) { s.APIKey = "{env.SURELY_UNSET_INFOBIP_KEY}" }, "SURELY_UNSET_INFOBIP_KEY is not set"},
		{"no sender", func(s *Infobip) { s.From = "" }, "from is empty"},
		{"no base URL", func(s *Infobip) { s.BaseURL = "" }, "the account's own API base URL"},
		{"a key in the base URL", func(s *Infobip) { s.BaseURL = "ftp://supersecretkey" }, "must be an http(s) URL"},
		{"credentials in the base URL", func(s *Infobip) { s.BaseURL = "https://u:supersecretkey@x.api.infobip.com" }, "must not hold credentials"},
		{"voice", func(s *Infobip) { s.Voice = true }, "voice is not offered"},
	})
	s, err := newTestInfobip(t, ib, func(s *Infobip) { s.BaseURL = strings.TrimPrefix(ib.BaseURL(), "http://") })
	if err != nil || s.BaseURL != "https://"+strings.TrimPrefix(ib.BaseURL(), "http://") {
		t.Errorf("a base URL given as its host alone: %v, %q", err, s.BaseURL)
	}
}

func TestInfobipSendsTheV3BodyAndClassifiesEachRefusal(t *testing.T) {
	ib := restcommtest.NewInfobip()
	defer ib.Close()
	s, err := newTestInfobip(t, ib, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code",
		Receipts: func(p string) string { return "https://example.com/.otp/receipt/" + p }})
	m := ib.Messages()
	if err != nil || len(m) != 1 || sent.ID != m[0].MessageID || !sent.Receipts || sent.Provider != "infobip" {
		t.Fatalf("send: %+v %v %+v", sent, err, m)
	}
	if m[0].To != strings.TrimPrefix(alice, "+") || m[0].Sender != "ExampleCo" || m[0].Text != "987654 is your code" ||
		m[0].DeliveryURL != "https://example.com/.otp/receipt/infobip" || m[0].IntermediateReport {
		t.Errorf("sent as %+v", m[0])
	}
	if sent, _ := s.Send(context.Background(), Message{To: alice, Body: "x"}); sent.Receipts || ib.Messages()[1].DeliveryURL != "" {
		t.Errorf("without a receipt URL: %+v %+v", sent, ib.Messages()[1])
	}
	for _, tc := range []struct {
		failure  restcommtest.InfobipFailure
		status   int
		fault    Fault
		reason   string
		mentions string
	}{
		{restcommtest.InfobipRejectedDestination, 200, NumberFault, "invalid", "REJECTED_DESTINATION"},
		{restcommtest.InfobipRejectedDND, 200, NumberFault, "blocked", "REJECTED_DND"},
		{restcommtest.InfobipNotEnoughCredits, 200, ConfigFault, "", "top up"},
		{restcommtest.InfobipRejectedSender, 200, ConfigFault, "", "check from"},
		{restcommtest.InfobipTooManyRequests, 429, TemporaryFault, "", "too many requests"},
		{restcommtest.InfobipInternalError, 500, TemporaryFault, "", "provider failure"},
		{restcommtest.InfobipDropConnection, 0, TemporaryFault, "", "connection failed"},
	} {
		ib.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok || se.Status != tc.status || se.Fault != tc.fault || se.Reason != tc.reason || !strings.Contains(se.Detail, tc.mentions) || se.Provider != "infobip" {
			t.Errorf("failure %d: %+v, want %d %v %q mentioning %q", tc.failure, err, tc.status, tc.fault, tc.reason, tc.mentions)
			continue
		}
		for _, secret := range []string{"987654", alice, ib.APIKey} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("failure %d: the error holds %q", tc.failure, secret)
			}
		}
	}
	ib.Fail(restcommtest.InfobipNone)
	s.APIKey = "wrong"
	_, err = s.Send(context.Background(), Message{To: alice, Body: "x"})
	if se, ok := err.(*SendError); !ok || se.Status != 401 || se.Fault != ConfigFault || !strings.Contains(se.Detail, "check api_key") || !providerTrouble(se) {
		t.Errorf("a wrong key: %v", err)
	}
}

func TestInfobipReceiptsMapFinalStatesAndIgnorePending(t *testing.T) {
	ib := restcommtest.NewInfobip()
	defer ib.Close()
	s := &Infobip{}
	m := restcommtest.InfobipMessage{MessageID: "m1", To: "12015550123", Sender: "ExampleCo"}
	for _, tc := range []struct {
		status string
		err    int
		want   ReceiptStatus
		reason string
	}{
		{"PENDING_ACCEPTED", 0, ReceiptPending, ""},
		{"PENDING_ENROUTE", 0, ReceiptPending, ""},
		{"DELIVERED_TO_OPERATOR", 0, ReceiptSent, ""},
		{"DELIVERED_TO_HANDSET", 0, ReceiptDelivered, ""},
		{"UNDELIVERABLE_NOT_DELIVERED", 1, ReceiptFailed, "UNDELIVERABLE_NOT_DELIVERED: EC_1"},
		{"EXPIRED_EXPIRED", 0, ReceiptFailed, "EXPIRED_EXPIRED"},
		{"REJECTED_DND", 0, ReceiptFailed, "REJECTED_DND"},
	} {
		body, _ := json.Marshal(ib.Report(m, tc.status, tc.err))
		got, err := s.ReadReceipt(httptest.NewRequest("POST", "/", bytes.NewReader(body)), "infobip", "")
		if err != nil || got.Status != tc.want || got.Reason != tc.reason {
			t.Errorf("%s: %+v %v, want %v %q", tc.status, got, err, tc.want, tc.reason)
		}
	}
	if _, err := s.ReadReceipt(httptest.NewRequest("POST", "/", strings.NewReader("<xml/>")), "infobip", ""); err == nil {
		t.Error("a report that is not JSON is read")
	}
}
