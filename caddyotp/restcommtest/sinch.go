package restcommtest

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sinch is a fake of Sinch's SMS REST API (batches): POST /xms/v1/{service_plan_id}/batches
// with Authorization: Bearer {token}, a JSON mt_text batch and no unknown field; 201 with the
// batch object; errors as {"code", "text"} (401 with no body); and per-recipient delivery
// reports posted to the batch's callback_url when told to, signed with CallbackSecret as Sinch
// signs them once the account has a callback secret (x-sinch-webhook-signature over
// body.nonce.timestamp). Close it when done.
type Sinch struct {
	*httptest.Server
	ServicePlanID string
	APIToken      string
	// The account's callback secret; "" (the default) posts unsigned reports, as Sinch does for
	// an account without one.
	CallbackSecret string

	mu       sync.Mutex
	batches  []SinchBatch
	failure  SinchFailure
	delay    time.Duration
	receipts []ReceiptStep
	notify   chan struct{}
}

// SinchBatch is a batch the Sinch fake accepted.
type SinchBatch struct {
	ID             string
	From           string
	To             string // the batch's one recipient
	Body           string
	DeliveryReport string
	CallbackURL    string
	Received       time.Time
}

// SinchFailure makes the Sinch fake refuse every following batch.
type SinchFailure int

const (
	// SinchNone: batches are accepted (201).
	SinchNone SinchFailure = iota
	// SinchIllegalNumberType: 403, code illegal_number_type.
	SinchIllegalNumberType
	// SinchBlockedAccount: 403, code blocked_account.
	SinchBlockedAccount
	// SinchTooManyRequests: 429 (Sinch's rate-limit headers are not documented: none).
	SinchTooManyRequests
	// SinchInternalError: 500.
	SinchInternalError
	// SinchDropConnection: the connection is closed without an answer.
	SinchDropConnection
)

