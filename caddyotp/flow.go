package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"time"
)

// flow is one pending verification, kept in the store under flowKey from the moment a code is
// asked for. Its id is a random 256-bit value in a signed HttpOnly cookie (which also carries
// where to go after sign-in), so a code is bound to the browser that asked for it. Its states
// and transitions are drawn in docs/ARCHITECTURE.md.
type flow struct {
	User    string `json:"user,omitempty"`    // the first-factor user the phone is bound to, if any
	Phone   string `json:"phone,omitempty"`   // E.164
	Allowed bool   `json:"allowed,omitempty"` // whether Phone may sign in (if not, no SMS goes out)
	Hash    []byte `json:"hash,omitempty"`    // codeHash of the live code; nil when there is none
	Expires int64  `json:"expires,omitempty"` // when the code dies, Unix ns
	Sent    int64  `json:"sent,omitempty"`    // when the code was issued, Unix ns
	Resends int    `json:"resends,omitempty"` // new codes asked for; a call is offered after one
}

// flowCookieTTL is how long a flow cookie is kept: it holds the flow's id and where to go after
// sign-in, and nothing is stored for it until a code is asked for.
const flowCookieTTL = 30 * time.Minute

// flowKeep is how long a flow is kept after its last code, which lives codeTTL: twice that,
// so that the code page can still say the code expired and offer another, and no longer, so
// that what a visitor who asked for codes leaves in the store is bounded by the limits on
// asking (ip_limit by address and range).
func flowKeep(codeTTL time.Duration) time.Duration { return 2 * codeTTL }

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

// flows are the gate's pending verifications and their transitions.
type flows struct {
	store       Store
	limits      *limits
	allow       *allowlist
	codeKey     []byte
	codeLength  int
	codeTTL     time.Duration
	maxAttempts int
	message     string // the operator's SMS template, or "" for the catalog's
	siteName    string
	deliveries  *deliveries
	voice       *voiceScripts // nil unless the sender calls and public_url is set
	now         func() time.Time
	obs         *observer
}

// load returns the flow with id, or nil if there is none (never made, expired or finished).
func (fl *flows) load(ctx context.Context, id string) (*flow, error) {
	return loadFlowAt(ctx, fl.store, id)
}

// loadFlowAt returns the flow with id in store, or nil if there is none.
func loadFlowAt(ctx context.Context, store Store, id string) (*flow, error) {
	if id == "" {
		return nil, nil
	}
	b, err := store.Get(ctx, flowKey(id))
	if err != nil || b == nil {
		return nil, err
	}
	var f flow
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil // unreadable state is no state: the visitor starts again
	}
	return &f, nil
}

// saveFlow keeps flow f under id for ttl.
func saveFlow(ctx context.Context, store Store, id string, f *flow, ttl time.Duration) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return store.Set(ctx, flowKey(id), b, ttl)
}

// pending is the visitor's flow, if the visitor may act on it: a user's flow needs that user
// from the first factor, and its code on the way to that user's phone.
func (fl *flows) pending(ctx context.Context, v *visit) (*flow, error) {
	f, err := fl.load(ctx, v.flowID)
	if err != nil || f == nil || f.Phone == "" || f.User != "" && (v.user != f.User || fl.allow.users[f.User] != f.Phone) {
		return nil, err
	}
	return f, nil
}

// shown is the pending flow and the delivery state of its code (and, for a failure that
// belongs to the number, its reason), for the code page and GET P/status.
func (fl *flows) shown(ctx context.Context, v *visit) (f *flow, state, reason string, err error) {
	if f, err = fl.pending(ctx, v); err != nil || f == nil {
		return nil, "", "", err
	}
	state, reason, err = fl.deliveries.stateWhy(ctx, v.flowID, f)
	return f, state, reason, err
}

