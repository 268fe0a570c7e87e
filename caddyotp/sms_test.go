package caddyotp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func TestSMSSegmentsCountGSMAndUCS2(t *testing.T) {
	for body, want := range map[string]int{
		strings.Repeat("a", 160): 1, strings.Repeat("a", 161): 2, strings.Repeat("a", 306): 2, strings.Repeat("a", 307): 3,
		strings.Repeat("€", 80): 1, strings.Repeat("€", 81): 2, // the extension table takes two septets
		strings.Repeat("ó", 70): 1, strings.Repeat("ó", 71): 2, strings.Repeat("ó", 134): 2, strings.Repeat("ó", 135): 3,
	} {
		if got := smsSegments(body); got != want {
			t.Errorf("%d × %q: %d segments, want %d", len([]rune(body)), []rune(body)[0], got, want)
		}
	}
}

// TestDefaultSMSStaysInOneSegmentInEveryLanguage: with a 6-digit code, a site whose name and
// host take smsSiteBudget characters together (or a host of half that without site_name) gets
// a one-segment default SMS in every language, Spanish's UCS-2 included; a character more
// does not fit in Spanish.
func TestDefaultSMSStaysInOneSegmentInEveryLanguage(t *testing.T) {
	host := strings.Repeat("h", smsSiteBudget/2-4) + ".com" // smsSiteBudget/2 characters
	site := strings.Repeat("S", smsSiteBudget-len(host))
	for lang, w := range catalog {
		for _, s := range []string{site, host} {
			body := smsBody(w["sms"], "123456", s, host, host)
			if n := smsSegments(body); n != 1 {
				t.Errorf("%s, site %q: %d segments: %q", lang, s, n, body)
			}
		}
	}
	if isGSM7(catalog["es"]["sms"]) {
		t.Errorf("the Spanish SMS is GSM-7: the budget is set by UCS-2 and should be looked at again")
	}
	if n := smsSegments(smsBody(catalog["es"]["sms"], "123456", site+"S", host, host)); n != 2 {
		t.Errorf("one character over the budget: %d segments, want 2 (the budget is not tight)", n)
	}
}

// TestLongSMSIsWarnedAtLoad: a site_name that makes the default SMS two segments is reported
// at load, with the budget; one within it is not.
func TestLongSMSIsWarnedAtLoad(t *testing.T) {
	// public_url is http://localhost:9080: a 9-character host.
	h, _ := newUnitHandler(t, map[string]any{"site_name": strings.Repeat("S", smsSiteBudget-len("localhost"))})
	for _, w := range h.warnings() {
		if strings.Contains(w, "segments") {
			t.Errorf("a site within the budget is warned: %s", w)
		}
	}
	h, _ = newUnitHandler(t, map[string]any{"site_name": strings.Repeat("S", smsSiteBudget-len("localhost")+1)})
	found := false
	for _, w := range h.warnings() {
		found = found || strings.Contains(w, "takes 2 segments in es") && strings.Contains(w, "shorten site_name")
	}
	if !found {
		t.Errorf("no warning for a two-segment SMS: %q", h.warnings())
	}
}

// TestOnDemandTLSNamesAreNeverBoundToTheCode: without public_url, a code is bound ("@host
// #code", which browsers autofill on that host only) to a host written as a site address,
// never to a name that on-demand TLS took from the client, though the TLS server name and the
// Host header agree on it.
func TestOnDemandTLSNamesAreNeverBoundToTheCode(t *testing.T) {
	sms := restcommtest.NewServer()
	t.Cleanup(sms.Close)
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})) // every name may have a certificate
	t.Cleanup(ask.Close)
	gate := func(store string) string {
		return fmt.Sprintf(`otp {
		%s
		phones %s
		store memory %s
		send_limit 10 10m
	}
	respond "in"`, senderBlock(sms, sms.AuthToken), alice, storeName(t)+store)
	}
	loadCaddyfile(t, nil, "local_certs\n\tskip_install_trust\n\ton_demand_tls {\n\t\task "+ask.URL+"\n\t}", fmt.Sprintf(`https://localhost:9443 {
	tls internal
	%s
}
https://:9443 {
	tls internal {
		on_demand
	}
	%s
}
`, gate("a"), gate("b")))
	for i, tc := range []struct{ host, bound string }{
		{"localhost", "\n\n@localhost #"},
		{"evil-login.test", ""},
		{strings.Repeat("a", 60) + ".evil-login.test", ""},
	} {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: tc.host}, // Caddy's internal CA
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:9443")
			},
		}
		base := "https://" + tc.host + ":9443"
		waitForCertificate(t, &http.Client{Transport: tr}, base+"/")
		v := newVisitorAt(t, base)
		v.client.Transport = tr
		_, sent := v.startSignIn("/", alice)
		wantStatus(t, "send via "+tc.host, sent, http.StatusSeeOther)
		msgs, err := sms.WaitMessages(i+1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		body := msgs[i].Body
		if tc.bound != "" && !strings.Contains(body, tc.bound) {
			t.Errorf("SMS for a site address %s is not bound to it: %q", tc.host, body)
		}
		if tc.bound == "" && (strings.Contains(body, "@") || strings.Contains(body, "evil")) {
			t.Errorf("SMS for the on-demand name %.30s... names it: %q", tc.host, body)
		}
		clock.Advance(61 * time.Second)
	}
}
