package caddyotp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sender delivers one text message to one phone number. Once the provider has accepted it,
// Send says what happened (Sent); otherwise it returns an error, a *SendError saying whose fault
// it is. Implementations must never put credentials or the message body in an error.
type Sender interface {
	Send(ctx context.Context, msg Message) (Sent, error)
}

// Sent is what became of a message (or a call) a provider accepted.
type Sent struct {
	ID string // the provider's id for the message, "" if it has none
	// Provider names the provider that took it: the sender's own name ("twilio"), or the name a
	// failover gave the sender it picked. Receipts are read with the sender of that name.
	Provider string
	// Receipts says whether the provider was asked to post delivery receipts to the URL that
	// Message.Receipts gave for Provider.
	Receipts bool
}

// Caller is a Sender that can also place a voice call. The provider fetches what to say from
// script, a URL the gate serves. Its answers are as Send's.
type Caller interface {
	// VoiceEnabled says whether the operator turned calls on.
	VoiceEnabled() bool
	Call(ctx context.Context, to, script string) (Sent, error)
}

// withholdingTold is a Sender told of each code the gate withholds from a number that may not
// sign in (which the visitor is never told). Only the development log sender is one.
type withholdingTold interface {
	Withheld(to, channel, why string)
}

// Message is one text message to send.
type Message struct {
	To   string // E.164, e.g. +12015550123
	Body string // holds the code: a secret
	Code string // the code alone, for a sender that shows it (the development log sender); a secret
	// How long the code lives (code_ttl): a provider that can drop an undelivered message after
	// a while (Twilio's ValidityPeriod) is told so. 0 means unbounded.
	Validity time.Duration
	// Receipts, when not nil, gives the URL where a provider is to post its delivery receipts
	// for this message: Receipts(provider) for the provider named as in Sent.Provider. A sender
	// that asks its provider for receipts gives it that URL and says so in Sent.Receipts. It is
	// nil when the gate takes no receipts (no public_url). The URL is a secret: never log it.
	Receipts func(provider string) string
}

// ReceiptReader is a Sender whose provider posts delivery receipts.
type ReceiptReader interface {
	// ReceiptsEnabled says whether this sender asks for receipts.
	ReceiptsEnabled() bool
	// ReadReceipt reads the receipt r posted to callback, the URL exactly as Message.Receipts
	// gave it for the provider named provider; r's body is bounded. It says what the receipt
	// reports, or ErrForgedReceipt if it is not the provider's (a signature that does not
	// verify), or another error if it cannot be read. A provider that does not sign its receipts
	// (Restcomm) has the callback's unguessable token as their only authentication.
	ReadReceipt(r *http.Request, provider, callback string) (Receipt, error)
}

// Receipt is what a delivery receipt reports.
type Receipt struct {
	Status ReceiptStatus
	// Reason is the provider's word for a failure (ReceiptFailed), bounded and secret-free, for
	// the log; "" if it gives none.
	Reason string
}

// ReceiptStatus is what a receipt says became of a message.
type ReceiptStatus int

const (
	ReceiptPending   ReceiptStatus = iota // nothing new (queued, accepted, sending), or a status the sender does not know
	ReceiptSent                           // handed to the carrier
	ReceiptDelivered                      // on the phone
	ReceiptFailed                         // it will not arrive
)

// ErrForgedReceipt is a receipt whose signature does not verify.
var ErrForgedReceipt = errors.New("the receipt's signature does not verify")

// SendError is a provider's refusal or failure; its Fault says whose it is.
type SendError struct {
	Provider string
	Status   int // the provider's HTTP status, 0 if there was no answer
	Fault    Fault
	Reason   string // NumberFault: which refusal, "invalid", "landline" or "blocked"; else ""
	Detail   string // a bounded, secret-free description for the log
	// Account says that the account itself refused (its credentials, a suspension, no credit),
	// so that every message fails until the operator acts: a failover's breaker counts it as
	// it counts a 401 or 403, for providers that answer such refusals inside a 200.
	Account bool
}

// Fault is whose fault a failed send is, which says what may fix it.
type Fault int

const (
	// ConfigFault: the sender's configuration (credentials, permissions, from), which the
	// operator must fix. A SendError that says nothing more is one.
	ConfigFault Fault = iota
	// TemporaryFault: the same message may go through later (5xx, 429, a timeout, a dropped
	// connection).
	TemporaryFault
	// NumberFault: the visitor's number (not a valid number, not a mobile, the recipient opted
	// out): another provider would refuse it too.
	NumberFault
	// DestinationFault: a configuration fault that only some numbers meet (a region the account
	// may not text): failover moves on, as for any configuration fault, but it does not count
	// against the provider's breaker, since whoever types such numbers could otherwise open it
	// for everyone.
	DestinationFault
)

func (f Fault) String() string {
	switch f {
	case TemporaryFault:
		return "temporary"
	case NumberFault:
		return "number"
	case DestinationFault:
		return "destination"
	}
	return "configuration"
}

func (e *SendError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Provider, e.Detail)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Provider, e.Status, e.Detail)
}
