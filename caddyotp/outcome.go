package caddyotp

import "time"

// outcome is what a transition of a flow (or a sign-out) ended in: what the pages show.
type outcome struct {
	kind    outcomeKind
	wait    time.Duration // limited: how long until it may be asked again
	limit   string        // limited: which limit (ip, send, site, lockout, resend)
	locking bool          // limited: a wrong code that locked the phone or the address just now
	left    int           // wrong: tries left for this code
	flow    *flow         // wrong, expired: the flow, for the code page
	subject string        // verified: what the session is for
	key     string        // refused: which refusal; badPhone: which error
	input   string        // badPhone: what was typed
	err     error         // failed: the store could not answer
	begin   func()        // sent: the delivery's beginning, run once the answer is out (deliverAfter)
}

type outcomeKind int

const (
	sent      outcomeKind = iota // a code is on its way: the code page
	limited                      // a limit refused; nothing changed
	badPhone                     // not a phone number, or not a region codes may go to
	refused                      // users mode: no first factor, or no phone for the user
	busy                         // every sender is busy
	noFlow                       // nothing pending for this visitor: start again
	toCode                       // nothing to do (a call not offered yet): back to the code page
	wrong                        // a wrong code; tries remain
	expired                      // no live code: past code_ttl, used, or replaced
	exhausted                    // max_attempts reached: the flow is void
	verified                     // a right code
	signedOut                    // signed out (or nothing left to sign out)
	failed                       // the store could not answer: fail closed
)

func failedWith(err error) outcome { return outcome{kind: failed, err: err} }

func limitedBy(limit string, wait time.Duration, err error) outcome {
	if err != nil {
		return failedWith(err)
	}
	return outcome{kind: limited, limit: limit, wait: wait}
}

// verdict is a code check's result, for metrics, logs and events.
type verdict int

func (v verdict) String() string {
	return [...]string{"accepted", "wrong", "expired", "exhausted"}[v]
}

func (k outcomeKind) verdict() verdict {
	switch k {
	case wrong:
		return codeWrong
	case expired:
		return codeExpired
	case exhausted:
		return codeExhausted
	}
	return codeAccepted
}
