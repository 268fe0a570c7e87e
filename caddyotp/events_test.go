package caddyotp

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyevents/eventsconfig" // the events global option
)

func init() {
	caddy.RegisterModule(eventRecorder{})
}

// eventRecorder is an events handler (events.handlers.test_record, registered only in tests):
// Caddy ships none that a test can read.
type eventRecorder struct{}

var recorded struct {
	sync.Mutex
	events []caddy.Event
}

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.test_record", New: func() caddy.Module { return new(eventRecorder) }}
}

func (eventRecorder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recorded.Lock()
	recorded.events = append(recorded.events, e)
	recorded.Unlock()
	return nil
}

// recordedEvents returns the events of the gate recorded so far, by name.
func recordedEvents() map[string][]caddy.Event {
	recorded.Lock()
	defer recorded.Unlock()
	out := map[string][]caddy.Event{}
	for _, e := range recorded.events {
		if strings.HasPrefix(e.Name(), "otp_") {
			out[e.Name()] = append(out[e.Name()], e)
		}
	}
	return out
}

// TestEventsOfAFullFlow: an operator's events handler sees each of the gate's events once for a
// full flow, its failures included, with no code or full phone number in their data.
func TestEventsOfAFullFlow(t *testing.T) {
	recorded.Lock()
	recorded.events = nil
	recorded.Unlock()
	g := newGate(t)
	var on []string
	for _, name := range []string{eventCodeSent, eventVerified, eventFailed, eventLocked, eventSessionRevoked} {
		on = append(on, "on "+name+" test_record")
	}
	g.global = "events {\n\t\t" + strings.Join(on, "\n\t\t") + "\n\t}"
	g.start("lockout 2 15m")

	v := newVisitor(t)
	g.sms.Delay(500 * time.Millisecond)
	csrf, _ := v.startSignIn("/", alice)
	if n := len(recordedEvents()[eventCodeSent]); n != 0 {
		t.Fatalf("otp_code_sent was emitted inside the answer to /send")
	}
	msg, code := g.code(1)
	g.sms.Delay(0)
	v.settled()
	if n := len(recordedEvents()[eventCodeSent]); n != 1 {
		t.Fatalf("%d otp_code_sent events once the delivery settled, want 1", n)
	}
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	v.signOut(false)
	clock.Advance(31 * time.Second)
	w := newVisitor(t)
	c, _ := w.startSignIn("/", bob)
	_, bobCode := g.code(2)
	w.settled()
	for i := 0; i < 2; i++ {
		w.post("/.otp/verify", url.Values{"csrf": {c}, "code": {otherCode(bobCode)}})
	}

	got := recordedEvents()
	for name, want := range map[string]int{eventCodeSent: 2, eventVerified: 1, eventFailed: 3, eventLocked: 1, eventSessionRevoked: 1} {
		if len(got[name]) != want {
			t.Errorf("%d %s events, want %d", len(got[name]), name, want)
		}
	}
	for name, events := range got {
		for _, e := range events {
			data := fmt.Sprint(e.Data)
			if e.Data["path"] != "/.otp" {
				t.Errorf("%s without the gate's path: %s", name, data)
			}
			for secret, value := range map[string]string{"code": code, "bob's code": bobCode, "alice": alice, "bob": bob, "message id": msg.SID} {
				if strings.Contains(data, value) {
					t.Errorf("%s carries the %s: %s", name, secret, data)
				}
			}
		}
	}
	if e := got[eventVerified]; len(e) == 1 && (e[0].Data["phone"] != maskPhone(alice) || e[0].Data["client_ip"] != "127.0.0.1") {
		t.Errorf("otp_verified data: %v", e[0].Data)
	}
}
