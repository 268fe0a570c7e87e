package restcommtest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ReceiptStep is one delivery receipt a fake posts to a message's StatusCallback: its
// MessageStatus (queued, sending, sent, delivered, undelivered, failed), its ErrorCode (30003
// unreachable, 30005 unknown destination, 30006 landline, 30007 filtered, 30008 unknown; 0 for
// none), and how long after the previous step (or the send) it goes out.
type ReceiptStep struct {
	Status    string
	ErrorCode int
	After     time.Duration
}

// receiptForm is the form a provider posts for one receipt of a message.
func receiptForm(accountSID, apiVersion, sid, from, to, body, status string, errorCode int, withBody bool) url.Values {
	form := url.Values{"MessageSid": {sid}, "SmsSid": {sid}, "MessageStatus": {status}, "SmsStatus": {status},
		"AccountSid": {accountSID}, "From": {from}, "To": {to}, "ApiVersion": {apiVersion}}
	if withBody { // Restcomm's receipts carry the message, code included
		form.Set("Body", body)
	}
	if errorCode != 0 {
		form.Set("ErrorCode", strconv.Itoa(errorCode))
	}
	return form
}

// Signature is the X-Twilio-Signature of a receipt posted to callback with form, signed with
// key: base64(HMAC-SHA1(key, callback + each field's name and value, sorted by name)).
func Signature(key, callback string, form url.Values) string {
	names := make([]string, 0, len(form))
	for name := range form {
		names = append(names, name)
	}
	sort.Strings(names)
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(callback))
	for _, name := range names {
		for _, v := range form[name] {
			m.Write([]byte(name + v))
		}
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// postReceipt sends one receipt and returns the receiver's HTTP status (0 if it did not answer).
// signature is sent as X-Twilio-Signature unless empty.
func postReceipt(callback string, form url.Values, signature string) int {
	req, err := http.NewRequest(http.MethodPost, callback, strings.NewReader(form.Encode()))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	if signature != "" {
		req.Header.Set("X-Twilio-Signature", signature)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// schedule posts steps one after the other in the background, each After the previous one;
// send posts one step.
func schedule(steps []ReceiptStep, send func(ReceiptStep)) {
	if len(steps) == 0 {
		return
	}
	go func() {
		for _, st := range steps {
			time.Sleep(st.After)
			send(st)
		}
	}()
}
