package caddyotp

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The flow state machine, driven directly: each transition and its refusals, with no HTTP.

// unitVisit is a visitor with a flow of its own.
func unitVisit(t *testing.T) *visit {
	t.Helper()
	id, err := randomToken()
	if err != nil {
		t.Fatal(err)
	}
	return &visit{client: "192.0.2.1", lang: "en", flowID: id, host: "localhost"}
}

// sentCode waits for the n-th message the recording sender got and returns its code.
func sentCode(t testing.TB, s *recordingSender, n int) string {
	t.Helper()
	timeout := time.AfterFunc(5*time.Second, s.sent.Broadcast)
	defer timeout.Stop()
	deadline := time.Now().Add(5 * time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.n < n {
		if time.Now().After(deadline) {
			t.Fatalf("no message %d", n)
		}
		s.sent.Wait()
	}
	return s.last.Body[strings.LastIndex(s.last.Body, "#")+1:]
}

func TestFlowStartRefusesWhatIsNotAPhoneOrNotARegion(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"regions": []string{"US"}})
	ctx := context.Background()
	if o := begun(h.flows.start(ctx, unitVisit(t), "not a number", "")); o.kind != badPhone || o.key != "err_not_phone" || o.input != "not a number" {
		t.Errorf("not a phone: %+v", o)
	}
	if o := begun(h.flows.start(ctx, unitVisit(t), "+442079460000", "")); o.kind != badPhone || o.key != "err_region" {
		t.Errorf("a UK number with regions US: %+v", o)
	}
}

func TestFlowSendResendAndCheck(t *testing.T) {
	h, sender := newUnitHandler(t, map[string]any{"max_attempts": 3})
	ctx := context.Background()
	v := unitVisit(t)
	if o := begun(h.flows.start(ctx, v, alice, "")); o.kind != sent {
		t.Fatalf("start: %+v", o)
	}
	first := sentCode(t, sender, 1)
	if o := begun(h.flows.again(ctx, v, "sms")); o.kind != limited || o.limit != "resend" || o.wait <= 0 || o.wait > 30*time.Second {
		t.Fatalf("resend inside resend_after: %+v", o)
	}
	if o := begun(h.flows.again(ctx, v, "call")); o.kind != toCode {
		t.Errorf("a call without voice: %+v", o)
	}
	clock.Advance(31 * time.Second)
	if o := begun(h.flows.again(ctx, v, "sms")); o.kind != sent {
		t.Fatalf("resend: %+v", o)
	}
	second := sentCode(t, sender, 2)
	if o := h.flows.check(ctx, v, first); o.kind != wrong || o.left != 2 {
		t.Errorf("the replaced code: %+v", o)
	}
	if o := h.flows.check(ctx, v, otherCode(second)); o.kind != wrong || o.left != 1 {
		t.Errorf("a wrong code: %+v", o)
	}
	if o := h.flows.check(ctx, v, second); o.kind != verified || o.subject != alice {
		t.Fatalf("the right code: %+v", o)
	}
	if o := h.flows.check(ctx, v, second); o.kind != noFlow {
		t.Errorf("the right code again: %+v", o)
	}
}

func TestFlowCodeExpiresAndIsExhausted(t *testing.T) {
	h, sender := newUnitHandler(t, map[string]any{"max_attempts": 2})
	ctx := context.Background()
	v := unitVisit(t)
	begun(h.flows.start(ctx, v, alice, ""))
	code := sentCode(t, sender, 1)
	for _, want := range []outcomeKind{wrong, exhausted} {
		if o := h.flows.check(ctx, v, otherCode(code)); o.kind != want {
			t.Fatalf("wrong code: %+v, want %v", o, want)
		}
	}
	if o := h.flows.check(ctx, v, code); o.kind != noFlow {
		t.Errorf("the right code after max_attempts: %+v", o)
	}
	clock.Advance(31 * time.Second)
	w := unitVisit(t)
	begun(h.flows.start(ctx, w, alice, ""))
	code = sentCode(t, sender, 2)
	clock.Advance(5*time.Minute + time.Second)
	if o := h.flows.check(ctx, w, code); o.kind != expired {
		t.Errorf("past code_ttl: %+v", o)
	}
}

