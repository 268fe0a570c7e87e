//go:build integration

package caddyotp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// axePath is where ./test.sh puts axe-core (npm install --prefix .cache/axe axe-core@4).
var axePath = filepath.Join("..", ".cache", "axe", "node_modules", "axe-core", "axe.min.js")

// axeSource reads axe-core once; the accessibility checks fail without it, never skip.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatalf("axe-core is missing (%v): run ./test.sh, which fetches it, or npm install --prefix .cache/axe axe-core@4", err)
	}
	return string(b)
}

// axeRunJS runs axe-core on the page and returns its serious and critical violations.
const axeRunJS = `axe.run(document, {resultTypes: ["violations"]}).then(function (r) {
	return r.violations.filter(function (v) { return v.impact === "serious" || v.impact === "critical"; })
		.map(function (v) { return v.impact + " " + v.id + ": " + v.help + " at " + v.nodes.map(function (n) { return n.target.join(" "); }).join(", "); });
})`

// scheme makes the page prefer a light or dark colour scheme.
func (b *browser) scheme(name string) {
	b.t.Helper()
	b.do("emulate "+name, chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: name}},
		})
		return chromedp.Void{}, err
	}))
}

// checkState asserts what every page in every state must be: checkPage's labels, CSP, console
// and width; WCAG AA contrast; 44 px targets; a visible focus ring on the first control Tab
// reaches; and no serious or critical axe-core violation.
// disabledLookJS lists the disabled buttons whose background, colour and border are those of an
// enabled button of the page.
const disabledLookJS = `(function () {
  function look(e) { var s = getComputedStyle(e); return [s.backgroundColor, s.color, s.borderTopStyle, s.borderTopColor].join(" "); }
  var buttons = Array.from(document.querySelectorAll("button, .button")).filter(function (e) { return e.getClientRects().length > 0; });
  var enabled = buttons.filter(function (e) { return !e.disabled; }).map(look);
  return buttons.filter(function (e) { return e.disabled && enabled.indexOf(look(e)) >= 0; }).map(function (e) { return e.textContent.trim(); });
})()`

func (b *browser) checkState(what string) {
	b.t.Helper()
	b.checkPage(what)
	r := eval[contrastReport](b, contrastJS)
	if len(r.Worst) == 0 {
		b.t.Fatalf("%s: no text measured", what)
	}
	for _, w := range r.Worst {
		if w.Ratio < 4.5 {
			b.t.Errorf("%s (%s): %s has contrast %.2f, below 4.5", what, b.name, w.El, w.Ratio)
		}
	}
	// A button that does nothing yet looks it at a glance: no disabled one looks like an enabled one.
	if same := eval[[]string](b, disabledLookJS); len(same) > 0 {
		b.t.Errorf("%s (%s): disabled buttons look enabled: %v", what, b.name, same)
	}
	if r.MinTarget < 44 {
		b.t.Errorf("%s (%s): a control is %.0f px tall, below 44", what, b.name, r.MinTarget)
	}
	if _, err := chromedp.Run(b.ctx, chromedp.Evaluate[chromedp.Void](b.axe)); err != nil {
		b.t.Fatalf("%s: injecting axe-core: %v", what, err)
	}
	violations, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](axeRunJS, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: running axe-core: %v", what, err)
	}
	for _, v := range violations {
		b.t.Errorf("%s (%s): axe: %s", what, b.name, v)
	}
	// The first control Tab reaches shows where the focus is (a page where nothing works yet
	// has none).
	if !eval[bool](b, `Array.from(document.querySelectorAll("a[href], button, input:not([type=hidden]), select")).some(function (e) { return !e.disabled && e.getClientRects().length > 0; })`) {
		return
	}
	b.do("focus the page", chromedp.Evaluate[chromedp.Void](`document.activeElement && document.activeElement.blur()`))
	// Tab goes on from where the focus was, and past the last control to the browser: press it
	// until a control of the page has the focus.
	for i := 0; i < 6 && eval[string](b, `document.activeElement ? document.activeElement.tagName : "BODY"`) == "BODY"; i++ {
		b.do("press Tab", chromedp.KeyEvent("\t"))
	}
	ring := eval[map[string]string](b, `(function (e) { var s = getComputedStyle(e); return {tag: e.tagName, style: s.outlineStyle, width: s.outlineWidth}; })(document.activeElement)`)
	if ring["tag"] == "BODY" || ring["style"] == "none" || ring["width"] == "0px" {
		b.t.Errorf("%s (%s): Tab focuses %v, without a visible focus ring", what, b.name, ring)
	}
}

