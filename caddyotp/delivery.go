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

// outboxSize bounds the deliveries in flight for one gate, and outboxPerClient those one
// address (an IPv6 /64) asked for; past either /send answers 503, for every number alike.
const (
	outboxSize      = 128
	outboxPerClient = 8
)

// outbox runs deliveries in the background: at most size at once, and at most perClient of
// them for one client, so that one client cannot take every slot.
type outbox struct {
	mu        sync.Mutex
	size      int
	perClient int
	inFlight  int
	byClient  map[string]int
}

func newOutbox(size, perClient int) *outbox {
	return &outbox{size: size, perClient: perClient, byClient: make(map[string]int)}
}

// reserve takes a slot for client, or says there is none.
func (o *outbox) reserve(client string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inFlight >= o.size || o.byClient[client] >= o.perClient {
		return false
	}
	o.inFlight++
	o.byClient[client]++
	return true
}

// release gives back client's slot.
func (o *outbox) release(client string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight--
	if o.byClient[client]--; o.byClient[client] <= 0 {
		delete(o.byClient, client)
	}
}

// run runs job in the background on client's reserved slot, which it gives back when done.
func (o *outbox) run(client string, job func()) {
	go func() {
		defer o.release(client)
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
		ds.health.record(d.channel, result{took: took, state: state})
	} else {
		o := ds.health.sample(d.channel)
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

// health remembers the last real deliveries of one gate through its sender, by channel (SMS,
// call), so that a simulated course can be drawn from real ones: their times, and their failures
// when the provider fails. It keeps the last few of each channel only, so that the course follows
// the provider as it is now; the state and the time of a simulated delivery are those of one real
// delivery. It outlives config reloads (healthPool), so that the first answers after a reload are
// drawn like the others; it is the gate's own, so that another gate's traffic cannot steer it.
type health struct {
	mu       sync.Mutex
	channels map[string]*recent
}

// recent are the last deliveries of one channel.
type recent struct {
	ring [16]result
	n    int // deliveries recorded, at most len(ring) of them kept
}

// defaultResult is the simulated course before any real delivery was seen.
var defaultResult = result{took: 400 * time.Millisecond, state: deliveryUnknown}

func (h *health) record(channel string, o result) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.channels == nil {
		h.channels = make(map[string]*recent)
	}
	c := h.channels[channel]
	if c == nil {
		c = new(recent)
		h.channels[channel] = c
	}
	c.ring[c.n%len(c.ring)] = o
	c.n++
}

// sample draws a simulated outcome of channel: one of its last real deliveries.
func (h *health) sample(channel string) result {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.channels[channel]
	if c == nil || c.n == 0 {
		d := defaultResult
		d.took = d.took/2 + time.Duration(mrand.Int64N(int64(d.took)))
		return d
	}
	return c.ring[mrand.IntN(min(c.n, len(c.ring)))]
}

func (*health) Destruct() error { return nil }

// healthPool keeps each sender's health by its configuration.
var healthPool = caddy.NewUsagePool()

// healthKey names a gate's health by its sender's configuration and its rules of who may sign
// in (hashed: they may hold a token, and phone numbers).
func healthKey(senderRaw, rules []byte) string {
	m := sha256.New()
	m.Write(senderRaw)
	m.Write([]byte{0})
	m.Write(rules)
	return "otp.health." + hex.EncodeToString(m.Sum(nil))
}

// start gives flow f a new code, which kills the previous one, saves the flow with its
// delivery "sending", and hands the delivery to the outbox on the slot reserved for slotOf:
// send when the phone may sign in, else the simulated course. For a phone that may not sign in
// the flow gets a code nobody knows, so every answer matches. On an error the slot is given
// back and nothing is sent.
func (ds *deliveries) start(ctx context.Context, id string, f *flow, channel, client, slotOf string, send func(ctx context.Context, code string) (string, error)) error {
	code, err := newCode(ds.codeLength)
	if err != nil {
		ds.outbox.release(slotOf)
		return err
	}
	t := ds.now()
	next := *f
	next.Hash = codeHash(ds.codeKey, id, code)
	next.Sent = t.UnixNano()
	next.Expires = t.Add(ds.codeTTL).UnixNano()
	if err := ds.store.Set(ctx, deliveryKey(id, next.Hash), []byte(deliverySending), ds.codeTTL); err != nil {
		ds.outbox.release(slotOf)
		return err
	}
	if err := saveFlow(ctx, ds.store, id, &next); err != nil {
		ds.outbox.release(slotOf)
		return err
	}
	*f = next
	ds.outbox.run(slotOf, func() {
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
