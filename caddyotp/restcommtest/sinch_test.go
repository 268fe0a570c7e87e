package restcommtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSinchSignatureMatchesSinchsPublishedExample: the vector of Sinch's Python SDK tests.
func TestSinchSignatureMatchesSinchsPublishedExample(t *testing.T) {
	body := `{"app_id":"01EB37HMH1M6SV18BSNS3G135H","accepted_time":"2020-11-17T15:09:11.659Z","project_id":"c36f3d3d-1513-2edd-ae42-11995557ff61","message_delivery_report":{"message_id":"01EQBC1A3BEK731GY4YXEN0C2R","conversation_id":"01EPYATA64TMNZ1FV02JKF12JF","status":"QUEUED_ON_CHANNEL","contact_id":"01EXA07N79THJ20WSN6AS30TMW"}}`
	if got := SinchSignature("foo_secret1234", []byte(body), "01FJA8B4A7BM43YGWSG9GBV067", "1634579353"); got != "Yc+3R1pIS78xLASybulhs8BsSo9BPB3Pr92QCUoczfk=" {
		t.Errorf("the fake signs %q", got)
	}
}

func TestSinchFakeChecksAuthAndBodyAndAnswersItsShapes(t *testing.T) {
	s := NewSinch()
	defer s.Close()
	url := s.BaseURL() + "/xms/v1/" + s.ServicePlanID + "/batches"
	good := `{"from":"+12015550100","to":["+12015550123"],"body":"123456 is your code","type":"mt_text"}`
	for _, auth := range []string{"", "Bearer wrong", "Basic " + s.APIToken} {
		if st, _, _ := sendTo(t, url, "application/json", good, "Authorization", auth); st != 401 {
			t.Errorf("authorization %q: %d", auth, st)
		}
	}
	auth := []string{"Authorization", "Bearer " + s.APIToken}
	if st, _, _ := sendTo(t, s.BaseURL()+"/xms/v1/otherplan/batches", "application/json", good, auth...); st != 401 {
		t.Errorf("another plan: %d", st)
	}
	for body, want := range map[string]string{
		`{"from":"x","to":["+12015550123"],"body":"t","text":"t"}`:                      "syntax_invalid_json",
		`{"from":"x","to":[],"body":"t"}`:                                               "syntax_constraint_violation",
		`{"from":"x","to":["+12015550123"]}`:                                            "syntax_constraint_violation",
		`{"to":["+12015550123"],"body":"t"}`:                                            "syntax_constraint_violation",
		`{"from":"x","to":["+12015550123"],"body":"t","delivery_report":"yes"}`:         "syntax_invalid_parameter_format",
		`{"from":"x","to":["12"],"body":"t"}`:                                           "syntax_invalid_parameter_format",
		`{"from":"x","to":["+12015550123"],"body":"` + strings.Repeat("x", 2001) + `"}`: "syntax_constraint_violation",
	} {
		if st, _, v := sendTo(t, url, "application/json", body, auth...); st != 400 || v["code"] != want {
			t.Errorf("%.80s: %d %v, want 400 %s", body, st, v, want)
		}
	}
	st, _, v := sendTo(t, url, "application/json", good, auth...)
	if id, _ := v["id"].(string); st != 201 || id == "" || v["canceled"] != false || v["delivery_report"] != "none" {
		t.Fatalf("a good batch: %d %v", st, v)
	}
	for f, want := range map[SinchFailure][2]any{SinchIllegalNumberType: {403, "illegal_number_type"}, SinchBlockedAccount: {403, "blocked_account"},
		SinchTooManyRequests: {429, "too_many_requests"}, SinchInternalError: {500, "internal_error"}} {
		s.Fail(f)
		if st, _, v := sendTo(t, url, "application/json", good, auth...); st != want[0] || v["code"] != want[1] {
			t.Errorf("failure %d: %d %v", f, st, v)
		}
	}
	if len(s.Batches()) != 1 {
		t.Errorf("batches %+v", s.Batches())
	}
}

func TestSinchFakeSignsReportsAndPostsIntermediateOnlyWhenAsked(t *testing.T) {
	s := NewSinch()
	s.CallbackSecret = "callback-secret"
	defer s.Close()
	got := make(chan string, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var rep struct{ Type, Status string }
		_ = json.Unmarshal(body, &rep)
		sig := SinchSignature(s.CallbackSecret, body, r.Header.Get("X-Sinch-Webhook-Signature-Nonce"), r.Header.Get("X-Sinch-Webhook-Signature-Timestamp"))
		if rep.Type == "recipient_delivery_report_sms" && sig == r.Header.Get("X-Sinch-Webhook-Signature") && r.Header.Get("X-Sinch-Webhook-Signature-Nonce") != "" {
			got <- rep.Status
		} else {
			got <- "badly signed " + rep.Status
		}
	}))
	defer hook.Close()
	s.AutoReceipts(ReceiptStep{Status: "Dispatched"}, ReceiptStep{Status: "Delivered", After: time.Millisecond}, ReceiptStep{Status: "Delivered", After: time.Millisecond})
	url := s.BaseURL() + "/xms/v1/" + s.ServicePlanID + "/batches"
	for _, tc := range []struct {
		report string
		want   []string
	}{
		{"per_recipient_final", []string{"Delivered", "Delivered"}},
		{"per_recipient", []string{"Dispatched", "Delivered", "Delivered"}},
	} {
		body := `{"from":"+12015550100","to":["+12015550123"],"body":"t","delivery_report":"` + tc.report + `","callback_url":"` + hook.URL + `"}`
		if st, _, v := sendTo(t, url, "application/json", body, "Authorization", "Bearer "+s.APIToken); st != 201 {
			t.Fatalf("send: %d %v", st, v)
		}
		for _, want := range tc.want {
			select {
			case status := <-got:
				if status != want {
					t.Errorf("%s: report %q, want %q signed", tc.report, status, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no %s report within 5s", tc.report, want)
			}
		}
	}
}