// shown says whether a control matching sel is on the page and enabled.
func (b *browser) shown(sel string) (present, enabled bool) {
	b.t.Helper()
	r := eval[[]bool](b, fmt.Sprintf(`(function (e) { return e ? [e.getClientRects().length > 0, !e.disabled] : [false, false]; })(document.querySelector(%q))`, sel))
	return r[0], r[1]
}

// controls lists the page's visible buttons and links by their text, "(disabled)" marked.
func (b *browser) controls() []string {
	b.t.Helper()
	return eval[[]string](b, `Array.from(document.querySelectorAll("main button, main a")).filter(function (e) { return e.getClientRects().length > 0; })
		.map(function (e) { return e.textContent.trim() + (e.disabled ? " (disabled)" : ""); })`)
}

// waitFor waits until js is true on the page.
func (b *browser) waitFor(what, js string, timeout time.Duration) {
	b.t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if eval[bool](b, js) {
			return
		}
	}
	b.t.Fatalf("%s: not within %s", what, timeout)
}

// settle loads the code page again until the code to the visitor's number has left "sending"
// (the code page shows the code field until then).
func (b *browser) settle() {
	b.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		b.open("/.otp/verify")
		if present, _ := b.shown("form#verify"); !present {
			return
		}
	}
	b.t.Fatal("the delivery did not settle within 10s")
}

// smsTo waits for the n-th SMS of the gate and returns the code sent to phone in it.
func smsTo(t *testing.T, g *gate, n int, phone string) string {
	t.Helper()
	m, code := g.code(n)
	if m.To != phone {
		t.Fatalf("SMS %d went to %s, want %s", n, m.To, phone)
	}
	return code
}

// typeNumber types a phone number on the phone page and sends it.
func (b *browser) typeNumber(phone string) {
	b.t.Helper()
	b.do("type "+phone, chromedp.Evaluate[chromedp.Void](`document.getElementById("phone").value = ""`), chromedp.SendKeys(chromedp.ID("phone"), phone))
	b.submit("form[action$='/send'] button")
}

