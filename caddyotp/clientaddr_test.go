package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestUnreadableForwardedEntryDoesNotHandTheCountToTheClient: behind a trusted proxy on a server
// that is not strict, only the rightmost entry counts; when it cannot be read, the proxy's own
// address does, never an entry the client wrote.
func TestUnreadableForwardedEntryDoesNotHandTheCountToTheClient(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}"
	g.start("ip_limit 3 10m")
	for i := 1; i <= 4; i++ {
		v := newVisitor(t)
		v.client.Transport = headerTransport{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d, unknown", i)}
		r := v.post("/.otp/verify", url.Values{"csrf": {v.get("/.otp/login").csrf()}, "code": {"123456"}})
		if i <= 3 {
			wantStatus(t, "verify", r, http.StatusUnauthorized)
		} else {
			wantRetryAfter(t, "fourth verify behind the proxy", r, 10*time.Minute)
		}
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

// TestClientCannotChooseItsAddressBehindTrustedProxy: behind a trusted proxy on a server that is
// not strict, the address the proxy saw is counted, not the one the client wrote in front of it.
func TestClientCannotChooseItsAddressBehindTrustedProxy(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}"
	g.start("ip_limit 3 10m\n\t\tresend_after 1s")
	send := func(i int) response {
		v := newVisitor(t)
		// The client wrote a new address each time; the proxy appended the one it saw.
		v.client.Transport = headerTransport{"X-Forwarded-For": "198.51.100." + strconv.Itoa(i) + ", 203.0.113.5"}
		_, r := v.startSignIn("/", stranger)
		clock.Advance(2 * time.Second)
		return r
	}
	for i := 1; i <= 3; i++ {
		wantStatus(t, "send "+strconv.Itoa(i), send(i), http.StatusSeeOther)
	}
	wantRetryAfter(t, "fourth send from one client behind the proxy", send(4), 10*time.Minute)
	if n := len(logEventsContaining(g.logs(), "trusted_proxies_strict")); n != 1 {
		t.Errorf("%d log lines ask for trusted_proxies_strict, want exactly 1", n)
	}
	if !strings.Contains(g.logs(), `"level":"error"`) {
		t.Errorf("the advice is not logged at error level")
	}
}

func TestIPv6ClientsCountByTheir64(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	h, _ := newUnitHandler(t, map[string]any{"ip_limit": map[string]any{"count": 2, "window": "10m"}})
	status := func(ip string) int {
		flowCookie, csrf := unitFlow(t, h)
		r := httptest.NewRequest(http.MethodPost, "/.otp/send", strings.NewReader("csrf="+csrf+"&phone=%2B12015550199"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(flowCookie)
		w := httptest.NewRecorder()
		if err := serveAs(h, w, r, ip); err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	for _, ip := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"} {
		if got := status(ip); got != http.StatusSeeOther {
			t.Fatalf("send from %s: %d", ip, got)
		}
		clock.Advance(time.Minute)
	}
	if got := status("2001:db8:1:2:abcd::9"); got != http.StatusTooManyRequests {
		t.Fatalf("third send from one /64: %d, want 429", got)
	}
	if got := status("2001:db8:1:3::1"); got != http.StatusSeeOther {
		t.Fatalf("send from the next /64: %d", got)
	}
}

// withClientIP gives r what Caddy's server puts in every request's context, with the client
// address ip.
func withClientIP(r *http.Request, ip string) *http.Request {
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
	return r.WithContext(ctx)
}

func TestIPLimitCountsCaddysClientIPBehindTrustedProxies(t *testing.T) {
	clock.StartWindow(10 * time.Minute) // the requests below count in one window
	g := newGate(t)
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t\tclient_ip_headers X-Forwarded-For\n\t}"
	g.start("ip_limit 3 10m\n\t\tresend_after 1s")
	from := func(ip string) *visitor {
		v := newVisitor(t)
		v.client.Transport = headerTransport{"X-Forwarded-For": ip}
		return v
	}
	_, r := from("203.0.113.5").startSignIn("/", alice)
	wantStatus(t, "send 1", r, http.StatusSeeOther)
	attacker := from("203.0.113.5")
	csrf := attacker.get("/.otp/login").csrf()
	for i := 2; i <= 3; i++ {
		clock.Advance(2 * time.Second) // past resend_after, which holds per phone
		wantStatus(t, "send "+strconv.Itoa(i), attacker.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {stranger}}), http.StatusSeeOther)
	}
	wantRetryAfter(t, "fourth send from one client IP", attacker.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {bob}}), 10*time.Minute)
	_, r = from("203.0.113.6").startSignIn("/", bob)
	wantStatus(t, "another client behind the same proxy", r, http.StatusSeeOther)
}
