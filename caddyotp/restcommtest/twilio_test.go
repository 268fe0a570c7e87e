package restcommtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func twilioPost(t *testing.T, s *Twilio, path, user, pass string, fields url.Values) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(fields.Encode()))
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Content-Type", form)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, b)
	}
	return resp.StatusCode, v
}

func TestTwilioFakeAnswersLikeTwilio(t *testing.T) {
	s := NewTwilio()
	defer s.Close()
	path := "/2010-04-01/Accounts/" + s.AccountSID + "/Messages.json"
	fields := url.Values{"From": {"+12015550100"}, "To": {"+12015550123"}, "Body": {"hi"}}

	for _, c := range []struct{ user, pass string }{{"", ""}, {s.AccountSID, "wrong"}, {s.APIKey, s.AuthToken}} {
		if status, v := twilioPost(t, s, path, c.user, c.pass, fields); status != 401 || v["code"] != float64(20003) || v["status"] != float64(401) {
			t.Errorf("credentials %q: %d %v, want 401 with code 20003", c.user, status, v)
		}
	}
	other := "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json"
	if status, v := twilioPost(t, s, other, s.AccountSID, s.AuthToken, fields); status != 404 || v["code"] != float64(20404) {
		t.Errorf("another account in the path: %d %v", status, v)
	}
	for field, code := range map[string]float64{"To": 21604, "Body": 21602, "From": 21603} {
		f := url.Values{}
		for k, v := range fields {
			if k != field {
				f[k] = v
			}
		}
		if status, v := twilioPost(t, s, path, s.AccountSID, s.AuthToken, f); status != 400 || v["code"] != code {
			t.Errorf("without %s: %d %v, want 400 with code %v", field, status, v, code)
		}
	}
	bad := url.Values{"From": {"+12015550100"}, "To": {"12345"}, "Body": {"hi"}}
	if status, v := twilioPost(t, s, path, s.AccountSID, s.AuthToken, bad); status != 400 || v["code"] != float64(21211) {
		t.Errorf("an invalid To: %d %v", status, v)
	}
	status, v := twilioPost(t, s, path, s.AccountSID, s.AuthToken, fields)
	if sid, _ := v["sid"].(string); status != 201 || v["status"] != "queued" || !strings.HasPrefix(sid, "SM") || len(sid) != 34 || v["error_code"] != nil {
		t.Errorf("a good send: %d %v", status, v)
	}
	status, v = twilioPost(t, s, path, s.APIKey, s.APISecret, url.Values{"MessagingServiceSid": {"MG0123456789abcdef0123456789abcdef"}, "To": {"+12015550123"}, "Body": {"hi"}})
	if status != 201 || v["status"] != "accepted" {
		t.Errorf("through an API key and a messaging service: %d %v", status, v)
	}
	if m := s.Messages(); len(m) != 2 || m[1].User != s.APIKey {
		t.Errorf("messages %+v", m)
	}
}

func TestTwilioFakeSignsItsReceiptsAndPostsThemAsPlanned(t *testing.T) {
	s := NewSignalWire()
	defer s.Close()
	type got struct {
		status string
		valid  bool
	}
	received := make(chan got, 4)
	var callback string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		received <- got{r.PostForm.Get("MessageStatus"), r.Header.Get("X-Twilio-Signature") == Signature(s.SigningKey, callback, r.PostForm) && r.PostForm.Get("Body") == ""}
	}))
	defer hook.Close()
	callback = hook.URL + "/.otp/receipt/token"
	s.AutoReceipts(ReceiptStep{Status: "delivered"}, ReceiptStep{Status: "sent", After: time.Millisecond})
	path := "/api/laml/2010-04-01/Accounts/" + s.AccountSID + "/Messages.json"
	fields := url.Values{"From": {"+12015550100"}, "To": {"+12015550123"}, "Body": {"123456"}, "StatusCallback": {callback}}
	if status, v := twilioPost(t, s, path, s.AccountSID, s.AuthToken, fields); status != 201 {
		t.Fatalf("send: %d %v", status, v)
	}
	for _, want := range []string{"delivered", "sent"} { // in the planned order, out of order as planned
		select {
		case r := <-received:
			if r.status != want || !r.valid {
				t.Errorf("receipt %+v, want %s signed with the Signing Key and without the body", r, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s receipt within 5s", want)
		}
	}
}
