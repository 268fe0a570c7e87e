package caddyotp

import (
	"context"
	"fmt"
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
}

// SendError is a provider's refusal or failure.
type SendError struct {
	Provider  string
	Status    int    // the provider's HTTP status, 0 if there was no answer
	Temporary bool   // true when the same message may go through later (5xx, timeout, dropped connection)
	Detail    string // a bounded, secret-free description for the log
}

func (e *SendError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Provider, e.Detail)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Provider, e.Status, e.Detail)
}
