package caddyotp

import (
	"errors"
	"strings"
)

// The delivery states of a flow's code.
const (
	deliverySending       = "sending"       // handed to the outbox, no answer yet
	deliverySent          = "sent"          // accepted; a receipt is expected
	deliveryDelivered     = "delivered"     // the provider's receipt says so
	deliveryFailed        = "failed"        // not sent, or undelivered: retry, or another way
	deliveryMisconfigured = "misconfigured" // the site's provider setup is broken: the operator must act
	deliveryAccepted      = "unknown"       // accepted; no receipt expected, so what became of it stays unknown
)

// The rank of each state: a state is only ever replaced by one of a higher rank (Store.Raise),
// so that late, repeated or reordered answers and receipts never move it back.
var deliveryRank = map[string]byte{
	deliverySending: '0',
	deliverySent:    '1', deliveryAccepted: '1',
	deliveryDelivered: '2', deliveryFailed: '2', deliveryMisconfigured: '2',
}

// ranked is a state as the store keeps it: its rank, then its name.
func ranked(state string) []byte { return rankedWhy(state, "") }

// rankedWhy is a state with the reason of a failure that belongs to the visitor's number
// (SendError.Reason: invalid, landline, blocked), as the store keeps it.
func rankedWhy(state, reason string) []byte {
	v := append([]byte{deliveryRank[state]}, state...)
	if reason != "" {
		v = append(append(v, '/'), reason...)
	}
	return v
}

// stateWhy reads a state and its reason as the store keeps them (or, unranked, as it kept a
// state before).
func stateWhy(v []byte) (state, reason string) {
	if len(v) > 0 && v[0] >= '0' && v[0] <= '9' {
		v = v[1:]
	}
	state, reason, _ = strings.Cut(string(v), "/")
	return state, reason
}

// reasonOf is why a send failed, when the refusal belongs to the visitor's number.
func reasonOf(err error) string {
	var se *SendError
	if errors.As(err, &se) && se.Fault == NumberFault {
		return se.Reason
	}
	return ""
}

// terminal says whether nothing can follow state.
func terminal(state string) bool { return deliveryRank[state] == '2' }

// stateOf is the delivery state a provider's answer to a send makes.
func stateOf(err error) string {
	var se *SendError
	switch {
	case err == nil:
		return deliveryAccepted
	case errors.As(err, &se) && se.Fault == NumberFault: // the visitor's number: another number, or a call
		return deliveryFailed
	case errors.As(err, &se) && se.Fault != TemporaryFault:
		return deliveryMisconfigured
	default: // a sender that says nothing more: assume it may pass later
		return deliveryFailed
	}
}
