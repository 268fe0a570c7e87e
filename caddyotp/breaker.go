package caddyotp

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

// The circuit breaker of each provider of a failover sender, one for SMS and one for calls:
// after breakerFailures failures of the provider's own in a row a provider is skipped for
// breakerOpen, then tried once; an answer closes it again.
const (
	breakerFailures = 3
	breakerOpen     = time.Minute
)

// breaker is one provider's circuit breaker for one channel. Only the provider's own trouble
// counts against it (providerTrouble): a refusal that belongs to the number, or to the request,
// is the typist's choice, and counting it would let whoever types numbers open it for everyone.
type breaker struct {
	mu       sync.Mutex
	failures int       // of the provider's own, in a row
	openTill time.Time // skipped until then
	trial    bool      // the one trial after an open period is under way
}

// allow says whether the provider may be tried now, and whether this try is the one trial:
// the breaker is closed, or its open period is over and nobody else is making the trial.
// Every try ends in exactly one call of settle, told whether it was the trial.
func (b *breaker) allow(now time.Time) (ok, trial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < breakerFailures {
		return true, false
	}
	if now.Before(b.openTill) || b.trial {
		return false, false
	}
	b.trial = true
	return true, true
}

// An attempt's end, as the breaker counts it.
type attemptEnd int

const (
	answered attemptEnd = iota // the provider works: it accepted, or refused the number or the request
	troubled                   // the provider's own trouble (providerTrouble), or a panic of its sender
)

// settle ends a try: the one place a trial ends, whatever became of it. The third failure in a
// row (or a failed trial) opens the breaker for breakerOpen.
func (b *breaker) settle(now time.Time, end attemptEnd, trial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if trial {
		b.trial = false
	}
	switch end {
	case answered:
		b.failures = 0
	case troubled:
		b.failures++
		if b.failures >= breakerFailures {
			b.openTill = now.Add(breakerOpen)
		}
	}
}

// providerTrouble says whether err is the provider's own trouble, the only kind a breaker
// counts: no answer (a timeout, a dropped connection), 5xx, 429, and 401/403 or a refusal of the
// account in any answer (SendError.Account: its credentials, a suspension, no credit). A sender's error that says nothing more is taken as trouble.
func providerTrouble(err error) bool {
	var se *SendError
	if !errors.As(err, &se) {
		return true
	}
	return se.Fault == TemporaryFault || se.Fault == ConfigFault && (se.Account || se.Status == http.StatusUnauthorized || se.Status == http.StatusForbidden)
}