// start is POST /send: a fresh flow for the phone typed (input; national digits are read in
// region, the country chosen beside the field, which must be one codes may go to, else in
// default_region; a +country typed wins), or in users mode for the signed-in user's phone, and
// a code to it, once the limits allow.
func (fl *flows) start(ctx context.Context, v *visit, input, region string) outcome {
	if wait, err := fl.limits.countAddressAndRange(ctx, v.client); err != nil || wait > 0 {
		return limitedBy("ip", wait, err)
	}
	f := &flow{}
	if fl.allow.bound(v.user) {
		phone, refusal := fl.allow.userPhone(v.user)
		if refusal != "" {
			return outcome{kind: refused, key: refusal}
		}
		if !fl.allow.region(regionOf(phone)) {
			return outcome{kind: badPhone, key: "err_region"}
		}
		f.User, f.Phone = v.user, phone // the code goes to the user's phone, whatever was typed
	} else {
		home := fl.allow.defaultRegion
		if region != "" {
			if fl.allow.regions == nil || !fl.allow.regions[region] {
				return outcome{kind: badPhone, key: "err_bad_region", input: input}
			}
			home = region
		}
		phone, region, err := normalizePhone(input, home)
		if err != nil {
			return outcome{kind: badPhone, key: "err_not_phone", input: input}
		}
		if !fl.allow.region(region) {
			return outcome{kind: badPhone, key: "err_region", input: input}
		}
		f.Phone = phone
	}
	return fl.sendCode(ctx, v, f, "sms")
}

// again is POST /resend (channel "sms") or POST /call: a new code for the pending flow, by SMS
// or by a call, on the terms of a new code and the allowlist and regions in force now. A phone
// that may no longer sign in gets a code nobody knows, as at the start.
func (fl *flows) again(ctx context.Context, v *visit, channel string) outcome {
	f, err := fl.pending(ctx, v)
	if err != nil {
		return failedWith(err)
	}
	if f == nil {
		return outcome{kind: noFlow}
	}
	if channel == "call" && fl.voice == nil {
		return outcome{kind: toCode}
	}
	if channel == "call" && f.Resends == 0 { // a call is offered once a code was resent, or could not be delivered
		state, err := fl.deliveries.state(ctx, v.flowID, f)
		if err != nil {
			return failedWith(err)
		}
		if state != deliveryFailed {
			return outcome{kind: toCode}
		}
	}
	if wait, err := fl.limits.countAddressAndRange(ctx, v.client); err != nil || wait > 0 {
		return limitedBy("ip", wait, err)
	}
	if !fl.allow.region(regionOf(f.Phone)) {
		return outcome{kind: badPhone, key: "err_region"}
	}
	if channel == "sms" {
		f.Resends++
	}
	return fl.sendCode(ctx, v, f, channel)
}

// sendCode gives flow f a new code and hands its delivery to the background (deliveries.queue):
// once a slot of the outbox is free for this client, so that a code that cannot go out now
// uses up no limit, and once the limits on new codes allow. The code goes out only if the
// phone may receive it now (mayReceive); else it follows the simulated course.
func (fl *flows) sendCode(ctx context.Context, v *visit, f *flow, channel string) outcome {
	f.Allowed = fl.mayReceive(f, channel)
	slot := v.client
	if !fl.deliveries.outbox.reserve(slot) {
		fl.obs.busy()
		return outcome{kind: busy}
	}
	if wait, limit, err := fl.limits.admitCode(ctx, f.Phone, v.client, v.gate); err != nil || wait > 0 {
		fl.deliveries.outbox.release(slot)
		if limit == "site" && err == nil {
			fl.deliveries.shield.budgetReached()
		}
		return limitedBy(limit, wait, err)
	}
	fl.deliveries.shield.asked(f.Phone)
	send := fl.smsSender(v, f.Phone)
	if channel == "call" {
		send = fl.voice.caller(f.Phone, v.lang, fl.site(v))
	}
	begin, err := fl.deliveries.queue(ctx, v.flowID, f, channel, v.client, slot, send)
	if err != nil {
		return failedWith(err)
	}
	return outcome{kind: sent, begin: begin}
}

// mayReceive says whether flow f's phone may be sent a code by channel: a first-factor user's
// phone, or one the allowlist in force now lets sign in, and of a type that channel may reach
// (deliverable). Both are judged for every number, so that the work tells none apart.
func (fl *flows) mayReceive(f *flow, channel string) bool {
	reachable, allowed := deliverable(f.Phone, channel), fl.allow.phones.allows(f.Phone)
	return (f.User != "" || allowed) && reachable
}

