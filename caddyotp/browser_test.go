package caddyotp

import (
	"context"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdpage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

var screenshots = flag.String("screenshots", "", "also write the browser tests' screenshots to this directory (docs/ for the README)")

// browser is one headless Chromium tab with its console and CSP violations recorded.
type browser struct {
	t       *testing.T
	ctx     context.Context
	name    string // for screenshot files
	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// recordCSP collects every Content-Security-Policy violation the page reports. Scripts the
// DevTools protocol adds are exempt from the page's CSP.
const recordCSP = `window.__csp = []; document.addEventListener("securitypolicyviolation", function (e) { window.__csp.push(e.violatedDirective + " " + e.blockedURI); });`

// newBrowser starts Debian's Chromium, headless and on loopback only, with a viewport of w x h
// (mobile emulation when narrow) and the given Accept-Language.
func newBrowser(t *testing.T, name string, w, h int64, lang string) *browser {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the browser tests need Chromium: apt-get install -y chromium (%v)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("lang", lang), chromedp.Flag("accept-lang", lang),
		// Everything the pages need is on localhost: let nothing else out.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE localhost"),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })

	b := &browser{t: t, ctx: ctx, name: name}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	addScript := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, cdpage.AddScriptToEvaluateOnNewDocument, cdpage.AddScriptToEvaluateOnNewDocumentParams{Source: recordCSP})
		return chromedp.Void{}, err
	}
	viewport := chromedp.EmulateViewport(w, h)
	if w < 600 {
		viewport = chromedp.EmulateViewport(w, h, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(3))
	}
	if err := chromedp.Do(ctx, chromedp.Action[chromedp.Void](addScript), viewport); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return b
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open navigates to path and waits for the page.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(site+path))
}

// submit clicks a button that submits a form and waits for the next page.
func (b *browser) submit(sel string) {
	b.t.Helper()
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		b.t.Fatalf("submit %s: %v", sel, err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) path() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	u, _ := url.Parse(loc)
	return u.Path
}

// checkPage asserts what every page must be: every visible input labelled, no CSP violation,
// no console error, nothing wider than the viewport.
func (b *browser) checkPage(what string) {
	b.t.Helper()
	unlabelled := eval[[]string](b, `Array.from(document.querySelectorAll("input:not([type=hidden]), select, textarea")).filter(function (i) { return !i.labels || i.labels.length === 0; }).map(function (i) { return i.name; })`)
	if len(unlabelled) > 0 {
		b.t.Errorf("%s: inputs without a label: %v", what, unlabelled)
	}
	if v := eval[[]string](b, `window.__csp || []`); len(v) > 0 {
		b.t.Errorf("%s: CSP violations: %v", what, v)
	}
	if overflow := eval[bool](b, `document.documentElement.scrollWidth > window.innerWidth`); overflow {
		b.t.Errorf("%s: the page is wider than the %s viewport", what, b.name)
	}
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		// The page's own status (401 for a wrong code, 429 when rate limited) is the contract;
		// Chrome logs it as a failed load. Anything else is an error.
		ownStatus := m.Source == "network" && m.URL == loc
		if (m.Type == chromedp.ConsoleError && !ownStatus) || m.IsException() {
			b.t.Errorf("%s: console %s (%s)", what, m, m.URL)
		}
	}
	b.console = nil
}

// shot saves a screenshot of the page as NAME-SIZE.png in the test's directory and, with
// -screenshots, in that directory too.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 1000 {
		b.t.Fatalf("screenshot of %s is empty", name)
	}
	for _, dir := range []string{b.t.TempDir(), *screenshots} {
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+b.name+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
}