// typeCodeNoSubmit puts a code in the field without the input event that would send it
// (chromedp.SetValue fires one), so that the test presses the button itself.
func (b *browser) typeCodeNoSubmit(code string) {
	b.t.Helper()
	b.do("fill the code", chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.getElementById("code").value = %q`, code)))
}

// TestBrowserSignInOnPhoneAndDesktop is a visitor in real Chromium: a protected URL leads to the
// phone page, the number is typed, the code is read from the SMS and typed, and its last digit
// signs in without a button press; on a phone-sized and a desktop-sized screen.
func TestBrowserSignInOnPhoneAndDesktop(t *testing.T) {
	for _, size := range []struct {
		name string
		w, h int64
	}{{"phone", 390, 844}, {"desktop", 1280, 800}} {
		t.Run(size.name, func(t *testing.T) {
			g := startGate(t, "site_name \"Example Docs\"\n\t\ttrust_device 30d")
			b := newBrowser(t, size.name, size.w, size.h, "en-US")

			b.open("/reports/q3?year=2026")
			if p := b.path(); p != "/.otp/login" {
				t.Fatalf("landed on %s, want the phone page", p)
			}
			if h := b.text("h1"); h != "Sign in to Example Docs" {
				t.Errorf("heading %q", h)
			}
			attrs := eval[map[string]string](b, `(function (i) { return {type: i.type, autocomplete: i.autocomplete, focused: String(document.activeElement === i)}; })(document.getElementById("phone"))`)
			if attrs["type"] != "tel" || attrs["autocomplete"] != "tel" || attrs["focused"] != "true" {
				t.Errorf("phone input %v", attrs)
			}
			b.checkPage("phone page")

			b.typeNumber("+1 201 555 0123")
			if p := b.path(); p != "/.otp/verify" {
				t.Fatalf("after send at %s", p)
			}
			// The whole number as typed, grouped, on one line: a typo shows.
			if intro := b.text("main p.muted"); !strings.Contains(intro, "+1\u00a0201\u2011555\u20110123") {
				t.Errorf("code page intro %q lacks the number", intro)
			}
			code := eval[map[string]string](b, `(function (i) { return {inputmode: i.inputMode, autocomplete: i.autocomplete, pattern: i.pattern, maxlength: String(i.maxLength), inputs: String(document.querySelectorAll("input[name=code]").length)}; })(document.getElementById("code"))`)
			if code["inputmode"] != "numeric" || code["autocomplete"] != "one-time-code" || code["pattern"] != "[0-9]{6}" || code["maxlength"] != "6" || code["inputs"] != "1" {
				t.Errorf("code input %v", code)
			}
			if e := b.text("#code-expires"); e != "The code expires in 5\u00a0minutes." {
				t.Errorf("code page says %q about the code's life", e)
			}
			b.checkPage("code page")

			_, sms := g.code(1)
			if _, err := chromedp.RunResponse(b.ctx, chromedp.SendKeys(chromedp.ID("code"), sms)); err != nil {
				t.Fatalf("typing the code did not send it: %v", err)
			}
			if p := b.path(); p != "/reports/q3" {
				t.Fatalf("after the last digit at %s, want the protected page", p)
			}
			if body := b.text("body"); !strings.Contains(body, "user="+alice) {
				t.Errorf("protected page says %q", body)
			}
			b.checkPage("protected page")
		})
	}
}

// TestBrowserPastedMessageSubmits: pasting "Your code: 123 456" keeps the digits and signs in.
func TestBrowserPastedMessageSubmits(t *testing.T) {
	g := startGate(t, "")
	b := newBrowser(t, "phone", 390, 844, "en-US")
	b.open("/")
	b.typeNumber(alice)
	_, code := g.code(1)
	paste := fmt.Sprintf(`(function () {
		var i = document.getElementById("code"), dt = new DataTransfer();
		dt.setData("text", "Your code: %s %s");
		i.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true})); })()`, code[:3], code[3:])
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Evaluate[chromedp.Void](paste)); err != nil {
		t.Fatalf("the paste did not send the code: %v", err)
	}
	if p := b.path(); p != "/" {
		t.Fatalf("after the paste at %s, want the protected page", p)
	}
}

// TestBrowserAutofilledCodeSubmits: a code the browser fills in (the value set, then input and
// change events, as autofill does) signs in with no button press.
func TestBrowserAutofilledCodeSubmits(t *testing.T) {
	g := startGate(t, "")
	b := newBrowser(t, "phone", 390, 844, "en-US")
	b.open("/")
	b.typeNumber(alice)
	_, code := g.code(1)
	if _, err := chromedp.RunResponse(b.ctx, chromedp.SetValue(chromedp.ID("code"), code)); err != nil {
		t.Fatalf("the filled-in code was not sent: %v", err)
	}
	if p := b.path(); p != "/" {
		t.Fatalf("after autofill at %s, want the protected page", p)
	}
}

// TestBrowserWaitCountsDownAndGivesTheActionBack: a resend refused inside resend_after shows a
// live countdown; when it ends, the resend button (not "Start again") works again.
func TestBrowserWaitCountsDownAndGivesTheActionBack(t *testing.T) {
	g := startGate(t, "resend_after 3s")
	b := newBrowser(t, "phone", 390, 844, "en-US")
	b.open("/")
	b.typeNumber(alice)
	g.code(1)
	if present, enabled := b.shown("#resend"); !present || enabled {
		t.Errorf("resend inside resend_after: shown %v, enabled %v", present, enabled)
	}
	// A visitor who forces the resend form early gets the wait page.
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector("form[action$='/resend']").submit()`)); err != nil {
		t.Fatal(err)
	}
	if h := b.text("h1"); h != "Please wait" {
		t.Errorf("early resend page: %q", h)
	}
	if w := b.text("#wait"); !strings.HasPrefix(w, "You can try again in 0:0") {
		t.Errorf("no countdown: %q", w)
	}
	if present, enabled := b.shown("form[action$='/resend'] button"); !present || enabled {
		t.Errorf("during the wait the resend button is shown %v, enabled %v", present, enabled)
	}
	if c := b.controls(); strings.Contains(strings.Join(c, "|"), "Start again") {
		t.Errorf("the wait page offers %v", c)
	}
	b.waitFor("the countdown ends", `!document.querySelector("form[action$='/resend'] button").disabled`, 8*time.Second)
	if ready := b.text("#ready"); ready != "You can try again now." {
		t.Errorf("after the countdown: %q", ready)
	}
	clock.Advance(3 * time.Second) // the gate's clock, which the tests drive
	b.submit("form[action$='/resend'] button")
	if p := b.path(); p != "/.otp/verify" {
		t.Fatalf("the resend after the wait led to %s", p)
	}
	g.code(2)
}

