package restcommtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TelnyxMessage is an SMS the Telnyx fake accepted.
type TelnyxMessage struct {
	ID                 string
	From               string
	MessagingProfileID string
	To                 string
	Text               string
	WebhookURL         string
	Received           time.Time
}

// TelnyxFailure makes the Telnyx fake fail every following send as the real API can.
type TelnyxFailure int

const (
	TelnyxNone TelnyxFailure = iota
	// TelnyxBlocked: 409, code 40300, the recipient replied STOP.
	TelnyxBlocked
	// TelnyxInvalidNumber: 400, code 10002, not a valid phone number.
	TelnyxInvalidNumber
	// TelnyxTooManyRequests: 429, code 10011, with x-ratelimit-* headers.
	TelnyxTooManyRequests
	// TelnyxInternalError: 500, code 10007.
	TelnyxInternalError
	// TelnyxDropConnection: the connection closed without an answer.
	TelnyxDropConnection
)

// Telnyx is a running fake of Telnyx's Messaging API v2 (POST /v2/messages). It checks what the
// API checks (the API key as a bearer token, JSON with to in +E.164, text, and from or
// messaging_profile_id, a sender id only under a profile), answers {"data":{...}} or
// {"errors":[...]}, and posts delivery webhooks to a message's webhook_url signed with its own
// Ed25519 key (PublicKey is the key to verify them with), as Telnyx signs them. Close it when done.
type Telnyx struct {
	*httptest.Server
	APIKey    string
	PublicKey string // base64, as Mission Control shows it
	private   ed25519.PrivateKey

	mu       sync.Mutex
	messages []TelnyxMessage
	failure  TelnyxFailure
	receipts []ReceiptStep
	notify   chan struct{}
}

// NewTelnyx starts a fake with a fresh API key and signing key pair.
func NewTelnyx() *Telnyx {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	s := &Telnyx{APIKey: "KEY" + strings.ToUpper(randomHex(16)) + "_" + randomHex(8), PublicKey: base64.StdEncoding.EncodeToString(pub),
		private: priv, notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// Fail sets how every following send fails; TelnyxNone restores success.
func (s *Telnyx) Fail(f TelnyxFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// AutoReceipts makes every following accepted message with a webhook_url get these webhooks
// (Status the to[].status: sent, delivered, delivery_failed, sending_failed, expired,
// delivery_unconfirmed; ErrorCode an error's code, such as 40001), in this order, each After
// the one before; none withholds them.
func (s *Telnyx) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Telnyx) Messages() []TelnyxMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TelnyxMessage(nil), s.messages...)
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *Telnyx) WaitMessages(n int, timeout time.Duration) ([]TelnyxMessage, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "telnyx messages")
}

// telnyxErrorTitles are the titles of the error codes the fake answers or reports.
var telnyxErrorTitles = map[int]string{
	40001: "Not routable", 40002: "Blocked as spam - temporary", 40006: "Recipient server unavailable",
	40008: "Undeliverable", 40012: "Invalid destination number", 40013: "Invalid source number",
	40300: "Blocked due to STOP message",
}