// TestBrowserSignInOnPhoneAndDesktop is a visitor in real Chromium: a protected URL leads to the
// phone page, the number is typed, the code is read from the SMS and typed, and the protected
// page appears; on a phone-sized and a desktop-sized screen.
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
			b.shot("phone-page")

			b.do("type the number", chromedp.SendKeys(chromedp.ID("phone"), "+1 201 555 0123"))
			b.submit("form[action$='/send'] button")
			if p := b.path(); p != "/.otp/verify" {
				t.Fatalf("after send at %s", p)
			}
			if intro := b.text("main p.muted"); !strings.Contains(intro, "+1\u00a0201\u2011***\u2011**23") {
				t.Errorf("code page intro %q lacks the masked number", intro)
			}
			code := eval[map[string]string](b, `(function (i) { return {inputmode: i.inputMode, autocomplete: i.autocomplete, pattern: i.pattern, maxlength: String(i.maxLength)}; })(document.getElementById("code"))`)
			if code["inputmode"] != "numeric" || code["autocomplete"] != "one-time-code" || code["pattern"] != "[0-9]{6}" || code["maxlength"] != "6" {
				t.Errorf("code input %v", code)
			}
			b.checkPage("code page")
			b.shot("code-page")

			_, sms := g.code(1)
			b.do("type the code", chromedp.SendKeys(chromedp.ID("code"), sms))
			b.submit("form#verify button")
			if p := b.path(); p != "/reports/q3" {
				t.Fatalf("after verify at %s, want the protected page", p)
			}
			if body := b.text("body"); !strings.Contains(body, "user="+alice) {
				t.Errorf("protected page says %q", body)
			}
			b.checkPage("protected page")
		})
	}
}

// TestBrowserCodePageStates walks the states a visitor meets on the code page and checks what
// each says: a pasted code with spaces, the resend countdown, a wrong code, too-early resend,
// an expired code.
func TestBrowserCodePageStates(t *testing.T) {
	g := startGate(t, "resend_after 30s")
	b := newBrowser(t, "phone", 390, 844, "en-US")
	b.open("/")
	b.do("type the number", chromedp.SendKeys(chromedp.ID("phone"), "+12015550123"))
	b.submit("form[action$='/send'] button")

	pasted := eval[string](b, `(function () {
		var i = document.getElementById("code"), dt = new DataTransfer();
		dt.setData("text", "123 - 456");
		i.dispatchEvent(new ClipboardEvent("paste", {clipboardData: dt, bubbles: true, cancelable: true}));
		return i.value; })()`)
	if pasted != "123456" {
		t.Errorf("pasting %q left %q in the code field", "123 - 456", pasted)
	}
	resend := eval[map[string]any](b, `(function (r) { return {disabled: r.disabled, text: r.textContent}; })(document.getElementById("resend"))`)
	if resend["disabled"] != true || !strings.HasPrefix(resend["text"].(string), "Send a new code in ") {
		t.Errorf("resend button before resend_after: %v", resend)
	}

	_, code := g.code(1)
	b.do("type a wrong code", chromedp.SetValue(chromedp.ID("code"), otherCode(code)))
	b.submit("form#verify button")
	if msg := b.text("#code-error"); msg != "That code is not right. 4 tries left." {
		t.Errorf("wrong code says %q", msg)
	}
	b.checkPage("wrong code")
	b.shot("wrong-code")

	// A visitor who forces the resend form early gets the wait page.
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Evaluate[chromedp.Void](`document.querySelector("form[action$='/resend']").submit()`)); err != nil {
		t.Fatal(err)
	}
	if h, p := b.text("h1"), b.text("main p"); h != "Please wait" || !strings.Contains(p, "A new code can be sent in") || !strings.Contains(p, "seconds") {
		t.Errorf("early resend page: %q / %q", h, p)
	}
	b.checkPage("rate limited")
	b.shot("rate-limited")

	b.open("/.otp/verify")
	clock.Advance(6 * time.Minute)
	b.do("type the code", chromedp.SetValue(chromedp.ID("code"), code))
	b.submit("form#verify button")
	if msg := b.text("#code-error"); msg != "This code has expired. Send a new code." {
		t.Errorf("expired code says %q", msg)
	}
	b.checkPage("expired")
	b.shot("expired")
}

