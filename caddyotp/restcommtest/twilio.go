package restcommtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// TwilioAPIVersion is the version segment of Twilio's (and SignalWire's compatibility) API.
const TwilioAPIVersion = "2010-04-01"

// TwilioMessage is an SMS the Twilio-style fake accepted.
type TwilioMessage struct {
	SID                 string
	AccountSID          string
	From                string
	MessagingServiceSID string
	To                  string
	Body                string
	StatusCallback      string
	ValidityPeriod      string
	User                string // the HTTP Basic user it authenticated as: the account or an API key
	Received            time.Time
}

// TwilioFailure makes the Twilio-style fake refuse every following send as the real API can.
type TwilioFailure int

const (
	// TwilioNone: sends succeed (201).
	TwilioNone TwilioFailure = iota
	// TwilioInvalidNumber: 400, code 21211, To is not a valid phone number.
	TwilioInvalidNumber
	// TwilioNotMobile: 400, code 21614, To is not a mobile number.
	TwilioNotMobile
	// TwilioUnsubscribed: 400, code 21610, the recipient replied STOP.
	TwilioUnsubscribed
	// TwilioRegionForbidden: 400, code 21408, no permission to send to this region.
	TwilioRegionForbidden
	// TwilioTooManyRequests: 429, code 20429.
	TwilioTooManyRequests
	// TwilioInternalError: 500 with a JSON error.
	TwilioInternalError
	// TwilioDropConnection: the connection is closed without an answer.
	TwilioDropConnection
)

// Twilio is a running fake of a Twilio-style Messages API (Twilio, or SignalWire's
// compatibility API). It checks what the real API checks (path, HTTP Basic auth with the
// account's token or an API key, the account in the path, form fields), answers 201 with the
// message's JSON or the JSON errors of the real API, and posts signed delivery receipts to a
// message's StatusCallback when told to. Close it when done.
type Twilio struct {
	*httptest.Server
	AccountSID string
	AuthToken  string
	APIKey     string // SK + 32 hex: accepted with APISecret as the HTTP Basic user and password
	APISecret  string
	SigningKey string // what receipts are signed with: the auth token (Twilio) or a Signing Key (SignalWire)
	basePath   string

	mu       sync.Mutex
	messages []TwilioMessage
	calls    []Call
	failure  TwilioFailure
	refusals map[string]int // To: the error code it is refused with
	delay    time.Duration
	receipts []ReceiptStep
	gate     chan struct{}
	notify   chan struct{}
}

// Hold makes every following request wait until gate is closed (or the client gives up);
// nil answers at once again. A test can so let a page load before the provider answers.
func (s *Twilio) Hold(gate chan struct{}) {
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
}

// NewTwilio starts a fake of Twilio's API: base path /2010-04-01, receipts signed with the auth token.
func NewTwilio() *Twilio {
	token := randomHex(16)
	return newTwilio("AC"+randomHex(16), token, token, "/"+TwilioAPIVersion)
}

// NewSignalWire starts a fake of SignalWire's compatibility API: the account is a project id
// (a UUID), the base path /api/laml/2010-04-01, and receipts are signed with a Signing Key of
// their own.
func NewSignalWire() *Twilio {
	h := randomHex(16)
	project := h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	return newTwilio(project, "PT"+randomHex(24), "PSK_"+randomHex(12), "/api/laml/"+TwilioAPIVersion)
}

