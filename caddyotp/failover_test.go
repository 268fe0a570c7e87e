package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"go.uber.org/zap"
)

// countLines counts the log lines with msg whose field key is value.
func countLines(logs, msg, key, value string) int {
	n := 0
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) && strings.Contains(l, `"`+key+`":"`+value+`"`) {
			n++
		}
	}
	return n
}

func TestFailoverMovesOnWhenRestcommIsDownAndComesBackAfterTheBreakersMinute(t *testing.T) {
	tw := restcommtest.NewTwilio()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaFailover(tw))
	token := g.sms.AuthToken
	down := []struct {
		name   string
		break_ func()
	}{
		{"500", func() { g.sms.Fail(restcommtest.InternalError) }},
		{"timeout", func() { g.sms.Delay(3 * time.Second) }}, // the sender's timeout is 2s
		{"401", func() { g.sms.SetAuthToken("rotated-" + token) }},
	}
	sentByTwilio := 0
	for _, tc := range down {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(31 * time.Second)
			tc.break_()
			defer func() { g.sms.Fail(restcommtest.None); g.sms.Delay(0); g.sms.SetAuthToken(token) }()
			v := newVisitor(t)
			v.startSignIn("/", alice)
			sentByTwilio++
			m, _ := twilioCode(t, tw, sentByTwilio)
			if m.To != alice {
				t.Errorf("twilio sent to %s", m.To)
			}
			if state := v.settledAt(deliverySent); state != deliverySent {
				t.Errorf("state %q, want sent", state)
			}
			line := lastLogLine(t, g.logs(), "code sent")
			if line["provider"] != "twilio" {
				t.Errorf("the code sent line does not name twilio: %v", line)
			}
			failed := lastLogLine(t, g.logs(), "provider failed, trying the next")
			if failed["provider"] != "restcomm" {
				t.Errorf("the failure line does not name restcomm: %v", failed)
			}
		})
	}
	if n := countLines(g.logs(), "provider failed, trying the next", "provider", "restcomm"); n != 3 {
		t.Fatalf("%d restcomm failures logged, want 3", n)
	}

	// Restcomm is back, but it failed 3 times in a row: it is skipped for a minute.
	clock.Advance(31 * time.Second)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	sentByTwilio++
	twilioCode(t, tw, sentByTwilio)
	v.settledAt(deliverySent)
	if n := len(g.sms.Messages()); n != 0 {
		t.Fatalf("restcomm was tried inside the breaker's minute (%d messages)", n)
	}

	// After the minute, one trial message goes to Restcomm; it works, and Restcomm is first again.
	clock.Advance(breakerOpen + time.Second)
	for i := 1; i <= 2; i++ {
		clock.Advance(31 * time.Second)
		v := newVisitor(t)
		v.startSignIn("/", alice)
		g.code(i)
		if state := v.settledAt(deliverySent); state != deliverySent {
			t.Errorf("state %q, want sent", state)
		}
		if line := lastLogLine(t, g.logs(), "code sent"); line["provider"] != "restcomm" {
			t.Errorf("after the minute, sent through %v, want restcomm", line["provider"])
		}
	}
	if n := len(tw.Messages()); n != sentByTwilio {
		t.Errorf("twilio got %d messages, want %d", n, sentByTwilio)
	}
}

func TestFailoverDoesNotMoveOnForAnInvalidNumber(t *testing.T) {
	tw := restcommtest.NewTwilio()
	t.Cleanup(tw.Close)
	g := newGate(t)
	// Twilio first this time: its refusal of the number must not reach Restcomm.
	g.sender = "sender failover {\n\t\t\t" + twilioBlock(tw) + "\n\t\t\t" + strings.TrimPrefix(senderBlock(g.sms, g.sms.AuthToken), "sender ") + "\n\t\t}"
	g.start("")
	tw.Fail(restcommtest.TwilioInvalidNumber)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	if state := v.settled(); state != deliveryFailed {
		t.Errorf("state %q, want failed", state)
	}
	if n := len(g.sms.Messages()); n != 0 {
		t.Errorf("the next provider was tried for a number the first refused (%d messages)", n)
	}
	line := lastLogLine(t, g.logs(), "number refused by the provider")
	if line["provider"] != "twilio" || line["reason"] != "invalid" {
		t.Errorf("log line %v, want twilio refusing an invalid number", line)
	}
	wantStatus(t, "code page", v.get("/.otp/verify"), http.StatusServiceUnavailable)
}