// check is POST /verify: it counts the try against the lockout and the code's max_attempts,
// then compares the code in constant time. A right code is consumed atomically (Store.Take), so
// it signs in exactly once even when raced.
func (fl *flows) check(ctx context.Context, v *visit, code string) outcome {
	if wait, err := fl.limits.countAddress(ctx, v.client); err != nil || wait > 0 {
		return limitedBy("ip", wait, err)
	}
	f, err := fl.pending(ctx, v)
	if err != nil {
		return failedWith(err)
	}
	if f == nil {
		return outcome{kind: noFlow}
	}
	o := fl.compare(ctx, v, f, code)
	switch o.kind {
	case verified:
		fl.obs.verified(f.Phone, v.client)
	case wrong, expired, exhausted:
		fl.obs.codeFailed(f.Phone, o.kind.verdict(), o.left, v.client)
	case limited:
		if o.locking { // still a wrong code, whose page tells of the lock
			fl.obs.codeFailed(f.Phone, codeWrong, o.left, v.client)
		}
	}
	return o
}

func (fl *flows) compare(ctx context.Context, v *visit, f *flow, code string) outcome {
	if f.Hash == nil || fl.now().UnixNano() >= f.Expires {
		return outcome{kind: expired, flow: f}
	}
	n, wait, err := fl.limits.countTry(ctx, f.Phone, v.client)
	if err != nil || wait > 0 {
		o := limitedBy("lockout", wait, err)
		o.flow = f
		return o
	}
	attempts, err := fl.store.Incr(ctx, attemptsKey(v.flowID, f.Hash), fl.codeTTL)
	if err != nil {
		return failedWith(err)
	}
	if attempts > int64(fl.maxAttempts) {
		return fl.void(ctx, v.flowID)
	}
	if code == "" || !codeMatches(fl.codeKey, v.flowID, code, f.Hash) {
		locked, err := fl.limits.tryFailed(ctx, f.Phone, v.client, n)
		if err != nil {
			return failedWith(err)
		}
		if locked {
			// This wrong code locked the number: no tries count, the lock is what there is to say.
			return outcome{kind: limited, limit: "lockout", wait: time.Duration(fl.limits.lockout.Window), flow: f, locking: true, left: max(0, fl.maxAttempts-int(attempts))}
		}
		if attempts >= int64(fl.maxAttempts) {
			return fl.void(ctx, v.flowID)
		}
		// The fewer of the code's tries and the lockout's: the page never tells of a try the lock refuses.
		return outcome{kind: wrong, left: min(fl.maxAttempts-int(attempts), fl.limits.triesLeft(n)), flow: f}
	}
	b, err := fl.store.Take(ctx, flowKey(v.flowID))
	if err != nil {
		return failedWith(err)
	}
	var taken flow
	if b == nil || json.Unmarshal(b, &taken) != nil || !hmac.Equal(taken.Hash, f.Hash) {
		return outcome{kind: expired, flow: f} // consumed by a concurrent request, or replaced by a resend
	}
	if err := fl.limits.trySucceeded(ctx, f.Phone, v.client); err != nil {
		return failedWith(err)
	}
	if err := fl.deliveries.shield.forget(ctx, f); err != nil { // a verified code is no pumping
		fl.obs.storeFailed(err) // the code was right: the visitor signs in
	}
	return outcome{kind: verified, subject: subjectOf(f)}
}

// void ends a flow whose code had its max_attempts.
func (fl *flows) void(ctx context.Context, id string) outcome {
	if err := fl.store.Delete(ctx, flowKey(id)); err != nil {
		return failedWith(err)
	}
	return outcome{kind: exhausted}
}

// end removes a flow: signed out, or done.
func (fl *flows) end(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	return fl.store.Delete(ctx, flowKey(id))
}

const (
	codeAccepted  verdict = iota
	codeWrong             // wrong code, attempts remain
	codeExpired           // no live code: never sent, past code_ttl, or already used
	codeExhausted         // max_attempts reached: the flow is void
)

// site is what an SMS or a call calls the site: site_name, else the host the site is known by.
func (fl *flows) site(v *visit) string {
	if fl.siteName != "" {
		return fl.siteName
	}
	return v.host
}

// smsSiteBudget is how many characters the site's name and host may take together in the
// default SMS with a 6-digit code, for it to stay one segment in every language: Spanish
// ("código") is UCS-2, 70 characters a segment; the others are GSM-7, 160.
const smsSiteBudget = 33
