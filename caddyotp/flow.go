package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"
)

// flow is one pending verification, kept in the store under "flow:"+id from the moment a code
// is asked for. Its id is a random 256-bit value in a signed HttpOnly cookie (which also carries
// where to go after sign-in), so a code is bound to the browser that asked for it.
type flow struct {
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

// validToken says whether s has the shape of a randomToken.
func validToken(s string) bool {
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

// sleepCtx sleeps for d or until ctx ends: the handler's wait, which tests replace.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// smsBody returns the SMS for a code: the message (the operator's, or the default in the
// visitor's language) with {code}, {site} and {host} ({http.request.host} is how the Caddyfile
// writes {host}), and the origin-bound line "@host #code" that Safari and Chrome read to offer
// the code for autofill. Nothing in it comes from the request but the language.
func (h *Handler) smsBody(r *http.Request) func(code string) string {
	site, host := h.smsNames(r)
	text := h.Message
	if text == "" {
		text = h.words(r)["sms"]
		if site == "" {
			text = h.words(r)["sms_no_site"]
		}
	}
	bound := h.trustedHost(r)
	return func(code string) string {
		body := strings.NewReplacer("{code}", code, "{site}", site, "{host}", host, "{http.request.host}", host).Replace(text)
		if bound != "" {
			body += "\n\n@" + bound + " #" + code
		}
		return body
	}
}

// smsNames are what an SMS or a call calls the site: {site}, site_name else the trusted host;
// {host}, the trusted host else site_name. Either may be "" on plain HTTP without public_url.
func (h *Handler) smsNames(r *http.Request) (site, host string) {
	site, host = h.SiteName, h.trustedHost(r)
	if site == "" {
		site = host
	}
	if host == "" {
		host = site
	}
	return site, host
}

// trustedHost is the host the site is known by without believing the request alone:
// public_url's, else on HTTPS the TLS server name when the request is for that same host (a
// name Caddy holds a certificate for, and routed to this site). Otherwise it is "": the Host
// header, and the server name when it names another site, are the client's to choose, and a
// code bound to a host of the attacker's choosing would autofill on the attacker's page.
func (h *Handler) trustedHost(r *http.Request) string {
	if h.public != nil {
		return h.public.Hostname()
	}
	if r.TLS == nil || r.TLS.ServerName == "" {
		return ""
	}
	host := r.Host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		host = hn
	}
	if !strings.EqualFold(host, r.TLS.ServerName) {
		return ""
	}
	return strings.ToLower(r.TLS.ServerName)
}

// verdict is the outcome of checking a code.
type verdict int

const (
	codeAccepted  verdict = iota
	codeWrong             // wrong code, attempts remain
	codeExpired           // no live code: never sent, past code_ttl, or already used
	codeExhausted         // max_attempts reached: the flow is void
	codeLocked            // the lockout refused the check: the code was not compared
)

func (v verdict) String() string {
	return [...]string{"accepted", "wrong", "expired", "exhausted", "locked"}[v]
}

// checkCode counts the attempt against the lockout and the code's max_attempts, then compares
// the code in constant time. A right code is consumed atomically (Store.Take), so it signs in
// exactly once even when raced. For codeLocked it returns how long the lock lasts.
func (h *Handler) checkCode(ctx context.Context, id string, f *flow, client, code string) (v verdict, left int, wait time.Duration, err error) {
	if f.Hash == nil || now().UnixNano() >= f.Expires {
		return codeExpired, 0, 0, nil
	}
	n, wait, err := h.countTry(ctx, f.Phone, client)
	if err != nil || wait > 0 {
		return codeLocked, 0, wait, err
	}
	attempts, err := h.store.Incr(ctx, "att:"+id+":"+hex.EncodeToString(f.Hash[:8]), time.Duration(h.CodeTTL))
	if err != nil {
		return 0, 0, 0, err
	}
	if attempts > int64(h.MaxAttempts) {
		return codeExhausted, 0, 0, h.store.Delete(ctx, flowKey(id))
	}
	if code == "" || !codeMatches(h.keys.code, id, code, f.Hash) {
		if err := h.tryFailed(ctx, f.Phone, client, n); err != nil {
			return 0, 0, 0, err
		}
		if attempts >= int64(h.MaxAttempts) {
			return codeExhausted, 0, 0, h.store.Delete(ctx, flowKey(id))
		}
		return codeWrong, h.MaxAttempts - int(attempts), 0, nil
	}
	b, err := h.store.Take(ctx, flowKey(id))
	if err != nil {
		return 0, 0, 0, err
	}
	var taken flow
	if b == nil || json.Unmarshal(b, &taken) != nil || !hmac.Equal(taken.Hash, f.Hash) {
		return codeExpired, 0, 0, nil // consumed by a concurrent request, or replaced by a resend
	}
	return codeAccepted, 0, 0, h.trySucceeded(ctx, f.Phone, client)
}