// ReceiptBody is the webhook of m with status (and an error errorCode, 0 for none), as Telnyx
// posts it: message.finalized for a final status, message.sent otherwise.
func (s *Telnyx) ReceiptBody(m TelnyxMessage, status string, errorCode int) []byte {
	event := "message.sent"
	switch status {
	case "delivered", "delivery_failed", "sending_failed", "expired", "delivery_unconfirmed":
		event = "message.finalized"
	}
	errs := []map[string]string{}
	if errorCode != 0 {
		errs = append(errs, map[string]string{"code": strconv.Itoa(errorCode), "title": telnyxErrorTitles[errorCode],
			"detail": "The message could not be delivered."})
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(map[string]any{
		"data": map[string]any{"event_type": event, "id": uuid(), "occurred_at": now, "record_type": "event",
			"payload": map[string]any{"id": m.ID, "record_type": "message", "direction": "outbound", "type": "SMS",
				"from": map[string]string{"phone_number": m.From},
				"to":   []map[string]string{{"phone_number": m.To, "status": status, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}},
				"text": m.Text, "parts": 1, "encoding": "GSM-7", "errors": errs, "messaging_profile_id": m.MessagingProfileID,
				"sent_at": now, "completed_at": now, "webhook_url": m.WebhookURL}},
		"meta": map[string]any{"attempt": 1, "delivered_to": m.WebhookURL}})
	return b
}

// Sign is the telnyx-signature-ed25519 of body at timestamp (Unix seconds): base64 of the
// Ed25519 signature of "timestamp|body" with the fake's key.
func (s *Telnyx) Sign(timestamp string, body []byte) string {
	return base64.StdEncoding.EncodeToString(ed25519.Sign(s.private, append([]byte(timestamp+"|"), body...)))
}

// PostReceipt posts the webhook of m with status (and errorCode) to its webhook_url now, signed,
// and returns the receiver's HTTP status (0 if it did not answer).
func (s *Telnyx) PostReceipt(m TelnyxMessage, status string, errorCode int) int {
	body := s.ReceiptBody(m, status, errorCode)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return PostTelnyxReceipt(m.WebhookURL, body, ts, s.Sign(ts, body))
}

// PostTelnyxReceipt posts body to callback with timestamp and signature as telnyx-timestamp and
// telnyx-signature-ed25519 (each left out if empty), as Telnyx (or a forger) would, and returns
// the receiver's HTTP status.
func PostTelnyxReceipt(callback string, body []byte, timestamp, signature string) int {
	h := http.Header{"User-Agent": {"telnyx-webhooks"}}
	if timestamp != "" {
		h.Set("telnyx-timestamp", timestamp)
	}
	if signature != "" {
		h.Set("telnyx-signature-ed25519", signature)
	}
	return postRaw(callback, body, h)
}

var (
	telnyxNumber = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	telnyxAlpha  = regexp.MustCompile(`^[A-Za-z0-9 ]*[A-Za-z][A-Za-z0-9 ]*$`)
)

func (s *Telnyx) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure := s.failure
	s.mu.Unlock()
	if r.URL.Path != "/v2/messages" {
		telnyxError(w, http.StatusNotFound, 10005, "Resource not found", "The requested resource or URL could not be found.", "")
		return
	}
	if !equal(r.Header.Get("Authorization"), "Bearer "+s.APIKey) {
		telnyxError(w, http.StatusUnauthorized, 10009, "Authentication failed", "The API key looks malformed. Check that you copied it correctly.", "")
		return
	}
	if r.Method != http.MethodPost {
		telnyxError(w, http.StatusMethodNotAllowed, 10006, "Method not allowed", "", "")
		return
	}
	switch failure {
	case TelnyxDropConnection:
		drop(w)
		return
	case TelnyxInternalError:
		telnyxError(w, http.StatusInternalServerError, 10007, "Unexpected error", "An unexpected error occured.", "")
		return
	case TelnyxTooManyRequests:
		w.Header().Set("x-ratelimit-limit", "20")
		w.Header().Set("x-ratelimit-remaining", "0")
		w.Header().Set("x-ratelimit-reset", "7")
		telnyxError(w, http.StatusTooManyRequests, 10011, "Too many requests", "You have exceeded the maximum number of allowed requests.", "")
		return
	}
	var body map[string]any
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || json.NewDecoder(r.Body).Decode(&body) != nil {
		telnyxError(w, http.StatusBadRequest, 10015, "Invalid request body", "The request body is not valid JSON.", "")
		return
	}
	str := func(k string) string { v, _ := body[k].(string); return v }
	to, from, profile := str("to"), str("from"), str("messaging_profile_id")
	switch {
	case to == "":
		telnyxError(w, http.StatusUnprocessableEntity, 10004, "Missing required parameter", "The 'to' parameter is required.", "/to")
		return
	case !telnyxNumber.MatchString(to):
		telnyxError(w, http.StatusBadRequest, 10016, "Phone number must be in +E.164 format", "The 'to' number is not in +E.164 format.", "/to")
		return
	case str("text") == "":
		telnyxError(w, http.StatusUnprocessableEntity, 10004, "Missing required parameter", "The 'text' parameter is required for SMS.", "/text")
		return
	case from == "" && profile == "":
		telnyxError(w, http.StatusUnprocessableEntity, 10004, "Missing required parameter", "Give 'from' or 'messaging_profile_id'.", "/from")
		return
	case from != "" && telnyxAlpha.MatchString(from) && profile == "":
		telnyxError(w, http.StatusBadRequest, 40013, "Invalid source number", "An alphanumeric sender ID needs a messaging profile.", "/from")
		return
	}
	switch failure {
	case TelnyxBlocked:
		telnyxError(w, http.StatusConflict, 40300, "Blocked due to STOP message",
			"Messages cannot be sent from "+from+" to "+to+" due to an existing block rule.", "")
		return
	case TelnyxInvalidNumber:
		telnyxError(w, http.StatusBadRequest, 10002, "Invalid phone number", "The 'to' phone number is invalid.", "/to")
		return
	}
	m := TelnyxMessage{ID: uuid(), From: from, MessagingProfileID: profile, To: to, Text: str("text"), WebhookURL: str("webhook_url"), Received: time.Now()}
	if m.From == "" {
		m.From = "+12015550100" // the number the profile's pool picked
	}
	now := m.Received.UTC().Format(time.RFC3339Nano)
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{"record_type": "message", "direction": "outbound", "id": m.ID,
		"type": "SMS", "messaging_profile_id": profile, "from": map[string]string{"phone_number": m.From},
		"to": []map[string]string{{"phone_number": to, "status": "queued"}}, "text": m.Text, "encoding": "GSM-7", "parts": 1,
		"errors": []any{}, "webhook_url": m.WebhookURL, "received_at": now}})
	s.mu.Lock()
	s.messages = append(s.messages, m)
	steps := append([]ReceiptStep(nil), s.receipts...)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if m.WebhookURL != "" {
		schedule(steps, func(st ReceiptStep) { s.PostReceipt(m, st.Status, st.ErrorCode) })
	}
}

func telnyxError(w http.ResponseWriter, status, code int, title, detail, pointer string) {
	e := map[string]any{"code": strconv.Itoa(code), "title": title, "detail": detail,
		"meta": map[string]string{"url": "https://developers.telnyx.com/docs/overview/errors/" + strconv.Itoa(code)}}
	if pointer != "" {
		e["source"] = map[string]string{"pointer": pointer}
	}
	writeJSON(w, status, map[string]any{"errors": []any{e}})
}