func newTwilio(sid, token, signing, base string) *Twilio {
	s := &Twilio{AccountSID: sid, AuthToken: token, SigningKey: signing, APIKey: "SK" + randomHex(16), APISecret: randomHex(16),
		basePath: base, notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// BaseURL is what a sender's base_url should be: the API root including the version.
func (s *Twilio) BaseURL() string { return s.URL + s.basePath }

// Fail sets how every following send fails; TwilioNone restores success.
func (s *Twilio) Fail(f TwilioFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// twilioNumberErrors are the errors the real API answers (400) for a destination number it
// will not text or call, with their messages (twilio.com/docs/api/errors).
var twilioNumberErrors = map[int]string{
	21211: "The 'To' number %s is not a valid phone number.",
	21217: "Phone number does not appear to be valid",
	21265: "'To' number cannot be a Short Code",
	21266: "'To' and 'From' number cannot be the same",
	21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s",
	21610: "Attempt to send to unsubscribed recipient",
	21612: "The 'To' phone number: %s, is not currently reachable using the 'From' phone number via SMS.",
	21614: "'To' number is not a valid mobile number",
	13223: "Dial: Invalid phone number format",
	13224: "Dial: Twilio does not support calling this number or the number is invalid",
	21215: "Geo Permission configuration is not permitting call",
}

// Refuse makes every following send (SMS or call) to the number to fail as the real API fails
// it with code, one of the destination errors it answers (21211, 21217, 21265, 21266, 21408,
// 21610, 21612, 21614; calls: 13223, 13224, 21215); 0 lets the number through again.
func (s *Twilio) Refuse(to string, code int) {
	if _, ok := twilioNumberErrors[code]; !ok && code != 0 {
		panic(fmt.Sprintf("restcommtest: %d is not a destination error of the Twilio API", code))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusals == nil {
		s.refusals = make(map[string]int)
	}
	s.refusals[to] = code
}

// Delay makes every following request wait d before it is answered (or until the client gives up).
func (s *Twilio) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// AutoReceipts makes every following accepted message get these receipts, in this order (so
// out of order or repeated if the steps are), each After the one before; none withholds them.
func (s *Twilio) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Twilio) Messages() []TwilioMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TwilioMessage(nil), s.messages...)
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *Twilio) WaitMessages(n int, timeout time.Duration) ([]TwilioMessage, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "twilio messages")
}

// Calls returns the calls placed so far, oldest first (their scripts are not fetched).
func (s *Twilio) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// ReceiptForm is the form of a receipt of m with status (and errorCode, 0 for none), as the
// provider posts it.
func (s *Twilio) ReceiptForm(m TwilioMessage, status string, errorCode int) url.Values {
	from := m.From
	if from == "" {
		from = "+12015550100" // the number the messaging service picked
	}
	return receiptForm(s.AccountSID, TwilioAPIVersion, m.SID, from, m.To, m.Body, status, errorCode, false)
}

// PostReceipt posts a receipt of m with status (and errorCode) to its StatusCallback, signed
// with SigningKey, now, and returns the receiver's HTTP status (0 if it did not answer).
func (s *Twilio) PostReceipt(m TwilioMessage, status string, errorCode int) int {
	form := s.ReceiptForm(m, status, errorCode)
	return postReceipt(m.StatusCallback, form, Signature(s.SigningKey, m.StatusCallback, form))
}

// PostUnsigned posts form to callback with signature as X-Twilio-Signature (none if empty), as
// a forger would, and returns the receiver's HTTP status.
func PostUnsigned(callback string, form url.Values, signature string) int {
	return postReceipt(callback, form, signature)
}

var twilioNumber = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// SetAuthToken changes the account's token while requests may be in flight, as an operator
// rotating it in the provider's console would.
func (s *Twilio) SetAuthToken(token string) {
	s.mu.Lock()
	s.AuthToken = token
	s.mu.Unlock()
}

