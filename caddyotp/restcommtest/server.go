// Package restcommtest provides a fake Restcomm SMS API for tests, in the manner of
// net/http/httptest. It checks what the real API checks (path, HTTP Basic auth, the account in
// the path, form fields), answers with the real status codes and body shapes, records the
// messages it accepted, and can be told to fail the way the real service does.
package restcommtest

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// APIVersion is the version segment of every Restcomm API path.
const APIVersion = "2012-04-24"

// maxBody is the request size above which Restcomm answers 413.
const maxBody = 10_000_000

// Message is an SMS the fake accepted.
type Message struct {
	SID        string
	AccountSID string
	From       string
	To         string
	Body       string
	Encoding   string // as sent: "" means Restcomm's default, GSM
	// Where Restcomm posts the message's delivery receipts, as sent ("" for none).
	StatusCallback string
	Received       time.Time
}

// Failure makes the fake fail every following send the way the real service can.
type Failure int

const (
	// None: sends succeed.
	None Failure = iota
	// InternalError: 500 with exception text, as on an internal failure or timeout.
	InternalError
	// LimitExceeded: 403 with the JSON an extension answers when it refuses a send.
	LimitExceeded
	// AccountInactive: 403 with the plain text "Provided Account is not active".
	AccountInactive
	// DropConnection: the connection is closed without an answer.
	DropConnection
	// NumberRejected: 400 with plain text, as when the server's number normalisation fails.
	NumberRejected
)

// Server is a running fake Restcomm. Close it when done.
type Server struct {
	*httptest.Server
	AccountSID string
	AuthToken  string

	mu       sync.Mutex
	messages []Message
	calls    []Call
	failure  Failure
	delay    time.Duration
	hold     bool
	receipts []ReceiptStep
	notify   chan struct{}
}

// AutoReceipts makes every following accepted message with a StatusCallback get these
// receipts, in this order, each After the one before; none withholds them. Like Restcomm, the
// fake posts none for client: recipients. Restcomm does not sign its receipts.
func (s *Server) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// PostReceipt posts a receipt of m with status (and errorCode, 0 for none) to its
// StatusCallback now, unsigned and with the message's body, as Restcomm does, and returns the
// receiver's HTTP status (0 if it did not answer).
func (s *Server) PostReceipt(m Message, status string, errorCode int) int {
	return postReceipt(m.StatusCallback, receiptForm(s.AccountSID, APIVersion, m.SID, m.From, m.To, m.Body, status, errorCode, true), "")
}

// NewServer starts a fake with a fresh account (SID "AC" + 32 hex digits, random token).
func NewServer() *Server {
	s := &Server{AccountSID: "AC" + randomHex(16), AuthToken: randomHex(16), notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// BaseURL is what a sender's base_url should be: the API root including the version.
func (s *Server) BaseURL() string { return s.URL + "/restcomm/" + APIVersion }

// Messages returns the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// LastMessageTo returns the newest message accepted for the number to.
func (s *Server) LastMessageTo(to string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.messages) - 1; i >= 0; i-- {
		if s.messages[i].To == to {
			return s.messages[i], true
		}
	}
	return Message{}, false
}

// Fail sets how every following send fails; None restores success.
func (s *Server) Fail(f Failure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// Delay makes every following request wait d before it is answered (or until the client gives up).
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *Server) WaitMessages(n int, timeout time.Duration) ([]Message, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "messages")
}

