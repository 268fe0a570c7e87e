package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strconv"
	"strings"
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

// The rank of each state: a state is only ever replaced by one of a higher rank (Store.Raise),
// so that late, repeated or reordered answers and receipts never move it back.
var deliveryRank = map[string]byte{
	deliverySending: '0',
	deliverySent:    '1', deliveryUnknown: '1',
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
	if errors.As(err, &se) && se.Number {
		return se.Reason
	}
	return ""
}

// terminal says whether nothing can follow state.
func terminal(state string) bool { return deliveryRank[state] == '2' }

// deliveryTimeout bounds a background delivery, the provider's own timeout included.
const deliveryTimeout = time.Minute

// outboxSize bounds the deliveries in flight for one gate, outboxPerClient those one address
// (an IPv6 /64) asked for, and outboxPerRange those of its range (limitRange); past any of
// them /send answers 503, for every number alike.
const (
	outboxSize      = 128
	outboxPerClient = 8
	outboxPerRange  = 32
)

// outbox runs deliveries in the background: at most size at once, at most perClient of them
// for one client address and perRange for its range, so that no address or range can take
// every slot.
type outbox struct {
	mu        sync.Mutex
	size      int
	perClient int
	perRange  int
	inFlight  int
	byClient  map[string]int // by limitAddr and by limitRange
}

func newOutbox(size, perClient, perRange int) *outbox {
	return &outbox{size: size, perClient: perClient, perRange: perRange, byClient: make(map[string]int)}
}

// reserve takes a slot for the client address, or says there is none.
func (o *outbox) reserve(client string) bool {
	addr, rng := limitAddr(client), limitRange(client)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.inFlight >= o.size || o.byClient[addr] >= o.perClient || o.byClient[rng] >= o.perRange {
		return false
	}
	o.inFlight++
	o.byClient[addr]++
	o.byClient[rng]++
	return true
}

// release gives back the client address's slot.
func (o *outbox) release(client string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.inFlight--
	for _, k := range []string{limitAddr(client), limitRange(client)} {
		if o.byClient[k]--; o.byClient[k] <= 0 {
			delete(o.byClient, k)
		}
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
	receipts   *receiptBook // nil unless public_url is set and the sender asks for receipts
	endings    endings
	wait       func(ctx context.Context, d time.Duration) // how simulated deliveries wait
	now        func() time.Time
	obs        *observer
}

// sendFunc sends code, with the receipt URLs of the delivery (nil for none: Message.Receipts).
type sendFunc func(ctx context.Context, code string, receipts func(provider string) string) (Sent, error)

// delivery is one code on its way: by SMS or by call (send), or simulated (allowed false).
type delivery struct {
	flowID  string
	flow    flow // as saved with the code
	code    string
	client  string // the address that asked, for the log
	channel string // "sms" or "call"
	send    sendFunc
}

// state is the delivery state of the live code of flow f, or "" if it has none.
func (ds *deliveries) state(ctx context.Context, flowID string, f *flow) (string, error) {
	state, _, err := ds.stateWhy(ctx, flowID, f)
	return state, err
}

// stateWhy is state with the reason of a failure that belongs to the visitor's number.
func (ds *deliveries) stateWhy(ctx context.Context, flowID string, f *flow) (state, reason string, err error) {
	if f.Hash == nil {
		return "", "", nil
	}
	v, err := ds.store.Get(ctx, deliveryKey(flowID, f.Hash))
	if err != nil || v == nil {
		return deliveryUnknown, "", err // outlived by its flow: whatever became of it is past
	}
	state, reason = stateWhy(v)
	return state, reason, nil
}

// run runs in the background: it sends (or simulates), reports, and records the state.
func (ds *deliveries) run(d delivery) {
	begun := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryTimeout)
	defer cancel()
	var sent Sent
	var state, reason string
	var err error
	var took time.Duration
	key := deliveryKey(d.flowID, d.flow.Hash)
	asks := ds.receipts != nil && d.channel == "sms" // whether receipts may be asked for
	if d.flow.Allowed {
		var receipts func(string) string
		if asks {
			receipts = ds.receipts.callbacks(d.flowID, d.flow.Hash)
		}
		started := time.Now()
		sent, err = ds.send(ctx, d, receipts)
		took = time.Since(started)
		state, reason = stateOf(err), reasonOf(err)
		if state == deliveryUnknown && asks && sent.Receipts {
			state = deliverySent
		}
		ds.health.record(d.channel, result{took: took, state: state, reason: reason})
	} else {
		o := ds.health.sample(d.channel)
		if o.state == deliveryUnknown && asks && ds.health.seen(d.channel) == 0 { // no real delivery seen yet
			o.state = deliverySent
		}
		ds.wait(ctx, o.took)
		state, reason = o.state, o.reason
	}
	// Reported, and the cooldown ended, before the state shows: whoever sees it may act on it.
	ds.obs.delivered(d, sent, state, took, err)
	if state == deliveryFailed || state == deliveryMisconfigured {
		if err := ds.limits.endCooldown(ctx, d.flow.Phone); err != nil {
			ds.obs.storeFailed(err)
		}
	}
	if _, err := ds.store.Raise(ctx, key, rankedWhy(state, reason), ds.codeTTL); err != nil {
		ds.obs.storeFailed(err)
	}
	if d.flow.Allowed && sent.Receipts && state == deliverySent {
		go ds.watchEnding(key) // off the outbox, whose slot is given back
	}
	if !d.flow.Allowed && state == deliverySent {
		// The simulated receipt: how real receipted deliveries end, on whichever instance their
		// receipts came; off the outbox, whose slot is given back.
		go ds.simulateEnd(key, d.flow.Phone, begun)
	}
}

