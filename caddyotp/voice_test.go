package caddyotp

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var spokenCode = regexp.MustCompile(`<Say voice="woman" language="(\w+)" loop="2">[^<]*?((?:[0-9] )+[0-9])\.</Say>`)

// shownUnlessFailed is a code page without the actions it reveals only once the delivery
// failed (the block #delivery-failed, hidden until then).
func shownUnlessFailed(body string) string {
	before, rest, ok := strings.Cut(body, `<div id="delivery-failed" hidden>`)
	if !ok {
		return body
	}
	_, after, _ := strings.Cut(rest, "</div>")
	return before + after
}

// askForCall signs in, resends once (so the call is offered), and asks for the call.
func askForCall(t *testing.T, g *gate, v *visitor) (csrf string) {
	t.Helper()
	csrf, _ = v.startSignIn("/", alice)
	if page := v.get("/.otp/verify"); strings.Contains(shownUnlessFailed(page.body), "Get the code by phone call") {
		t.Errorf("the call is offered before any resend")
	}
	clock.Advance(31 * time.Second)
	wantStatus(t, "resend", v.post("/.otp/resend", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	if page := v.get("/.otp/verify"); !strings.Contains(page.body, `action="/.otp/call"`) || !strings.Contains(page.body, "Get the code by phone call") {
		t.Fatalf("no call offered after a resend")
	}
	clock.Advance(31 * time.Second)
	wantStatus(t, "call", v.post("/.otp/call", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	return csrf
}

func TestVoiceCallReadsTheCodeTwiceAndAnswersOnce(t *testing.T) {
	g := startGate(t, "", withVoice)
	v := newVisitor(t)
	csrf := askForCall(t, g, v)
	_, smsCode := g.code(2)

	calls, err := g.sms.WaitCalls(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := calls[0]
	if c.To != alice || c.From != fromNum || !strings.HasPrefix(c.URL, site+"/.otp/voice/") || c.Method != http.MethodPost {
		t.Errorf("call %+v", c)
	}
	m := spokenCode.FindStringSubmatch(c.RCML)
	if c.FetchStatus != http.StatusOK || m == nil || m[1] != "en" {
		t.Fatalf("script: %d %q", c.FetchStatus, c.RCML)
	}
	code := strings.ReplaceAll(m[2], " ", "")
	if n := len(g.sms.Messages()); n != 2 {
		t.Errorf("%d SMS: the call sent one more", n)
	}

	// The script answers once; a guess answers nothing.
	for name, u := range map[string]string{"second fetch": c.URL, "a guessed token": site + "/.otp/voice/" + strings.Repeat("A", 43), "a malformed token": site + "/.otp/voice/x"} {
		resp, err := http.PostForm(u, url.Values{"CallSid": {"CA1"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", name, resp.StatusCode)
		}
	}
	if code != smsCode {
		wantStatus(t, "the SMS code after the call", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {smsCode}}), http.StatusUnauthorized)
	}
	wantStatus(t, "the spoken code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	wantStatus(t, "signed in", v.get("/"), http.StatusOK)
}

func TestVoiceScriptDiesWithTheCode(t *testing.T) {
	g := startGate(t, "", withVoice)
	g.sms.HoldCalls(true)
	askForCall(t, g, newVisitor(t))
	calls, err := g.sms.WaitCalls(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(5*time.Minute + time.Second) // code_ttl
	resp, err := http.PostForm(calls[0].URL, url.Values{"CallSid": {calls[0].SID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("script fetched after code_ttl: %d", resp.StatusCode)
	}
}

func TestNoCallWithoutVoice(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	clock.Advance(31 * time.Second)
	v.post("/.otp/resend", url.Values{"csrf": {csrf}})
	if page := v.get("/.otp/verify"); strings.Contains(page.body, "Get the code by phone call") {
		t.Errorf("a call is offered without `voice`")
	}
	clock.Advance(31 * time.Second)
	wantStatus(t, "forced call", v.post("/.otp/call", url.Values{"csrf": {csrf}}), http.StatusSeeOther)
	if len(g.sms.Calls()) != 0 {
		t.Errorf("a call was placed without `voice`")
	}
}