// NewSinch starts a fake with a fresh service plan and token, whose reports are unsigned.
func NewSinch() *Sinch {
	s := &Sinch{ServicePlanID: randomHex(16), APIToken: randomHex(16), notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// BaseURL is what the sender's base_url should be.
func (s *Sinch) BaseURL() string { return s.URL }

// Fail sets how every following batch fails; SinchNone restores success.
func (s *Sinch) Fail(f SinchFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// Delay makes every following request wait d before it is answered (or until the client gives up).
func (s *Sinch) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// AutoReceipts makes every following accepted batch with a callback_url get these reports, in
// this order (so out of order or repeated if the steps are), each After the one before; none
// withholds them. A step's Status is Sinch's (Queued, Dispatched, Delivered, Failed, Rejected,
// Deleted, Expired, Aborted, Cancelled, Unknown), its ErrorCode the report's code. Like Sinch,
// the fake posts Queued and Dispatched only for delivery_report per_recipient.
func (s *Sinch) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// SetAPIToken changes the service plan's token while requests may be in flight, as an
// operator rotating it in the dashboard would.
func (s *Sinch) SetAPIToken(token string) {
	s.mu.Lock()
	s.APIToken = token
	s.mu.Unlock()
}

// Batches returns the batches accepted so far, oldest first.
func (s *Sinch) Batches() []SinchBatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinchBatch(nil), s.batches...)
}

// WaitBatches waits until at least n batches were accepted and returns them all.
func (s *Sinch) WaitBatches(n int, timeout time.Duration) ([]SinchBatch, error) {
	return waitFor(&s.mu, &s.notify, &s.batches, n, timeout, "sinch batches")
}

// Report is the body of b's per-recipient delivery report with status and code.
func (s *Sinch) Report(b SinchBatch, status string, code int) []byte {
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	body, _ := json.Marshal(map[string]any{"type": "recipient_delivery_report_sms", "batch_id": b.ID,
		"recipient": strings.TrimPrefix(b.To, "+"), "code": code, "status": status, "at": now, "operator_status_at": now,
		"applied_originator": b.From, "encoding": "GSM", "number_of_message_parts": 1})
	return body
}

// SinchSignature is the x-sinch-webhook-signature of a report with body, nonce and timestamp,
// signed with secret: base64(HMAC-SHA256(secret, body + "." + nonce + "." + timestamp)).
func SinchSignature(secret string, body []byte, nonce, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(string(body) + "." + nonce + "." + timestamp))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SignedHeaders are the headers Sinch sends with body, signed with secret now.
func SignedHeaders(secret string, body []byte, at time.Time) http.Header {
	nonce, ts := strings.ToUpper(randomHex(13)), strconv.FormatInt(at.Unix(), 10)
	return http.Header{"X-Sinch-Webhook-Signature": {SinchSignature(secret, body, nonce, ts)},
		"X-Sinch-Webhook-Signature-Nonce": {nonce}, "X-Sinch-Webhook-Signature-Timestamp": {ts}}
}

// PostReceipt posts b's report with status and code to its callback_url now, signed if the
// account has a callback secret, and returns the receiver's HTTP status (0 if it did not answer).
func (s *Sinch) PostReceipt(b SinchBatch, status string, code int) int {
	body := s.Report(b, status, code)
	var header http.Header
	if s.CallbackSecret != "" {
		header = SignedHeaders(s.CallbackSecret, body, time.Now())
	}
	return postRaw(b.CallbackURL, body, header)
}

// PostRaw posts body to callback with header, as a forger would, and returns the receiver's
// HTTP status.
func PostRaw(callback string, body []byte, header http.Header) int {
	return postRaw(callback, body, header)
}

// sinchRequest is an mt_text batch; unknown fields are refused.
type sinchRequest struct {
	From                    string          `json:"from"`
	To                      []string        `json:"to"`
	Body                    *string         `json:"body"`
	Type                    string          `json:"type"`
	DeliveryReport          string          `json:"delivery_report"`
	CallbackURL             string          `json:"callback_url"`
	ClientReference         string          `json:"client_reference"`
	ExpireAt                string          `json:"expire_at"`
	SendAt                  string          `json:"send_at"`
	FlashMessage            bool            `json:"flash_message"`
	MaxNumberOfMessageParts int             `json:"max_number_of_message_parts"`
	TruncateConcat          bool            `json:"truncate_concat"`
	FromTon                 int             `json:"from_ton"`
	FromNpi                 int             `json:"from_npi"`
	Parameters              json.RawMessage `json:"parameters"`
	FeedbackEnabled         bool            `json:"feedback_enabled"`
}

var sinchNumber = regexp.MustCompile(`^\+?[1-9][0-9]{6,14}$`)

func (s *Sinch) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, delay, steps, apiToken := s.failure, s.delay, append([]ReceiptStep(nil), s.receipts...), s.APIToken
	s.mu.Unlock()
	if !sleepCtx(r, delay) {
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/xms/v1/")
	plan, resource, _ := strings.Cut(rest, "/")
	if !ok || resource != "batches" {
		sinchError(w, http.StatusNotFound, "not_found", "Not found")
		return
	}
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); !ok || !equal(token, apiToken) || plan != s.ServicePlanID {
		w.WriteHeader(http.StatusUnauthorized) // a token of another plan is refused as a wrong one
		return
	}
	if r.Method != http.MethodPost {
		sinchError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Method not allowed")
		return
	}
	switch failure {
	case SinchDropConnection:
		dropConnection(w)
		return
	case SinchTooManyRequests:
		sinchError(w, http.StatusTooManyRequests, "too_many_requests", "Too many requests")
		return
	case SinchInternalError:
		sinchError(w, http.StatusInternalServerError, "internal_error", "Internal error")
		return
	case SinchBlockedAccount:
		sinchError(w, http.StatusForbidden, "blocked_account", "The account is blocked")
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		sinchError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Use application/json")
		return
	}
	raw, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var req sinchRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		sinchError(w, http.StatusBadRequest, "syntax_invalid_json", "The JSON is invalid: "+err.Error())
		return
	}
	switch {
	case len(req.To) < 1 || len(req.To) > 1000:
		sinchError(w, http.StatusBadRequest, "syntax_constraint_violation", "to: between 1 and 1000 recipients")
		return
	case req.Body == nil || len([]rune(*req.Body)) > 2000:
		sinchError(w, http.StatusBadRequest, "syntax_constraint_violation", "body: required, at most 2000 characters")
		return
	case req.From == "":
		sinchError(w, http.StatusBadRequest, "syntax_constraint_violation", "from: required (no Automatic Default Originator)")
		return
	case req.Type != "" && req.Type != "mt_text":
		sinchError(w, http.StatusBadRequest, "syntax_invalid_parameter_format", "type: this fake takes mt_text")
		return
	case req.DeliveryReport != "" && !slices.Contains([]string{"none", "summary", "full", "per_recipient", "per_recipient_final"}, req.DeliveryReport):
		sinchError(w, http.StatusBadRequest, "syntax_invalid_parameter_format", "delivery_report: unknown value")
		return
	case !sinchNumber.MatchString(req.To[0]):
		sinchError(w, http.StatusBadRequest, "syntax_invalid_parameter_format", "to: not an MSISDN")
		return
	case failure == SinchIllegalNumberType:
		sinchError(w, http.StatusForbidden, "illegal_number_type", "Illegal number type")
		return
	}
	b := SinchBatch{ID: strings.ToUpper(randomHex(13)), From: req.From, To: req.To[0], Body: *req.Body,
		DeliveryReport: cmp.Or(req.DeliveryReport, "none"), CallbackURL: req.CallbackURL, Received: time.Now()}
	at := b.Received.UTC().Format("2006-01-02T15:04:05.000Z")
	writeJSON(w, http.StatusCreated, map[string]any{"id": b.ID, "to": req.To, "from": b.From, "canceled": false, "body": b.Body,
		"type": "mt_text", "created_at": at, "modified_at": at, "delivery_report": b.DeliveryReport, "flash_message": false})
	s.mu.Lock()
	s.batches = append(s.batches, b)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if b.CallbackURL != "" && strings.HasPrefix(b.DeliveryReport, "per_recipient") {
		schedule(steps, func(st ReceiptStep) {
			intermediate := st.Status == "Queued" || st.Status == "Dispatched"
			if !intermediate || b.DeliveryReport == "per_recipient" {
				s.PostReceipt(b, st.Status, st.ErrorCode)
			}
		})
	}
}

func sinchError(w http.ResponseWriter, status int, code, text string) {
	writeJSON(w, status, map[string]any{"code": code, "text": text})
}
