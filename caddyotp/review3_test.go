package caddyotp

// Regression tests for what an outside attacker review of delivery receipts and failover found.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"go.uber.org/zap"
)

// settledFinal waits for a final state (a receipt's, or a failure), or gives the last seen
// after 10 s: settledAt stops at delivered, and at any other final state.
func (v *visitor) settledFinal() string { v.t.Helper(); return v.settledAt(deliveryDelivered) }

// TestRefusedNumberEndsLikeReceiptsTakenByAnotherInstance: the provider posts a real delivery's
// receipt to whichever instance the load balancer picks; a number that may not sign in, on the
// instance that sent, must still end as the real ones do.
func TestRefusedNumberEndsLikeReceiptsTakenByAnotherInstance(t *testing.T) {
	r := startRedis(t)
	a, v := deliveredThroughB(t, r)
	if state := v.settledFinal(); state != deliveryDelivered {
		t.Fatalf("the allowed number ended %q", state)
	}
	s := newBalancedVisitor(t, a)
	s.startSignIn("/", stranger)
	if state := s.settledFinal(); state != deliveryDelivered {
		t.Errorf("the allowed number was delivered; the refused one, on the sending instance, ended %q", state)
	}
}

// TestReceiptBeforeTheAPIAnswerStillShapesSimulatedCourses: a provider may post the receipt
// before it answers the send.
func TestReceiptBeforeTheAPIAnswerStillShapesSimulatedCourses(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if cb := r.PostForm.Get("StatusCallback"); cb != "" { // the receipt beats the answer
			if resp, err := http.PostForm(cb, url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}}); err == nil {
				resp.Body.Close()
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"sid":"SM0123456789abcdef0123456789abcdef","status":"sending"}`)
	}))
	defer fake.Close()
	g := newGate(t)
	g.sender = fmt.Sprintf("sender restcomm {\n\t\t\taccount_sid AC0123456789abcdef0123456789abcdef\n\t\t\tauth_token x\n\t\t\tfrom %s\n\t\t\tbase_url %s/restcomm/2012-04-24\n\t\t}", fromNum, fake.URL)
	g.start("send_limit 20 10m")
	a := newVisitor(t)
	a.startSignIn("/", alice)
	if state := a.settledFinal(); state != deliveryDelivered {
		t.Fatalf("the allowed number ended %q", state)
	}
	s := newVisitor(t)
	s.startSignIn("/", stranger)
	if state := s.settledFinal(); state != deliveryDelivered {
		t.Errorf("the allowed number was delivered; the refused one ended %q", state)
	}
}

// TestDefaultCourseEndsLikeARealOne: before any real delivery (a fresh start), a number that may
// not sign in must not stay "sent" where a real one is delivered.
func TestDefaultCourseEndsLikeARealOne(t *testing.T) {
	g := startGate(t, "send_limit 20 10m")
	g.sms.AutoReceipts(restcommtest.ReceiptStep{Status: "sent"}, restcommtest.ReceiptStep{Status: "delivered"})
	s := newVisitor(t)
	s.startSignIn("/", stranger)
	if state := s.settledFinal(); state != deliveryDelivered {
		t.Errorf("the first refused number, before any real delivery, ended %q", state)
	}
}

// TestSimulatedFailureEndsTheCooldownToo: a real code that a receipt says failed may be asked
// for again at once; so must a simulated one that ends failed.
func TestSimulatedFailureEndsTheCooldownToo(t *testing.T) {
	tw := restcommtest.NewTwilio()
	startTwilioGate(t, tw, "send_limit 20 10m")
	a := newVisitor(t)
	csrfA, _ := a.startSignIn("/", alice)
	m, _ := twilioCode(t, tw, 1)
	a.settledAt(deliverySent)
	tw.PostReceipt(m, "undelivered", 30003)
	if state := a.settledFinal(); state != deliveryFailed {
		t.Fatalf("the allowed number ended %q", state)
	}
	s := newVisitor(t)
	csrfS, _ := s.startSignIn("/", stranger)
	if state := s.settledFinal(); state != deliveryFailed {
		t.Fatalf("the refused number ended %q", state)
	}
	ra, rs := a.post("/.otp/resend", url.Values{"csrf": {csrfA}}), s.post("/.otp/resend", url.Values{"csrf": {csrfS}})
	if ra.status != rs.status {
		t.Errorf("after a failed code, resend answers %d for the allowed number and %d for the refused one", ra.status, rs.status)
	}
}

type stubSender struct {
	name      string
	fail      func(to string) error
	got       []string
	callbacks []string // the receipt URLs it was given
}

func (s *stubSender) Send(_ context.Context, m Message) (Sent, error) {
	if err := s.fail(m.To); err != nil {
		return Sent{Provider: s.name}, err
	}
	s.got = append(s.got, m.To)
	sent := Sent{ID: "SM-" + s.name, Provider: s.name, Receipts: m.Receipts != nil}
	if sent.Receipts {
		s.callbacks = append(s.callbacks, m.Receipts(s.name))
	}
	return sent, nil
}

// TestNumberRefusalsDoNotMoveOnOrTripTheBreaker: a number the provider will not take is not a
// provider failure: the next provider would refuse it too, and three of them must not open the
// first's breaker for everyone.
func TestNumberRefusalsDoNotMoveOnOrTripTheBreaker(t *testing.T) {
	for name, refusal := range map[string]func() error{
		"restcomm 400": func() error { return restcommError(400, []byte(`Invalid To number: +2348012345678`)) },
	} {
		t.Run(name, func(t *testing.T) {
			const forbidden = "+2348012345678"
			a := &stubSender{name: "A", fail: func(to string) error {
				if to == forbidden {
					return refusal()
				}
				return nil
			}}
			b := &stubSender{name: "B", fail: func(string) error { return nil }}
			f := &Failover{providers: []*provider{{name: "A", sender: a}, {name: "B", sender: b}}, logger: zap.NewNop(), now: time.Now}
			for i := 0; i < 3; i++ {
				if _, err := f.Send(context.Background(), Message{To: forbidden, Body: "x"}); err == nil {
					t.Fatalf("send %d to a refused number succeeded", i+1)
				}
			}
			if len(b.got) > 0 {
				t.Errorf("provider B sent to a number provider A refused")
			}
			if sent, err := f.Send(context.Background(), Message{To: alice, Body: "x"}); err != nil || sent.Provider != "A" {
				t.Errorf("after three refused numbers, a visitor's code went through %q (%v), not A", sent.Provider, err)
			}
		})
	}
}

// TestEachFailoverProviderIsGivenReceiptsForItsOwnName: a failover gives each sender it tries
// the receipt URL made for that sender's name in the failover, whatever the sender calls
// itself, so that a receipt is read with the key of the provider that sent; and Sent names the
// provider that took the message.
func TestEachFailoverProviderIsGivenReceiptsForItsOwnName(t *testing.T) {
	down := &stubSender{name: "twilio", fail: func(string) error { return &SendError{Provider: "twilio", Status: 503, Temporary: true} }}
	up := &stubSender{name: "twilio", fail: func(string) error { return nil }}
	f := &Failover{providers: []*provider{{name: "twilio", sender: down}, {name: "twilio#2", sender: up}}, logger: zap.NewNop(), now: time.Now}
	var asked []string
	sent, err := f.Send(context.Background(), Message{To: alice, Body: "x", Receipts: func(provider string) string {
		asked = append(asked, provider)
		return "https://x/.otp/receipt/" + provider
	}})
	if err != nil || sent.Provider != "twilio#2" || sent.ID != "SM-twilio" || !sent.Receipts {
		t.Fatalf("sent %+v, %v: want the second provider, named twilio#2, with receipts", sent, err)
	}
	if !slices.Equal(asked, []string{"twilio#2"}) || !slices.Equal(up.callbacks, []string{"https://x/.otp/receipt/twilio#2"}) {
		t.Errorf("receipt URLs asked for %v, given %v: want the one of twilio#2 only", asked, up.callbacks)
	}
}

// TestRegionRefusalMovesOnWithoutTrippingTheBreaker: with region_failover, a region the first
// provider may not text (Twilio 21408) goes to the next provider, so an allowed
// number there is sent like any other; but it does not count against the first provider's
// breaker, or three such numbers typed by anyone would open it for every visitor.
func TestRegionRefusalMovesOnWithoutTrippingTheBreaker(t *testing.T) {
	const foreign = "+2348012345678"
	a := &stubSender{name: "A", fail: func(to string) error {
		if to == foreign {
			return twilioError(400, []byte(`{"code":21408,"message":"Permission to send an SMS has not been enabled for the region indicated by the 'To' number","status":400}`))
		}
		return nil
	}}
	b := &stubSender{name: "B", fail: func(string) error { return nil }}
	f := &Failover{providers: []*provider{{name: "A", sender: a}, {name: "B", sender: b}}, logger: zap.NewNop(), now: time.Now, RegionFailover: true}
	for i := 0; i < 3; i++ {
		if sent, err := f.Send(context.Background(), Message{To: foreign, Body: "x"}); err != nil || sent.Provider != "B" {
			t.Fatalf("send %d to a region A may not text: via %q, %v", i+1, sent.Provider, err)
		}
	}
	if sent, err := f.Send(context.Background(), Message{To: alice, Body: "x"}); err != nil || sent.Provider != "A" {
		t.Errorf("after three region refusals, a visitor's code went through %q (%v), not A", sent.Provider, err)
	}
}

// TestRestcomm400AboutFromIsAConfigurationFault: Restcomm's 400 also refuses the gate's own From
// (say an alphanumeric sender id it cannot normalise): that is the operator's to fix, and the
// next provider can send.
func TestRestcomm400AboutFromIsAConfigurationFault(t *testing.T) {
	for _, body := range []string{"Invalid From number: ExampleCo", "From can not be null.", "Bad request"} {
		if se := restcommError(400, []byte(body)); se.Number || se.Temporary {
			t.Errorf("400 %q read as the number's (%v) or transient (%v)", body, se.Number, se.Temporary)
		}
	}
	if se := restcommError(400, []byte("Invalid To number: +2348012345678")); !se.Number {
		t.Errorf("400 naming To not read as the number's")
	}
}

// TestRefusedNumberDoesNotShowARealDeliveryInFlight: right after an allowed number's code went
// out, and before its receipt, a refused number's course must end as it would after a refused
// one's: what is in flight says nothing.
func TestRefusedNumberDoesNotShowARealDeliveryInFlight(t *testing.T) {
	g := startGate(t, "send_limit 20 10m\n\t\tip_limit 100 10m")
	g.sms.AutoReceipts(restcommtest.ReceiptStep{Status: "sent"}, restcommtest.ReceiptStep{Status: "delivered", After: 8 * time.Second})
	x := newVisitor(t)
	x.startSignIn("/", alice)
	x.settledAt(deliverySent)
	s := newVisitor(t)
	s.startSignIn("/", stranger)
	if state := s.settledFinal(); state != deliveryDelivered {
		t.Errorf("with an allowed code in flight, a refused number's course ended %q; with none it ends delivered", state)
	}
}

// TestFailoverAndRefusedSendsDoNotSkewSimulatedEndings: sends that failed over, or that the
// provider refused, never get a final receipt; they must not make refused numbers stay "sent"
// where every real code that went out was delivered.
func TestFailoverAndRefusedSendsDoNotSkewSimulatedEndings(t *testing.T) {
	tw := restcommtest.NewTwilio()
	g := startFailoverGate(t, tw, "send_limit 50 10m\n\t\tip_limit 100 10m")
	g.sms.Fail(restcommtest.InternalError)
	tw.AutoReceipts(restcommtest.ReceiptStep{Status: "sent"}, restcommtest.ReceiptStep{Status: "delivered", After: 300 * time.Millisecond})
	for _, p := range []string{alice, bob} {
		v := newVisitor(t)
		v.startSignIn("/", p)
		if state := v.settledFinal(); state != deliveryDelivered {
			t.Fatalf("allowed %s ended %q", p, state)
		}
	}
	var refused []*visitor
	for i := 0; i < 6; i++ {
		v := newVisitor(t)
		v.startSignIn("/", fmt.Sprintf("+1201555%04d", 200+i))
		refused = append(refused, v)
	}
	for i, v := range refused {
		if state := v.settledFinal(); state != deliveryDelivered {
			t.Errorf("refused number %d ended %q; every real code that went out was delivered", i, state)
		}
	}
}

// recordedEndings are the endings a memory-store gate of this test recorded, by slot.
func recordedEndings(t *testing.T) []string {
	t.Helper()
	var out []string
	memoryPool.Range(func(k, v any) bool {
		if !strings.HasSuffix(k.(string), storeName(t)) {
			return true
		}
		m := v.(*memoryBackend)
		for key := range m.c.Items() {
			if strings.HasPrefix(key, "end:") && !strings.HasSuffix(key, ":n") {
				out = append(out, string(m.get(key)))
			}
		}
		return true
	})
	return out
}

// TestOneEndingPerDelivery: a visitor who signs in before the final receipt comes leaves one
// ending for the delivery (its receipt's), not also a "never" from the code's end.
func TestOneEndingPerDelivery(t *testing.T) {
	g := startGate(t, "code_ttl 4s\n\t\tresend_after 1s\n\t\tsend_limit 20 10m\n\t\tip_limit 100 10m")
	g.sms.AutoReceipts(restcommtest.ReceiptStep{Status: "sent"}, restcommtest.ReceiptStep{Status: "delivered", After: 1500 * time.Millisecond})
	v := newVisitor(t)
	v.signIn(g, alice)
	time.Sleep(5 * time.Second) // past the code's life, and its receipt
	ends := recordedEndings(t)
	if len(ends) != 1 || !strings.HasPrefix(ends[0], deliveryDelivered+" ") {
		t.Fatalf("one delivered code recorded %q", ends)
	}
}

// TestRegionRefusalOnTheTrialDoesNotWedgeTheBreaker: the breaker's one trial after an outage
// may be a number of a region the provider may not text; the provider answered, so it is back
// (with region_failover, the number then goes through the next provider).
func TestRegionRefusalOnTheTrialDoesNotWedgeTheBreaker(t *testing.T) {
	const foreign = "+2348012345678"
	now, down := time.Now(), true
	a := &stubSender{name: "A", fail: func(to string) error {
		if to == foreign {
			return twilioError(400, []byte(`{"code":21408,"message":"Permission to send an SMS has not been enabled for the region indicated by the 'To' number","status":400}`))
		}
		if down {
			return twilioError(503, []byte(`{"code":20500,"message":"down","status":503}`))
		}
		return nil
	}}
	b := &stubSender{name: "B", fail: func(string) error { return nil }}
	f := &Failover{providers: []*provider{{name: "A", sender: a}, {name: "B", sender: b}}, logger: zap.NewNop(), now: func() time.Time { return now }, RegionFailover: true}
	for i := 0; i < 3; i++ { // a short outage of A opens its breaker
		_, _ = f.Send(context.Background(), Message{To: alice, Body: "x"})
	}
	down, now = false, now.Add(2*breakerOpen)
	if sent, err := f.Send(context.Background(), Message{To: foreign, Body: "x"}); err != nil || sent.Provider != "B" {
		t.Fatalf("the trial, to a region A may not text: via %q, %v", sent.Provider, err)
	}
	if sent, err := f.Send(context.Background(), Message{To: alice, Body: "x"}); err != nil || sent.Provider != "A" {
		t.Errorf("after A answered its trial, a code went via %q (%v), not A", sent.Provider, err)
	}
}

// TestRestcomm400NamesToAsAWord: "Total" and "Token" do not name the To field.
func TestRestcomm400NamesToAsAWord(t *testing.T) {
	for _, body := range []string{"Total message length exceeds the limit", "Token is not valid for this account"} {
		if se := restcommError(400, []byte(body)); se.Number {
			t.Errorf("400 %q read as the number's", body)
		}
	}
}
