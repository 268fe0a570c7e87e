package caddyotp

import (
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestProtectedRequestWithoutSessionSendsBrowsersToSignIn(t *testing.T) {
	startGate(t, "")
	v := newVisitor(t)

	r := v.get("/reports/q3?year=2026")
	wantStatus(t, "browser GET", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/.otp/login?next=%2Freports%2Fq3%3Fyear%3D2026" {
		t.Errorf("Location = %q", loc)
	}

	req, _ := http.NewRequest(http.MethodGet, site+"/api/items", nil)
	req.Header.Set("Accept", "application/json")
	r = v.do(req)
	wantStatus(t, "API GET", r, http.StatusUnauthorized)
	var body struct{ Error, Login string }
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body.Error == "" || body.Login != "/.otp/login" {
		t.Errorf("401 body = %q (err %v), want JSON with error and login", r.body, err)
	}

	req, _ = http.NewRequest(http.MethodPost, site+"/form", strings.NewReader("a=1"))
	req.Header.Set("Accept", "text/html")
	wantStatus(t, "browser POST", v.do(req), http.StatusUnauthorized)
}

func TestSignInEndToEnd(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)

	login := v.get("/.otp/login?next=" + url.QueryEscape("/reports?q=1"))
	wantStatus(t, "login page", login, http.StatusOK)
	for _, want := range []string{`action="/.otp/send"`, `name="phone"`, `type="tel"`, `autocomplete="tel"`, `name="csrf"`} {
		if !strings.Contains(login.body, want) {
			t.Errorf("phone page lacks %s", want)
		}
	}
	csrf := login.csrf()
	sent := v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {"+1 (201) 555-0123"}})
	wantStatus(t, "send", sent, http.StatusSeeOther)
	if loc := sent.header.Get("Location"); loc != "/.otp/verify" {
		t.Errorf("send Location = %q", loc)
	}

	msg, code := g.code(1)
	if msg.From != fromNum || msg.To != alice || msg.AccountSID != g.sms.AccountSID {
		t.Errorf("SMS from %s to %s on %s, want %s to %s on %s", msg.From, msg.To, msg.AccountSID, fromNum, alice, g.sms.AccountSID)
	}
	if want := code + " is your localhost sign-in code.\n\n@localhost #" + code; msg.Body != want {
		t.Errorf("SMS body = %q, want %q", msg.Body, want)
	}
	if len(code) != 6 {
		t.Errorf("code %q is not 6 digits", code)
	}

	page := v.get("/.otp/verify")
	wantStatus(t, "code page", page, http.StatusOK)
	for _, want := range []string{`action="/.otp/verify"`, `name="code"`, `autocomplete="one-time-code"`, `inputmode="numeric"`, `action="/.otp/resend"`, "&#43;1\u00a0201\u2011555\u20110123", "The code expires in 5\u00a0minutes."} {
		if !strings.Contains(page.body, want) {
			t.Errorf("code page lacks %s", want)
		}
	}

	wrong := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	wantStatus(t, "wrong code", wrong, http.StatusUnauthorized)
	if !strings.Contains(wrong.body, "not right") || !strings.Contains(wrong.body, `name="code"`) {
		t.Errorf("wrong code answer is not the code page with an error: %.300s", wrong.body)
	}

	flowCookie := v.cookie("caddy_otp_flow")
	ok := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code[:3] + " " + code[3:]}})
	wantStatus(t, "right code", ok, http.StatusSeeOther)
	if loc := ok.header.Get("Location"); loc != "/reports?q=1" {
		t.Errorf("after sign-in Location = %q, want the remembered /reports?q=1", loc)
	}

	in := v.get("/reports?q=1")
	wantStatus(t, "protected page", in, http.StatusOK)
	if !strings.Contains(in.body, "user="+alice) {
		t.Errorf("{http.auth.user.id} not the phone: %q", in.body)
	}
	if strings.Contains(in.body, "caddy_otp") {
		t.Errorf("the gate's cookies reached the upstream: %q", in.body)
	}

	// The whole verify request replayed, flow cookie included: the code was single use.
	replayer := newVisitor(t)
	replayer.setCookie("caddy_otp_flow", flowCookie)
	replay := replayer.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	wantStatus(t, "replayed code", replay, http.StatusUnauthorized)
	if replayer.cookie("caddy_otp") != "" {
		t.Errorf("a replayed code got a session cookie")
	}
}

