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

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestSendAnswersBeforeTheProvider: /send hands the SMS to the background and answers at once,
// so its answer cannot tell a number that may sign in from one that may not.
func TestSendAnswersBeforeTheProvider(t *testing.T) {
	g := startGate(t, "")
	g.sms.Delay(time.Second) // within the sender's timeout
	v := newVisitor(t)
	_, r := v.startSignIn("/", alice)
	wantStatus(t, "send", r, http.StatusSeeOther)
	if n := len(g.sms.Messages()); n != 0 {
		t.Fatalf("the answer waited for the provider (%d messages accepted before it)", n)
	}
	if status, state := v.status(); status != http.StatusOK || state != deliverySending {
		t.Errorf("status right after the send: %d %q, want sending", status, state)
	}
	g.code(1)
	if state := v.settled(); state != deliverySent {
		t.Errorf("accepted SMS, its receipt to come: state %q, want sent", state)
	}
}

func TestDeliveryStateOfANumberThatMayNotSignInLooksTheSame(t *testing.T) {
	g := startGate(t, "send_limit 20 10m")
	known, unknown := newVisitor(t), newVisitor(t)
	known.startSignIn("/", alice)
	unknown.startSignIn("/", stranger)
	g.code(1)
	if a, b := known.settled(), unknown.settled(); a != b {
		t.Errorf("delivery states differ: %q for an allowed number, %q for a refused one", a, b)
	}
	// When the provider fails, so does the simulated course: both pages say so.
	clock.Advance(31 * time.Second)
	g.sms.Fail(restcommtest.InternalError)
	for i := 0; i < len(recent{}.ring); i++ { // the provider's recent health, as the simulated course draws it
		clock.Advance(31 * time.Second)
		w := newVisitor(t)
		w.startSignIn("/", []string{alice, bob}[i%2])
		if state := w.settled(); state != deliveryFailed {
			t.Fatalf("a failed send: state %q", state)
		}
	}
	clock.Advance(31 * time.Second)
	known, unknown = newVisitor(t), newVisitor(t)
	known.startSignIn("/", alice)
	unknown.startSignIn("/", stranger)
	if a, b := known.settled(), unknown.settled(); a != deliveryFailed || b != deliveryFailed {
		t.Errorf("while the provider fails: %q for an allowed number, %q for a refused one", a, b)
	}
	sameAnswer(t, "code page after a failed send", known.get("/.otp/verify"), unknown.get("/.otp/verify"))
}

func TestStatusWithoutAFlowIsNotFound(t *testing.T) {
	startGate(t, "")
	if status, _ := newVisitor(t).status(); status != http.StatusNotFound {
		t.Errorf("status without a flow: %d", status)
	}
}

// TestSimulatedDeliveryIsDrawnFromRealOnes: a number that may not sign in waits as long as one
// of the recent real deliveries took, and ends as it did.
func TestSimulatedDeliveryIsDrawnFromRealOnes(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 100, "window": "10m"},
		"send_limit": map[string]any{"count": 100, "window": "10m"}, "resend_after": "1ms"})
	h.flows.deliveries.health = new(health)
	var mu sync.Mutex
	var waited []time.Duration
	h.flows.deliveries.wait = func(_ context.Context, d time.Duration) { mu.Lock(); waited = append(waited, d); mu.Unlock() }
	real := []result{{took: 310 * time.Millisecond, state: deliveryAccepted}, {took: 470 * time.Millisecond, state: deliveryFailed}}
	for _, o := range real {
		h.flows.deliveries.health.record("sms", o)
	}
	states := map[string]bool{}
	for i := 0; i < 40; i++ {
		id := unitSend(t, h, stranger)
		clock.Advance(time.Millisecond)
		states[unitSettled(t, h, id)] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for _, d := range waited {
		if d != real[0].took && d != real[1].took {
			t.Fatalf("a simulated delivery waited %s, not the time of a real one", d)
		}
	}
	if len(waited) != 40 || !states[deliveryAccepted] || !states[deliveryFailed] {
		t.Fatalf("%d simulated deliveries ended %v, want both states of the real ones", len(waited), states)
	}
}

