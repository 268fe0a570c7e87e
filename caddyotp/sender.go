package caddyotp

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// Sender delivers one text message to one phone number. It returns the provider's id for the
// message (empty if it has none) once the provider has accepted it, and an error otherwise; a
// *SendError says whether trying again later may help. Implementations must never put
// credentials or the message body in an error.
type Sender interface {
	Send(ctx context.Context, msg Message) (id string, err error)
}

// Caller is a Sender that can also place a voice call. The provider fetches what to say from
// script, a URL the gate serves; Call returns the provider's id for the call. Errors are as Send's.
type Caller interface {
	// VoiceEnabled says whether the operator turned calls on.
	VoiceEnabled() bool
	Call(ctx context.Context, to, script string) (id string, err error)
}

// Message is one text message to send.
type Message struct {
	To   string // E.164, e.g. +12015550123
	Body string // holds the code: a secret
	Code string // the code alone, for a sender that shows it (the development log sender); a secret
	// Where the provider posts delivery receipts (public_url + P/receipt/{token}), or "" for
	// none. Only a sender that implements Receipts is given one.
	StatusCallback string
	// How long the code lives (code_ttl): a provider that can drop an undelivered message after
	// a while (Twilio's ValidityPeriod) is told so. 0 means unbounded.
	Validity time.Duration

	// attempt, if set, is told by a failover which of its senders is about to be handed the
	// message (via) and whether that one asks for receipts, before it is: so that the log names
	// the provider that sent, and a receipt is checked with that provider's key.
	attempt func(ctx context.Context, via int, receipts bool) error
}

// Receipts is a Sender whose provider posts delivery receipts to Message.StatusCallback.
type Receipts interface {
	// ReceiptsEnabled says whether this sender asks for receipts.
	ReceiptsEnabled() bool
	// VerifyReceipt says whether a receipt posted to callback (the URL exactly as it was given
	// to the provider), with the form fields form and the X-Twilio-Signature header signature,
	// comes from the provider. A provider that does not sign its receipts (Restcomm) accepts
	// any: the callback's unguessable token is then what authenticates it.
	VerifyReceipt(callback string, form url.Values, signature string) bool
}

// SendError is a provider's refusal or failure.
type SendError struct {
	Provider  string
	Status    int  // the provider's HTTP status, 0 if there was no answer
	Temporary bool // true when the same message may go through later (5xx, 429, timeout, dropped connection)
	// Number is true when the refusal belongs to the visitor's number (not a valid number, not
	// a mobile, the recipient opted out): another provider would refuse it too. Neither
	// Temporary nor Number: a configuration fault (credentials, permissions) the operator must fix.
	Number bool
	// Destination is true for a configuration fault that only some numbers meet (a region the
	// account may not text): failover moves on, as for any configuration fault, but it does not
	// count against the provider's breaker, since whoever types such numbers could otherwise
	// open it for everyone.
	Destination bool
	Reason      string // Number: which refusal, "invalid", "landline" or "blocked"; else ""
	Detail      string // a bounded, secret-free description for the log
}

func (e *SendError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Provider, e.Detail)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Provider, e.Status, e.Detail)
}
