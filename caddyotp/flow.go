package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// flow is one pending verification, kept in the store under "flow:"+id. Its id is a random
// 256-bit value in an HttpOnly cookie, so a code is bound to the browser that asked for it.
type flow struct {
	Next    string `json:"next,omitempty"`    // where to go after sign-in: a local path
	User    string `json:"user,omitempty"`    // the first-factor user the phone is bound to, if any
	Phone   string `json:"phone,omitempty"`   // E.164, once a code was asked for
	Allowed bool   `json:"allowed,omitempty"` // whether Phone may sign in (if not, no SMS went out)
	Hash    []byte `json:"hash,omitempty"`    // codeHash of the live code; nil when there is none
	Expires int64  `json:"expires,omitempty"` // when the code dies, Unix ns
	Sent    int64  `json:"sent,omitempty"`    // when the code was issued, Unix ns
	Resends int    `json:"resends,omitempty"` // new codes asked for; a call is offered after one
}

// flowTTL bounds how long a flow is kept after its last change; its code dies sooner (code_ttl).
const flowTTL = 30 * time.Minute

// flowIDLen is the length of a flow id: 32 random bytes, base64url without padding.
const flowIDLen = 43

// randomToken returns 256 random bits, URL-safe: a flow id, or a voice script's token.
func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func validFlowID(s string) bool {
	if len(s) != flowIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func flowKey(id string) string { return "flow:" + id }

// loadFlow returns the flow with id, or nil if there is none (never made, expired or finished).
func (h *Handler) loadFlow(ctx context.Context, id string) (*flow, error) {
	b, err := h.store.Get(ctx, flowKey(id))
	if err != nil || b == nil {
		return nil, err
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil // unreadable state is no state: the visitor starts again
	}
	return &f, nil
}

func (h *Handler) saveFlow(ctx context.Context, id string, f *flow) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return h.store.Set(ctx, flowKey(id), b, flowTTL)
}

// issueCode gives the flow a new code, which kills the previous one, sends it by SMS when the
// phone may sign in, and saves the flow. When the send fails nothing is saved: the old state
// stands, and the error is a *SendError. For a phone that may not sign in the flow gets a code
// nobody knows, so every answer matches. It returns the provider's id for the message, if any.
func (h *Handler) issueCode(ctx context.Context, id string, f *flow, r *http.Request) (string, error) {
	return h.issue(ctx, id, f, metrics.smsSent, func(code string) (string, error) {
		return h.sender.Send(ctx, Message{To: f.Phone, Body: h.smsBody(code, r)})
	})
}

// issue is issueCode with the delivery (an SMS, a call) given, and the counter of its results.
func (h *Handler) issue(ctx context.Context, id string, f *flow, results *prometheus.CounterVec, deliver func(code string) (string, error)) (string, error) {
	code, err := newCode(h.CodeLength)
	if err != nil {
		return "", err
	}
	t := now()
	next := *f
	next.Hash = codeHash(h.keys.code, id, code)
	next.Sent = t.UnixNano()
	next.Expires = t.Add(time.Duration(h.CodeTTL)).UnixNano()
	var ref string
	if !next.Allowed {
		h.decoyDelay(ctx)
	} else {
		started := time.Now()
		ref, err = deliver(code)
		took := time.Since(started)
		metrics.senderDuration.Observe(took.Seconds())
		if err == nil {
			h.delivery.observe(took)
		}
		if err != nil {
			var se *SendError
			if !errors.As(err, &se) { // a sender that says nothing more: assume it may pass later
				se = &SendError{Provider: "sender", Temporary: true, Detail: err.Error()}
			}
			if se.Temporary {
				results.WithLabelValues("failed_temporary").Inc()
			} else {
				results.WithLabelValues("failed_permanent").Inc()
			}
			return "", se
		}
	}
	if err := h.saveFlow(ctx, id, &next); err != nil {
		return "", err
	}
	if next.Allowed {
		results.WithLabelValues("sent").Inc()
	} else {
		results.WithLabelValues("not_allowed").Inc()
	}
	*f = next
	return ref, nil
}