func TestSignedInRequestKeepsOtherCookiesForUpstream(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, alice)
	v.setCookie("theme", "dark")
	r := v.get("/")
	wantStatus(t, "protected page", r, http.StatusOK)
	if !strings.Contains(r.body, "cookies=theme=dark") || strings.Contains(r.body, "caddy_otp") {
		t.Errorf("upstream saw cookies %q, want only theme=dark", r.body)
	}
}

func TestWrongCodesVoidTheFlowAfterMaxAttempts(t *testing.T) {
	g := startGate(t, "max_attempts 3")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	for i := 1; i <= 2; i++ {
		wantStatus(t, "wrong code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}}), http.StatusUnauthorized)
	}
	last := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	wantStatus(t, "third wrong code", last, http.StatusUnauthorized)
	if !strings.Contains(last.body, "Start again to get a new one.") || !strings.Contains(last.body, `href="/.otp/login"`) {
		t.Errorf("after max_attempts the page does not say to start again: %.300s", last.body)
	}
	wantStatus(t, "right code after the flow is void", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusUnauthorized)
	wantStatus(t, "protected page", v.get("/"), http.StatusSeeOther)
}

func TestCodeDiesAfterCodeTTL(t *testing.T) {
	g := startGate(t, "code_ttl 2m")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	clock.Advance(2*time.Minute + time.Second)
	r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
	wantStatus(t, "expired code", r, http.StatusUnauthorized)
	if !strings.Contains(r.body, "expired") {
		t.Errorf("expired code page does not say so: %.300s", r.body)
	}
	wantStatus(t, "protected page", v.get("/"), http.StatusSeeOther)
}

func TestResendKillsPreviousCodeAfterCooldown(t *testing.T) {
	g := startGate(t, "resend_after 30s")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, first := g.code(1)

	early := v.post("/.otp/resend", url.Values{"csrf": {csrf}})
	wantStatus(t, "resend inside resend_after", early, http.StatusTooManyRequests)
	if ra := early.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	if n := len(g.sms.Messages()); n != 1 {
		t.Fatalf("%d SMS after a refused resend, want 1", n)
	}

	clock.Advance(31 * time.Second)
	r := v.post("/.otp/resend", url.Values{"csrf": {csrf}})
	wantStatus(t, "resend", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/.otp/verify" {
		t.Errorf("resend Location = %q", loc)
	}
	_, second := g.code(2)
	if first != second {
		wantStatus(t, "old code after resend", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {first}}), http.StatusUnauthorized)
	}
	wantStatus(t, "new code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {second}}), http.StatusSeeOther)
}

func TestLogoutRevokesSession(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, alice)
	stolen := v.cookie("caddy_otp")

	page := v.get("/.otp/logout")
	wantStatus(t, "logout page", page, http.StatusOK)
	if !strings.Contains(page.body, `action="/.otp/logout"`) {
		t.Errorf("logout page has no sign-out form")
	}
	r := v.post("/.otp/logout", url.Values{"csrf": {page.csrf()}})
	wantStatus(t, "logout", r, http.StatusSeeOther)
	if loc := r.header.Get("Location"); loc != "/.otp/login?signed_out" {
		t.Errorf("logout Location = %q", loc)
	}
	if out := v.get("/.otp/login?signed_out"); !strings.Contains(out.body, "You are signed out.") {
		t.Errorf("the phone page after logout does not say so")
	}
	if v.cookie("caddy_otp") != "" {
		t.Errorf("session cookie not cleared")
	}
	wantStatus(t, "protected page after logout", v.get("/"), http.StatusSeeOther)

	replayer := newVisitor(t)
	replayer.setCookie("caddy_otp", stolen)
	wantStatus(t, "revoked cookie replayed", replayer.get("/"), http.StatusSeeOther)
}

