package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// What strangers can take of the pumping shield's counts: its quarantines are a lever to lock
// others out, so what one gate, one address range and one typed number can add is bounded.

// twoShieldedSites loads two site blocks into one Caddy that share one memory store and the
// key, without public_url, so that their default audiences are the same: http://localhost:9080
// with the otp lines a, and http://127.0.0.1:9080 with b. Visitors may come from any address,
// through the trusted proxy.
func twoShieldedSites(t *testing.T, sms *restcommtest.Server, a, b string) {
	t.Helper()
	block := func(address, lines string) string {
		return fmt.Sprintf("%s {\n\totp {\n\t\t%s\n\t\tstore memory %s\n\t\t%s\n\t}\n\trespond \"in\"\n}\n",
			address, senderBlock(sms, sms.AuthToken), storeName(t), strings.ReplaceAll(lines, "\n", "\n\t\t"))
	}
	loadCaddyfile(t, nil, "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}", block(site, a)+block(siteB, b))
	forgetDeliveries()
}

// TestOneGatesQuarantineLeavesAnotherGatesNumbersAlone: ten codes to numbers of one US prefix
// on a public gate quarantine the prefix there, and the staff gate of the same Caddy, on the
// same store and key, still texts its own number on that prefix.
func TestOneGatesQuarantineLeavesAnotherGatesNumbersAlone(t *testing.T) {
	sms := newRestcomm(t)
	twoShieldedSites(t, sms, "phones *\nregions US", "phones "+alice+" "+bob)
	pump(t, site, "+1201555", 10, 160).settled() // +12015550160 to +12015550169, from ten ranges
	pump(t, site, "+1201555", 1, 170).settled()
	if n := sentTo(sms, "+1201555"); n != defaultPrefixLimit {
		t.Fatalf("%d SMS through the public gate, want prefix_limit's %d: it quarantined the prefix", n, defaultPrefixLimit)
	}
	staff := from(t, siteB, "192.0.2.1")
	csrf, r := staff.startSignIn("/", bob)
	wantStatus(t, "bob's send on the staff gate", r, http.StatusSeeOther)
	code := codeTo(t, sms, bob)
	wantStatus(t, "bob's code", staff.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	wantStatus(t, "bob, signed in on the staff gate", staff.get("/"), http.StatusOK)
}

// codeTo waits for the first SMS to phone and returns its code: the digits it starts with (a
// gate without public_url, on http, adds no autofill line).
func codeTo(t *testing.T, sms *restcommtest.Server, phone string) string {
	t.Helper()
	var code string
	eventually(t, "an SMS to "+phone, func() bool {
		for _, m := range sms.Messages() {
			if m.To == phone {
				code = regexpDigits.FindString(m.Body)
				return strings.HasPrefix(m.Body, code) && code != ""
			}
		}
		return false
	})
	return code
}

// TestAMonitoringGateHoldsNothingBackOnAnotherGate: a gate in monitor mode counts past
// prefix_limit and reports it, and a gate in on mode of the same Caddy, with the same numbers
// and store, still texts that prefix: monitor sets no hold and spends no count of it.
func TestAMonitoringGateHoldsNothingBackOnAnotherGate(t *testing.T) {
	sms := newRestcomm(t)
	twoShieldedSites(t, sms, "phones *\nregions GB\npumping_shield monitor", "phones *\nregions GB")
	pump(t, site, ukRange, 12, 0).settled()
	if n := sentTo(sms, ukRange); n != 12 {
		t.Fatalf("%d SMS through the monitoring gate, want all 12", n)
	}
	pump(t, siteB, ukRange, 1, 100).settled()
	if n := sentTo(sms, ukRange); n != 13 {
		t.Errorf("%d SMS after a code through the gate in on mode, want 13: the monitoring gate held it back", n)
	}
}

// TestMonitorModeSetsNoHold: the shield in monitor mode, past prefix_limit, leaves no hold in
// the store, where a shield in on mode would read it.
func TestMonitorModeSetsNoHold(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"phones": []string{"*"}, "pumping_shield": map[string]any{"mode": "monitor", "prefix_limit": 3}})
	s, ctx := h.flows.deliveries.shield, context.Background()
	for i := 0; i < 6; i++ {
		f := &flow{Phone: fmt.Sprintf("%s%04d", ukRange, i), Allowed: true, Sent: h.now().UnixNano()}
		if a, err := s.admit(ctx, f, fmt.Sprintf("203.0.%d.7", i)); !a.ok || err != nil {
			t.Fatalf("code %d in monitor mode: %v %v", i, a, err)
		}
	}
	s.monitor = false // the same gate's count, read as a shield in on mode reads it
	if hold, err := h.store.Get(ctx, pumpHoldKey(s.prefixTag(ukRange))); hold != nil || err != nil {
		t.Errorf("monitor mode left a hold %q (%v)", hold, err)
	}
}

