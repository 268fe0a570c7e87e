//go:build integration

package caddyotp

import (
	"fmt"
	"io/fs"
	"log"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// TestPasskeySurvivesARestart runs this repository's Caddy as a process with passkeys on and
// file storage: a passkey made after a code signs in with no SMS after Caddy was stopped and
// started again on the same storage, with nothing of it left in memory. With other (empty)
// storage the same passkey is refused, which shows it is the storage, not luck, that carries it.
func TestPasskeySurvivesARestart(t *testing.T) {
	buildCaddy(t) // before the browser, whose deadline starts with it
	sms := restcommtest.NewServer()
	defer sms.Close()
	port := freePort(t)
	base := fmt.Sprintf("http://localhost:%d", port)
	// grace_period: a stop need not wait the 5s Go gives Chromium's unused preconnections.
	config := func(storage string) string {
		return fmt.Sprintf(`{
	admin off
	grace_period 1ns
	storage file_system %s
}
http://localhost:%d {
	otp {
		%s
		public_url %s
		phones %s
		passkeys
		ip_limit 200 10m
	}
	respond "user={http.auth.user.id}"
}
`, storage, port, senderBlock(sms, ""), base, alice)
	}
	token := "TEST_RESTCOMM_TOKEN=" + sms.AuthToken
	storage := t.TempDir()

	first := runCaddy(t, config(storage), port, token)
	b := newBrowser(t, "desktop", 1280, 800, "en-US")
	addAuthenticator(b, false)
	b.smsSignInAt(base, sms, alice, 1)
	if p := b.path(); p != "/.otp/passkey/offer" {
		t.Fatalf("after the code at %s, want the passkey offer", p)
	}
	b.createPasskey("/docs")
	b.wantBody("after making the passkey", "user="+alice)
	if files := passkeyFiles(t, storage); len(files) != 1 {
		t.Fatalf("Caddy's storage holds passkey files %v, want one", files)
	}
	b.signOutAt(base)
	first.stop()

	second := runCaddy(t, config(storage), port, token)
	sent := len(sms.Messages())
	b.passkeySignInAt(base, "/reports")
	b.wantBody("after the restart", "user="+alice)
	if n := len(sms.Messages()); n != sent {
		t.Errorf("a passkey sign-in sent %d SMS", n-sent)
	}
	second.stop()

	cdpCall(b, network.ClearBrowserCookies, cdp.Empty{})
	runCaddy(t, config(t.TempDir()), port, token)
	b.passkeyRefusalAt(base, "with other storage")
}

// TestPasskeyMadeOnOneInstanceSignsInOnAnother runs two Caddy processes of one site on one
// Redis, each with Caddy storage of its own and the same secret, behind a load balancer on the
// site's public origin. A passkey made through instance A signs in through instance B, with A
// stopped and no SMS sent: the credential lives in Redis, and in neither instance's storage.
func TestPasskeyMadeOnOneInstanceSignsInOnAnother(t *testing.T) {
	buildCaddy(t) // before the browser, whose deadline starts with it
	r := startRedis(t)
	sms := restcommtest.NewServer()
	defer sms.Close()
	lb := newBalancer(t)
	const secret = "passkeys-on-every-instance-0123456789"
	start := func(name, prefix string) (*caddyProcess, string, *url.URL) {
		port, storage := freePort(t), t.TempDir()
		cfg := fmt.Sprintf(`{
	admin off
	grace_period 1ns
	storage file_system %s
}
http://localhost:%d {
	otp {
		%s
		public_url %s
		phones %s
		secret %s
		store redis {
			address %s
			key_prefix %s
		}
		passkeys
		ip_limit 200 10m
	}
	respond "instance %s user={http.auth.user.id}"
}
`, storage, port, senderBlock(sms, sms.AuthToken), lb.base, alice, secret, r.Addr(), prefix, name)
		return runCaddy(t, cfg, port), storage, &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", port)}
	}
	a, storageA, urlA := start("A", "caddy-otp:")
	_, storageB, urlB := start("B", "caddy-otp:")

	b := newBrowser(t, "desktop", 1280, 800, "en-US")
	addAuthenticator(b, false)
	lb.sendTo(urlA)
	b.smsSignInAt(lb.base, sms, alice, 1)
	if p := b.path(); p != "/.otp/passkey/offer" {
		t.Fatalf("after the code at %s, want the passkey offer", p)
	}
	b.createPasskey("/docs")
	b.wantBody("after making the passkey on A", "instance A user="+alice)

	var vault []string
	for _, k := range redisKeys(t, r) {
		if strings.Contains(k, "passkeys:") {
			vault = append(vault, k)
		}
	}
	if len(vault) != 1 {
		t.Fatalf("Redis holds passkey keys %v, want one", vault)
	}
	for name, dir := range map[string]string{"A": storageA, "B": storageB} {
		if files := passkeyFiles(t, dir); len(files) != 0 {
			t.Errorf("instance %s's storage holds passkey files %v: with a Redis store they belong in Redis", name, files)
		}
	}

	// Days later, A is gone and the load balancer sends the visitor to B.
	cdpCall(b, network.ClearBrowserCookies, cdp.Empty{})
	a.stop()
	lb.sendTo(urlB)
	sent := len(sms.Messages())
	b.passkeySignInAt(lb.base, "/reports")
	b.wantBody("after the passkey sign-in on B", "instance B user="+alice)
	if n := len(sms.Messages()); n != sent {
		t.Errorf("a passkey sign-in sent %d SMS", n-sent)
	}
}

// balancer is a load balancer in front of a site's instances, on a loopback port of its own
// (the site's public_url): it sends every request, Host header and all, to the instance it is
// pointed at.
type balancer struct {
	base string // http://localhost:PORT
	to   atomic.Pointer[url.URL]
}

func newBalancer(t *testing.T) *balancer {
	t.Helper()
	lb := &balancer{}
	srv := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(lb.to.Load())
			pr.Out.Host = pr.In.Host
		},
		ErrorLog: log.New(testWriter{t}, "balancer: ", 0),
	})
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	lb.base = "http://localhost:" + u.Port()
	return lb
}

