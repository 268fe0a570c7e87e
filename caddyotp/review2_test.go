package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Regression tests for what a second outside review found, named for the attack.

// TestUserSessionHoldsOnlyWhereTheUserHasThatPhone: a session of user admin, whose code went to
// one phone, is no session on a gate that binds admin to another phone (another site with the
// same user name, or this one after the operator rebound the user).
func TestUserSessionHoldsOnlyWhereTheUserHasThatPhone(t *testing.T) {
	a, _ := newUnitHandler(t, map[string]any{"users": map[string]string{"admin": alice}, "phones": nil})
	b, _ := newUnitHandler(t, map[string]any{"users": map[string]string{"admin": bob}, "phones": nil})
	s, _, err := a.signins.issue(userSubject("admin", alice), false)
	if err != nil {
		t.Fatal(err)
	}
	get := func(h *Handler) int {
		r := withCaddyContext(httptest.NewRequest(http.MethodGet, "/", nil))
		r.Header.Set("Accept", "text/html")
		r.AddCookie(&http.Cookie{Name: "caddy_otp", Value: h.signins.sessions.encode(s)})
		r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).Set("http.auth.user.id", "admin")
		w := httptest.NewRecorder()
		if err := h.ServeHTTP(w, r, upstream); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	if code := get(a); code != http.StatusOK {
		t.Fatalf("admin's session where admin has that phone: %d", code)
	}
	if code := get(b); code != http.StatusSeeOther {
		t.Fatalf("admin's session where admin is bound to another phone: %d, want the phone page", code)
	}
}

// TestOneClientCannotTakeEveryOutboxSlot: codes in flight are capped per address, so one client
// cannot keep every other visitor from getting a code.
func TestOneClientCannotTakeEveryOutboxSlot(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 100, "window": "10m"},
		"send_limit": map[string]any{"count": 100, "window": "10m"}, "phones": []string{"*"}})
	release := make(chan struct{})
	defer close(release)
	h.flows.deliveries.sender = blockingSender(release)
	send := func(phone, ip string) int {
		w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {phone}})
		if err := serveAs(h, w, r, ip); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	for i := 0; i < outboxPerClient; i++ {
		if code := send(fmt.Sprintf("+1201555017%d", i), "203.0.113.9"); code != http.StatusSeeOther {
			t.Fatalf("send %d: %d", i, code)
		}
	}
	if code := send("+12015550179", "203.0.113.9"); code != http.StatusServiceUnavailable {
		t.Fatalf("one more code in flight for the same client: %d, want 503", code)
	}
	if code := send(alice, "198.51.100.4"); code != http.StatusSeeOther {
		t.Fatalf("another client: %d", code)
	}
}

// TestBusyOutboxUsesUpNoLimit: a code that could not go out because every sender was busy
// starts no cooldown and counts against no send limit.
func TestBusyOutboxUsesUpNoLimit(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"send_limit": map[string]any{"count": 1, "window": "10m"}})
	release := make(chan struct{})
	h.flows.deliveries.sender = blockingSender(release)
	h.flows.deliveries.outbox = newOutbox(1, 1, 1)
	unitSend(t, h, bob) // holds the only slot
	w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {alice}})
	if err := serve(h, w, r); err != nil || w.Code != http.StatusServiceUnavailable {
		t.Fatalf("send while busy: %d %v", w.Code, err)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		w, r := postForm(t, h, "/.otp/send", url.Values{"phone": {alice}})
		if err := serve(h, w, r); err != nil {
			t.Fatal(err)
		}
		if w.Code == http.StatusSeeOther {
			return
		}
		if w.Code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("send once a sender is free: %d, want 303 (no cooldown, no send limit used)", w.Code)
		}
	}
}

// TestRefusedSignOutKeepsTheCookies: a sign-out that a limit refused revokes nothing, so it must
// not take the cookies away either: the visitor can try again.
func TestRefusedSignOutKeepsTheCookies(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := startGate(t, "ip_limit 3 10m")
	v := newVisitor(t)
	v.signIn(g, alice) // two requests counted: the send and the check
	newVisitor(t).startSignIn("/", stranger)
	r := v.signOut(true)
	wantStatus(t, "sign-out over ip_limit", r, http.StatusTooManyRequests)
	if c := r.header.Values("Set-Cookie"); len(c) != 0 {
		t.Errorf("a refused sign-out cleared cookies: %q", c)
	}
	wantStatus(t, "the session after a refused sign-out", v.get("/"), http.StatusOK)
}

// TestSimulatedCourseFollowsItsOwnChannel: calls that fail do not make a simulated SMS fail.
func TestSimulatedCourseFollowsItsOwnChannel(t *testing.T) {
	var hl health
	for i := 0; i < 16; i++ {
		hl.record("call", result{took: time.Second, state: deliveryMisconfigured})
		hl.record("sms", result{took: 80 * time.Millisecond, state: deliveryUnknown})
	}
	for i := 0; i < 50; i++ {
		if o := hl.sample("sms"); o.state != deliveryUnknown || o.took != 80*time.Millisecond {
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

// TestClientIPHeaderTheProxyDoesNotWriteIsIgnored: with several client_ip_headers, in either
// order, and a proxy that appends X-Forwarded-For only, a client's own X-Real-IP does not choose
// its address.
func TestClientIPHeaderTheProxyDoesNotWriteIsIgnored(t *testing.T) {
	for _, headers := range []string{"X-Real-IP X-Forwarded-For", "X-Forwarded-For X-Real-IP"} {
		t.Run(headers, func(t *testing.T) { clientIPHeaderIgnored(t, headers) })
	}
}

func clientIPHeaderIgnored(t *testing.T, headers string) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t\tclient_ip_headers " + headers + "\n\t}"
	g.start("ip_limit 3 10m")
	for i := 1; i <= 4; i++ {
		v := newVisitor(t)
		v.client.Transport = headerTransport{"X-Real-IP": fmt.Sprintf("198.51.100.%d", i), "X-Forwarded-For": "203.0.113.5"}
		r := v.post("/.otp/verify", url.Values{"csrf": {v.get("/.otp/login").csrf()}, "code": {"123456"}})
		if i <= 3 {
			wantStatus(t, "verify", r, http.StatusUnauthorized)
		} else {
			wantRetryAfter(t, "fourth verify from one client", r, 10*time.Minute)
		}
	}
}

// TestRegionsApplyToAUsersPhone: in users mode the code goes to the user's phone, which must be
// in a region codes may go to, as a typed one must.
func TestRegionsApplyToAUsersPhone(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"users": map[string]string{"alice": alice}, "phones": nil, "regions": []string{"GB"}})
	v := unitVisit(t)
	v.user = "alice"
	if o := h.flows.start(context.Background(), v, "", ""); o.kind != badPhone || o.key != "err_region" {
		t.Fatalf("a user's US phone with regions GB: %+v", o)
	}
}