// TestOneAddressResendingToOneNumberNeverQuarantinesItsPrefix: a number counts once in its
// prefix however many codes it is sent, so one address that asks again and again for codes to
// one number (a colleague's) never holds back the prefix.
func TestOneAddressResendingToOneNumberNeverQuarantinesItsPrefix(t *testing.T) {
	g := pumpedGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m\n\t\tpumping_shield {\n\t\t\tprefix_limit 3\n\t\t}")
	v := from(t, site, "198.51.100.7")
	csrf, r := v.startSignIn("/", ukRange+"0001")
	wantStatus(t, "send", r, http.StatusSeeOther)
	v.settled()
	for i := 0; i < 8; i++ {
		clockPastResend()
		wantStatus(t, "resend", v.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
		v.settled()
	}
	if n := sentTo(g.sms, ukRange); n != 9 {
		t.Fatalf("%d SMS to the number, want all 9", n)
	}
	pump(t, site, ukRange, 1, 50).settled() // another number of the prefix, from another range
	if n := sentTo(g.sms, ukRange); n != 10 {
		t.Errorf("%d SMS after a code to another number of the prefix, want 10: one address's resends quarantined it", n)
	}
}

// TestOneAddressRangeAloneCannotQuarantineAPrefix: the addresses of one /24 may add at most
// half of prefix_limit (rounded up) to a prefix's count; past that, their codes to new numbers
// of it are held back, and the prefix stays open to everyone else.
func TestOneAddressRangeAloneCannotQuarantineAPrefix(t *testing.T) {
	g := pumpedGate(t, "pumping_shield {\n\t\t\tprefix_limit 4\n\t\t}")
	var p pumped
	for i := 0; i < 10; i++ { // one /24, ten numbers of the prefix
		v := from(t, site, fmt.Sprintf("198.51.100.%d", i))
		_, r := v.startSignIn("/", fmt.Sprintf("%s%04d", ukRange, i))
		wantStatus(t, "a code from the range", r, http.StatusSeeOther)
		p.visitors = append(p.visitors, v)
	}
	p.settled()
	if n := sentTo(g.sms, ukRange); n != 2 {
		t.Errorf("%d SMS to the prefix from one range, want half of prefix_limit 4", n)
	}
	pump(t, site, ukRange, 1, 100).settled() // another range, another number
	if n := sentTo(g.sms, ukRange); n != 3 {
		t.Errorf("%d SMS after a code from another range, want 3: one range quarantined the prefix", n)
	}
}

// TestACodeTheCountryCapStopsStartsNoQuarantine: a code that country_limit holds back does not
// count in its prefix, and so cannot start the prefix's quarantine: once the country is under
// its cap again, the prefix's next code goes out.
func TestACodeTheCountryCapStopsStartsNoQuarantine(t *testing.T) {
	g := pumpedGate(t, "pumping_shield {\n\t\t\tprefix_limit 3\n\t\t\tcountry_limit 3 per 24h\n\t\t}")
	pump(t, site, ukRange, 2, 0).settled() // the prefix at 2 of its 3, GB at 2 of its 3
	other := from(t, site, "192.0.2.1")
	csrf, r := other.startSignIn("/", "+447400990000") // another GB prefix: GB at its cap
	wantStatus(t, "send", r, http.StatusSeeOther)
	_, code := smsCode(t, g.sms, 3)
	pump(t, site, ukRange, 1, 2).settled() // held back by the cap on GB
	if n := sentTo(g.sms, ukRange); n != 2 {
		t.Fatalf("%d SMS to the prefix with GB at its cap, want 2", n)
	}
	wantStatus(t, "verify", other.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther) // GB at 2 again
	pump(t, site, ukRange, 1, 3).settled()
	if n := sentTo(g.sms, ukRange); n != 3 {
		t.Errorf("%d SMS to the prefix once GB was under its cap, want 3: the code the cap held back quarantined the prefix", n)
	}
}
