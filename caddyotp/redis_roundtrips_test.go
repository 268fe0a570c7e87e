//go:build integration

package caddyotp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// roundTrips counts the round trips a Redis client makes: a command, or a pipeline, each one;
// not the handshake of a new connection, which the pool makes once and keeps.
type roundTrips struct {
	mu    sync.Mutex
	n     int
	names []string // what they were, since the last take
	dial  bool     // a new connection's handshake (HELLO, then a pipeline) is not the step's
}

func (c *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { c.add(cmd.Name()); return next(ctx, cmd) }
}

func (c *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { c.add("pipeline"); return next(ctx, cmds) }
}

func (c *roundTrips) add(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case name == "hello":
		c.dial = true
		return
	case name == "pipeline" && c.dial:
		c.dial = false
		return
	}
	c.n++
	c.names = append(c.names, name)
}

// take returns the count so far and starts again.
func (c *roundTrips) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n, c.names = 0, nil
	return n
}

// TestSignInRedisRoundTrips counts what one sign-in costs in Redis round trips, step by step,
// in the steady state (the scripts loaded, the revocation view loaded), and holds it to the
// budget docs/BENCHMARKS.md states. The background refresh is stopped, so that only the steps
// count.
func TestSignInRedisRoundTrips(t *testing.T) {
	rs := startRedis(t)
	h, sender := newUnitHandler(t, map[string]any{"store": map[string]any{"module": "redis", "address": rs.Addr(), "key_prefix": "rt:"}})
	store := h.store.(*RedisStore)
	ctx := context.Background()
	counter := new(roundTrips)
	store.be.client.AddHook(counter)
	release := make(chan struct{})
	h.flows.deliveries.sender = gatedSender{release, sender}      // each delivery waits for its turn to be counted
	h.flows.deliveries.shield.store = gatedWindow{store, release} // from its first step, the pumping shield's count
	signIn := func(phone string, n int) map[string]int {
		steps := map[string]int{}
		v := unitVisit(t)
		counter.take()
		if o := begun(h.flows.start(ctx, v, phone, "")); o.kind != sent {
			t.Fatalf("send: %+v", o)
		}
		steps["send"] = counter.take()
		release <- struct{}{} // the shield's count
		release <- struct{}{} // the send
		code := sentCode(t, sender, n)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			counter.mu.Lock()
			done := counter.n >= 2 // the shield's count, and the delivery's state, written once the sender answered
			counter.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the delivery state was not written")
			}
		}
		steps["delivery"] = counter.take()
		if o := h.flows.check(ctx, v, code); o.kind != verified {
			t.Fatalf("verify: %+v", o)
		}
		steps["verify"] = counter.take()
		s, _, err := h.signins.newSessions(phone, false)
		if err != nil {
			t.Fatal(err)
		}
		w, r := postForm(t, h, "/.otp/logout", url.Values{"everywhere": {"1"}}, &http.Cookie{Name: "caddy_otp", Value: h.signins.sessions.encode(s)})
		counter.take()
		if err := serve(h, w, r); err != nil || w.Code != http.StatusSeeOther {
			t.Fatalf("sign-out: %d %v", w.Code, err)
		}
		steps["sign-out"] = counter.take()
		return steps
	}
	signIn(alice, 1) // loads the scripts and the revocation view
	store.be.stop()  // the revocation loop's own reads are not a sign-in's
	store.be.done.Wait()
	if err := store.be.refresh(ctx); err != nil { // a fresh view for the measured sign-in
		t.Fatal(err)
	}
	steps := signIn(bob, 2)
	t.Logf("Redis round trips per step of a sign-in: %v", steps)
	// send reads the client's range (limitRange), counts its address and then the range: two
	// more than the address alone. The lockout reads its two locks in one Tally on send, and
	// reads and counts in one on verify. The pumping shield counts the code in the delivery, and
	// takes it back on verify: one each.
	budget := map[string]int{"send": 10, "delivery": 2, "verify": 8, "sign-out": 6}
	for step, n := range steps {
		if n > budget[step] {
			t.Errorf("%s took %d round trips, over its budget of %d", step, n, budget[step])
		}
	}
}

