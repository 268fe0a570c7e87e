package restcommtest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PlivoMessage is an SMS the Plivo fake accepted.
type PlivoMessage struct {
	UUID     string
	From     string // src
	To       string // dst
	Text     string
	URL      string // the status callback
	Method   string // how it is called: POST (form) or GET (query)
	Received time.Time
}

// PlivoFailure makes the Plivo fake fail every following send as the real API can.
type PlivoFailure int

const (
	PlivoNone PlivoFailure = iota
	// PlivoTooManyRequests: 429, "You are sending too many requests".
	PlivoTooManyRequests
	// PlivoInternalError: 500.
	PlivoInternalError
	// PlivoInsufficientCredit: the "Insufficient Credit" refusal that follows a message failed
	// with 900. Its HTTP status is not documented; the fake answers 400.
	PlivoInsufficientCredit
	// PlivoDropConnection: the connection closed without an answer.
	PlivoDropConnection
)

// Plivo is a running fake of Plivo's Message API (POST /v1/Account/{auth_id}/Message/). It
// checks what the API checks (HTTP Basic with the Auth ID and token, the account in the path,
// JSON with src, dst and text), answers 202 with message_uuid[], or {"api_id","error"} errors,
// and posts receipts to a message's url, signed as Plivo signs them (X-Plivo-Signature-V2 with
// the auth token over the URL and a nonce). Destination refusals come, as with Plivo, in a
// failed receipt: see Refuse. Close it when done.
type Plivo struct {
	*httptest.Server
	AuthID    string
	AuthToken string

	mu       sync.Mutex
	messages []PlivoMessage
	failure  PlivoFailure
	refusals map[string]int
	receipts []ReceiptStep
	notify   chan struct{}
}

// NewPlivo starts a fake with a fresh account: Auth ID MA and 18 capitals and digits, a 40-character token.
func NewPlivo() *Plivo {
	s := &Plivo{AuthID: "MA" + strings.ToUpper(randomHex(9)), AuthToken: randomHex(20), notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// Fail sets how every following send fails; PlivoNone restores success.
func (s *Plivo) Fail(f PlivoFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// SetAuthToken changes the account's token while requests may be in flight, as an operator
// rotating it in the console would.
func (s *Plivo) SetAuthToken(token string) {
	s.mu.Lock()
	s.AuthToken = token
	s.mu.Unlock()
}

// Refuse makes every following message to dst be accepted and then fail, as Plivo reports a
// destination it cannot reach: a "failed" receipt with errorCode (50 invalid number or
// landline, 70, 100, 200 opted out, 201); 0 lets it through again.
func (s *Plivo) Refuse(to string, errorCode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = map[string]int{}
	}
	s.refusals[to] = errorCode
}

// AutoReceipts makes every following accepted message with a url get these receipts (Status
// queued, sent, delivered, undelivered, failed; ErrorCode), in this order, each After the one
// before; none withholds them.
func (s *Plivo) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Plivo) Messages() []PlivoMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PlivoMessage(nil), s.messages...)
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *Plivo) WaitMessages(n int, timeout time.Duration) ([]PlivoMessage, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "plivo messages")
}

// ReceiptForm is the form of a receipt of m with status (and errorCode, 0 for none), as Plivo
// posts it.
func (s *Plivo) ReceiptForm(m PlivoMessage, status string, errorCode int) url.Values {
	now := time.Now().UTC().Format("2006-01-02 15:04:05-07:00")
	f := url.Values{"MessageUUID": {m.UUID}, "To": {strings.TrimPrefix(m.To, "+")}, "From": {strings.TrimPrefix(m.From, "+")},
		"Type": {"sms"}, "Status": {status}, "Units": {"1"}, "TotalRate": {"0.00500"}, "TotalAmount": {"0.00500"},
		"MCC": {"310"}, "MNC": {"090"}, "ParentMessageUUID": {m.UUID}, "PartInfo": {"1 of 1"}, "Sequence": {"1"},
		"MessageTime": {now}, "QueuedTime": {now}, "SentTime": {now}, "DeliveryReportTime": {now}}
	if errorCode != 0 && (status == "failed" || status == "undelivered") {
		f.Set("ErrorCode", strconv.Itoa(errorCode))
	}
	return f
}

// PostReceipt posts a receipt of m to its url now, signed with the auth token and a fresh
// nonce, and returns the receiver's HTTP status (0 if it did not answer).
func (s *Plivo) PostReceipt(m PlivoMessage, status string, errorCode int) int {
	nonce := PlivoNonce()
	s.mu.Lock()
	token := s.AuthToken
	s.mu.Unlock()
	return PostPlivoReceipt(m.URL, s.ReceiptForm(m, status, errorCode), nonce, PlivoSignature(token, m.URL, nonce))
}