// deliveryTime is a moving average of how long accepted deliveries took, in ns: an answer for
// a number that may not sign in waits about as long, so response times do not tell them apart.
type deliveryTime struct{ ns atomic.Int64 }

func (d *deliveryTime) observe(took time.Duration) {
	for {
		old := d.ns.Load()
		next := int64(took)
		if old != 0 {
			next = old - old/8 + int64(took)/8
		}
		if d.ns.CompareAndSwap(old, next) {
			return
		}
	}
}

// decoyDelay waits for about the average delivery time (±20%), or until ctx ends.
func (h *Handler) decoyDelay(ctx context.Context) {
	avg := time.Duration(h.delivery.ns.Load())
	if avg <= 0 {
		return
	}
	d := avg*4/5 + time.Duration(mrand.Int64N(int64(avg)*2/5+1))
	h.wait(ctx, d)
}

// sleepCtx sleeps for d or until ctx ends: the handler's wait, which tests replace.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// smsBody fills the message (the operator's, or the default in the visitor's language) with
// {code}, {site} and {host} (which the Caddyfile writes as {http.request.host}), then any other
// request placeholder, and appends the origin-bound line "@host #code" that Safari and Chrome read
// to offer the code for autofill.
func (h *Handler) smsBody(code string, r *http.Request) string {
	host := smsHost(r)
	text := h.Message
	if text == "" {
		text = h.words(r)["sms"]
	}
	text = strings.NewReplacer("{code}", code, "{site}", h.siteName(r), "{host}", host, "{http.request.host}", host).Replace(text)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		text = repl.ReplaceKnown(text, "")
	}
	return text + "\n\n@" + host + " #" + code
}

// smsHost is the host the code is bound to. On HTTPS it is the TLS server name, which only a
// host Caddy holds a certificate for can be; the Host header is the client's to choose, and a
// code bound to a host of the attacker's choosing would autofill on the attacker's page.
func smsHost(r *http.Request) string {
	if r.TLS != nil && r.TLS.ServerName != "" {
		return strings.ToLower(r.TLS.ServerName)
	}
	host := r.Host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		host = hn
	}
	return strings.ToLower(host)
}

// verdict is the outcome of checking a code.
type verdict int

const (
	codeAccepted  verdict = iota
	codeWrong             // wrong code, attempts remain
	codeExpired           // no live code: never sent, past code_ttl, or already used
	codeExhausted         // max_attempts reached: the flow is void
)

func (v verdict) String() string {
	return [...]string{"accepted", "wrong", "expired", "exhausted"}[v]
}

// checkCode counts the attempt, then compares the code in constant time. A right code is
// consumed atomically (Store.Take), so it signs in exactly once even when raced.
func (h *Handler) checkCode(ctx context.Context, id string, f *flow, code string) (v verdict, left int, err error) {
	if f.Hash == nil || now().UnixNano() >= f.Expires {
		return codeExpired, 0, nil
	}
	attempts, err := h.store.Incr(ctx, "att:"+id+":"+hex.EncodeToString(f.Hash[:8]), time.Duration(h.CodeTTL))
	if err != nil {
		return 0, 0, err
	}
	if attempts > int64(h.MaxAttempts) {
		return codeExhausted, 0, h.store.Delete(ctx, flowKey(id))
	}
	if code == "" || !codeMatches(h.keys.code, id, code, f.Hash) {
		if err := h.failed(ctx, f.Phone); err != nil {
			return 0, 0, err
		}
		if attempts >= int64(h.MaxAttempts) {
			return codeExhausted, 0, h.store.Delete(ctx, flowKey(id))
		}
		return codeWrong, h.MaxAttempts - int(attempts), nil
	}
	b, err := h.store.Take(ctx, flowKey(id))
	if err != nil {
		return 0, 0, err
	}
	var taken flow
	if b == nil || json.Unmarshal(b, &taken) != nil || !hmac.Equal(taken.Hash, f.Hash) {
		return codeExpired, 0, nil // consumed by a concurrent request, or replaced by a resend
	}
	return codeAccepted, 0, h.succeeded(ctx, f.Phone)
}
