package caddyotp

import (
	"context"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"time"
)

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
// time and in the state drawn (settle ends the cooldown of a failure, as for a real one).
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
	if _, err := ds.settle(ctx, key, phone, state, ""); err != nil {
		ds.obs.storeFailed(err)
	}
}