// TestFullOutboxRefusesEveryNumberAlike: with every sender busy, /send answers 503, whether or
// not the number may sign in, and keeps nothing.
func TestFullOutboxRefusesEveryNumberAlike(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 100, "window": "10m"}})
	release := make(chan struct{})
	h.flows.deliveries.sender = blockingSender(release)
	h.flows.deliveries.outbox = newOutbox(1, 1, 1)
	defer close(release)
	unitSend(t, h, bob) // holds the only slot until released
	answers := map[string]*httptest.ResponseRecorder{}
	for _, phone := range []string{alice, stranger} {
		w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {phone}})
		if err := serve(h, w, r); err != nil {
			t.Fatal(err)
		}
		answers[phone] = w
	}
	a, b := answers[alice], answers[stranger]
	if a.Code != http.StatusServiceUnavailable || b.Code != http.StatusServiceUnavailable || a.Header().Get("Retry-After") == "" {
		t.Fatalf("with the outbox full: %d and %d, want 503 with Retry-After", a.Code, b.Code)
	}
	// Each page's retry posts again the number its visitor typed: that echo aside, they are alike.
	page := func(w *httptest.ResponseRecorder, phone string) string {
		body := regexpCSRF.ReplaceAllString(regexpNonce.ReplaceAllString(w.Body.String(), ""), "CSRF")
		return strings.ReplaceAll(body, strings.ReplaceAll(phone, "+", "&#43;"), "TYPED")
	}
	if pa, pb := page(a, alice), page(b, stranger); pa != pb {
		t.Errorf("the pages differ:\n%s\n%s", pa, pb)
	}
}

type blockingSender chan struct{}

func (s blockingSender) Send(ctx context.Context, _ Message) (Sent, error) {
	select {
	case <-s:
	case <-ctx.Done():
	}
	return Sent{}, nil
}

// panickingSender panics on every message.
type panickingSender struct{}

func (panickingSender) Send(context.Context, Message) (Sent, error) { panic("the sender's bug") }

// TestASendersPanicFailsTheDeliveryNotTheServer: a sender that panics in the background fails
// that delivery (the visitor may ask again at once) and gives its outbox slot back; the server
// goes on.
func TestASendersPanicFailsTheDeliveryNotTheServer(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 100, "window": "10m"}})
	h.flows.deliveries.sender = panickingSender{}
	o := newOutbox(1, 1, 1)
	h.flows.deliveries.outbox = o
	busy := func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.inFlight > 0
	}
	for i := 0; i < 2; i++ { // the second needs the slot the first was given back
		id := unitSend(t, h, alice)
		if state := unitSettled(t, h, id); state != deliveryFailed {
			t.Fatalf("send %d: the delivery ended %q, want %q", i+1, state, deliveryFailed)
		}
		for deadline := time.Now().Add(5 * time.Second); busy(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the panicked delivery kept its outbox slot")
			}
		}
	}
}

// unitSend posts phone to /send on a fresh flow and returns the flow's id.
func unitSend(t *testing.T, h *Handler, phone string) string {
	t.Helper()
	w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {phone}})
	if err := serve(h, w, r); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("send: %d %v %.200s", w.Code, err, w.Body.String())
	}
	c, _ := r.Cookie("caddy_otp_flow")
	id, _, _ := strings.Cut(c.Value, ".")
	return id
}

// unitSettled waits until the flow's delivery left "sending" and returns its state.
func unitSettled(t *testing.T, h *Handler, id string) string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		f, err := h.flows.load(context.Background(), id)
		if err != nil || f == nil {
			t.Fatalf("flow: %v", err)
		}
		if state, _ := h.flows.deliveries.state(context.Background(), id, f); state != deliverySending {
			return state
		}
	}
	t.Fatal("the delivery did not settle within 5s")
	return ""
}