func TestFlowLockoutRefusesTheCheck(t *testing.T) {
	h, sender := newUnitHandler(t, map[string]any{"lockout": map[string]any{"count": 2, "window": "15m"}})
	ctx := context.Background()
	v := unitVisit(t)
	begun(h.flows.start(ctx, v, alice, ""))
	code := sentCode(t, sender, 1)
	for i := 0; i < 2; i++ {
		h.flows.check(ctx, v, otherCode(code))
	}
	if o := h.flows.check(ctx, v, code); o.kind != limited || o.limit != "lockout" || o.wait <= 14*time.Minute {
		t.Errorf("the right code once locked: %+v", o)
	}
	other := unitVisit(t)
	other.client = "198.51.100.7"
	clock.Advance(31 * time.Second)
	if o := begun(h.flows.start(ctx, other, alice, "")); o.kind != sent {
		t.Errorf("the owner from another address: %+v", o)
	}
}

func TestFlowOfAUserIsTheUsersOnly(t *testing.T) {
	h, sender := newUnitHandler(t, map[string]any{"users": map[string]string{"alice": alice}, "phones": []string{bob}})
	ctx := context.Background()
	v := unitVisit(t)
	v.user = "alice"
	if o := begun(h.flows.start(ctx, v, bob, "")); o.kind != sent {
		t.Fatalf("start as alice: %+v", o)
	}
	code := sentCode(t, sender, 1)
	if to := sender.last.To; to != alice {
		t.Fatalf("the code went to %s, not alice's phone", to)
	}
	stranger := *v
	stranger.user = ""
	if o := h.flows.check(ctx, &stranger, code); o.kind != noFlow {
		t.Errorf("alice's flow without alice: %+v", o)
	}
	if o := h.flows.check(ctx, v, code); o.kind != verified || o.subject != userSubject("alice", alice) {
		t.Errorf("alice's code with alice: %+v", o)
	}
	carol := unitVisit(t)
	carol.user = "carol"
	if o := begun(h.flows.start(ctx, carol, "", "")); o.kind != refused || o.key != "no_phone" {
		t.Errorf("a user without a phone: %+v", o)
	}
}

// TestFlowRegionFieldIsCheckedAgainstRegions: the country chosen beside the field reads
// national numbers only when it is one of regions; a +country typed wins; without regions no
// region field is taken.
func TestFlowRegionFieldIsCheckedAgainstRegions(t *testing.T) {
	h, sender := newUnitHandler(t, map[string]any{"regions": []string{"US", "GB"}, "phones": []string{"*"}, "ip_limit": map[string]any{"count": 100, "window": "10m"}})
	ctx := context.Background()
	n := 0
	for _, tc := range []struct{ input, region, to string }{
		{"201 555 0123", "US", "+12015550123"},
		{"07400 123456", "GB", "+447400123456"},
		{"+1 201 555 0145", "GB", "+12015550145"}, // the +country typed wins
	} {
		if o := begun(h.flows.start(ctx, unitVisit(t), tc.input, tc.region)); o.kind != sent {
			t.Fatalf("%q in %s: %+v", tc.input, tc.region, o)
		}
		n++
		sentCode(t, sender, n)
		if sender.last.To != tc.to {
			t.Errorf("%q in %s went to %s, want %s", tc.input, tc.region, sender.last.To, tc.to)
		}
	}
	for _, region := range []string{"FR", "ZZ"} {
		if o := begun(h.flows.start(ctx, unitVisit(t), "06 12 34 56 78", region)); o.kind != badPhone || o.key != "err_bad_region" {
			t.Errorf("region %s, not in regions: %+v", region, o)
		}
	}
	h, _ = newUnitHandler(t, nil)
	if o := begun(h.flows.start(ctx, unitVisit(t), "201 555 0123", "US")); o.kind != badPhone || o.key != "err_bad_region" {
		t.Errorf("a region field without regions: %+v", o)
	}
}

