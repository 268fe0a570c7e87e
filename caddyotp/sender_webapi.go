package caddyotp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The vonage, plivo and telnyx senders each speak an API of their own (a form, JSON with HTTP
// Basic, JSON with a bearer token), each with its own answers. What they share is the round
// trip: one request under the sender's timeout, a bounded answer, and a dropped connection or
// a timeout taken for the provider's passing trouble.

// webAPI makes requests to one provider's API.
type webAPI struct {
	provider string // for errors and logs: "vonage", "plivo", "telnyx"
	timeout  time.Duration
	client   *http.Client
}

func newWebAPI(provider string, timeout time.Duration) *webAPI {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 16
	transport.ResponseHeaderTimeout = timeout
	return &webAPI{provider: provider, timeout: timeout, client: &http.Client{Transport: transport, Timeout: timeout}}
}

// answer is a provider's answer: its status, headers and a bounded body.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// post sends body (of contentType) to endpoint; prepare sets the request's auth. A failed round
// trip is a temporary *SendError that names neither the URL nor the body.
func (c *webAPI) post(ctx context.Context, endpoint, contentType string, body []byte, prepare func(*http.Request)) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return answer{}, &SendError{Provider: c.provider, Detail: "building request: " + err.Error()}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if prepare != nil {
		prepare(req)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return answer{}, &SendError{Provider: c.provider, Fault: TemporaryFault, Detail: transportDetail(ctx, err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (c *webAPI) closeIdle() {
	if c != nil {
		c.client.CloseIdleConnections()
	}
}

// httpTrouble is the SendError of an HTTP status every provider means the same by: 429 (with
// how long to wait, when the answer says) and 5xx are temporary. It is nil for other statuses.
func httpTrouble(status int, header http.Header) *SendError {
	switch {
	case status == http.StatusTooManyRequests:
		return &SendError{Status: status, Fault: TemporaryFault, Detail: "too many requests" + retryAfter(header)}
	case status >= 500:
		return &SendError{Status: status, Fault: TemporaryFault, Detail: "provider failure"}
	}
	return nil
}

// retryAfter says how long a 429 asks to wait, from Retry-After (seconds or an HTTP date) or
// Telnyx's x-ratelimit-reset (seconds), as " (retry after 30s)"; "" when it does not say.
func retryAfter(h http.Header) string {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		v = strings.TrimSpace(h.Get("X-Ratelimit-Reset"))
	}
	if v == "" {
		return ""
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return " (retry after " + (time.Duration(n) * time.Second).String() + ")"
	}
	if t, err := http.ParseTime(v); err == nil {
		return " (retry after " + time.Until(t).Round(time.Second).String() + ")"
	}
	return ""
}

// validBaseURL checks a sender's base_url: an http(s) URL (else the error gives example) that
// holds no credentials (else the error does not echo it).
func validBaseURL(sender, base, example string) error {
	u, err := url.Parse(base)
	switch {
	case err == nil && u.User != nil:
		return errors.New(sender + " sender: base_url must not hold credentials; give them in the sender's own fields")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("%s sender: base_url %q must be an http(s) URL such as %s", sender, base, example)
	}
	return nil
}

// sameText compares two strings in constant time (for their contents; lengths may leak).
func sameText(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// withoutPlus is an E.164 number as the APIs that want digits only take it: 12015550123.
func withoutPlus(number string) string { return strings.TrimPrefix(number, "+") }