// PlivoNonce is a nonce as Plivo sends them: 20 digits.
func PlivoNonce() string {
	var b strings.Builder
	for b.Len() < 20 {
		n, _ := rand.Int(rand.Reader, big.NewInt(10))
		b.WriteString(n.String())
	}
	return b.String()
}

// PostPlivoReceipt posts form to callback with nonce and signature as X-Plivo-Signature-V2-Nonce
// and X-Plivo-Signature-V2 (each left out if empty), as Plivo (or a forger) would, and returns
// the receiver's HTTP status.
func PostPlivoReceipt(callback string, form url.Values, nonce, signature string) int {
	req, err := http.NewRequest(http.MethodPost, callback, strings.NewReader(form.Encode()))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "PlivoHTTP")
	if nonce != "" {
		req.Header.Set("X-Plivo-Signature-V2-Nonce", nonce)
	}
	if signature != "" {
		req.Header.Set("X-Plivo-Signature-V2", signature)
		req.Header.Set("X-Plivo-Signature-Ma-V2", signature) // the main account's: the same account here
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// PlivoSignature is X-Plivo-Signature-V2: base64(HMAC-SHA256(token, the URL without its query
// string + nonce)).
func PlivoSignature(token, callback, nonce string) string {
	base := callback
	if u, err := url.Parse(callback); err == nil {
		base = u.Scheme + "://" + u.Host + u.EscapedPath()
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(base + nonce))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

var plivoNumber = regexp.MustCompile(`^\+?[1-9][0-9]{6,14}$`)

func (s *Plivo) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, token, refusals := s.failure, s.AuthToken, s.refusals
	s.mu.Unlock()
	apiID := uuid()
	rest, ok := strings.CutPrefix(r.URL.Path, "/v1/Account/")
	account, resource, _ := strings.Cut(rest, "/")
	if !ok || resource != "Message/" {
		writeJSON(w, http.StatusNotFound, map[string]string{"api_id": apiID, "error": "not found"})
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || !equal(user, s.AuthID) || !equal(pass, token) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"api_id": apiID, "error": "authentication failed"})
		return
	}
	if account != s.AuthID {
		writeJSON(w, http.StatusNotFound, map[string]string{"api_id": apiID, "error": "not found"})
		return
	}
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"api_id": apiID, "error": "method not allowed"})
		return
	}
	switch failure {
	case PlivoDropConnection:
		drop(w)
		return
	case PlivoTooManyRequests:
		writeJSON(w, http.StatusTooManyRequests, map[string]string{"api_id": apiID, "error": "You are sending too many requests"})
		return
	case PlivoInternalError:
		writeJSON(w, http.StatusInternalServerError, map[string]string{"api_id": apiID, "error": "server error"})
		return
	case PlivoInsufficientCredit:
		writeJSON(w, http.StatusBadRequest, map[string]string{"api_id": apiID, "error": "Insufficient Credit"})
		return
	}
	var body map[string]any
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || json.NewDecoder(r.Body).Decode(&body) != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"api_id": apiID, "error": "invalid json data"})
		return
	}
	str := func(k string) string { v, _ := body[k].(string); return v }
	for _, field := range []string{"src", "dst", "text"} {
		if str(field) == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"api_id": apiID, "error": field + " parameter is required"})
			return
		}
	}
	if !plivoNumber.MatchString(str("dst")) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"api_id": apiID, "error": "invalid dst parameter"})
		return
	}
	if m := str("method"); m != "" && m != http.MethodPost && m != http.MethodGet {
		writeJSON(w, http.StatusBadRequest, map[string]string{"api_id": apiID, "error": "invalid method parameter"})
		return
	}
	m := PlivoMessage{UUID: uuid(), From: str("src"), To: str("dst"), Text: str("text"), URL: str("url"), Method: str("method"), Received: time.Now()}
	if m.Method == "" {
		m.Method = http.MethodPost
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"api_id": apiID, "message": "message(s) queued", "message_uuid": []string{m.UUID}})
	s.mu.Lock()
	s.messages = append(s.messages, m)
	steps := append([]ReceiptStep(nil), s.receipts...)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if code := refusals[m.To]; code != 0 {
		steps = []ReceiptStep{{Status: "queued"}, {Status: "failed", ErrorCode: code}}
	}
	if m.URL != "" && m.Method == http.MethodPost {
		schedule(steps, func(st ReceiptStep) { s.PostReceipt(m, st.Status, st.ErrorCode) })
	}
}

// uuid is a random version 4 UUID.
func uuid() string {
	h := []byte(randomHex(16))
	h[12], h[16] = '4', "89ab"[h[16]%4]
	return string(h[:8]) + "-" + string(h[8:12]) + "-" + string(h[12:16]) + "-" + string(h[16:20]) + "-" + string(h[20:])
}
