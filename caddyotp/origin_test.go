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

// TestNullOriginIsRefusedUnlessTheBrowserSaysSameOrigin: browsers send Origin: null for a form
// on a page with Referrer-Policy: no-referrer, from the gate's own pages and from anyone
// else's alike. Only Sec-Fetch-Site, which a page cannot set, tells the gate's own forms apart.
func TestNullOriginIsRefusedUnlessTheBrowserSaysSameOrigin(t *testing.T) {
	g := startGate(t, "")
	for _, tc := range []struct {
		fetchSite string
		want      int
	}{{"", http.StatusForbidden}, {"same-site", http.StatusForbidden}, {"cross-site", http.StatusForbidden}, {"same-origin", http.StatusSeeOther}} {
		v := newVisitor(t)
		csrf := v.get("/.otp/login").csrf()
		req, _ := http.NewRequest(http.MethodPost, site+"/.otp/send", strings.NewReader(url.Values{"csrf": {csrf}, "phone": {alice}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "null")
		if tc.fetchSite != "" {
			req.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		wantStatus(t, "Origin: null, Sec-Fetch-Site: "+tc.fetchSite, v.do(req), tc.want)
	}
	if n := len(g.sms.Messages()); n > 1 {
		t.Errorf("%d SMS sent, want at most the one of the same-origin form", n)
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

// hostTransport sends every request with the Host header of the attacker's choice, as a
// client of a site block that answers any host can.
type hostTransport string

func (h hostTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Host = string(h)
	return http.DefaultTransport.RoundTrip(r)
}

func TestVoiceScriptURLIgnoresHostHeader(t *testing.T) {
	g := newGate(t)
	g.address = "http://:9080" // answers any host, like `:80` or a load balancer's backend
	g.senderOpts = []string{"voice"}
	g.start("public_url http://localhost:9080")
	v := newVisitor(t)
	v.client.Transport = hostTransport("attacker.example")
	askForCall(t, g, v)
	calls, err := g.sms.WaitCalls(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c := calls[0]; !strings.HasPrefix(c.URL, "http://localhost:9080/.otp/voice/") || c.FetchStatus != http.StatusOK {
		t.Fatalf("the provider was told to fetch the script from %q (status %d), want public_url", c.URL, c.FetchStatus)
	}
}

func TestSMSDoesNotFollowTheHostHeader(t *testing.T) {
	g := newGate(t)
	g.address = "http://:9080"
	g.start("site_name Example")
	v := newVisitor(t)
	v.client.Transport = hostTransport("accounts-login.evil.test")
	v.origin = "http://accounts-login.evil.test" // the attacker's client writes what it likes
	_, r := v.startSignIn("/", alice)
	wantStatus(t, "send", r, http.StatusSeeOther)
	msgs, err := g.sms.WaitMessages(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	body := msgs[0].Body
	if strings.Contains(body, "evil") || strings.Contains(body, "@") || !strings.Contains(body, "Example") {
		t.Fatalf("plain HTTP without public_url: SMS %q names the Host header or binds an autofill host", body)
	}

	g.reload("site_name Example\n\t\tpublic_url http://localhost:9080", "upstream")
	clock.Advance(31 * time.Second)
	w := newVisitor(t) // a visitor on the page public_url names
	w.client.Transport = hostTransport("accounts-login.evil.test")
	_, r = w.startSignIn("/", bob)
	wantStatus(t, "send with public_url", r, http.StatusSeeOther)
	msgs, err = g.sms.WaitMessages(2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if body := msgs[1].Body; strings.Contains(body, "evil") || !strings.HasSuffix(body, "\n@localhost #"+body[:6]) {
		t.Fatalf("with public_url: SMS %q, want the host of public_url only", body)
	}
}

func TestForgedFlowIDIsReplaced(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	forged := strings.Repeat("A", 43)
	v.setCookie("caddy_otp_flow", forged)
	r := v.get("/.otp/login")
	wantStatus(t, "phone page", r, http.StatusOK)
	if got := v.cookie("caddy_otp_flow"); got == forged || got == "" {
		t.Fatalf("the gate kept the flow id the client chose")
	}
	wantStatus(t, "send on the gate's own flow", v.post("/.otp/send", url.Values{"csrf": {r.csrf()}, "phone": {alice}}), http.StatusSeeOther)
	g.code(1)
}

func TestNextWithDotSegmentsCannotLeaveTheSite(t *testing.T) {
	for next, want := range map[string]string{
		"/..//evil.test":        "/evil.test",
		"/a/../..//evil.test":   "/evil.test",
		"/%2e%2e//evil.test":    "/evil.test",
		"/./a/./b/":             "/a/b/",
		"/reports?q=1":          "/reports?q=1",
		"/a/..":                 "/",
		"/.otp/../.otp/login":   "/",
		"/x/../.otp/verify?a=b": "/",
	} {
		if got := localPath(next, "/.otp"); got != want {
			t.Errorf("localPath(%q) = %q, want %q", next, got, want)
		}
	}
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/..//evil.test", alice)
	_, code := g.code(1)
	r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	wantStatus(t, "verify", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/evil.test" {
		t.Fatalf("after sign-in Location = %q, want /evil.test", loc)
	}
}

func TestFormFromAnotherSchemeIsRefused(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf := v.get("/.otp/login").csrf()
	v.origin = "https://localhost:9080"
	wantStatus(t, "Origin with another scheme", v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}}), http.StatusForbidden)
	if n := len(g.sms.Messages()); n != 0 {
		t.Fatalf("%d SMS sent", n)
	}
}