// TestBrowserCountrySelect: with regions, a flag-free select of dial codes and names, the
// default region first, beside the national number; a +country typed wins.
func TestBrowserCountrySelect(t *testing.T) {
	g := newGate(t)
	g.phones = "+12015550123 +447400123456"
	g.start("default_region GB\n\t\tregions US GB CA")
	b := newBrowser(t, "small", 320, 640, "en-US")
	b.open("/")
	options := eval[[]string](b, `Array.from(document.querySelectorAll("#region option")).map(function (o) { return o.value + " " + o.textContent; })`)
	if len(options) != 3 || options[0] != "GB +44\u00a0United Kingdom" || options[1] != "US +1\u00a0United States" || options[2] != "CA +1\u00a0Canada" {
		t.Errorf("country options %q", options)
	}
	if ph := eval[string](b, `document.getElementById("phone").placeholder`); ph != "07400\u00a0123456" {
		t.Errorf("placeholder %q, want a British mobile", ph)
	}
	b.shot("phone-regions")
	b.checkState("country select")
	b.scheme("dark")
	b.checkState("country select, dark")
	b.scheme("light")
	b.do("choose the US", chromedp.SetValue(chromedp.ID("region"), "US"), chromedp.Evaluate[chromedp.Void](`document.getElementById("region").dispatchEvent(new Event("change"))`))
	if hint := b.text("#phone-hint"); hint != "For example (201)\u00a0555\u20110123" {
		t.Errorf("hint for the US: %q", hint)
	}
	b.typeNumber("201 555 0123")
	if p := b.path(); p != "/.otp/verify" {
		t.Fatalf("a national US number with US chosen led to %s", p)
	}
	if m, _ := g.code(1); m.To != "+12015550123" {
		t.Errorf("SMS to %s", m.To)
	}
	// The select says US, the number says +44: the number wins.
	clock.Advance(time.Minute)
	b.open("/.otp/login")
	b.do("choose the US", chromedp.SetValue(chromedp.ID("region"), "US"))
	b.typeNumber("+44 7400 123456")
	if m, _ := g.code(2); m.To != "+447400123456" {
		t.Errorf("SMS to %s, want the +44 number typed", m.To)
	}
}

type screen struct {
	name string
	w, h int64
}

var (
	small   = screen{"small", 320, 640}
	phone   = screen{"phone", 390, 844}
	desktop = screen{"desktop", 1280, 800}
)

