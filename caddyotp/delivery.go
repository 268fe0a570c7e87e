package caddyotp

import (
	"context"
	"crypto/hmac"
	"fmt"
	"time"
)

// deliveryTimeout bounds a background delivery, the provider's own timeout included.
const deliveryTimeout = time.Minute

// deliveries hand codes to the sender in the background, after the answer, and keep their
// states (docs/ARCHITECTURE.md): a number that may not sign in follows a simulated course, so
// that neither the answer's time nor the state tells it from one that may.
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
	shield     *pumpingShield                             // holds back codes to pumped prefixes
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
		return deliveryAccepted, "", err // outlived by its flow: whatever became of it is past
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
	held := false                                    // by the pumping shield
	var admitted pumpAdmission                       // what the pumping shield counted of the code
	if d.flow.Allowed {
		// A code the pumping shield holds back follows the simulated course, as a number's that
		// may not sign in; one it could not count (the store failed) fails, as a send would.
		if admitted, err = ds.shield.admit(ctx, &d.flow, d.client); err != nil {
			admitted.ok, state = true, deliveryFailed
			ds.obs.storeFailed(err)
		}
		d.flow.Allowed = admitted.ok
		held = !d.flow.Allowed
	}
	if d.flow.Allowed && state == "" {
		var receipts func(string) string
		if asks {
			receipts = ds.receipts.callbacks(d.flowID, d.flow.Hash)
		}
		started := time.Now()
		sent, err = ds.send(ctx, d, receipts)
		took = time.Since(started)
		state, reason = stateOf(err), reasonOf(err)
		if state == deliveryAccepted && asks && sent.Receipts {
			state = deliverySent
		}
		ds.health.record(d.channel, result{took: took, state: state, reason: reason})
		if err != nil { // not handed over: it is no unverified code
			if err := ds.shield.refused(ctx, &d.flow, admitted); err != nil {
				ds.obs.storeFailed(err)
			}
		}
	} else if !d.flow.Allowed {
		if w, ok := ds.sender.(withholdingTold); ok {
			why := "not in phones, users or regions"
			if held {
				why = "its prefix is quarantined by the pumping shield"
			}
			w.Withheld(d.flow.Phone, d.channel, why)
		}
		res := ds.health.sample(d.channel)
		if res.state == deliveryAccepted && asks && ds.health.seen(d.channel) == 0 { // no real delivery seen yet
			res.state = deliverySent
		}
		ds.wait(ctx, res.took)
		state, reason = res.state, res.reason
	}
	// Reported, and the cooldown ended, before the state shows: whoever sees it may act on it.
	ds.obs.delivered(d, sent, state, took, err)
	if _, err := ds.settle(ctx, key, d.flow.Phone, state, reason); err != nil {
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
			err = &SendError{Provider: "sender", Fault: TemporaryFault, Detail: fmt.Sprintf("the sender panicked: %v", r)}
		}
	}()
	return d.send(ctx, d.code, receipts)
}

// receive applies a receipt's state to the code it is for, if that code is still the flow's
// live one; it says whether the state moved on.
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
	moved, err := ds.settle(ctx, key, f.Phone, state, "")
	if err != nil || !moved {
		return false, err
	}
	if after, ok := rec.sentAgo(); ok && terminal(state) {
		ds.recordEnding(ctx, key, state, after)
	}
	return true, nil
}

// settle moves the delivery key on to state (with the reason of a failure that belongs to the
// number), never back (Store.Raise), and says whether it moved: the one place a delivery's state
// changes. A failure that will move the state first ends the phone's cooldown, so that whoever
// sees the state may ask for another code at once; and it does so once per code (a mark beside
// the state), so that a failed receipt posted again, or after "delivered", cannot end the
// cooldowns that later codes to the phone start. A cooldown the store could not end is logged,
// and the state still moves.
func (ds *deliveries) settle(ctx context.Context, key, phone, state, reason string) (bool, error) {
	if state == deliveryFailed || state == deliveryMisconfigured {
		if err := ds.endCooldownOnce(ctx, key, phone, state); err != nil {
			ds.obs.storeFailed(err)
		}
	}
	return ds.store.Raise(ctx, key, rankedWhy(state, reason), ds.codeTTL)
}

// endCooldownOnce ends phone's cooldown for the failure of the delivery key, if the failure
// will move its state (it is not final yet) and no failure of it ended the cooldown before.
func (ds *deliveries) endCooldownOnce(ctx context.Context, key, phone, state string) error {
	now, err := ds.store.Get(ctx, key)
	if err != nil || len(now) > 0 && now[0] >= deliveryRank[state] {
		return err
	}
	if first, err := ds.store.Raise(ctx, key+":cool", ranked(state), ds.codeTTL); err != nil || !first {
		return err
	}
	return ds.limits.endCooldown(ctx, phone)
}

// queue gives flow f a new code, which kills the previous one, saves the flow with its
// delivery "sending", and hands the delivery to the outbox on the slot reserved for the client address slotOf:
// send when the phone may sign in, else the simulated course. For a phone that may not sign in
// the flow gets a code nobody knows, so every answer matches. It returns the delivery's
// beginning, for the caller to run once the answer is out (outcome.deliverAfter): whatever the send
// does then cannot slow the answer. On an error the slot is given back and nothing is sent.
func (ds *deliveries) queue(ctx context.Context, id string, f *flow, channel, client, slotOf string, send sendFunc) (func(), error) {
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
