package caddyotp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Regression tests for what an outside review of the closed holes found, named for the attack.

// TestFlowOfAnotherGateCannotBeResentHere: two site blocks that share a store and a cookie
// name; a flow started on the loose one (phones *) cannot be carried to the strict one to have
// it text or call a number the strict one would refuse.
func TestFlowOfAnotherGateCannotBeResentHere(t *testing.T) {
	sms := newRestcomm(t)
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	otp {
		%[1]s
		public_url http://localhost:9080
		phones %[2]s
		regions US
		store memory %[3]s
	}
	respond "strict"
}
http://127.0.0.1:9080 {
	otp {
		%[1]s
		public_url http://127.0.0.1:9080
		phones *
		store memory %[3]s
		resend_after 1s
	}
	respond "loose"
}
`, senderBlock(sms, sms.AuthToken), alice, storeName(t)))
	loose := newVisitorAt(t, "http://127.0.0.1:9080")
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

// TestSMSHostIsNotTheSNIOfAnotherSite: on HTTPS without public_url, the autofill host is the
// TLS server name only when it is the host the request was for.
func TestSMSHostIsNotTheSNIOfAnotherSite(t *testing.T) {
	sms := newRestcomm(t)
	loadCaddyfile(t, nil, "local_certs\n\tskip_install_trust", fmt.Sprintf(`https://a.localhost:9443 {
	tls internal
	otp {
		%s
		phones %s
		store memory %s
	}
	respond "a"
}
https://evil.localhost:9443 {
	tls internal
	respond "evil"
}
`, senderBlock(sms, sms.AuthToken), alice, storeName(t)))
	dial := func(sni string) *http.Transport {
		return &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: sni}, // Caddy's internal CA
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:9443")
			},
		}
	}
	waitForCertificate(t, &http.Client{Transport: dial("evil.localhost")}, "https://evil.localhost:9443/")
	waitForCertificate(t, &http.Client{Transport: dial("a.localhost")}, "https://a.localhost:9443/")
	v := newVisitorAt(t, "https://a.localhost:9443")
	v.client.Transport = dial("evil.localhost")
	_, r := v.startSignIn("/", alice)
	wantStatus(t, "send with another site's SNI", r, http.StatusSeeOther)
	msgs, err := sms.WaitMessages(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(msgs[0].Body, "evil") {
		t.Fatalf("SMS %q names the host the client's SNI chose", msgs[0].Body)
	}
	w := newVisitorAt(t, "https://a.localhost:9443")
	w.client.Transport = dial("a.localhost")
	clock.Advance(31 * time.Second)
	w.startSignIn("/", alice)
	msgs, err = sms.WaitMessages(2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msgs[1].Body, "\n@a.localhost #") {
		t.Fatalf("SMS %q lacks the autofill line of the site's own name", msgs[1].Body)
	}
}

// TestSessionOfASiteWithAnotherPublicURLIsRefused: two site blocks on one store, path and
// cookie name, each with its own public_url, are two gates.
func TestSessionOfASiteWithAnotherPublicURLIsRefused(t *testing.T) {
	sms := newRestcomm(t)
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	otp {
		%[1]s
		public_url http://localhost:9080
		phones *
		store memory %[2]s
	}
	respond "a"
}
http://127.0.0.1:9080 {
	otp {
		%[1]s
		public_url http://127.0.0.1:9080
		phones *
		store memory %[2]s
	}
	respond "b"
}
`, senderBlock(sms, sms.AuthToken), storeName(t)))
	a := newVisitor(t)
	a.signInWith(sms, alice)
	b := newVisitorAt(t, "http://127.0.0.1:9080")
	b.setCookie("caddy_otp", a.cookie("caddy_otp"))
	wantStatus(t, "the other site's session", b.get("/"), http.StatusSeeOther)
}

// TestOneAddressCannotRaiseThePhonesFailureCount: tries refused because the address's count is
// over do not count towards the phone's own lock.
func TestOneAddressCannotRaiseThePhonesFailureCount(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"lockout": map[string]any{"count": 3, "window": "15m"}})
	ctx := context.Background()
	for i := 0; i < 20; i++ { // parallel tries, all counted before any was compared
		if _, _, err := h.limits.countTry(ctx, alice, "203.0.113.5"); err != nil {
			t.Fatal(err)
		}
	}
	n, wait, err := h.limits.countTry(ctx, alice, "198.51.100.7")
	if err != nil || wait != 0 {
		t.Fatalf("the owner's try from elsewhere: %+v, locked for %s, %v", n, wait, err)
	}
	if n.phone > 4 {
		t.Errorf("the phone's count is %d after 3 tries that could be compared and the owner's", n.phone)
	}
}

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

func TestPublicURLPortIsAsBrowsersWriteIt(t *testing.T) {
	for raw, want := range map[string]string{
		"https://example.com:443":  "https://example.com",
		"https://example.com:0443": "https://example.com",
		"https://Example.COM:8443": "https://example.com:8443",
		"http://localhost:80":      "http://localhost",
	} {
		if _, origin, err := parsePublicURL(raw); err != nil || origin != want {
			t.Errorf("parsePublicURL(%q) = %q, %v; want %q", raw, origin, err, want)
		}
	}
	for _, raw := range []string{"https://example.com:", "https://example.com:0", "https://example.com:99999", "https://example.com:x"} {
		if _, _, err := parsePublicURL(raw); err == nil {
			t.Errorf("parsePublicURL(%q) accepted", raw)
		}
	}
}
