package caddyotp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// A code is handed to the provider in the background, after the visitor got the answer: so the
// answer takes as long for a number that may sign in as for one that may not, whatever the
// provider does. What became of it is the flow's delivery state, which the code page and
// GET P/status show. A number that may not sign in follows a simulated course, drawn from what
// recent real deliveries did, so that the state tells the numbers apart no better than timing.

// The delivery states of a flow's code.
const (
	deliverySending       = "sending"       // handed to the outbox, no answer yet
	deliverySent          = "sent"          // accepted; a receipt is expected
	deliveryDelivered     = "delivered"     // the provider's receipt says so
	deliveryFailed        = "failed"        // not sent, or undelivered: retry, or another way
	deliveryMisconfigured = "misconfigured" // the site's provider setup is broken: the operator must act
	deliveryUnknown       = "unknown"       // accepted; no receipt expected
)

// deliveryTimeout bounds a background delivery, the provider's own timeout included.
const deliveryTimeout = time.Minute

// outboxSize bounds the deliveries in flight for one gate; past it /send answers 503, for every
// number alike.
const outboxSize = 128

var errOutboxFull = errors.New("every sender is busy")

// outbox runs deliveries in the background, at most its size at once.
type outbox struct{ slots chan struct{} }

func newOutbox(size int) *outbox { return &outbox{slots: make(chan struct{}, size)} }

