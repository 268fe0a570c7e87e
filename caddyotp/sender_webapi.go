package caddyotp

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// What the vonage, plivo and telnyx senders share besides restClient (sender_rest.go): the
// statuses every provider means the same by, base_url's check, and the number as digits.

// httpTrouble is the SendError of an HTTP status every provider means the same by: 429 and 5xx
// are temporary (with how long to wait, when the answer says). It is nil for other statuses.
func httpTrouble(status int, header http.Header) *SendError {
	switch {
	case status == http.StatusTooManyRequests:
		return &SendError{Status: status, Fault: TemporaryFault, Detail: "too many requests" + retryAfter(header)}
	case status >= 500:
		return &SendError{Status: status, Fault: TemporaryFault, Detail: "provider failure" + retryAfter(header)}
	}
	return nil
}

// sameText compares two strings in constant time (for their contents; lengths may leak).
func sameText(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// withoutPlus is an E.164 number as the APIs that want digits only take it: 12015550123.
func withoutPlus(number string) string { return strings.TrimPrefix(number, "+") }
