package restcommtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// sendTo posts body to url with the header pairs and returns the status, the headers and the
// decoded JSON answer (nil if none).
func sendTo(t *testing.T, url, contentType, body string, header ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	return resp.StatusCode, resp.Header, v
}

func errorCode(v map[string]any) string {
	e, _ := v["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestHTTPAPIFakeChecksItsKeyAndBodyAndAnswersItsShapes(t *testing.T) {
	s := NewHTTPAPI()
	defer s.Close()
	good := `{"to":"+12015550123","from":"ExampleCo","text":"123456 is your code"}`
	if st, _, v := sendTo(t, s.Endpoint(), "application/json", good); st != 401 || errorCode(v) != "unauthorized" {
		t.Errorf("without a key: %d %v", st, v)
	}
	if st, _, v := sendTo(t, s.Endpoint(), "application/json", good, "X-Api-Key", "wrong"); st != 401 {
		t.Errorf("with a wrong key: %d %v", st, v)
	}
	for body, want := range map[string]string{
		`{"to":"+12015550123","from":"x","text":"t","extra":1}`: "invalid_json",
		`{"to":"+12015550123","text":"t"}`:                      "missing_field",
		`{"to":"12015550123","from":"x","text":"t"}`:            "invalid_number",
		`{"to":"+12015550123","from":"x","text":"t"`:            "invalid_json",
	} {
		if _, _, v := sendTo(t, s.Endpoint(), "application/json", body, "X-Api-Key", s.APIKey); errorCode(v) != want {
			t.Errorf("%s: %v, want %s", body, v, want)
		}
	}
	if st, _, _ := sendTo(t, s.Endpoint(), "text/plain", good, "X-Api-Key", s.APIKey); st != 415 {
		t.Errorf("a text body: %d", st)
	}
	st, _, v := sendTo(t, s.Endpoint(), "application/json", good, "X-Api-Key", s.APIKey)
	data, _ := v["data"].(map[string]any)
	if id, _ := data["id"].(string); st != 201 || !strings.HasPrefix(id, "msg_") {
		t.Fatalf("a good send: %d %v", st, v)
	}
	st, _, _ = sendTo(t, s.Endpoint(), "application/x-www-form-urlencoded", "to=%2B12015550123&from=x&text=hi", "X-Api-Key", s.APIKey)
	if m := s.Messages(); st != 201 || len(m) != 2 || m[1].To != "+12015550123" || m[1].ContentType != "application/x-www-form-urlencoded" {
		t.Errorf("a form send: %d %+v", st, m)
	}
	if m := s.Messages(); m[0].Text != "123456 is your code" || m[0].RawBody != good {
		t.Errorf("recorded %+v", m[0])
	}

	for f, want := range map[HTTPAPIFailure][2]any{
		HTTPAPIInvalidNumber: {422, "invalid_number"},
		HTTPAPIOptedOut:      {409, "opted_out"},
		HTTPAPINoBalance:     {402, "insufficient_funds"},
		HTTPAPIRateLimited:   {429, "rate_limited"},
		HTTPAPIInternalError: {500, "internal"},
	} {
		s.Fail(f)
		st, h, v := sendTo(t, s.Endpoint(), "application/json", good, "X-Api-Key", s.APIKey)
		if st != want[0] || errorCode(v) != want[1] {
			t.Errorf("failure %d: %d %v, want %v", f, st, v, want)
		}
		if f == HTTPAPIRateLimited && h.Get("Retry-After") != "7" {
			t.Errorf("429 without its Retry-After: %v", h)
		}
	}
	s.Fail(HTTPAPINone)
	s.Refuse("+12015550199", HTTPAPIOptedOut)
	if st, _, _ := sendTo(t, s.Endpoint(), "application/json", strings.Replace(good, "0123", "0199", 1), "X-Api-Key", s.APIKey); st != 409 {
		t.Errorf("a refused number: %d", st)
	}
	s.Fail(HTTPAPIDropConnection)
	req, _ := http.NewRequest(http.MethodPost, s.Endpoint(), strings.NewReader(good))
	req.Header.Set("X-Api-Key", s.APIKey)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a dropped connection answered %d", resp.StatusCode)
	}
}
