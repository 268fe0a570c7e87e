package restcommtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// send posts body with contentType and the header's fields to s+path and returns the status,
// the headers and the JSON answer.
func send(t *testing.T, base, path, contentType, body string, header map[string]string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
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

// receiver records what is posted to it.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []*http.Request
	body []string
}

func newReceiver() *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got, r.body = append(r.got, req), append(r.body, string(b))
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	return r
}

func (r *receiver) wait(t *testing.T, n int) ([]*http.Request, []string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		got, body := append([]*http.Request(nil), r.got...), append([]string(nil), r.body...)
		r.mu.Unlock()
		if len(got) >= n {
			return got, body
		}
	}
	t.Fatalf("fewer than %d receipts", n)
	return nil, nil
}

func messageStatus(v map[string]any) string {
	msgs, _ := v["messages"].([]any)
	if len(msgs) != 1 {
		return "?"
	}
	m, _ := msgs[0].(map[string]any)
	s, _ := m["status"].(string)
	return s
}