// SetAuthToken changes the account's token while requests may be in flight, as an operator
// rotating it in the provider's console would.
func (s *Server) SetAuthToken(token string) {
	s.mu.Lock()
	s.AuthToken = token
	s.mu.Unlock()
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, delay, token := s.failure, s.delay, s.AuthToken
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}

	rest, ok := strings.CutPrefix(r.URL.Path, "/restcomm/"+APIVersion+"/Accounts/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	pathSID, resource, _ := strings.Cut(rest, "/")
	format := "xml"
	if strings.HasSuffix(resource, ".json") || strings.Contains(r.Header.Get("Accept"), "json") {
		format = "json"
	}
	kind := strings.TrimSuffix(resource, ".json")
	if kind != "SMS/Messages" && kind != "Calls" {
		http.NotFound(w, r)
		return
	}

	// The security filter: HTTP Basic with the SID and the token (or the token's MD5 hex).
	user, pass, ok := r.BasicAuth()
	if !ok || !equal(user, s.AccountSID) || !(equal(pass, token) || equal(pass, md5Hex(token))) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Restcomm realm"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if pathSID != s.AccountSID {
		w.WriteHeader(http.StatusForbidden) // no permission on the account in the path: empty body
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}

	switch failure {
	case DropConnection:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case AccountInactive:
		plain(w, http.StatusForbidden, "Provided Account is not active")
		return
	}

	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		if _, tooBig := err.(*http.MaxBytesError); tooBig {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		plain(w, http.StatusBadRequest, err.Error())
		return
	}
	required := []string{"From", "To", "Body"}
	if kind == "Calls" {
		required = []string{"From", "To", "Url"}
	}
	for _, field := range required {
		if _, ok := r.PostForm[field]; !ok { // JSON bodies land here too: the API reads only forms
			plain(w, http.StatusBadRequest, field+" can not be null.")
			return
		}
	}

	switch failure {
	case NumberRejected:
		plain(w, http.StatusBadRequest, "Invalid To number: "+r.PostForm.Get("To"))
		return
	case InternalError:
		plain(w, http.StatusInternalServerError, "java.lang.NullPointerException\n\tat org.restcomm.connect.http.SmsMessagesEndpoint.putSmsMessage")
		return
	case LimitExceeded:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"SMS limit exceeded for this account","error":"SMS_LIMIT_EXCEEDED"}`))
		return
	}

	if kind == "Calls" {
		s.placeCall(w, r)
		return
	}

	msg := Message{SID: "SM" + randomHex(16), AccountSID: s.AccountSID, From: r.PostForm.Get("From"),
		To: r.PostForm.Get("To"), Body: r.PostForm.Get("Body"), Encoding: r.PostForm.Get("Encoding"),
		StatusCallback: r.PostForm.Get("StatusCallback"), Received: time.Now()}
	s.mu.Lock()
	s.messages = append(s.messages, msg)
	steps := append([]ReceiptStep(nil), s.receipts...)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if msg.StatusCallback != "" && !strings.HasPrefix(msg.To, "client:") {
		defer schedule(steps, func(st ReceiptStep) { s.PostReceipt(msg, st.Status, st.ErrorCode) })
	}

	rec := newRecord(msg)
	if format == "json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rec)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName xml.Name `xml:"RestcommResponse"`
		SMS     record   `xml:"SMSMessage"`
	}{SMS: rec})
}

// record is the API's representation of a message, fields in the order the server writes them.
type record struct {
	SID         string `json:"sid" xml:"Sid"`
	DateCreated string `json:"date_created" xml:"DateCreated"`
	DateUpdated string `json:"date_updated" xml:"DateUpdated"`
	AccountSID  string `json:"account_sid" xml:"AccountSid"`
	From        string `json:"from" xml:"From"`
	To          string `json:"to" xml:"To"`
	Body        string `json:"body" xml:"Body"`
	Status      string `json:"status" xml:"Status"`
	Direction   string `json:"direction" xml:"Direction"`
	Price       string `json:"price" xml:"Price"`
	PriceUnit   string `json:"price_unit" xml:"PriceUnit"`
	APIVersion  string `json:"api_version" xml:"ApiVersion"`
	URI         string `json:"uri" xml:"Uri"`
}

func newRecord(m Message) record {
	date := m.Received.Format("Mon, 02 Jan 2006 15:04:05 -0700")
	return record{SID: m.SID, DateCreated: date, DateUpdated: date, AccountSID: m.AccountSID,
		From: m.From, To: m.To, Body: m.Body, Status: "sending", Direction: "outbound-api",
		Price: "0", PriceUnit: "USD", APIVersion: APIVersion,
		URI: "/" + APIVersion + "/Accounts/" + m.AccountSID + "/SMS/Messages/" + m.SID + ".json"}
}

func plain(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitFor waits until *items, guarded by mu, holds at least n, and returns a copy of them all.
// Whoever appends closes *notify and replaces it, under mu.
func waitFor[T any](mu *sync.Mutex, notify *chan struct{}, items *[]T, n int, timeout time.Duration, what string) ([]T, error) {
	deadline := time.After(timeout)
	for {
		mu.Lock()
		got, changed := append([]T(nil), *items...), *notify
		mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-deadline:
			return got, fmt.Errorf("restcommtest: %d %s after %s, want %d", len(got), what, timeout, n)
		}
	}
}