// TestBrowserPagesInGerman: a browser that prefers German gets German pages, which (with the
// longest words of the four languages) still fit a 320 px screen.
func TestBrowserPagesInGerman(t *testing.T) {
	startGate(t, "")
	b := newBrowser(t, "small-phone", 320, 640, "de-DE")
	b.open("/")
	if h, label := b.text("h1"), b.text("label[for=phone]"); h != "Anmelden" || label != "Telefonnummer" {
		t.Errorf("German browser got %q / %q", h, label)
	}
	if lang := eval[string](b, `document.documentElement.lang`); lang != "de" {
		t.Errorf("lang = %q", lang)
	}
	b.checkPage("German phone page")
}

// contrastJS computes, for each text element, the WCAG contrast ratio of its color against the
// first opaque background behind it, and returns the worst few; and the smallest button height.
const contrastJS = `(function () {
	function rgb(s) { var m = s.match(/[\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; }
	function lum(c) { return [c.r, c.g, c.b].map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
		.reduce(function (a, v, i) { return a + v * [0.2126, 0.7152, 0.0722][i]; }, 0); }
	function bg(el) { for (; el; el = el.parentElement) { var c = rgb(getComputedStyle(el).backgroundColor); if (c.a > 0) return c; } return {r: 255, g: 255, b: 255, a: 1}; }
	var out = [];
	document.querySelectorAll("h1, p, label, button, a, span, input").forEach(function (el) {
		if (!el.textContent.trim() && el.tagName !== "INPUT" || el.disabled) return;
		var a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
		var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		out.push({el: el.tagName + (el.className ? "." + el.className : ""), ratio: Math.round(ratio * 100) / 100});
	});
	out.sort(function (x, y) { return x.ratio - y.ratio; });
	var minButton = Math.min.apply(null, Array.from(document.querySelectorAll("button, input:not([type=hidden])")).map(function (b) { return b.getBoundingClientRect().height; }));
	return {worst: out.slice(0, 3), minTarget: minButton};
})()`

type contrastReport struct {
	Worst []struct {
		El    string  `json:"el"`
		Ratio float64 `json:"ratio"`
	} `json:"worst"`
	MinTarget float64 `json:"minTarget"`
}

// TestBrowserContrastAndTouchTargets: in light and dark mode, every text on the phone and code
// pages has at least WCAG AA contrast (4.5:1), and every control is at least 44 px tall.
func TestBrowserContrastAndTouchTargets(t *testing.T) {
	g := startGate(t, "")
	for _, scheme := range []string{"light", "dark"} {
		t.Run(scheme, func(t *testing.T) {
			b := newBrowser(t, "phone-"+scheme, 390, 844, "en-US")
			b.do("emulate "+scheme, chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
				_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
				})
				return chromedp.Void{}, err
			}))
			check := func(what string) {
				r := eval[contrastReport](b, contrastJS)
				if len(r.Worst) == 0 {
					t.Fatalf("%s: no text measured", what)
				}
				for _, w := range r.Worst {
					if w.Ratio < 4.5 {
						t.Errorf("%s (%s): %s has contrast %.2f, below 4.5", what, scheme, w.El, w.Ratio)
					}
				}
				if r.MinTarget < 44 {
					t.Errorf("%s (%s): a control is %.0f px tall, below 44", what, scheme, r.MinTarget)
				}
			}
			clock.Advance(31 * time.Second) // resend_after since the other scheme's code to bob
			b.open("/.otp/login")
			check("phone page")
			n := len(g.sms.Messages())
			b.do("type the number", chromedp.SendKeys(chromedp.ID("phone"), bob))
			b.submit("form[action$='/send'] button")
			g.code(n + 1)
			b.do("wrong code", chromedp.SetValue(chromedp.ID("code"), "000000"))
			b.submit("form#verify button")
			check("code page with an error")
			b.shot("code-page-error")
		})
	}
}