// TestFailoverToASenderWithoutReceiptsExpectsNone: a code sent by a later sender that asks for
// no receipts is "unknown", not "sent", and the log names that sender.
func TestFailoverToASenderWithoutReceiptsExpectsNone(t *testing.T) {
	g := newGate(t)
	g.sender = "sender failover {\n\t\t\t" + strings.TrimPrefix(senderBlock(g.sms, g.sms.AuthToken), "sender ") + "\n\t\t\tlog\n\t\t}"
	g.start("")
	g.sms.Fail(restcommtest.InternalError)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	if state := v.settled(); state != deliveryAccepted {
		t.Errorf("state %q, want unknown", state)
	}
	if line := lastLogLine(t, g.logs(), "code sent"); line["provider"] != "log" {
		t.Errorf("code sent line %v, want provider log", line)
	}
}

// TestFailoverWithEveryBreakerOpenStillTriesTheFirst: when every provider failed three times in
// a row, a code still goes to the first of them (as it would without failover) rather than
// being refused unsent for the breaker's minute; once a provider answers, sign-in works at once.
func TestFailoverWithEveryBreakerOpenStillTriesTheFirst(t *testing.T) {
	tw := restcommtest.NewTwilio()
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaFailover(tw))
	g.sms.Fail(restcommtest.InternalError)
	tw.Fail(restcommtest.TwilioInternalError)
	for i := 0; i < 3; i++ {
		clock.Advance(31 * time.Second)
		v := newVisitor(t)
		v.startSignIn("/", alice)
		if state := v.settled(); state != deliveryFailed {
			t.Fatalf("send %d with both providers down: state %q", i+1, state)
		}
	}
	g.sms.Fail(restcommtest.None) // Restcomm is back inside the breakers' minute
	tw.Fail(restcommtest.TwilioNone)
	clock.Advance(31 * time.Second)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	if state := v.settled(); state == deliveryFailed {
		t.Fatalf("with every breaker open, the code was refused unsent")
	}
	if m, _ := smsCode(t, g.sms, 1); m.To != alice {
		t.Errorf("restcomm sent to %s", m.To)
	}
}

// openFirstBreaker fails three sends through the first provider, which is down: each of them
// goes out through the second, and the first's breaker opens.
func openFirstBreaker(t *testing.T, first, second *restcommtest.Twilio) {
	t.Helper()
	first.Fail(restcommtest.TwilioInternalError)
	for i := 0; i < breakerFailures; i++ {
		clock.Advance(31 * time.Second)
		v := newVisitor(t)
		v.startSignIn("/", alice)
		v.settled()
	}
	if n := len(second.Messages()); n != breakerFailures {
		t.Fatalf("the second provider sent %d codes while the first was down, want %d", n, breakerFailures)
	}
}

// TestNumbersAProviderRefusesDoNotOpenItsBreaker: during the first provider's outage, numbers
// that the second refuses as numbers (not reachable by SMS, a short code, not valid, the
// sender's own) are the typist's choice, not the provider's trouble: they must not open the
// second's breaker and so fail every visitor's code.
func TestNumbersAProviderRefusesDoNotOpenItsBreaker(t *testing.T) {
	first, second := restcommtest.NewTwilio(), restcommtest.NewTwilio()
	startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaTwilioPair(first, second), func(g *gate) { g.phones = "*" })
	openFirstBreaker(t, first, second)
	typed := map[string]int{"+12015550171": 21612, "+12015550172": 21265, "+12015550173": 21217, "+12015550174": 21266}
	for number, code := range typed {
		second.Refuse(number, code)
		v := newVisitor(t)
		v.startSignIn("/", number)
		if state := v.settled(); state != deliveryFailed {
			t.Errorf("a number refused with %d: state %q, want failed", code, state)
		}
	}
	sent := len(second.Messages())
	clock.Advance(31 * time.Second)
	v := newVisitor(t)
	v.startSignIn("/", bob)
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Fatalf("after %d refused numbers, an honest visitor's code: state %q, want sent", len(typed), state)
	}
	if m, _ := twilioCode(t, second, sent+1); m.To != bob {
		t.Errorf("the second provider sent to %s, want bob", m.To)
	}
}

