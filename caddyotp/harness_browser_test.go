//go:build integration

package caddyotp

import (
	"context"
	"flag"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdpage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

var screenshots = flag.String("screenshots", "", "also write the browser tests' screenshots to this directory (docs/ for the README)")

// browser is one headless Chromium tab with its console and CSP violations recorded.
type browser struct {
	t       *testing.T
	ctx     context.Context
	name    string // for screenshot files
	axe     string // axe-core's source, for checkState
	mobile  bool   // emulates a phone at 3 device pixels a CSS pixel
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

	b := &browser{t: t, ctx: ctx, name: name, axe: axeSource(t), mobile: w < 600}
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

// shot saves a screenshot of the page's content (main) as NAME-SIZE.png in the test's directory
// and, with -screenshots, in that directory too; a phone's at half its device pixels, small
// enough for the README.
func (b *browser) shot(name string) {
	b.t.Helper()
	scale := 1.0
	if b.mobile {
		scale = 0.5
	}
	png, err := chromedp.Run(b.ctx, chromedp.ScreenshotScale(chromedp.CSS("main"), scale))
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

// contrastJS computes, for each text element, the WCAG contrast ratio of its color against the
// first opaque background behind it, and returns the worst few; and the smallest height of a
// control (button, link, field) on the page.
const contrastJS = `(function () {
	function rgb(s) { var m = s.match(/[\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; }
	function lum(c) { return [c.r, c.g, c.b].map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); })
		.reduce(function (a, v, i) { return a + v * [0.2126, 0.7152, 0.0722][i]; }, 0); }
	function bg(el) { for (; el; el = el.parentElement) { var c = rgb(getComputedStyle(el).backgroundColor); if (c.a > 0) return c; } return {r: 255, g: 255, b: 255, a: 1}; }
	var out = [];
	function shown(el) { return el.getClientRects().length > 0; }
	document.querySelectorAll("h1, p, label, button, a, span, input, select").forEach(function (el) {
		if (!el.textContent.trim() && el.tagName !== "INPUT" || el.disabled || !shown(el)) return;
		var a = lum(rgb(getComputedStyle(el).color)), b = lum(bg(el));
		var ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
		out.push({el: el.tagName + (el.className ? "." + el.className : ""), ratio: Math.round(ratio * 100) / 100});
	});
	out.sort(function (x, y) { return x.ratio - y.ratio; });
	var heights = Array.from(document.querySelectorAll("button, select, a, input:not([type=hidden]):not([type=checkbox])")).filter(shown).map(function (b) { return b.getBoundingClientRect().height; });
	var minButton = heights.length ? Math.min.apply(null, heights) : 44; // a page with nothing to press
	return {worst: out.slice(0, 3), minTarget: minButton};
})()`

type contrastReport struct {
	Worst []struct {
		El    string  `json:"el"`
		Ratio float64 `json:"ratio"`
	} `json:"worst"`
	MinTarget float64 `json:"minTarget"`
}
