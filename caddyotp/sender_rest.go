package caddyotp

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The sinch, infobip and http senders speak JSON (or form) APIs of their own kinds; what they
// share lives here: one request with a timeout and a bounded answer, the classes every HTTP
// answer falls in when its body says nothing more, and reading a value at a path of a JSON
// answer.

// restClient makes requests to one provider's API.
type restClient struct {
	provider string // for errors and logs: "sinch", "infobip", "http"
	timeout  time.Duration
	client   *http.Client
}

func newRestClient(provider string, timeout time.Duration) *restClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 16
	transport.ResponseHeaderTimeout = timeout
	return &restClient{provider: provider, timeout: timeout, client: &http.Client{Transport: transport, Timeout: timeout,
		// A redirect would resend the credentials elsewhere; an API that moved says so in a 3xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// answer is a provider's answer: its status, headers and the first 64 KiB of its body.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) ok() bool { return a.status >= 200 && a.status < 300 }

// post sends body, of contentType, to endpoint, with the request's other headers (its auth).
func (c *restClient) post(ctx context.Context, endpoint, contentType string, body []byte, header http.Header) (answer, error) {
	h := http.Header{"Content-Type": {contentType}, "Accept": {"application/json"}}
	for name, values := range header {
		h[name] = values
	}
	return c.do(ctx, http.MethodPost, endpoint, h, body)
}

// basicAuth is the Authorization header's value of HTTP Basic auth.
func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// do sends one request. No answer (a timeout, a dropped connection) is a temporary
// *SendError; any answer is returned as it is, for the sender to read.
func (c *restClient) do(ctx context.Context, method, endpoint string, header http.Header, body []byte) (answer, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
	if err != nil {
		return answer{}, &SendError{Provider: c.provider, Detail: "building request: " + scrubbed(err.Error())}
	}
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := c.client.Do(req)
	if err != nil {
		detail := transportDetail(ctx, err)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() { // the header timeout may fire first
			detail = "no answer before the timeout"
		}
		return answer{}, &SendError{Provider: c.provider, Fault: TemporaryFault, Detail: detail + " (" + c.timeout.String() + ")"}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func (c *restClient) closeIdle() {
	if c != nil {
		c.client.CloseIdleConnections()
	}
}

// statusFault is the class of an answer outside 2xx that its body does not explain: 5xx and
// 429 are temporary (with the wait the provider asks for, if it says), anything else is the
// configuration's. Its Detail is what the status means; the caller adds what it knows.
func (c *restClient) statusFault(a answer) *SendError {
	if se := httpTrouble(a.status, a.header); se != nil {
		se.Provider = c.provider
		return se
	}
	se := &SendError{Provider: c.provider, Status: a.status}
	switch {
	case a.status >= 300 && a.status < 400:
		se.Detail = "redirected to " + scrubbed(a.header.Get("Location")) + ": check base_url"
	default:
		se.Detail = "refused"
	}
	return se
}

// retryAfter says how long the provider asked to wait before the next request (Retry-After,
// in seconds or as a date; Telnyx's x-ratelimit-reset, in seconds), for the log; "" if it did
// not say.
func retryAfter(h http.Header) string {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		v = strings.TrimSpace(h.Get("X-Ratelimit-Reset"))
	}
	if v == "" {
		return ""
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return " (Retry-After " + (time.Duration(secs) * time.Second).String() + ")"
	}
	if at, err := http.ParseTime(v); err == nil {
		return " (Retry-After " + time.Until(at).Round(time.Second).String() + ")"
	}
	return ""
}

// jsonAt is the value at path in a JSON document: keys joined by dots, a number indexing an
// array (messages.0.id). Strings are given as they are, other values as their JSON text; ok is
// false where the path leads nowhere.
func jsonAt(body []byte, path string) (value string, ok bool) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&v) != nil {
		return "", false
	}
	for _, key := range strings.Split(path, ".") {
		switch node := v.(type) {
		case map[string]any:
			if v, ok = node[key]; !ok {
				return "", false
			}
		case []any:
			i, err := strconv.Atoi(key)
			if err != nil || i < 0 || i >= len(node) {
				return "", false
			}
			v = node[i]
		default:
			return "", false
		}
	}
	switch v := v.(type) {
	case string:
		return v, true
	case nil:
		return "null", true
	case map[string]any, []any:
		return "", false
	default:
		b, _ := json.Marshal(v)
		return string(b), true
	}
}

// checkBaseURL reports a base_url that is not an http(s) URL, or that holds credentials.
func checkBaseURL(what, field, value, example string) error {
	u, err := url.Parse(value)
	if err == nil && u.User != nil { // checked first, so that the URL is never echoed with them
		return errors.New(what + ": " + field + " must not hold credentials; give them in their own settings")
	}
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		// Not echoed: a secret pasted into the wrong field would land in the log.
		return errors.New(what + ": " + field + " must be an http(s) URL such as " + example)
	}
	return nil
}

// readJSONBody reads a receipt's JSON body, bounded by the caller (MaxBytesReader).
func readJSONBody(r *http.Request, v any) ([]byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	return body, json.Unmarshal(body, v)
}
