package restcommtest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, s *Server, path, user, pass, contentType, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URL+path, strings.NewReader(body))
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const form = "application/x-www-form-urlencoded"

func TestFakeAnswersLikeRestcomm(t *testing.T) {
	s := NewServer()
	defer s.Close()
	path := "/restcomm/2012-04-24/Accounts/" + s.AccountSID + "/SMS/Messages.json"
	fields := url.Values{"From": {"+12015550100"}, "To": {"+12015550123"}, "Body": {"hi"}}.Encode()

	resp, body := post(t, s, path, "", "", form, fields)
	if resp.StatusCode != 401 || body != "" || resp.Header.Get("WWW-Authenticate") != `Basic realm="Restcomm realm"` {
		t.Errorf("no auth: %d %q %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = post(t, s, path, s.AccountSID, "wrong", form, fields)
	if resp.StatusCode != 401 {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	other := "/restcomm/2012-04-24/Accounts/AC00000000000000000000000000000000/SMS/Messages.json"
	resp, body = post(t, s, other, s.AccountSID, s.AuthToken, form, fields)
	if resp.StatusCode != 403 || body != "" {
		t.Errorf("other account: %d %q", resp.StatusCode, body)
	}
	resp, body = post(t, s, path, s.AccountSID, s.AuthToken, "application/json", `{"From":"+12015550100","To":"+12015550123","Body":"hi"}`)
	if resp.StatusCode != 400 || body != "From can not be null." {
		t.Errorf("JSON body: %d %q", resp.StatusCode, body)
	}
	resp, body = post(t, s, path, s.AccountSID, s.AuthToken, form, "From=%2B12015550100&Body=hi")
	if resp.StatusCode != 400 || body != "To can not be null." {
		t.Errorf("no To: %d %q", resp.StatusCode, body)
	}
	if len(s.Messages()) != 0 {
		t.Fatalf("refused requests were recorded")
	}

	sum := md5.Sum([]byte(s.AuthToken))
	resp, body = post(t, s, path, s.AccountSID, hex.EncodeToString(sum[:]), form, fields)
	if resp.StatusCode != 200 {
		t.Fatalf("md5 token: %d %q", resp.StatusCode, body)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(body), &rec); err != nil {
		t.Fatal(err)
	}
	sid, _ := rec["sid"].(string)
	if !strings.HasPrefix(sid, "SM") || len(sid) != 34 || rec["status"] != "sending" || rec["direction"] != "outbound-api" ||
		rec["to"] != "+12015550123" || rec["api_version"] != "2012-04-24" {
		t.Errorf("record %v", rec)
	}
	if _, ok := rec["error_code"]; ok {
		t.Errorf("null fields must be omitted: %v", rec)
	}

	resp, body = post(t, s, strings.TrimSuffix(path, ".json"), s.AccountSID, s.AuthToken, form, fields)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "<RestcommResponse><SMSMessage><Sid>SM") {
		t.Errorf("without .json: %d %q", resp.StatusCode, body)
	}
	if n := len(s.Messages()); n != 2 {
		t.Errorf("%d messages recorded, want 2", n)
	}
}

func TestFakeCallsFetchTheScriptAsRestcommDoes(t *testing.T) {
	var fetched url.Values
	script := http.NewServeMux()
	script.HandleFunc("/rcml", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		fetched = r.PostForm
		_, _ = w.Write([]byte(`<Response><Say>hi</Say></Response>`))
	})
	rcml := httptest.NewServer(script)
	defer rcml.Close()
	s := NewServer()
	defer s.Close()
	path := "/restcomm/2012-04-24/Accounts/" + s.AccountSID + "/Calls.json"

	resp, body := post(t, s, path, s.AccountSID, s.AuthToken, form, url.Values{"From": {"+12015550100"}, "To": {"+12015550123"}}.Encode())
	if resp.StatusCode != 400 || body != "Url can not be null." {
		t.Errorf("no Url: %d %q", resp.StatusCode, body)
	}
	resp, body = post(t, s, path, s.AccountSID, s.AuthToken, form, url.Values{"From": {"+12015550100"}, "To": {"+12015550123"}, "Url": {rcml.URL + "/rcml"}}.Encode())
	var rec map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &rec) != nil || !strings.HasPrefix(rec["sid"].(string), "CA") || rec["status"] != "queued" {
		t.Fatalf("call: %d %q", resp.StatusCode, body)
	}
	calls, err := s.WaitCalls(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if calls[0].FetchStatus != 200 || calls[0].RCML != `<Response><Say>hi</Say></Response>` || fetched.Get("CallSid") != rec["sid"] || fetched.Get("To") != "+12015550123" {
		t.Errorf("script fetch: %+v, form %v", calls[0], fetched)
	}
}
