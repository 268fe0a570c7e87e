package restcommtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Infobip is a fake of Infobip's SMS API v3 (POST /sms/3/messages): Authorization: App {key},
// a JSON body of the v3 shape and no unknown field, 200 with a status per message (PENDING, or
// REJECTED with its id when told to refuse), the v3 error body ({"errorCode", "description",
// "action", "violations"}) for a request it refuses, and unsigned delivery reports
// ({"results": [...]}) posted to a message's webhooks.delivery.url when told to. Infobip's
// concrete errorCode values are not documented, so the fake's are made up: a sender must not
// depend on them. Close it when done.
type Infobip struct {
	*httptest.Server
	APIKey string

	mu       sync.Mutex
	messages []InfobipMessage
	failure  InfobipFailure
	delay    time.Duration
	receipts []ReceiptStep
	notify   chan struct{}
}

// InfobipMessage is an SMS the Infobip fake accepted (or refused with a REJECTED status).
type InfobipMessage struct {
	MessageID          string
	BulkID             string
	Sender             string
	To                 string
	Text               string
	DeliveryURL        string // webhooks.delivery.url, "" for none
	IntermediateReport bool
	Notify             bool // false when webhooks.delivery.notify is false: no reports
	Received           time.Time
}

// InfobipFailure makes the Infobip fake refuse every following send.
type InfobipFailure int

const (
	// InfobipNone: sends succeed (200, PENDING_ACCEPTED).
	InfobipNone InfobipFailure = iota
	// InfobipRejectedDestination: 200 with REJECTED_DESTINATION (group 5, id 14).
	InfobipRejectedDestination
	// InfobipRejectedDND: 200 with REJECTED_DND (id 10): the recipient is on a do-not-disturb list.
	InfobipRejectedDND
	// InfobipNotEnoughCredits: 200 with REJECTED_NOT_ENOUGH_CREDITS (id 12).
	InfobipNotEnoughCredits
	// InfobipRejectedSender: 200 with REJECTED_SENDER (id 13).
	InfobipRejectedSender
	// InfobipTooManyRequests: 429 with the v3 error body.
	InfobipTooManyRequests
	// InfobipInternalError: 500 with the v3 error body.
	InfobipInternalError
	// InfobipDropConnection: the connection is closed without an answer.
	InfobipDropConnection
)

// infobipStatuses are the statuses the fake knows, by name: group id, group name, id.
var infobipStatuses = map[string]struct {
	group     int
	groupName string
	id        int
}{
	"PENDING_ACCEPTED":                {1, "PENDING", 26},
	"PENDING_ENROUTE":                 {1, "PENDING", 7},
	"PENDING_WAITING_DELIVERY":        {1, "PENDING", 3},
	"UNDELIVERABLE_REJECTED_OPERATOR": {2, "UNDELIVERABLE", 4},
	"UNDELIVERABLE_NOT_DELIVERED":     {2, "UNDELIVERABLE", 9},
	"DELIVERED_TO_OPERATOR":           {3, "DELIVERED", 2},
	"DELIVERED_TO_HANDSET":            {3, "DELIVERED", 5},
	"EXPIRED_EXPIRED":                 {4, "EXPIRED", 15},
	"EXPIRED_DLR_UNKNOWN":             {4, "EXPIRED", 29},
	"REJECTED_DND":                    {5, "REJECTED", 10},
	"REJECTED_NOT_ENOUGH_CREDITS":     {5, "REJECTED", 12},
	"REJECTED_SENDER":                 {5, "REJECTED", 13},
	"REJECTED_DESTINATION":            {5, "REJECTED", 14},
}

