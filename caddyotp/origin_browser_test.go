//go:build integration

package caddyotp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestASiblingOriginCannotSignTheVisitorInAsItself is login CSRF in a real browser: a page on
// another port of the same host (a sibling: same site, another origin, whose cookies reach the
// gate) tosses its own flow cookie into the victim's browser and posts its own code from a
// no-referrer page, so that the browser sends Origin: null. The victim must not end up signed
// in as the attacker.
func TestASiblingOriginCannotSignTheVisitorInAsItself(t *testing.T) {
	g := startGate(t, "")
	attacker := newVisitor(t)
	csrf, sent := attacker.startSignIn("/", alice) // the attacker's own phone
	wantStatus(t, "attacker's send", sent, http.StatusSeeOther)
	_, code := g.code(1)
	cookie := attacker.cookie("caddy_otp" + flowCookie)
	if cookie == "" {
		t.Fatal("the attacker got no flow cookie")
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/.otp/verify"><input name="csrf" value="%s"><input name="code" value="%s"></form>
<script>document.cookie = "caddy_otp%s=%s; path=/"; document.forms[0].submit();</script>`, site, csrf, code, flowCookie, cookie)
	}))
	t.Cleanup(evil.Close)
	_, port, _ := strings.Cut(strings.TrimPrefix(evil.URL, "http://"), ":")

	b := newBrowser(t, "sibling", 1000, 800, "en")
	b.do("open the sibling's page", chromedp.Navigate("http://localhost:"+port+"/"))
	b.waitFor("the form's answer", `location.port === "9080" && document.readyState === "complete"`, 10*time.Second)
	body := b.text("body")
	if strings.Contains(body, "upstream") {
		t.Fatalf("the sibling's form signed the victim in as the attacker: %.200s", body)
	}
	b.open("/")
	if p := b.path(); p != "/.otp/login" {
		t.Errorf("after the sibling's form the victim is at %s, want the phone page (not signed in)", p)
	}
}