// TestWithEveryBreakerOpenTheLastResortTriesEverySender: when every provider's breaker is
// open, a code is still tried through each of them in turn, not only the first: the first may
// be the one still down.
func TestWithEveryBreakerOpenTheLastResortTriesEverySender(t *testing.T) {
	first, second := restcommtest.NewTwilio(), restcommtest.NewTwilio()
	startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaTwilioPair(first, second))
	first.Fail(restcommtest.TwilioInternalError)
	second.Fail(restcommtest.TwilioInternalError)
	for i := 0; i < breakerFailures; i++ {
		clock.Advance(31 * time.Second)
		v := newVisitor(t)
		v.startSignIn("/", alice)
		if state := v.settled(); state != deliveryFailed {
			t.Fatalf("send %d with both providers down: state %q", i+1, state)
		}
	}
	second.Fail(restcommtest.TwilioNone) // the second is back inside the breakers' minute; the first is not
	clock.Advance(31 * time.Second)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	if state := v.settledAt(deliverySent); state != deliverySent {
		t.Fatalf("with the second provider back: state %q, want sent", state)
	}
	if m, _ := twilioCode(t, second, 1); m.To != alice {
		t.Errorf("the second provider sent to %s", m.To)
	}
}

// TestTheBreakersTrialEndsWhenTheSenderPanics: the one trial message after the breaker's minute
// ends however its try ends, a panic of the sender too, so that the provider is tried again
// after the next minute and not skipped until the next reload.
func TestTheBreakersTrialEndsWhenTheSenderPanics(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mode string // how A answers: "down", "panic" or "up"
	a := &stubSender{name: "A", fail: func(string) error {
		switch mode {
		case "down":
			return &SendError{Provider: "A", Status: 503, Fault: TemporaryFault}
		case "panic":
			panic("A's bug")
		}
		return nil
	}}
	b := &stubSender{name: "B", fail: func(string) error { return nil }}
	f := &Failover{providers: []*provider{{name: "A", sender: a}, {name: "B", sender: b}}, logger: zap.NewNop(), now: func() time.Time { return now }}
	send := func() (sent Sent, panicked bool) {
		defer func() { panicked = recover() != nil }()
		sent, _ = f.Send(context.Background(), Message{To: alice, Body: "x"})
		return sent, false
	}
	mode = "down"
	for i := 0; i < breakerFailures; i++ {
		send()
	}
	now, mode = now.Add(breakerOpen+time.Second), "panic"
	if _, panicked := send(); !panicked {
		t.Fatal("the trial did not reach A")
	}
	now, mode = now.Add(breakerOpen+time.Second), "up"
	if sent, _ := send(); sent.Provider != "A" {
		t.Errorf("a minute after A's trial panicked, a code went through %q, not A: its trial never ended", sent.Provider)
	}
}

// TestARegionRefusalDoesNotFailOverUnlessAllowed: a provider's geographic permissions are an
// anti-fraud control of the operator's; another provider must not text the number it refused,
// unless the failover says region_failover.
func TestARegionRefusalDoesNotFailOverUnlessAllowed(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprint("region_failover=", allow), func(t *testing.T) {
			first, second := restcommtest.NewTwilio(), restcommtest.NewTwilio()
			g := newGate(t)
			opt := ""
			if allow {
				opt = "region_failover"
			}
			t.Cleanup(first.Close)
			t.Cleanup(second.Close)
			g.sender = "sender failover {\n\t\t\t" + twilioBlock(first) + "\n\t\t\t" + twilioBlock(second) + "\n\t\t\t" + opt + "\n\t\t}"
			g.start("")
			first.Refuse(alice, 21408)
			v := newVisitor(t)
			v.startSignIn("/", alice)
			v.settled()
			if n := len(second.Messages()); (n == 1) != allow {
				t.Errorf("the second provider sent %d codes after the first's region refusal", n)
			}
		})
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
	down := &stubSender{name: "twilio", fail: func(string) error { return &SendError{Provider: "twilio", Status: 503, Fault: TemporaryFault} }}
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