// NewInfobip starts a fake with a fresh API key. Its BaseURL stands for the account's own.
func NewInfobip() *Infobip {
	s := &Infobip{APIKey: randomHex(16) + "-" + randomHex(8), notify: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	return s
}

// BaseURL is what the sender's base_url should be.
func (s *Infobip) BaseURL() string { return s.URL }

// Fail sets how every following send fails; InfobipNone restores success.
func (s *Infobip) Fail(f InfobipFailure) {
	s.mu.Lock()
	s.failure = f
	s.mu.Unlock()
}

// Delay makes every following request wait d before it is answered (or until the client gives up).
func (s *Infobip) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// AutoReceipts makes every following accepted message with a delivery URL get these reports,
// in this order (so out of order or repeated if the steps are), each After the one before;
// none withholds them. A step's Status is a status name (DELIVERED_TO_HANDSET,
// UNDELIVERABLE_NOT_DELIVERED, ...) and its ErrorCode the error id. Like Infobip, the fake
// posts PENDING reports only to a message that asked for intermediate reports.
func (s *Infobip) AutoReceipts(steps ...ReceiptStep) {
	s.mu.Lock()
	s.receipts = steps
	s.mu.Unlock()
}

// SetAPIKey changes the account's API key while requests may be in flight, as an operator
// revoking it in the portal would.
func (s *Infobip) SetAPIKey(key string) {
	s.mu.Lock()
	s.APIKey = key
	s.mu.Unlock()
}

// Messages returns the messages accepted so far, oldest first.
func (s *Infobip) Messages() []InfobipMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]InfobipMessage(nil), s.messages...)
}

// WaitMessages waits until at least n messages were accepted and returns them all.
func (s *Infobip) WaitMessages(n int, timeout time.Duration) ([]InfobipMessage, error) {
	return waitFor(&s.mu, &s.notify, &s.messages, n, timeout, "infobip messages")
}

// Report is the delivery report of m with status (a name infobipStatuses knows) and errorID (0:
// no error), as Infobip posts it.
func (s *Infobip) Report(m InfobipMessage, status string, errorID int) map[string]any {
	st, ok := infobipStatuses[status]
	if !ok {
		panic(fmt.Sprintf("restcommtest: %q is not an Infobip status the fake knows", status))
	}
	errGroupID, errGroup, errName := 0, "OK", "NO_ERROR"
	if errorID != 0 {
		errGroupID, errGroup, errName = 1, "HANDSET_ERRORS", fmt.Sprintf("EC_%d", errorID)
	}
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000-0700")
	return map[string]any{"results": []any{map[string]any{
		"bulkId": m.BulkID, "messageId": m.MessageID, "to": m.To, "sender": m.Sender, "sentAt": now, "doneAt": now,
		"messageCount": 1, "price": map[string]any{"pricePerMessage": 0.01, "currency": "EUR"},
		"status": map[string]any{"groupId": st.group, "groupName": st.groupName, "id": st.id, "name": status, "description": status},
		"error":  map[string]any{"groupId": errGroupID, "groupName": errGroup, "id": errorID, "name": errName, "description": errName, "permanent": errorID != 0},
	}}}
}

// PostReceipt posts the report of m with status (and errorID) to its delivery URL now,
// unsigned as Infobip posts it, and returns the receiver's HTTP status (0 if it did not answer).
func (s *Infobip) PostReceipt(m InfobipMessage, status string, errorID int) int {
	return postJSON(m.DeliveryURL, s.Report(m, status, errorID), nil)
}

// infobipSend is the v3 request; unknown fields are refused.
type infobipSend struct {
	Messages []struct {
		Sender       string `json:"sender"`
		Destinations []struct {
			To        string `json:"to"`
			MessageID string `json:"messageId,omitempty"`
		} `json:"destinations"`
		Content struct {
			Text            string          `json:"text"`
			Transliteration string          `json:"transliteration,omitempty"`
			Language        json.RawMessage `json:"language,omitempty"`
		} `json:"content"`
		Options  json.RawMessage `json:"options,omitempty"`
		Webhooks *struct {
			Delivery *struct {
				URL                string `json:"url"`
				IntermediateReport bool   `json:"intermediateReport"`
				Notify             *bool  `json:"notify,omitempty"`
			} `json:"delivery,omitempty"`
			ContentType  string `json:"contentType,omitempty"`
			CallbackData string `json:"callbackData,omitempty"`
		} `json:"webhooks,omitempty"`
	} `json:"messages"`
}

var infobipNumber = regexp.MustCompile(`^\+?[1-9][0-9]{6,14}$`)