// send runs d's send. A panic of the sender becomes its error: it fails the delivery, whose slot
// is given back, and not the server.
func (ds *deliveries) send(ctx context.Context, d delivery, receipts func(string) string) (sent Sent, err error) {
	defer func() {
		if r := recover(); r != nil {
			ds.obs.panicked(r)
			err = &SendError{Provider: "sender", Temporary: true, Detail: fmt.Sprintf("the sender panicked: %v", r)}
		}
	}()
	return d.send(ctx, d.code, receipts)
}

// stateOf is the delivery state a provider's answer to a send makes.
func stateOf(err error) string {
	var se *SendError
	switch {
	case err == nil:
		return deliveryUnknown
	case errors.As(err, &se) && se.Number: // the visitor's number: another number, or a call
		return deliveryFailed
	case errors.As(err, &se) && !se.Temporary:
		return deliveryMisconfigured
	default: // a sender that says nothing more: assume it may pass later
		return deliveryFailed
	}
}

// result is what one real delivery did: how long the provider took, and the state it made.
type result struct {
	took   time.Duration
	state  string
	reason string // a failed state's reason, when it belongs to the number (reasonOf)
}

// receive applies a receipt's state to the code it is for, if that code is still the flow's
// live one; it says whether the state moved on. A failure ends the phone's cooldown, so that
// the visitor may ask again at once, as after a failed send.
func (ds *deliveries) receive(ctx context.Context, rec *receiptRecord, state string) (bool, error) {
	f, err := loadFlowAt(ctx, ds.store, rec.Flow)
	if err != nil {
		return false, err
	}
	key := deliveryKey(rec.Flow, rec.Hash)
	if f == nil || len(f.Hash) < len(rec.Hash) || !hmac.Equal(f.Hash[:len(rec.Hash)], rec.Hash) || ds.now().UnixNano() >= f.Expires {
		// Used, replaced or expired: the receipt is late, and no page shows it. But how the
		// delivery ended still counts, once, for the simulated courses: a visitor who signed in
		// before the receipt came must not make real deliveries look as if they never end.
		if after, ok := rec.sentAgo(); ok && terminal(state) { // the code's state stays as it was
			ds.recordEnding(ctx, key, state, after)
		}
		return false, nil
	}
	moved, err := ds.store.Raise(ctx, key, ranked(state), ds.codeTTL)
	if err != nil || !moved {
		return false, err
	}
	if after, ok := rec.sentAgo(); ok && terminal(state) {
		ds.recordEnding(ctx, key, state, after)
	}
	if state == deliveryFailed {
		if err := ds.limits.endCooldown(ctx, f.Phone); err != nil {
			return true, err
		}
	}
	return true, nil
}

// recordEnding records how the delivery (key) ended, after its send began, once: see endOnce.
func (ds *deliveries) recordEnding(ctx context.Context, key, state string, after time.Duration) {
	first, err := ds.endOnce(ctx, key)
	if err == nil && first {
		err = ds.endings.ended(ctx, state, after)
	}
	if err != nil {
		ds.obs.storeFailed(err) // the receipt itself counted
	}
}

