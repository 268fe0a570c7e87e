package restcommtest

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// HTTPAPI is a fake of an SMS API of no provider in particular (a national gateway, say), for
// the generic http sender: POST /v1/messages with the header X-Api-Key, a JSON body
// {"to": "+E.164", "from": "...", "text": "...", "status_url": "..."} (or the same fields as
// a form), no other field allowed. It answers 201 {"data":{"id":"msg_...","status":"queued"}},
// and its errors are {"error":{"code":"...","message":"..."}}. Close it when done.
type HTTPAPI struct {
	*httptest.Server
	APIKey string

	mu       sync.Mutex
	messages []HTTPAPIMessage
	failure  HTTPAPIFailure
	refusals map[string]HTTPAPIFailure
	delay    time.Duration
	notify   chan struct{}
}

// HTTPAPIMessage is a message the generic fake accepted.
type HTTPAPIMessage struct {
	ID          string
	To          string
	From        string
	Text        string
	StatusURL   string
	ContentType string // application/json or application/x-www-form-urlencoded
	RawBody     string // as received, to check its escaping
	Received    time.Time
}

// HTTPAPIFailure makes the generic fake refuse sends.
type HTTPAPIFailure int

const (
	// HTTPAPINone: sends succeed (201).
	HTTPAPINone HTTPAPIFailure = iota
	// HTTPAPIInvalidNumber: 422, code invalid_number.
	HTTPAPIInvalidNumber
	// HTTPAPIOptedOut: 409, code opted_out: the recipient asked for no more messages.
	HTTPAPIOptedOut
	// HTTPAPINoBalance: 402, code insufficient_funds.
	HTTPAPINoBalance
	// HTTPAPIRateLimited: 429 with Retry-After: 7.
	HTTPAPIRateLimited
	// HTTPAPIInternalError: 500.
	HTTPAPIInternalError
	// HTTPAPIDropConnection: the connection is closed without an answer.
	HTTPAPIDropConnection
)

// NewHTTPAPI starts the generic fake with a fresh API key.
func NewHTTPAPI() *HTTPAPI {
	s := &HTTPAPI{APIKey: "key_" + randomHex(16), notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// Endpoint is the URL messages are posted to.
func (s *HTTPAPI) Endpoint() string { return s.URL + "/v1/messages" }

// Fail sets how every following send fails; HTTPAPINone restores success.
func (s *HTTPAPI) Fail(f HTTPAPIFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// Refuse makes every following send to the number to fail with f; HTTPAPINone lets it through.
func (s *HTTPAPI) Refuse(to string, f HTTPAPIFailure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = map[string]HTTPAPIFailure{}
	}
	s.refusals[to] = f
}

// Delay makes every following request wait d before it is answered (or until the client gives up).
func (s *HTTPAPI) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// SetAPIKey changes the API key while requests may be in flight.
func (s *HTTPAPI) SetAPIKey(key string) {
	s.mu.Lock()
	s.APIKey = key
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, oldest first.
func (s *HTTPAPI) Messages() []HTTPAPIMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]HTTPAPIMessage(nil), s.messages...)
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *HTTPAPI) WaitMessages(n int, timeout time.Duration) ([]HTTPAPIMessage, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "http api messages")
}

// PostStatus posts {"id": ..., "status": status} to the message's status_url, unsigned, and
// returns the receiver's HTTP status (0 if it did not answer).
func (s *HTTPAPI) PostStatus(m HTTPAPIMessage, status string) int {
	return postJSON(m.StatusURL, map[string]any{"id": m.ID, "status": status}, nil)
}

type httpAPIRequest struct {
	To        string `json:"to"`
	From      string `json:"from"`
	Text      string `json:"text"`
	StatusURL string `json:"status_url,omitempty"`
}

func (s *HTTPAPI) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, delay, refusals, apiKey := s.failure, s.delay, s.refusals, s.APIKey
	s.mu.Unlock()
	if !sleepCtx(r, delay) {
		return
	}
	if r.URL.Path != "/v1/messages" {
		httpAPIError(w, http.StatusNotFound, "not_found", "no such resource")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpAPIError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	if !equal(r.Header.Get("X-Api-Key"), apiKey) {
		httpAPIError(w, http.StatusUnauthorized, "unauthorized", "missing or invalid X-Api-Key")
		return
	}
	if failure == HTTPAPIDropConnection {
		dropConnection(w)
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		httpAPIError(w, http.StatusRequestEntityTooLarge, "too_large", "body too large")
		return
	}
	var req httpAPIRequest
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			httpAPIError(w, http.StatusBadRequest, "invalid_json", "the body is not the JSON this API takes: "+err.Error())
			return
		}
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(raw))
		if err != nil {
			httpAPIError(w, http.StatusBadRequest, "invalid_form", err.Error())
			return
		}
		for name := range form {
			if name != "to" && name != "from" && name != "text" && name != "status_url" {
				httpAPIError(w, http.StatusBadRequest, "unknown_field", "unknown field "+name)
				return
			}
		}
		req = httpAPIRequest{To: form.Get("to"), From: form.Get("from"), Text: form.Get("text"), StatusURL: form.Get("status_url")}
	default:
		httpAPIError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json or a form")
		return
	}
	switch {
	case req.From == "" || req.Text == "":
		httpAPIError(w, http.StatusBadRequest, "missing_field", "from and text are required")
		return
	case !twilioNumber.MatchString(req.To):
		httpAPIError(w, http.StatusUnprocessableEntity, "invalid_number", "to must be a number in E.164")
		return
	}
	if f := refusals[req.To]; f != HTTPAPINone {
		failure = f
	}
	switch failure {
	case HTTPAPIInvalidNumber:
		httpAPIError(w, http.StatusUnprocessableEntity, "invalid_number", "the number "+req.To+" does not exist")
		return
	case HTTPAPIOptedOut:
		httpAPIError(w, http.StatusConflict, "opted_out", "the recipient has opted out")
		return
	case HTTPAPINoBalance:
		httpAPIError(w, http.StatusPaymentRequired, "insufficient_funds", "top up the account")
		return
	case HTTPAPIRateLimited:
		w.Header().Set("Retry-After", "7")
		httpAPIError(w, http.StatusTooManyRequests, "rate_limited", "slow down")
		return
	case HTTPAPIInternalError:
		httpAPIError(w, http.StatusInternalServerError, "internal", "something went wrong")
		return
	}
	m := HTTPAPIMessage{ID: "msg_" + randomHex(12), To: req.To, From: req.From, Text: req.Text, StatusURL: req.StatusURL,
		ContentType: ct, RawBody: string(raw), Received: time.Now()}
	writeJSON(w, http.StatusCreated, map[string]any{"data": map[string]any{"id": m.ID, "status": "queued", "to": m.To}})
	s.mu.Lock()
	s.messages = append(s.messages, m)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

func httpAPIError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": message}})
}

// sleepCtx waits d, or until the client gives up (false).
func sleepCtx(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-r.Context().Done():
		return false
	}
}

// dropConnection closes the connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// postJSON posts v as JSON to callback with header, and returns the receiver's HTTP status (0
// if it did not answer).
func postJSON(callback string, v any, header http.Header) int {
	body, _ := json.Marshal(v)
	return postRaw(callback, body, header)
}

// postRaw posts body as JSON to callback with header.
func postRaw(callback string, body []byte, header http.Header) int {
	req, err := http.NewRequest(http.MethodPost, callback, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
