package caddyotp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The restcomm and twilio senders speak the same family of API (Restcomm copied Twilio's, and
// SignalWire serves Twilio's): a form POSTed with HTTP Basic auth to
// {base}/Accounts/{sid}/..., answering the created resource's sid, and a voice call through
// Calls.json whose script the provider fetches from a URL. What they share lives here; each
// sender keeps what differs: paths, fields, and how its error answers read.

// apiClient posts forms to one Twilio-style API.
type apiClient struct {
	provider   string // for errors and logs: "restcomm", "twilio"
	user, pass string // HTTP Basic; pass is never logged
	timeout    time.Duration
	client     *http.Client
	// classify turns an answer outside 2xx into a *SendError; its Detail must hold no secret.
	classify func(status int, body []byte) *SendError
}

func newAPIClient(provider, user, pass string, timeout time.Duration, classify func(int, []byte) *SendError) *apiClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 16
	transport.ResponseHeaderTimeout = timeout
	return &apiClient{provider: provider, user: user, pass: pass, timeout: timeout, classify: classify,
		client: &http.Client{Transport: transport, Timeout: timeout}}
}

// post sends one form to endpoint and reads the created resource's sid, or classifies the error:
// timeouts and dropped connections are temporary.
func (c *apiClient) post(ctx context.Context, endpoint string, form url.Values) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", &SendError{Provider: c.provider, Detail: "building request: " + err.Error()}
	}
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	resp, err := c.client.Do(req)
	if err != nil {
		return "", &SendError{Provider: c.provider, Fault: TemporaryFault, Detail: transportDetail(ctx, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		var accepted struct {
			SID string `json:"sid"`
		}
		_ = json.Unmarshal(body, &accepted) // the status code is the contract; the body is informative
		return accepted.SID, nil
	}
	e := c.classify(resp.StatusCode, body)
	e.Provider, e.Status = c.provider, resp.StatusCode
	return "", e
}

// send posts form to endpoint, with the message's receipt URL for this provider as
// StatusCallback when receipts is set and the gate takes receipts.
func (c *apiClient) send(ctx context.Context, endpoint string, form url.Values, msg Message, receipts bool) (Sent, error) {
	receipts = receipts && msg.Receipts != nil
	if receipts {
		if cb := msg.Receipts(c.provider); cb != "" {
			form.Set("StatusCallback", cb)
		} else {
			receipts = false
		}
	}
	id, err := c.post(ctx, endpoint, form)
	return Sent{ID: id, Provider: c.provider, Receipts: receipts && err == nil}, err
}

// call places the call of callForm.
func (c *apiClient) call(ctx context.Context, endpoint, from, to, script string) (Sent, error) {
	id, err := c.post(ctx, endpoint, callForm(from, to, script))
	return Sent{ID: id, Provider: c.provider}, err
}

// readFormReceipt reads a receipt posted as a form, as Twilio-style APIs post them, once
// authentic says its fields are the provider's: the status in MessageStatus (SmsStatus in older
// answers).
func readFormReceipt(r *http.Request, authentic func(form url.Values) bool) (Receipt, error) {
	if err := r.ParseForm(); err != nil {
		return Receipt{}, err
	}
	if !authentic(r.PostForm) {
		return Receipt{}, ErrForgedReceipt
	}
	status := r.PostForm.Get("MessageStatus")
	if status == "" {
		status = r.PostForm.Get("SmsStatus")
	}
	switch status {
	case "sent":
		return Receipt{Status: ReceiptSent}, nil
	case "delivered":
		return Receipt{Status: ReceiptDelivered}, nil
	case "undelivered", "failed":
		return Receipt{Status: ReceiptFailed}, nil
	}
	return Receipt{Status: ReceiptPending}, nil // queued, accepted, scheduled, sending, or unknown
}

func (c *apiClient) closeIdle() {
	if c != nil {
		c.client.CloseIdleConnections()
	}
}

// callForm is the Calls.json form of a call from from to to, whose script (RCML, served by
// the gate under public_url + P/voice/{token}) the provider fetches with POST when answered.
func callForm(from, to, script string) url.Values {
	return url.Values{"From": {from}, "To": {to}, "Url": {script}, "Method": {http.MethodPost}}
}
