package caddyotp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

var regexpDigits = regexp.MustCompile(`[0-9]+`)

// ukRange is one UK mobile number range: +44 7400 12xxxx, prefix +44740012 and its 10,000 numbers.
const ukRange = "+44740012"

// pumpedGate is a gate that texts anyone in GB and the US, behind a trusted proxy, so that
// each test visitor may come from an address of its own.
func pumpedGate(t *testing.T, extra string) *gate {
	t.Helper()
	g := newGate(t)
	g.phones = "*"
	g.global = "servers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t}"
	return g.start("regions GB US\n\t\t" + extra)
}

// pumped is what a pump of one prefix got: its visitors and their answers to /send.
type pumped struct {
	visitors []*visitor
	answers  []response
}

// pump asks for n codes to distinct numbers of prefix, each from an address (and /24) of its
// own, and nobody types a code.
func pump(t *testing.T, base, prefix string, n, from0 int) pumped {
	t.Helper()
	var p pumped
	for i := 0; i < n; i++ {
		v := from(t, base, fmt.Sprintf("203.%d.%d.7", (from0+i)/250, (from0+i)%250))
		_, r := v.startSignIn("/", fmt.Sprintf("%s%04d", prefix, from0+i))
		p.visitors, p.answers = append(p.visitors, v), append(p.answers, r)
	}
	return p
}

// settled waits until every pumped code's delivery (real or simulated) has ended its send.
func (p pumped) settled() {
	for _, v := range p.visitors {
		v.settled()
	}
}

// sentTo counts the provider's messages to numbers of prefix.
func sentTo(sms *restcommtest.Server, prefix string) int {
	n := 0
	for _, m := range sms.Messages() {
		if strings.HasPrefix(m.To, prefix) {
			n++
		}
	}
	return n
}