// gatedSender hands a message to next once the test lets it.
type gatedSender struct {
	release chan struct{}
	next    Sender
}

func (s gatedSender) Send(ctx context.Context, m Message) (Sent, error) {
	<-s.release
	return s.next.Send(ctx, m)
}

// unsignedReceipts is the recording sender with receipts its provider does not sign, as
// Restcomm's; it sends once the test releases it, so that the delivery's store calls are
// counted as the delivery's.
type unsignedReceipts struct {
	*recordingSender
	release chan struct{}
}

func (s unsignedReceipts) Send(ctx context.Context, m Message) (Sent, error) {
	<-s.release
	return s.recordingSender.Send(ctx, m)
}

func (unsignedReceipts) ReceiptsEnabled() bool { return true }
func (unsignedReceipts) ReadReceipt(r *http.Request, _, _ string) (Receipt, error) {
	return readFormReceipt(r, func(url.Values) bool { return true })
}

// TestReceiptRedisRoundTrips counts what delivery receipts add: the background delivery writes
// nothing before the send (the token is sealed, not stored), and a final receipt reads the flow,
// raises the state, marks the delivery ended and records how.
func TestReceiptRedisRoundTrips(t *testing.T) {
	rs := startRedis(t)
	h, sender := newUnitHandler(t, map[string]any{"store": map[string]any{"module": "redis", "address": rs.Addr(), "key_prefix": "rr:"}})
	store := h.store.(*RedisStore)
	store.be.stop() // the revocation loop's own reads are not the receipts'
	store.be.done.Wait()
	rcpt := unsignedReceipts{sender, make(chan struct{})}
	h.sender, h.flows.deliveries.sender, h.webhooks.reader = rcpt, rcpt, rcpt
	h.flows.deliveries.shield.store = gatedWindow{store, rcpt.release} // the shield's count is the delivery's
	h.flows.deliveries.receipts = newReceiptBook(h.keys.receipt, "http://localhost:9080/.otp/receipt/", h.cookies.aud, time.Duration(h.CodeTTL))
	counter := new(roundTrips)
	store.be.client.AddHook(counter)
	ctx := context.Background()
	steps := map[string]int{}
	for round, phone := range []string{alice, bob} { // the first loads the scripts
		v := unitVisit(t)
		if o := begun(h.flows.start(ctx, v, phone, "")); o.kind != sent {
			t.Fatalf("send: %+v", o)
		}
		counter.take()
		rcpt.release <- struct{}{} // the delivery goes on once the count has started again: the shield's count
		rcpt.release <- struct{}{} // the send
		sentCode(t, sender, round+1)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			counter.mu.Lock()
			done := scripts(counter.names) >= 2*(2-min(round, 1)) // the shield's count, then the state's raise, the delivery's last step (each loaded first, in the first round)
			counter.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the delivery did not settle")
			}
		}
		steps["delivery"] = counter.take()
		sender.mu.Lock()
		callback := sender.callback
		sender.mu.Unlock()
		token, ok := strings.CutPrefix(callback, "http://localhost:9080/.otp/receipt/")
		if !ok {
			t.Fatalf("StatusCallback %q", callback)
		}
		r := httptest.NewRequest(http.MethodPost, "/.otp/receipt/"+token, strings.NewReader("MessageStatus=delivered&MessageSid=SM1"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		if err := serve(h, w, r); err != nil || w.Code != http.StatusNoContent {
			t.Fatalf("receipt: %d %v", w.Code, err)
		}
		steps["receipt"] = counter.take()
	}
	t.Logf("Redis round trips with receipts: %v", steps)
	budget := map[string]int{"delivery": 2, "receipt": 5} // the shield's count and the state's raise
	for step, n := range steps {
		if n > budget[step] {
			t.Errorf("%s took %d round trips, over its budget of %d", step, n, budget[step])
		}
	}
}