func TestPhonePageRejectsWhatIsNotAPhoneNumber(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	// Each error says what to do: without a +country (and no default_region), add it; else
	// check the digits.
	for input, want := range map[string]string{
		"":                            "This is not a valid phone number.",
		"hello":                       "This is not a valid phone number.",
		"201 555 0123":                "Add your country code, e.g. +1 for the US.",
		"12":                          "Add your country code, e.g. +1 for the US.",
		strings.Repeat("9", 41):       "Add your country code, e.g. +1 for the US.",
		"+1 555 123 4567":             "This is not a valid phone number. Check the digits, e.g.\u00a0+1\u00a0201\u2011555\u20110123.",
		"+" + strings.Repeat("9", 40): "This is not a valid phone number.",
	} {
		_, r := v.startSignIn("/", input)
		wantStatus(t, "send "+input, r, http.StatusBadRequest)
		if !strings.Contains(r.body, `name="phone"`) || !strings.Contains(html.UnescapeString(r.body), want) {
			t.Errorf("send %q: not the phone page with the error %q: %.300s", input, want, r.body)
		}
	}
	if n := len(g.sms.Messages()); n != 0 {
		t.Errorf("%d SMS sent for bad input", n)
	}
}

func TestDefaultRegionReadsNationalNumbers(t *testing.T) {
	g := startGate(t, "default_region US")
	v := newVisitor(t)
	_, r := v.startSignIn("/", "(201) 555-0123")
	wantStatus(t, "national number", r, http.StatusSeeOther)
	if m, _ := g.code(1); m.To != alice {
		t.Errorf("SMS to %s, want %s", m.To, alice)
	}
}

func TestFormsWithoutValidCSRFOrFromAnotherOriginAreRefused(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf := v.get("/.otp/login").csrf()

	wantStatus(t, "no csrf", v.post("/.otp/send", url.Values{"phone": {alice}}), http.StatusForbidden)
	wantStatus(t, "wrong csrf", v.post("/.otp/send", url.Values{"csrf": {otherChar(csrf[0]) + csrf[1:]}, "phone": {alice}}), http.StatusForbidden)

	other := newVisitor(t) // a token from another browser's flow is worthless here
	wantStatus(t, "foreign flow csrf", other.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}}), http.StatusForbidden)

	v.origin = "https://evil.example"
	wantStatus(t, "foreign origin", v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}}), http.StatusForbidden)
	v.origin = "null" // what browsers send under Referrer-Policy: no-referrer, from the site's own page:
	v.fetchSite = "same-origin"
	wantStatus(t, "null origin with csrf", v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}}), http.StatusSeeOther)
	v.settled()
	if n := len(g.sms.Messages()); n != 1 {
		t.Errorf("%d SMS sent, want only the one of the valid form", n)
	}
}

func TestGateAnswersOversizeBodiesWrongMethodsAndUnknownPaths(t *testing.T) {
	startGate(t, "")
	v := newVisitor(t)
	csrf := v.get("/.otp/login").csrf()
	big := v.post("/.otp/send", url.Values{"csrf": {csrf}, "phone": {alice}, "pad": {strings.Repeat("a", 9000)}})
	wantStatus(t, "9 KB body", big, http.StatusRequestEntityTooLarge)

	r := v.get("/.otp/send")
	wantStatus(t, "GET send", r, http.StatusMethodNotAllowed)
	if r.header.Get("Allow") != "POST" {
		t.Errorf("Allow = %q", r.header.Get("Allow"))
	}
	req, _ := http.NewRequest(http.MethodDelete, site+"/.otp/login", nil)
	wantStatus(t, "DELETE login", v.do(req), http.StatusMethodNotAllowed)
	wantStatus(t, "unknown path", v.get("/.otp/admin"), http.StatusNotFound)
	wantStatus(t, "base path", v.get("/.otp"), http.StatusNotFound)
}

func TestOpenRedirectVariantsStayLocal(t *testing.T) {
	g := startGate(t, "send_limit 10 10m\n\t\tip_limit 50 10m")
	for i, next := range []string{"//evil.example/x", "/\\evil.example", "https://evil.example/", "%2F%2Fevil.example", "/%09/evil", "/.otp/logout", "/" + strings.Repeat("a", 2100)} {
		clock.Advance(31 * time.Second) // resend_after holds per phone
		v := newVisitor(t)
		csrf, _ := v.startSignIn(next, alice)
		_, code := g.code(i + 1)
		r := v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})
		wantStatus(t, "verify", r, http.StatusSeeOther)
		loc := r.header.Get("Location")
		want := "/"
		if next == "/%09/evil" {
			want = next // percent-encoded: a path on this site, not a scheme-relative URL
		}
		if loc != want {
			t.Errorf("next %.40q: Location %q, want %q", next, loc, want)
		}
	}
}

