package restcommtest

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"
)

func TestTelnyxFakeAnswersLikeTheMessagingAPI(t *testing.T) {
	s := NewTelnyx()
	defer s.Close()
	bearer := map[string]string{"Authorization": "Bearer " + s.APIKey}
	errorCode := func(v map[string]any) string {
		errs, _ := v["errors"].([]any)
		if len(errs) == 0 {
			return ""
		}
		c, _ := errs[0].(map[string]any)["code"].(string)
		return c
	}
	for what, c := range map[string]struct {
		body   string
		header map[string]string
		status int
		code   string
	}{
		"no key":                      {`{"to":"+12015550123","from":"+12015550100","text":"hi"}`, nil, 401, "10009"},
		"a national to":               {`{"to":"2015550123","from":"+12015550100","text":"hi"}`, bearer, 400, "10016"},
		"no text":                     {`{"to":"+12015550123","from":"+12015550100"}`, bearer, 422, "10004"},
		"no from nor profile":         {`{"to":"+12015550123","text":"hi"}`, bearer, 422, "10004"},
		"a sender id with no profile": {`{"to":"+12015550123","from":"ExampleCo","text":"hi"}`, bearer, 400, "40013"},
		"a profile alone":             {`{"to":"+12015550123","messaging_profile_id":"p","text":"hi"}`, bearer, 200, ""},
	} {
		if status, _, v := send(t, s.URL, "/v2/messages", "application/json", c.body, c.header); status != c.status || errorCode(v) != c.code {
			t.Errorf("%s: %d %v, want %d %q", what, status, v, c.status, c.code)
		}
	}
	s.Fail(TelnyxTooManyRequests)
	status, h, v := send(t, s.URL, "/v2/messages", "application/json", `{"to":"+12015550123","from":"+12015550100","text":"hi"}`, bearer)
	if status != 429 || errorCode(v) != "10011" || h.Get("x-ratelimit-reset") == "" {
		t.Errorf("too many requests: %d %v %v", status, v, h)
	}
	s.Fail(TelnyxBlocked)
	if status, _, v := send(t, s.URL, "/v2/messages", "application/json", `{"to":"+12015550123","from":"+12015550100","text":"hi"}`, bearer); status != 409 || errorCode(v) != "40300" {
		t.Errorf("blocked: %d %v", status, v)
	}
}

func TestTelnyxFakeSignsItsWebhooksWithItsKey(t *testing.T) {
	s := NewTelnyx()
	defer s.Close()
	rcv := newReceiver()
	defer rcv.Close()
	s.AutoReceipts(ReceiptStep{Status: "sent"}, ReceiptStep{Status: "delivery_failed", ErrorCode: 40001, After: 10 * time.Millisecond})
	send(t, s.URL, "/v2/messages", "application/json", `{"to":"+12015550123","from":"+12015550100","text":"hi","webhook_url":"`+rcv.URL+`"}`,
		map[string]string{"Authorization": "Bearer " + s.APIKey})
	got, bodies := rcv.wait(t, 2)
	key, _ := base64.StdEncoding.DecodeString(s.PublicKey)
	for i, want := range []string{"message.sent", "message.finalized"} {
		sig, _ := base64.StdEncoding.DecodeString(got[i].Header.Get("telnyx-signature-ed25519"))
		ts := got[i].Header.Get("telnyx-timestamp")
		if !ed25519.Verify(key, []byte(ts+"|"+bodies[i]), sig) {
			t.Errorf("webhook %d does not verify with the public key", i)
		}
		var e struct {
			Data struct {
				EventType string `json:"event_type"`
				Payload   struct {
					ID     string `json:"id"`
					Errors []struct{ Code string }
				}
			}
		}
		if json.Unmarshal([]byte(bodies[i]), &e) != nil || e.Data.EventType != want || e.Data.Payload.ID != s.Messages()[0].ID {
			t.Errorf("webhook %d: %s", i, bodies[i])
		}
		if i == 1 && (len(e.Data.Payload.Errors) != 1 || e.Data.Payload.Errors[0].Code != "40001") {
			t.Errorf("the failed webhook's errors: %s", bodies[i])
		}
	}
}