// TestFlowOfAnotherGateCannotBeResentHere: two site blocks that share a store and a cookie
// name; a flow started on the loose one (phones *) cannot be carried to the strict one to have
// it text or call a number the strict one would refuse.
func TestFlowOfAnotherGateCannotBeResentHere(t *testing.T) {
	sms := newRestcomm(t)
	twoGates(t, nil, sms,
		"phones "+alice+"\nregions US\nstore memory "+storeName(t),
		"phones *\nstore memory "+storeName(t)+"\nresend_after 1s")
	loose := newVisitorAt(t, siteB)
	csrf, r := loose.startSignIn("/", "+442079460000")
	wantStatus(t, "send on the loose gate", r, http.StatusSeeOther)
	strict := newVisitor(t)
	strict.setCookie("caddy_otp_flow", loose.cookie("caddy_otp_flow"))
	clock.Advance(31 * time.Second)
	r = strict.post("/.otp/resend", url.Values{"csrf": {csrf}})
	if r.status != http.StatusForbidden {
		t.Errorf("the strict gate took the loose gate's flow: %d", r.status)
	}
	sms.WaitMessages(1, time.Second) // the loose gate's own SMS
	for _, m := range sms.Messages() {
		if strings.Contains(m.Body, "@localhost") {
			t.Fatalf("the strict gate sent an SMS to %s", m.To)
		}
	}
}

// TestResendToAPhoneRemovedByReloadSendsNothing: the allowlist is the one in force when the
// code goes out, not the one when the flow began.
func TestResendToAPhoneRemovedByReloadSendsNothing(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", bob)
	g.code(1)
	g.phones = alice
	g.reload("", "upstream")
	clock.Advance(31 * time.Second)
	wantStatus(t, "resend", v.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	v.settled()
	if n := len(g.sms.Messages()); n != 1 {
		t.Fatalf("%d SMS: a resend went to a phone no longer allowed", n)
	}
}

// TestTriesLeftAreTheFewerOfTheCodesAndTheLockouts: with lockout below max_attempts, the code
// page counts the tries the lockout leaves, not the ones the code would: it never tells of a
// try that the lock will refuse.
func TestTriesLeftAreTheFewerOfTheCodesAndTheLockouts(t *testing.T) {
	h, sender := newUnitHandler(t, map[string]any{"lockout": map[string]any{"count": 3, "window": "15m"}, "max_attempts": 5})
	ctx := context.Background()
	v := unitVisit(t)
	begun(h.flows.start(ctx, v, alice, ""))
	code := sentCode(t, sender, 1)
	for _, want := range []int{2, 1} {
		if o := h.flows.check(ctx, v, otherCode(code)); o.kind != wrong || o.left != want {
			t.Fatalf("a wrong code: %+v, want wrong with %d left", o, want)
		}
	}
	if o := h.flows.check(ctx, v, otherCode(code)); o.kind != limited || o.limit != "lockout" || !o.locking {
		t.Fatalf("the try the page said was the last: %+v, want the lock", o)
	}
	// With the lockout above max_attempts, the code's own tries are what is left.
	h, sender = newUnitHandler(t, map[string]any{"max_attempts": 3})
	v = unitVisit(t)
	begun(h.flows.start(ctx, v, bob, "")) // alice's cooldown from above runs on in the test's store
	code = sentCode(t, sender, 1)
	if o := h.flows.check(ctx, v, otherCode(code)); o.kind != wrong || o.left != 2 {
		t.Fatalf("a wrong code under the default lockout: %+v, want 2 left", o)
	}
}