// sendTo points the balancer at the instance at u.
func (lb *balancer) sendTo(u *url.URL) { lb.to.Store(u) }

// testWriter logs what is written to it in the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// passkeyFiles lists the passkey records in the Caddy file storage at dir.
func passkeyFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(dir, "otp", "passkeys"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil && !strings.Contains(err.Error(), "no such file") {
		t.Fatal(err)
	}
	return files
}

// The helpers below are those of harness_passkey_test.go for a site at base rather than at
// the in-process Caddy's fixed origin.

// openAt navigates to path on the site at base and waits for the page.
func (b *browser) openAt(base, path string) {
	b.t.Helper()
	b.do("open "+base+path, chromedp.Navigate(base+path))
}

// smsSignInAt signs in on the site at base with the n-th SMS's code: typed number, typed code.
// It leaves the browser wherever the gate sent it after the code.
func (b *browser) smsSignInAt(base string, sms *restcommtest.Server, phone string, n int) {
	b.t.Helper()
	b.openAt(base, "/.otp/login?next=/docs")
	b.typeNumber(phone)
	m, code := smsCode(b.t, sms, n)
	if m.To != phone {
		b.t.Fatalf("SMS %d went to %s, want %s", n, m.To, phone)
	}
	if _, err := chromedp.RunResponse(b.ctx, chromedp.SendKeys(chromedp.ID("code"), code)); err != nil {
		b.t.Fatalf("typing the code: %v", err)
	}
}

// passkeySignInAt presses "Sign in with a passkey" on the phone page of the site at base and
// waits for next.
func (b *browser) passkeySignInAt(base, next string) {
	b.t.Helper()
	b.openAt(base, "/.otp/login?next="+next)
	b.do("sign in with a passkey", chromedp.WaitVisible(chromedp.ID("passkey-signin")), chromedp.Click(chromedp.ID("passkey-signin")))
	b.waitPath(next)
}

// passkeyRefusalAt presses "Sign in with a passkey" on the site at base and expects the refusal
// on the phone page; a passkey that signs in instead fails the test at once.
func (b *browser) passkeyRefusalAt(base, what string) {
	b.t.Helper()
	b.openAt(base, "/.otp/login?next=/docs")
	b.do("sign in with a passkey", chromedp.WaitVisible(chromedp.ID("passkey-signin")), chromedp.Click(chromedp.ID("passkey-signin")))
	deadline := time.Now().Add(10 * time.Second)
	for {
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		if err == nil && pathOf(loc) != "/.otp/login" {
			b.t.Fatalf("%s: a passkey that should be refused landed on %s; page says %q", what, loc, b.text("body"))
		}
		shown, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`(function () { var e = document.getElementById("passkey-error"); return !!e && !e.hidden; })()`))
		if err == nil && shown {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: no refusal shown after pressing the button; page says %q", what, b.text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// signOutAt presses "Sign out" on the sign-out page of the site at base.
func (b *browser) signOutAt(base string) {
	b.t.Helper()
	b.openAt(base, "/.otp/logout")
	b.submit("form[action$='/logout'] button[value='0']")
	if p := b.path(); p != "/.otp/login" {
		b.t.Fatalf("after sign-out at %s", p)
	}
}

// wantBody asserts that the page's text holds want.
func (b *browser) wantBody(what, want string) {
	b.t.Helper()
	if body := b.text("body"); !strings.Contains(body, want) {
		b.t.Fatalf("%s: the page says %q, want %q in it", what, body, want)
	}
}
