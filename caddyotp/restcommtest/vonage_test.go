package restcommtest

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestVonageFakeAnswersLikeTheSMSAPI(t *testing.T) {
	s := NewVonage()
	defer s.Close()
	fields := url.Values{"api_key": {s.APIKey}, "api_secret": {s.APISecret}, "from": {"ExampleCo"}, "to": {"12015550123"}, "text": {"hi"}}
	with := func(k, v string) string {
		f := url.Values{}
		for key, val := range fields {
			f[key] = val
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f.Encode()
	}
	for what, c := range map[string]struct{ body, want string }{
		"a wrong secret":     {with("api_secret", "nope"), "4"},
		"a wrong key":        {with("api_key", "abcdefgh"), "4"},
		"no secret":          {with("api_secret", ""), "2"},
		"no text":            {with("text", ""), "2"},
		"to with a +":        {with("to", "+12015550123"), "3"},
		"sig and the secret": {with("sig", "abc"), "32"},
		"a sig unasked for":  {with("api_secret", "") + "&sig=abc&timestamp=1", "14"},
	} {
		if status, _, v := send(t, s.URL, "/sms/json", "application/x-www-form-urlencoded", c.body, nil); status != 200 || messageStatus(v) != c.want {
			t.Errorf("%s: %d %v, want 200 with status %s", what, status, v, c.want)
		}
	}
	status, _, v := send(t, s.URL, "/sms/json", "application/x-www-form-urlencoded", with("text", "Код 1"), nil)
	if status != 200 || messageStatus(v) != "0" || v["message-count"] != "1" {
		t.Fatalf("a good send: %d %v", status, v)
	}
	if m := s.Messages(); len(m) != 1 || m[0].Text != "??? 1" || len(m[0].ID) != 16 {
		t.Errorf("a Cyrillic text sent as type text reaches the handset as %+v", m)
	}
	s.SignWith("sha512", "sekrit")
	p := map[string]string{"api_key": s.APIKey, "from": "ExampleCo", "to": "12015550123", "text": "a&b=c", "type": "unicode", "timestamp": "1"}
	p["sig"] = strings.ToLower(VonageSignature("sha512", "sekrit", p))
	f := url.Values{}
	for k, v := range p {
		f.Set(k, v)
	}
	if _, _, v := send(t, s.URL, "/sms/json", "application/x-www-form-urlencoded", f.Encode(), nil); messageStatus(v) != "0" || !s.Messages()[1].Signed || s.Messages()[1].Text != "a&b=c" {
		t.Errorf("a signed unicode send: %v %+v", v, s.Messages())
	}
	s.Fail(VonageQuotaExceeded)
	if _, _, v := send(t, s.URL, "/sms/json", "application/x-www-form-urlencoded", with("", ""), nil); messageStatus(v) != "9" {
		t.Errorf("no credit: %v", v)
	}
	s.Fail(VonageHTTP500)
	if status, _, _ := send(t, s.URL, "/sms/json", "application/x-www-form-urlencoded", with("", ""), nil); status != 500 {
		t.Errorf("a platform failure: %d", status)
	}
}

func TestVonageFakePostsSignedReceiptsAsPlanned(t *testing.T) {
	s := NewVonage()
	defer s.Close()
	s.SignWith("md5hash", "sekrit")
	rcv := newReceiver()
	defer rcv.Close()
	s.AutoReceipts(ReceiptStep{Status: "accepted"}, ReceiptStep{Status: "delivered", After: 20 * time.Millisecond}, ReceiptStep{Status: "delivered"})
	p := map[string]string{"api_key": s.APIKey, "from": "ExampleCo", "to": "12015550123", "text": "hi", "callback": rcv.URL, "timestamp": "1"}
	p["sig"] = VonageSignature("md5hash", "sekrit", p)
	f := url.Values{}
	for k, v := range p {
		f.Set(k, v)
	}
	send(t, s.URL, "/sms/json", "application/x-www-form-urlencoded", f.Encode(), nil)
	got, bodies := rcv.wait(t, 3)
	for i, want := range []string{"accepted", "delivered", "delivered"} {
		var r map[string]string
		if err := json.Unmarshal([]byte(bodies[i]), &r); err != nil || got[i].Header.Get("Content-Type") != "application/json" {
			t.Fatalf("receipt %d is not JSON: %q", i, bodies[i])
		}
		if r["status"] != want || r["messageId"] != s.Messages()[0].ID || r["sig"] != VonageSignature("md5hash", "sekrit", r) || r["nonce"] == "" {
			t.Errorf("receipt %d: %v", i, r)
		}
	}
}