// endOnce marks the delivery key as ended and says whether it was the first to: a delivery
// enters the endings once, by its first final receipt (while its code lives or after it was
// used), a retried one, or the "never" of its code's end, whichever comes first.
func (ds *deliveries) endOnce(ctx context.Context, key string) (bool, error) {
	return ds.store.Raise(ctx, key+":end", ranked(deliveryDelivered), ds.codeTTL+time.Minute)
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

// seen is how many real deliveries of channel were recorded.
func (h *health) seen(channel string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.channels[channel]; c != nil {
		return c.n
	}
	return 0
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
// delivery "sending", and hands the delivery to the outbox on the slot reserved for the client address slotOf:
// send when the phone may sign in, else the simulated course. For a phone that may not sign in
// the flow gets a code nobody knows, so every answer matches. It returns the delivery's
// beginning, for the caller to run once the answer is out (outcome.deliverAfter): whatever the send
// does then cannot slow the answer. On an error the slot is given back and nothing is sent.
func (ds *deliveries) start(ctx context.Context, id string, f *flow, channel, client, slotOf string, send sendFunc) (func(), error) {
	code, err := newCode(ds.codeLength)
	if err != nil {
		ds.outbox.release(slotOf)
		return nil, err
	}
	t := ds.now()
	next := *f
	next.Hash = codeHash(ds.codeKey, id, code)
	next.Sent = t.UnixNano()
	next.Expires = t.Add(ds.codeTTL).UnixNano()
	if err := ds.store.Set(ctx, deliveryKey(id, next.Hash), ranked(deliverySending), ds.codeTTL); err != nil {
		ds.outbox.release(slotOf)
		return nil, err
	}
	if err := saveFlow(ctx, ds.store, id, &next, flowKeep(ds.codeTTL)); err != nil {
		ds.outbox.release(slotOf)
		return nil, err
	}
	*f = next
	return func() {
		ds.outbox.run(slotOf, func() {
			ds.run(delivery{flowID: id, flow: next, code: code, client: client, channel: channel, send: send})
		})
	}, nil
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

// endings are how the gate's last receipted SMS deliveries ended, kept in the store so that
// every instance learns them, whichever instance the provider posted a receipt to: the state of
// each final receipt and how long after the send it came, or "never" for a code that lived out
// its time without one. Only finished deliveries enter, so what is in flight, failed over or
// refused says nothing.
type endings struct {
	store Store
	gate  string // the gate: its health's name
}

const (
	endingsKept = 16                 // how many of the last endings a simulated course draws from
	endingsTTL  = 7 * 24 * time.Hour // how long they are kept
	endingNever = "never"            // a code that lived out its time with no final receipt
)

// ended records how a real delivery ended: its final state, after its send began.
func (e endings) ended(ctx context.Context, state string, after time.Duration) error {
	n, err := e.store.Incr(ctx, endingsCountKey(e.gate), endingsTTL)
	if err != nil {
		return err
	}
	v := state + " " + strconv.FormatInt(after.Milliseconds(), 10)
	return e.store.Set(ctx, endingKey(e.gate, n%endingsKept), []byte(v), endingsTTL)
}

// draw says how a simulated receipted delivery ends: as one of the last real ones did, or, if
// that one never heard back, not at all (ok false). Before any real one has ended (or once they
// have expired), it is delivered a few seconds after the send, as receipts typically come.
func (e endings) draw(ctx context.Context) (state string, after time.Duration, ok bool, err error) {
	v, err := e.store.Get(ctx, endingsCountKey(e.gate))
	if err != nil {
		return "", 0, false, err
	}
	if n, _ := strconv.ParseInt(string(v), 10, 64); n > 0 {
		last := n - mrand.Int64N(min(n, endingsKept)) // one of the last endings written
		if v, err = e.store.Get(ctx, endingKey(e.gate, last%endingsKept)); err != nil {
			return "", 0, false, err
		}
		st, ms, _ := strings.Cut(string(v), " ")
		if st == endingNever {
			return "", 0, false, nil
		}
		if afterMS, err := strconv.ParseInt(ms, 10, 64); err == nil && terminal(st) {
			return st, time.Duration(afterMS) * time.Millisecond, true, nil
		}
	}
	return deliveryDelivered, 2*time.Second + time.Duration(mrand.Int64N(int64(3*time.Second))), true, nil
}

// watchEnding records "never" for a real receipted delivery that no final receipt has ended
// shortly before its code dies: a final receipt is recorded by whichever instance takes it.
func (ds *deliveries) watchEnding(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), ds.codeTTL)
	defer cancel()
	ds.wait(ctx, ds.codeTTL-min(5*time.Second, ds.codeTTL/10)) // while the state is still kept
	if ctx.Err() != nil {
		return
	}
	ds.recordEnding(ctx, key, endingNever, ds.codeTTL)
}

// simulateEnd ends a simulated delivery, begun at begun, as a real receipted one would: at the
// time and in the state drawn, and a failure ends the phone's cooldown, as a real one's does.
func (ds *deliveries) simulateEnd(key, phone string, begun time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), ds.codeTTL)
	defer cancel()
	state, after, ok, err := ds.endings.draw(ctx)
	if err != nil {
		ds.obs.storeFailed(err)
		return
	}
	if !ok {
		return
	}
	ds.wait(ctx, after-time.Since(begun))
	if ctx.Err() != nil {
		return
	}
	if _, err := ds.store.Raise(ctx, key, ranked(state), ds.codeTTL); err != nil {
		ds.obs.storeFailed(err)
		return
	}
	if state == deliveryFailed {
		if err := ds.limits.endCooldown(ctx, phone); err != nil {
			ds.obs.storeFailed(err)
		}
	}
}