func (s *Infobip) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	failure, delay, steps, apiKey := s.failure, s.delay, append([]ReceiptStep(nil), s.receipts...), s.APIKey
	s.mu.Unlock()
	if !sleepCtx(r, delay) {
		return
	}
	if r.URL.Path != "/sms/3/messages" {
		infobipError(w, http.StatusNotFound, "E404", "Requested URL not found.", nil)
		return
	}
	if key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "App "); !ok || !equal(key, apiKey) {
		infobipError(w, http.StatusUnauthorized, "E401", "Invalid login details", nil)
		return
	}
	if r.Method != http.MethodPost {
		infobipError(w, http.StatusMethodNotAllowed, "E405", "Method not allowed", nil)
		return
	}
	switch failure {
	case InfobipDropConnection:
		dropConnection(w)
		return
	case InfobipTooManyRequests:
		infobipError(w, http.StatusTooManyRequests, "E429", "Too many requests", nil)
		return
	case InfobipInternalError:
		infobipError(w, http.StatusInternalServerError, "E500", "Something went wrong. Please contact support.", nil)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		infobipError(w, http.StatusUnsupportedMediaType, "E415", "Unsupported media type", nil)
		return
	}
	raw, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	var req infobipSend
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		infobipError(w, http.StatusBadRequest, "E400", "Bad request", []string{"body", err.Error()})
		return
	}
	switch {
	case len(req.Messages) != 1:
		infobipError(w, http.StatusBadRequest, "E400", "Bad request", []string{"messages", "the fake takes one message"})
		return
	case len(req.Messages[0].Destinations) == 0:
		infobipError(w, http.StatusBadRequest, "E400", "Bad request", []string{"messages[0].destinations", "must not be empty"})
		return
	case strings.TrimSpace(req.Messages[0].Content.Text) == "":
		infobipError(w, http.StatusBadRequest, "E400", "Bad request", []string{"messages[0].content.text", "must not be blank"})
		return
	case !infobipNumber.MatchString(req.Messages[0].Destinations[0].To):
		infobipError(w, http.StatusBadRequest, "E400", "Bad request", []string{"messages[0].destinations[0].to", "must be a number in international format"})
		return
	}
	in := req.Messages[0]
	m := InfobipMessage{MessageID: randomHex(12), BulkID: randomHex(10), Sender: in.Sender, To: in.Destinations[0].To,
		Text: in.Content.Text, Notify: true, Received: time.Now()}
	if in.Webhooks != nil && in.Webhooks.Delivery != nil {
		m.DeliveryURL, m.IntermediateReport = in.Webhooks.Delivery.URL, in.Webhooks.Delivery.IntermediateReport
		if in.Webhooks.Delivery.Notify != nil {
			m.Notify = *in.Webhooks.Delivery.Notify
		}
	}
	status := map[InfobipFailure]string{InfobipRejectedDestination: "REJECTED_DESTINATION", InfobipRejectedDND: "REJECTED_DND",
		InfobipNotEnoughCredits: "REJECTED_NOT_ENOUGH_CREDITS", InfobipRejectedSender: "REJECTED_SENDER"}[failure]
	if status == "" {
		status = "PENDING_ACCEPTED"
	}
	st := infobipStatuses[status]
	writeJSON(w, http.StatusOK, map[string]any{"bulkId": m.BulkID, "messages": []any{map[string]any{
		"messageId": m.MessageID, "destination": m.To, "details": map[string]any{"messageCount": 1},
		"status": map[string]any{"groupId": st.group, "groupName": st.groupName, "id": st.id, "name": status, "description": status},
	}}})
	if st.group != 1 {
		return // refused: not recorded, no reports
	}
	s.mu.Lock()
	s.messages = append(s.messages, m)
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	if m.DeliveryURL != "" && m.Notify {
		schedule(steps, func(step ReceiptStep) {
			if infobipStatuses[step.Status].group != 1 || m.IntermediateReport {
				s.PostReceipt(m, step.Status, step.ErrorCode)
			}
		})
	}
}

// infobipError writes the v3 error body; violation is a property and its violation, or nil.
func infobipError(w http.ResponseWriter, status int, code, description string, violation []string) {
	body := map[string]any{"errorCode": code, "description": description, "action": "Check the request", "resources": []any{}}
	if violation != nil {
		body["violations"] = []any{map[string]any{"property": violation[0], "violation": violation[1]}}
	}
	writeJSON(w, status, body)
}