// TestBrowserEveryState walks every state a visitor can meet in every language at 320, 390 and
// 1280 px, and looks at each state in light and in dark: each says what happened, offers only
// what works now, and passes the checks of checkState (axe-core among them). With
// -screenshots, the English walks write the README's pictures.
func TestBrowserEveryState(t *testing.T) {
	axe := axeSource(t)
	for _, l := range [][2]string{{"en", "en-US"}, {"de", "de-DE"}, {"es", "es-ES"}, {"fr", "fr-FR"}} {
		for _, size := range []screen{small, phone, desktop} {
			t.Run(l[0]+"-"+size.name, func(t *testing.T) {
				g := newGate(t)
				g.phones = "*"
				g.start("ip_limit 1000 10m\n\t\tlockout 3 15m\n\t\tresend_after 30s")
				b := newBrowser(t, size.name, size.w, size.h, l[1])
				b.axe = axe
				walkStates(t, g, b, l[0], size.name, l[0] == "en")
			})
		}
	}
}

// walkStates takes one browser through every state. Each state uses its own number, so that
// one's limits do not reach into the next.
func walkStates(t *testing.T, g *gate, b *browser, lang, size string, shots bool) {
	say := func(key string, pairs ...string) string { return words(catalog[lang]).Say(key, pairs...) }
	// look takes the state's pictures in light and dark, then checks it in both.
	look := func(name, what string) {
		t.Helper()
		for _, scheme := range []string{"light", "dark"} {
			b.scheme(scheme)
			if shots {
				b.name = size + "-" + scheme
				b.shot(name)
			}
		}
		for _, scheme := range []string{"dark", "light"} {
			b.scheme(scheme)
			b.name = size + "-" + scheme
			b.checkState(what)
		}
	}
	n := 0 // SMS sent so far
	// expect checks the controls a state offers; a running countdown reads as m:ss.
	clocks := regexp.MustCompile(`\d+:\d\d`)
	expect := func(what string, want ...string) {
		t.Helper()
		got, wanted := clocks.ReplaceAllString(strings.Join(b.controls(), "|"), "m:ss"), clocks.ReplaceAllString(strings.Join(want, "|"), "m:ss")
		if got != wanted {
			t.Errorf("%s offers %q, want %q", what, got, wanted)
		}
	}

	// The phone page: "Sign in to {host}", an example that never wraps.
	b.open("/")
	if h := b.text("h1"); h != say("sign_in_to", "site", "localhost") {
		t.Errorf("heading %q", h)
	}
	look("phone", "phone page")

	// A national number without default_region: add the country code.
	b.typeNumber("201 555 0123")
	if e := b.text("#phone-error"); e != say("err_no_country") {
		t.Errorf("national number without a country says %q", e)
	}
	look("phone-error", "phone error")

	// The code page: the whole number, 6 slots on one field, how long the code lives.
	b.typeNumber("+1 201 555 0101")
	n++
	code := smsTo(t, g, n, "+12015550101")
	if intro := b.text("main p.muted"); !strings.Contains(intro, "+1\u00a0201\u2011555\u20110101") {
		t.Errorf("code page intro %q", intro)
	}
	expect("code page", say("verify"), say("resend_in", "clock", "0:30")+" (disabled)", say("other_number"))
	look("code", "code page")

	// A wrong code: the tries left, the lockout's 2 (lockout 3) being fewer than the code's 4.
	b.typeCodeNoSubmit(otherCode(code))
	b.submit("form#verify button")
	if e := b.text("#code-error"); e != words(catalog[lang]).count("err_wrong", 2) {
		t.Errorf("wrong code says %q", e)
	}
	look("wrong-code", "wrong code")

	// The wrong code that locks: paused, the wait said once (the countdown), no tries count,
	// nothing to press yet but another number; no account to speak of with phones alone.
	for i := 0; i < 2; i++ {
		b.typeCodeNoSubmit(otherCode(code))
		b.submit("form#verify button")
	}
	if h := b.text("h1"); h != say("title_locked") {
		t.Errorf("the locking code says %q", h)
	}
	body := b.text("main")
	if strings.Contains(body, words(catalog[lang]).count("err_wrong", 2)) {
		t.Errorf("the lock page counts tries: %q", body)
	}
	if strings.Contains(body, words(catalog[lang]).duration(15*60)) || !strings.Contains(body, say("text_locked")) {
		t.Errorf("the lock page says the wait besides its countdown, or not why: %q", body)
	}
	expect("locked", say("resend")+" (disabled)", say("other_number"))
	look("locked", "locked")

	// An expired code: "Send a new code" first, no code field.
	clock.Advance(time.Minute)
	b.open("/.otp/login")
	b.typeNumber("+1 201 555 0102")
	n++
	code = smsTo(t, g, n, "+12015550102")
	clock.Advance(6 * time.Minute)
	b.typeCodeNoSubmit(code)
	b.submit("form#verify button")
	if h := b.text("h1"); h != say("title_expired") {
		t.Errorf("expired code: %q", h)
	}
	if present, _ := b.shown("input[name=code]"); present {
		t.Errorf("the expired page has a code field")
	}
	expect("expired", say("resend"), say("other_number"))
	look("expired", "expired")
	b.submit("form[action$='/resend'] button")
	n++
	smsTo(t, g, n, "+12015550102")
	if p := b.path(); p != "/.otp/verify" {
		t.Errorf("a new code led to %s", p)
	}

	// Too early for a new code: a live countdown, and the resend comes back when it ends.
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector("form[action$='/resend']").submit()`)); err != nil {
		t.Fatal(err)
	}
	if h := b.text("h1"); h != say("title_wait") {
		t.Errorf("early resend: %q", h)
	}
	expect("wait", say("resend")+" (disabled)", say("back_to_code"))
	look("wait", "wait")

	// The provider is down (503): try again first.
	clock.Advance(time.Minute)
	g.sms.Fail(restcommtest.InternalError)
	b.open("/.otp/login")
	b.typeNumber("+1 201 555 0103")
	b.settle()
	if h, p := b.text("h1"), b.text("main p"); h != say("title_not_sent") || p != say("text_not_sent") {
		t.Errorf("503 says %q / %q", h, p)
	}
	expect("503", say("try_again"), say("other_number"))
	look("not-sent", "provider down")

	// The site's provider setup is broken (502): say so, offer no retry.
	clock.Advance(time.Minute)
	g.sms.Fail(restcommtest.AccountInactive)
	b.open("/.otp/login")
	b.typeNumber("+1 201 555 0104")
	b.settle()
	g.sms.Fail(restcommtest.None)
	if p := b.text("main p"); p != say("text_misconfigured") {
		t.Errorf("502 says %q", p)
	}
	expect("502")
	look("misconfigured", "misconfigured")

	// Signed in: the sign-out page says who.
	clock.Advance(time.Minute)
	b.open("/.otp/login")
	b.typeNumber("+1 201 555 0105")
	n++
	code = smsTo(t, g, n, "+12015550105")
	if _, err := chromedp.RunResponse(b.ctx, chromedp.SendKeys(chromedp.ID("code"), code)); err != nil {
		t.Fatalf("typing the code: %v", err)
	}
	b.open("/.otp/logout")
	if p := b.text("main p"); p != say("signed_in_as", "site", "localhost", "who", "+1\u00a0201\u2011555\u20110105") {
		t.Errorf("sign-out page says %q", p)
	}
	look("sign-out", "sign-out")

	// Signed out: "You are not signed in" and a link to sign in, no sign-out buttons.
	b.submit("form[action$='/logout'] button")
	b.open("/.otp/logout")
	if h := b.text("h1"); h != say("title_not_signed_in") {
		t.Errorf("sign-out page without a session: %q", h)
	}
	expect("not signed in", say("title_sign_in"))
	look("not-signed-in", "not signed in")
}
