package caddyotp

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func TestCookiesOnHTTPSAreHostPrefixedSecureHttpOnlyLax(t *testing.T) {
	sms := restcommtest.NewServer()
	defer sms.Close()
	loadCaddyfile(t, nil, "local_certs\n\tskip_install_trust", fmt.Sprintf(`https://localhost:9443 {
	tls internal
	otp {
		%s
		phones %s
		store memory %s
	}
	respond "in"
}
`, senderBlock(sms, sms.AuthToken), alice, storeName(t)))

	v := newVisitorAt(t, "https://localhost:9443")
	v.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // Caddy's internal CA
	waitForCertificate(t, &http.Client{Transport: v.client.Transport}, "https://localhost:9443/")
	login := v.get("/.otp/login")
	wantStatus(t, "login", login, http.StatusOK)
	assertGateCookie(t, login.header, "__Host-caddy_otp_flow")

	r := v.post("/.otp/send", url.Values{"csrf": {login.csrf()}, "phone": {alice}})
	wantStatus(t, "send", r, http.StatusSeeOther)
	_, code := smsCode(t, sms, 1)
	r = v.post("/.otp/verify", url.Values{"csrf": {login.csrf()}, "code": {code}})
	wantStatus(t, "verify", r, http.StatusSeeOther)
	assertGateCookie(t, r.header, "__Host-caddy_otp")
	wantStatus(t, "protected", v.get("/"), http.StatusOK)

	// A cookie without the prefix (as a subdomain could plant) does not count on HTTPS.
	plain := newVisitorAt(t, "https://localhost:9443")
	plain.client.Transport = v.client.Transport
	plain.setCookie("caddy_otp", v.cookie("__Host-caddy_otp"))
	wantStatus(t, "unprefixed cookie", plain.get("/"), http.StatusSeeOther)
}

// waitForCertificate waits while Caddy's internal CA issues the site's certificate.
func waitForCertificate(t *testing.T, c *http.Client, u string) {
	t.Helper()
	var err error
	for i := 0; i < 100; i++ {
		var resp *http.Response
		if resp, err = c.Get(u); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no TLS on %s: %v", u, err)
}

// assertGateCookie checks the Set-Cookie of name: __Host- rules (Secure, Path=/, no Domain),
// HttpOnly and SameSite=Lax.
func assertGateCookie(t *testing.T, h http.Header, name string) {
	t.Helper()
	for _, line := range h.Values("Set-Cookie") {
		if !strings.HasPrefix(line, name+"=") {
			continue
		}
		for _, want := range []string{"; Path=/", "; HttpOnly", "; Secure", "; SameSite=Lax"} {
			if !strings.Contains(line, want) {
				t.Errorf("%s lacks %q: %s", name, want, line)
			}
		}
		if strings.Contains(strings.ToLower(line), "domain=") {
			t.Errorf("%s has a Domain: %s", name, line)
		}
		return
	}
	t.Errorf("no Set-Cookie for %s in %q", name, h.Values("Set-Cookie"))
}