func (s *Twilio) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, delay, token, gate, refusals := s.failure, s.delay, s.AuthToken, s.gate, s.refusals
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if gate != nil {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	rest, ok := strings.CutPrefix(r.URL.Path, s.basePath+"/Accounts/")
	if !ok {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || !(equal(user, s.AccountSID) && equal(pass, token) || equal(user, s.APIKey) && equal(pass, s.APISecret)) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	pathSID, resource, _ := strings.Cut(rest, "/")
	if pathSID != s.AccountSID || (resource != "Messages.json" && resource != "Calls.json") {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found")
		return
	}
	if r.Method != http.MethodPost {
		twilioError(w, http.StatusMethodNotAllowed, 20004, "Method not allowed")
		return
	}
	if failure == TwilioDropConnection {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		twilioError(w, http.StatusBadRequest, 20001, "Bad request")
		return
	}
	f := r.PostForm
	switch {
	case f.Get("To") == "":
		twilioError(w, http.StatusBadRequest, 21604, "A 'To' phone number is required.")
		return
	case resource == "Messages.json" && f.Get("Body") == "":
		twilioError(w, http.StatusBadRequest, 21602, "Message body is required.")
		return
	case f.Get("From") == "" && (resource == "Calls.json" || f.Get("MessagingServiceSid") == ""):
		twilioError(w, http.StatusBadRequest, 21603, "A 'From' phone number is required.")
		return
	case resource == "Calls.json" && f.Get("Url") == "":
		twilioError(w, http.StatusBadRequest, 21205, "Url parameter is required.")
		return
	case !twilioNumber.MatchString(f.Get("To")):
		twilioError(w, http.StatusBadRequest, 21211, "The 'To' number "+f.Get("To")+" is not a valid phone number.")
		return
	}
	if code := refusals[f.Get("To")]; code != 0 {
		msg := twilioNumberErrors[code]
		if strings.Contains(msg, "%s") {
			msg = fmt.Sprintf(msg, f.Get("To"))
		}
		twilioError(w, http.StatusBadRequest, code, msg)
		return
	}
	switch failure {
	case TwilioInvalidNumber:
		twilioError(w, http.StatusBadRequest, 21211, "The 'To' number "+f.Get("To")+" is not a valid phone number.")
		return
	case TwilioNotMobile:
		twilioError(w, http.StatusBadRequest, 21614, "'To' number is not a valid mobile number")
		return
	case TwilioUnsubscribed:
		twilioError(w, http.StatusBadRequest, 21610, "Attempt to send to unsubscribed recipient")
		return
	case TwilioRegionForbidden:
		twilioError(w, http.StatusBadRequest, 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: "+f.Get("To"))
		return
	case TwilioTooManyRequests:
		twilioError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	case TwilioInternalError:
		twilioError(w, http.StatusInternalServerError, 20500, "An internal server error has occurred")
		return
	}
	if resource == "Calls.json" {
		c := Call{SID: "CA" + randomHex(16), From: f.Get("From"), To: f.Get("To"), URL: f.Get("Url"), Method: f.Get("Method")}
		s.mu.Lock()
		s.calls = append(s.calls, c)
		s.mu.Unlock()
		writeJSON(w, http.StatusCreated, map[string]any{"sid": c.SID, "account_sid": s.AccountSID, "to": c.To, "from": c.From,
			"status": "queued", "api_version": TwilioAPIVersion, "uri": "/" + TwilioAPIVersion + "/Accounts/" + s.AccountSID + "/Calls/" + c.SID + ".json"})
		return
	}
	m := TwilioMessage{SID: "SM" + randomHex(16), AccountSID: s.AccountSID, From: f.Get("From"), MessagingServiceSID: f.Get("MessagingServiceSid"),
		To: f.Get("To"), Body: f.Get("Body"), StatusCallback: f.Get("StatusCallback"), ValidityPeriod: f.Get("ValidityPeriod"),
		User: user, Received: time.Now()}
	status := "queued"
	if m.MessagingServiceSID != "" {
		status = "accepted"
	}
	date := m.Received.Format(time.RFC1123Z)
	writeJSON(w, http.StatusCreated, map[string]any{"sid": m.SID, "account_sid": s.AccountSID, "to": m.To, "from": nullable(m.From),
		"messaging_service_sid": nullable(m.MessagingServiceSID), "body": m.Body, "status": status, "num_segments": "1",
		"direction": "outbound-api", "api_version": TwilioAPIVersion, "date_created": date, "date_updated": date, "date_sent": nil,
		"error_code": nil, "error_message": nil, "price": nil, "price_unit": "USD",
		"uri": "/" + TwilioAPIVersion + "/Accounts/" + s.AccountSID + "/Messages/" + m.SID + ".json"})
	s.mu.Lock()
	s.messages = append(s.messages, m)
	steps := append([]ReceiptStep(nil), s.receipts...)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if m.StatusCallback != "" {
		schedule(steps, func(st ReceiptStep) { s.PostReceipt(m, st.Status, st.ErrorCode) })
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func twilioError(w http.ResponseWriter, status, code int, message string) {
	writeJSON(w, status, map[string]any{"code": code, "message": message,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