// adminPumping calls the admin API's /otp/pumping (path after it) with method.
func adminPumping(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://localhost:2999/otp/pumping"+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// quarantinedPrefixes is what GET /otp/pumping lists.
func quarantinedPrefixes(t *testing.T) []string {
	t.Helper()
	status, body := adminPumping(t, http.MethodGet, "")
	var got struct {
		Quarantined []struct{ Prefix, Country string }
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil {
		t.Fatalf("GET /otp/pumping: %d %s", status, body)
	}
	var out []string
	for _, q := range got.Quarantined {
		out = append(out, q.Prefix+" "+q.Country)
	}
	return out
}

// codePageOf is the visitor's code page with what differs between any two visitors (their
// number, tokens, nonces and the seconds that pass) taken out.
func codePageOf(v *visitor, phone string) string {
	body := v.get("/.otp/verify").body
	body = strings.ReplaceAll(body, shownPhone(&flow{Phone: phone}), "PHONE")
	body = regexpNonce.ReplaceAllString(body, "")
	body = regexpCSRF.ReplaceAllString(body, "")
	return regexpDigits.ReplaceAllString(body, "N")
}

// TestPumpedPrefixIsQuarantinedAndHonestVisitorsSignIn: with the shield's defaults, 100 codes
// to numbers of one UK range, asked from 100 addresses and never typed, reach the provider
// only prefix_limit times; every answer is the first's, and the code pages of the held-back
// numbers are the sent ones'. In the same minutes 30 visitors on US numbers, who type their
// codes, all get their SMS and sign in. The quarantine is logged once, counted and listed;
// lifting it lets the next code go out.
func TestPumpedPrefixIsQuarantinedAndHonestVisitorsSignIn(t *testing.T) {
	g := pumpedGate(t, "")
	before := scrape(t)
	var uk pumped
	for i := 0; i < 10; i++ { // 10 rounds of 10 pumped codes and 3 honest sign-ins
		p := pump(t, site, ukRange, 10, 10*i)
		uk.visitors, uk.answers = append(uk.visitors, p.visitors...), append(uk.answers, p.answers...)
		for j := 0; j < 3; j++ {
			us := fmt.Sprintf("+1201555%04d", 200+3*i+j)
			v := from(t, site, fmt.Sprintf("192.0.2.%d", 3*i+j))
			v.signIn(g, us)
			wantStatus(t, "the signed-in US visitor "+us, v.get("/"), http.StatusOK)
		}
	}
	uk.settled()
	for i, r := range uk.answers {
		if r.status != uk.answers[0].status || r.header.Get("Location") != uk.answers[0].header.Get("Location") {
			t.Errorf("pumped code %d: %d to %q, the first: %d to %q", i, r.status, r.header.Get("Location"), uk.answers[0].status, uk.answers[0].header.Get("Location"))
		}
	}
	wantStatus(t, "the first pumped code", uk.answers[0], http.StatusSeeOther)
	if n := sentTo(g.sms, ukRange); n != defaultPrefixLimit {
		t.Errorf("%d SMS reached the pumped range, want prefix_limit's %d", n, defaultPrefixLimit)
	}
	if n := sentTo(g.sms, "+1"); n != 30 {
		t.Errorf("%d SMS to the US visitors, want 30", n)
	}
	if sent, held := codePageOf(uk.visitors[0], ukRange+"0000"), codePageOf(uk.visitors[99], ukRange+"0099"); sent != held {
		t.Errorf("the code page of a held-back number differs from a sent one's:\nsent: %.2000s\nheld: %.2000s", sent, held)
	}
	after := scrape(t)
	for series, want := range map[string]float64{
		`caddy_otp_pumping_total{action="blocked",country="GB"}`:     90,
		`caddy_otp_pumping_total{action="quarantined",country="GB"}`: 1,
		`caddy_otp_pumping_total{action="blocked",country="US"}`:     0,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s went up by %v, want %v", series, got, want)
		}
	}
	logged := g.waitLogEvents("number prefix quarantined: SMS pumping suspected", 1)
	if len(logged) != 1 || logged[0]["prefix"] != ukRange || logged[0]["country"] != "GB" || logged[0]["unverified"] != float64(defaultPrefixLimit) || logged[0]["level"] != "warn" {
		t.Errorf("the quarantine's log lines: %v, want one at warn with prefix, country and count", logged)
	}
	if got := quarantinedPrefixes(t); len(got) != 1 || got[0] != ukRange+" GB" {
		t.Errorf("GET /otp/pumping lists %q, want the pumped range", got)
	}

	for _, bad := range []string{"/447911", "/+", "/+0123", "/+4479x", "/+44%207911"} {
		if status, body := adminPumping(t, http.MethodDelete, bad); status != http.StatusBadRequest {
			t.Errorf("DELETE /otp/pumping%s: %d %s, want 400", bad, status, body)
		}
	}
	if status, body := adminPumping(t, http.MethodPost, ""); status != http.StatusMethodNotAllowed {
		t.Errorf("POST /otp/pumping: %d %s, want 405", status, body)
	}
	if status, body := adminPumping(t, http.MethodDelete, "/"+ukRange); status != http.StatusOK || !strings.Contains(body, `"was_quarantined":true`) {
		t.Fatalf("DELETE /otp/pumping/%s: %d %s", ukRange, status, body)
	}
	if got := quarantinedPrefixes(t); len(got) != 0 {
		t.Errorf("GET /otp/pumping after the lift lists %q", got)
	}
	pump(t, site, ukRange, 1, 500).settled()
	if n := sentTo(g.sms, ukRange); n != defaultPrefixLimit+1 {
		t.Errorf("after the lift %d SMS reached the range, want %d: the next code goes out", n, defaultPrefixLimit+1)
	}
}

// TestQuarantineEndsAfterAnHour: a quarantined prefix gets its codes again once the hour has
// passed on the gate's clock.
func TestQuarantineEndsAfterAnHour(t *testing.T) {
	g := pumpedGate(t, "pumping_shield {\n\t\t\tprefix_limit 3\n\t\t}")
	pump(t, site, ukRange, 6, 0).settled()
	if n := sentTo(g.sms, ukRange); n != 3 {
		t.Fatalf("%d SMS reached the range, want prefix_limit's 3", n)
	}
	clock.Advance(30 * time.Minute)
	pump(t, site, ukRange, 1, 10).settled()
	if n := sentTo(g.sms, ukRange); n != 3 {
		t.Fatalf("half an hour in, %d SMS reached the range, want still 3", n)
	}
	clock.Advance(31 * time.Minute)
	pump(t, site, ukRange, 1, 20).settled()
	if n := sentTo(g.sms, ukRange); n != 4 {
		t.Errorf("after the hour, %d SMS reached the range, want 4: the quarantine is over", n)
	}
}

// TestMonitorModeSendsEverythingAndCountsWhatItWouldBlock: pumping_shield monitor sends all 100
// codes, and counts the 90 past prefix_limit as would_block; it still reports the quarantine.
func TestMonitorModeSendsEverythingAndCountsWhatItWouldBlock(t *testing.T) {
	g := pumpedGate(t, "pumping_shield monitor")
	before := scrape(t)
	pump(t, site, ukRange, 100, 0).settled()
	if _, err := g.sms.WaitMessages(100, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := sentTo(g.sms, ukRange); n != 100 {
		t.Errorf("%d SMS reached the range in monitor mode, want all 100", n)
	}
	after := scrape(t)
	for series, want := range map[string]float64{
		`caddy_otp_pumping_total{action="would_block",country="GB"}`: 90,
		`caddy_otp_pumping_total{action="blocked",country="GB"}`:     0,
		`caddy_otp_pumping_total{action="quarantined",country="GB"}`: 1,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s went up by %v, want %v", series, got, want)
		}
	}
}

// TestSafePrefixIsNeverQuarantined: codes to a prefix under safe all go out.
func TestSafePrefixIsNeverQuarantined(t *testing.T) {
	g := pumpedGate(t, "pumping_shield {\n\t\t\tsafe +4474001 +1202\n\t\t}")
	pump(t, site, ukRange, 30, 0).settled()
	if n := sentTo(g.sms, ukRange); n != 30 {
		t.Errorf("%d SMS reached the safe range, want all 30", n)
	}
	if got := quarantinedPrefixes(t); len(got) != 0 {
		t.Errorf("GET /otp/pumping lists %q", got)
	}
}

// TestABusyOfficeSigningInIsNeverQuarantined: 50 people of one office, on numbers of one
// prefix, sign in one after another from the office's addresses; a few never type their code.
// A verified code leaves the count, so the prefix never reaches prefix_limit and every code
// goes out (counted without the verified ones, 50 codes would be five times the limit).
func TestABusyOfficeSigningInIsNeverQuarantined(t *testing.T) {
	g := pumpedGate(t, "")
	before := scrape(t)
	for i := 0; i < 50; i++ {
		phone := fmt.Sprintf("+1201555%04d", 300+i)
		v := from(t, site, fmt.Sprintf("198.51.100.%d", i%10))
		if i%10 == 9 { // asks, and never types the code
			_, r := v.startSignIn("/", phone)
			wantStatus(t, "send", r, http.StatusSeeOther)
			v.settled()
			continue
		}
		v.signIn(g, phone)
	}
	if n := sentTo(g.sms, "+1201555"); n != 50 {
		t.Errorf("%d SMS reached the office, want all 50", n)
	}
	after := scrape(t)
	if got := after[`caddy_otp_pumping_total{action="quarantined",country="US"}`] - before[`caddy_otp_pumping_total{action="quarantined",country="US"}`]; got != 0 {
		t.Errorf("the office's prefix was quarantined %v times", got)
	}
}

// TestCountryLimitCapsUnverifiedCodesToOneCountry: country_limit holds back codes to a country
// calling code past its count of unverified ones, whatever their prefixes, and leaves other
// countries alone.
func TestCountryLimitCapsUnverifiedCodesToOneCountry(t *testing.T) {
	g := pumpedGate(t, "pumping_shield {\n\t\t\tcountry_limit 5 per 24h\n\t\t}")
	for i := 0; i < 8; i++ { // 8 prefixes, one code each
		pump(t, site, fmt.Sprintf("+4474001%d", i), 1, i).settled()
	}
	if n := sentTo(g.sms, "+44"); n != 5 {
		t.Errorf("%d SMS reached GB, want country_limit's 5", n)
	}
	v := from(t, site, "192.0.2.1")
	v.signIn(g, "+12015550400")
	if logged := g.waitLogEvents("country at its pumping_shield country_limit: code held back", 1); len(logged) != 1 || logged[0]["calling_code"] != "44" {
		t.Errorf("the cap's log lines: %v, want one for 44", logged)
	}
}

// TestBudgetReachedNamesWhereTheCodesWent: max_sms_per_hour stays the last line; reaching it
// is logged once, with the prefixes and countries the codes of the hour went to.
func TestBudgetReachedNamesWhereTheCodesWent(t *testing.T) {
	clock.StartWindow(time.Hour)
	g := pumpedGate(t, "max_sms_per_hour 8\n\t\tpumping_shield off")
	p := pump(t, site, ukRange, 10, 0)
	for _, r := range p.answers[8:] {
		wantStatus(t, "a code past the budget", r, http.StatusTooManyRequests)
	}
	pumped{visitors: p.visitors[:8]}.settled()
	logged := g.waitLogEvents("max_sms_per_hour reached (the gate's, or an address range's quarter of it): codes are refused until the hour ends", 1)
	if len(logged) != 1 || fmt.Sprint(logged[0]["top_prefixes"]) != "["+ukRange+": 8]" || fmt.Sprint(logged[0]["top_countries"]) != "[GB: 8]" {
		t.Errorf("the budget's log lines: %v, want one naming %s and GB", logged, ukRange)
	}
}

// TestPumpingShieldCaddyfileMistakesNameTheirFix: each mistake names the subdirective.
func TestPumpingShieldCaddyfileMistakesNameTheirFix(t *testing.T) {
	for _, tc := range []struct{ block, want string }{
		{"pumping_shield maybe", `"maybe" is not on, off or monitor`},
		{"pumping_shield off monitor", "takes on, off or monitor"},
		{"pumping_shield {\n\t\t\tprefix_limit 0\n\t\t}", "prefix_limit: 0 is not a count of at least 1"},
		{"pumping_shield {\n\t\t\tcountry_limit 500 24h\n\t\t}", "country_limit: expected a count, per and a window"},
		{"pumping_shield {\n\t\t\tsafe 4479111\n\t\t}", `safe: "4479111" is not a prefix in E.164`},
		{"pumping_shield {\n\t\t\tprefix_limt 5\n\t\t}", `did you mean "prefix_limit"?`},
	} {
		err := adaptAndValidate(t, fmt.Sprintf("localhost {\n\totp {\n\t\tsender log\n\t\tphones *\n\t\t%s\n\t}\n}\n", tc.block))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.block, err, tc.want)
		}
	}
}

// TestCallingCodeIsTheNumbersCountryCode: the country a code counts under is the calling code
// the number starts with, one to three digits.
func TestCallingCodeIsTheNumbersCountryCode(t *testing.T) {
	for e164, want := range map[string]string{"+12015550123": "1", "+447400120000": "44", "+353861234567": "353", "+79161234567": "7", "+": ""} {
		if got := callingCode(e164); got != want {
			t.Errorf("callingCode(%s) = %q, want %q", e164, got, want)
		}
	}
}