// reserve takes a slot, or says there is none.
func (o *outbox) reserve() bool {
	select {
	case o.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// release gives back a reserved slot that was not used.
func (o *outbox) release() { <-o.slots }

// run runs job in the background on a reserved slot, which it gives back when done.
func (o *outbox) run(job func()) {
	go func() {
		defer o.release()
		job()
	}()
}

// deliveries hand codes to the sender in the background and keep their states.
type deliveries struct {
	store      Store
	limits     *limits // to end a phone's cooldown when its code could not be sent
	sender     Sender
	outbox     *outbox
	health     *health
	codeKey    []byte
	codeLength int
	codeTTL    time.Duration
	wait       func(ctx context.Context, d time.Duration) // how simulated deliveries wait
	now        func() time.Time
	obs        *observer
}

// delivery is one code on its way: by SMS or by call (send), or simulated (allowed false).
type delivery struct {
	flowID  string
	flow    flow // as saved with the code
	code    string
	client  string // the address that asked, for the log
	channel string // "sms" or "call"
	send    func(ctx context.Context, code string) (ref string, err error)
}

// state is the delivery state of the live code of flow f, or "" if it has none.
func (ds *deliveries) state(ctx context.Context, flowID string, f *flow) (string, error) {
	if f.Hash == nil {
		return "", nil
	}
	v, err := ds.store.Get(ctx, deliveryKey(flowID, f.Hash))
	if err != nil || v == nil {
		return deliveryUnknown, err // outlived by its flow: whatever became of it is past
	}
	return string(v), nil
}

// run runs in the background: it sends (or simulates), reports, and records the state.
func (ds *deliveries) run(d delivery) {
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	var ref, state string
	var err error
	var took time.Duration
	if d.flow.Allowed {
		started := time.Now()
		ref, err = d.send(ctx, d.code)
		took = time.Since(started)
		state = stateOf(err)
		ds.health.record(result{took: took, state: state})
	} else {
		o := ds.health.sample()
		ds.wait(ctx, o.took)
		state = o.state
	}
	// Reported, and the cooldown ended, before the state shows: whoever sees it may act on it.
	ds.obs.delivered(d, ref, state, took, err)
	if state == deliveryFailed || state == deliveryMisconfigured {
		if err := ds.limits.endCooldown(ctx, d.flow.Phone); err != nil {
			ds.obs.storeFailed(err)
		}
	}
	if err := ds.store.Set(ctx, deliveryKey(d.flowID, d.flow.Hash), []byte(state), ds.codeTTL); err != nil {
		ds.obs.storeFailed(err)
	}
}

// stateOf is the delivery state a provider's answer to a send makes.
func stateOf(err error) string {
	var se *SendError
	switch {
	case err == nil:
		return deliveryUnknown
	case errors.As(err, &se) && !se.Temporary:
		return deliveryMisconfigured
	default: // a sender that says nothing more: assume it may pass later
		return deliveryFailed
	}
}

// result is what one real delivery did: how long the provider took, and the state it made.
type result struct {
	took  time.Duration
	state string
}

// health remembers the last real deliveries through one sender, so that a simulated course can
// be drawn from the real ones: their spread of times, and their failures when the provider
// fails. The state is drawn from the last few (healthRecent), so that it follows the provider's
// current health; the time from the many of that state, so that a burst of slow ones does not
// shape it. It outlives config reloads (healthPool), so that the first answers after a reload are
// drawn like the others.
type health struct {
	mu   sync.Mutex
	ring [256]result
	n    int // deliveries recorded, at most len(ring) of them kept
}

// healthRecent is how many of the last deliveries the simulated state is drawn from.
const healthRecent = 16

// defaultOutcome is the simulated course before any real delivery was seen.
var defaultResult = result{took: 400 * time.Millisecond, state: deliveryUnknown}

func (h *health) record(o result) {
	h.mu.Lock()
	h.ring[h.n%len(h.ring)] = o
	h.n++
	h.mu.Unlock()
}

// sample draws a simulated outcome: the state of one of the last healthRecent deliveries, and
// the time of one of the remembered deliveries that ended in that state.
func (h *health) sample() result {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		d := defaultResult
		d.took = d.took/2 + time.Duration(mrand.Int64N(int64(d.took)))
		return d
	}
	kept := min(h.n, len(h.ring))
	o := h.ring[(h.n-1-mrand.IntN(min(kept, healthRecent)))%len(h.ring)]
	for range 64 { // most often the first or second pick has the state
		if other := h.ring[mrand.IntN(kept)]; other.state == o.state {
			return other
		}
	}
	return o
}

func (*health) Destruct() error { return nil }

// healthPool keeps each sender's health by its configuration.
var healthPool = caddy.NewUsagePool()

// healthKey names a sender's health by its configuration (hashed: it may hold a token).
func healthKey(senderRaw []byte) string {
	sum := sha256.Sum256(senderRaw)
	return "otp.health." + hex.EncodeToString(sum[:])
}

// start gives flow f a new code, which kills the previous one, saves the flow with its
// delivery "sending", and hands the delivery to the outbox: send when the phone may sign in,
// else the simulated course. For a phone that may not sign in the flow gets a code nobody
// knows, so every answer matches. With every slot of the outbox taken it saves nothing and
// returns errOutboxFull, for every number alike.
func (ds *deliveries) start(ctx context.Context, id string, f *flow, channel, client string, send func(ctx context.Context, code string) (string, error)) error {
	if !ds.outbox.reserve() {
		return errOutboxFull
	}
	code, err := newCode(ds.codeLength)
	if err != nil {
		ds.outbox.release()
		return err
	}
	t := ds.now()
	next := *f
	next.Hash = codeHash(ds.codeKey, id, code)
	next.Sent = t.UnixNano()
	next.Expires = t.Add(ds.codeTTL).UnixNano()
	if err := ds.store.Set(ctx, deliveryKey(id, next.Hash), []byte(deliverySending), ds.codeTTL); err != nil {
		ds.outbox.release()
		return err
	}
	if err := saveFlow(ctx, ds.store, id, &next); err != nil {
		ds.outbox.release()
		return err
	}
	*f = next
	ds.outbox.run(func() {
		ds.run(delivery{flowID: id, flow: next, code: code, client: client, channel: channel, send: send})
	})
	return nil
}

var _ caddy.Destructor = (*health)(nil)

// sleepCtx sleeps for d or until ctx ends: how simulated deliveries wait.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
