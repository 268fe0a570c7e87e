package restcommtest

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

func TestPlivoFakeAnswersLikeTheMessageAPI(t *testing.T) {
	s := NewPlivo()
	defer s.Close()
	path := "/v1/Account/" + s.AuthID + "/Message/"
	auth := func(id, token string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+token))}
	}
	good := `{"src":"+12015550100","dst":"+12015550123","text":"hi"}`
	for what, c := range map[string]struct {
		path, ct, body string
		header         map[string]string
		want           int
	}{
		"no credentials":         {path, "application/json", good, nil, 401},
		"a wrong token":          {path, "application/json", good, auth(s.AuthID, "nope"), 401},
		"another account":        {"/v1/Account/MAZZZZZZZZZZZZZZZZZZ/Message/", "application/json", good, auth(s.AuthID, s.AuthToken), 404},
		"a form":                 {path, "application/x-www-form-urlencoded", "src=1&dst=2&text=3", auth(s.AuthID, s.AuthToken), 400},
		"no text":                {path, "application/json", `{"src":"+12015550100","dst":"+12015550123"}`, auth(s.AuthID, s.AuthToken), 400},
		"a malformed dst":        {path, "application/json", `{"src":"+12015550100","dst":"call me","text":"hi"}`, auth(s.AuthID, s.AuthToken), 400},
		"a good one":             {path, "application/json", good, auth(s.AuthID, s.AuthToken), 202},
		"without the trailing /": {strings.TrimSuffix(path, "/"), "application/json", good, auth(s.AuthID, s.AuthToken), 404},
	} {
		status, _, v := send(t, s.URL, c.path, c.ct, c.body, c.header)
		if status != c.want {
			t.Errorf("%s: %d %v, want %d", what, status, v, c.want)
		}
		if status != 202 && v["error"] == nil {
			t.Errorf("%s: no error field in %v", what, v)
		}
		if status == 202 && (v["message"] != "message(s) queued" || len(v["message_uuid"].([]any)) != 1) {
			t.Errorf("%s: %v", what, v)
		}
	}
	s.Fail(PlivoTooManyRequests)
	if status, _, v := send(t, s.URL, path, "application/json", good, auth(s.AuthID, s.AuthToken)); status != 429 || !strings.Contains(v["error"].(string), "too many requests") {
		t.Errorf("too many requests: %d %v", status, v)
	}
}

func TestPlivoFakeSignsItsReceiptsAndReportsRefusalsInThem(t *testing.T) {
	s := NewPlivo()
	defer s.Close()
	rcv := newReceiver()
	defer rcv.Close()
	s.Refuse("+12015550199", 200)
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(s.AuthID+":"+s.AuthToken))}
	callback := rcv.URL + "/.otp/receipt/tok"
	send(t, s.URL, "/v1/Account/"+s.AuthID+"/Message/", "application/json", `{"src":"+12015550100","dst":"+12015550199","text":"hi","url":"`+callback+`?q=1","method":"POST"}`, auth)
	got, bodies := rcv.wait(t, 2)
	for i, want := range []string{"queued", "failed"} {
		form, _ := url.ParseQuery(bodies[i])
		nonce := got[i].Header.Get("X-Plivo-Signature-V2-Nonce")
		if form.Get("Status") != want || len(nonce) != 20 || got[i].Header.Get("X-Plivo-Signature-V2") != PlivoSignature(s.AuthToken, callback, nonce) {
			t.Errorf("receipt %d: %v, nonce %q, signature %q", i, form, nonce, got[i].Header.Get("X-Plivo-Signature-V2"))
		}
		if want == "failed" && form.Get("ErrorCode") != "200" || want == "queued" && form.Has("ErrorCode") {
			t.Errorf("receipt %d ErrorCode %q", i, form.Get("ErrorCode"))
		}
	}
}