func TestReloadKeepsPendingFlow(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	g.reload("", "reloaded")
	wantStatus(t, "verify after reload", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	if r := v.get("/"); !strings.Contains(r.body, "reloaded user="+alice) {
		t.Errorf("not through the reloaded gate: %d %q", r.status, r.body)
	}
}

func TestTamperedSessionCookieIsRefused(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, alice)
	value := v.cookie("caddy_otp")
	payload, mac, _ := strings.Cut(value, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	raw[len(raw)-1] = '5' // +12015550123 -> +12015550125: another subject
	forged := base64.RawURLEncoding.EncodeToString(raw) + "." + mac

	for name, cookie := range map[string]string{"forged subject": forged, "truncated": value[:len(value)-5], "garbage": "x.y"} {
		m := newVisitor(t)
		m.setCookie("caddy_otp", cookie)
		wantStatus(t, name, m.get("/"), http.StatusSeeOther)
	}
}

// otherCode returns a code of the same length that differs from code in every digit.
func otherCode(code string) string {
	b := []byte(code)
	for i := range b {
		b[i] = '0' + (b[i]-'0'+1)%10
	}
	return string(b)
}

func TestMessageFromCaddyfileFillsHostAndCode(t *testing.T) {
	g := startGate(t, `message "Code {code} for {host}."`)
	v := newVisitor(t)
	v.startSignIn("/", alice)
	m, code := g.code(1)
	if want := "Code " + code + " for localhost.\n\n@localhost #" + code; m.Body != want {
		t.Errorf("SMS body %q, want %q", m.Body, want)
	}
}

func TestSMSSpeaksTheVisitorsLanguageAndNamesTheSite(t *testing.T) {
	g := startGate(t, `site_name "Example Docs"`)
	v := newVisitor(t)
	login := v.get("/.otp/login")
	req, _ := http.NewRequest(http.MethodPost, site+"/.otp/send", strings.NewReader(url.Values{"csrf": {login.csrf()}, "phone": {alice}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept-Language", "es-ES,es;q=0.9")
	wantStatus(t, "send", v.do(req), http.StatusSeeOther)
	m, code := g.code(1)
	if want := code + " es tu código para Example Docs.\n\n@localhost #" + code; m.Body != want {
		t.Errorf("SMS %q, want %q", m.Body, want)
	}
	if m.Encoding != "UCS-2" {
		t.Errorf("Encoding %q: Spanish needs UCS-2, GSM would mangle it", m.Encoding)
	}

	newVisitor(t).startSignIn("/", bob)
	if m, _ := g.code(2); m.Encoding != "" || !strings.Contains(m.Body, "is your Example Docs sign-in code.") {
		t.Errorf("English SMS %q with encoding %q", m.Body, m.Encoding)
	}
}

// otherChar is a base64url character other than c, for a token that differs in one place.
func otherChar(c byte) string {
	if c == 'x' {
		return "y"
	}
	return "x"
}

// TestHandleErrorsShapesRefusalsOfClientsThatAreNotBrowsers: with error routes, a JSON client's
// 401 goes through them; a browser still gets the redirect and the pages.
func TestHandleErrorsShapesRefusalsOfClientsThatAreNotBrowsers(t *testing.T) {
	g := newGate(t)
	g.siteExtra = "handle_errors {\n\t\trespond \"shaped {err.status_code}\"\n\t}"
	g.start("")
	v := newVisitor(t)
	req, _ := http.NewRequest(http.MethodGet, site+"/api/items", nil)
	req.Header.Set("Accept", "application/json")
	r := v.do(req)
	if r.status != http.StatusUnauthorized || r.body != "shaped 401" {
		t.Fatalf("JSON client: %d %q, want 401 shaped by handle_errors", r.status, r.body)
	}
	wantStatus(t, "browser", v.get("/reports"), http.StatusSeeOther)
	if page := v.get("/.otp/login"); page.status != http.StatusOK || !strings.Contains(page.body, `name="phone"`) {
		t.Fatalf("phone page: %d", page.status)
	}
	v.signIn(g, alice)
	if r := v.get("/"); r.status != http.StatusOK || !strings.HasPrefix(r.body, "upstream") {
		t.Fatalf("signed in: %d %q", r.status, r.body)
	}
}
