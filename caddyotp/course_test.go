package caddyotp

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestSimulatedCourseFollowsItsOwnChannel: calls that fail do not make a simulated SMS fail.
func TestSimulatedCourseFollowsItsOwnChannel(t *testing.T) {
	var hl health
	for i := 0; i < 16; i++ {
		hl.record("call", result{took: time.Second, state: deliveryMisconfigured})
		hl.record("sms", result{took: 80 * time.Millisecond, state: deliveryAccepted})
	}
	for i := 0; i < 50; i++ {
		if o := hl.sample("sms"); o.state != deliveryAccepted || o.took != 80*time.Millisecond {
			t.Fatalf("a simulated SMS drawn %+v, from calls", o)
		}
	}
}

// TestDeliveryHealthIsTheGatesOwn: gates that share a sender but not their rules of who may sign
// in keep their delivery histories apart, so one cannot steer the other's simulated course.
func TestDeliveryHealthIsTheGatesOwn(t *testing.T) {
	open, _ := newUnitHandler(t, map[string]any{"phones": []string{"*"}})
	strict, _ := newUnitHandler(t, nil)
	if open.health == strict.health {
		t.Fatal("a gate with phones * and one with an allowlist share their delivery health")
	}
	open.health.record("sms", result{took: time.Second, state: deliveryMisconfigured})
	if o := strict.health.sample("sms"); o.state == deliveryMisconfigured {
		t.Fatalf("the open gate's failures steered the strict gate's course: %+v", o)
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
	startGate(t, "send_limit 20 10m", viaTwilio(tw))
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
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m", viaFailover(tw))
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

// TestAGateOnAnotherStoreDrawsOnlyOnItsOwnDeliveries: the simulated course of a refused number
// draws on what the gate's own deliveries did, never on those of a gate that shares its sender
// and its rules of who may sign in but keeps another store (another deployment, or the gate of
// an earlier config): its failures must not show on this gate's refused numbers.
func TestAGateOnAnotherStoreDrawsOnlyOnItsOwnDeliveries(t *testing.T) {
	sms := newRestcomm(t)
	sms.Fail(restcommtest.InternalError)
	block := func(address, store string) string {
		return fmt.Sprintf("%s {\n\totp {\n\t\t%s\n\t\tphones %s\n\t\tstore memory %s\n\t\tsend_limit 20 10m\n\t}\n\trespond \"in\"\n}\n",
			address, senderBlock(sms, sms.AuthToken), alice, storeName(t)+store)
	}
	loadCaddyfile(t, nil, "", block(site, "a")+block(siteB, "b"))
	for i := 0; i < 3; i++ {
		v := newVisitor(t)
		v.startSignIn("/", alice)
		if state := v.settledFinal(); state != deliveryFailed {
			t.Fatalf("a code through the failing provider ended %q", state)
		}
	}
	v := newVisitorAt(t, siteB)
	v.startSignIn("/", stranger)
	if state := v.settledFinal(); state == deliveryFailed {
		t.Errorf("a refused number on the other gate ended %q, as the first gate's real deliveries did", state)
	}
}
