package caddyotp

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchSession returns a handler and the session cookie of a signed-in visitor.
func benchSession(b *testing.B) (*Handler, *http.Cookie) {
	h, _ := newUnitHandler(b, map[string]any{"ip_limit": map[string]any{"count": 1 << 30, "window": "1h"}})
	s, err := h.signins.sessions.issue(alice, h.now())
	if err != nil {
		b.Fatal(err)
	}
	return h, &http.Cookie{Name: "caddy_otp", Value: h.signins.sessions.encode(s)}
}

// discard is a ResponseWriter that keeps nothing, so the benchmark measures the gate alone.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkSessionCheck is the hot path: a request with a valid session, through the gate to
// the next handler, with the request's other cookies kept for upstream.
func BenchmarkSessionCheck(b *testing.B) {
	h, cookie := benchSession(b)
	r := withCaddyContext(httptest.NewRequest(http.MethodGet, "/reports/q3", nil)) // Caddy's per-request setup, done once: not the gate's cost
	w := &discard{h: http.Header{}}
	line := "theme=dark; " + cookie.Name + "=" + cookie.Value + "; lang=en"
	cookies := []string{line}
	b.ReportAllocs()
	for b.Loop() {
		cookies[0] = line
		r.Header["Cookie"] = cookies
		if err := h.ServeHTTP(w, r, upstream); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNoSession is a browser without a session: the 303 to the phone page.
func BenchmarkNoSession(b *testing.B) {
	h, _ := benchSession(b)
	r := withCaddyContext(httptest.NewRequest(http.MethodGet, "/reports/q3?year=2026", nil))
	r.Header.Set("Accept", "text/html")
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		_ = h.ServeHTTP(w, r, upstream)
	}
}

// BenchmarkSignIn is one whole sign-in with the memory store and a sender that keeps the
// message: the phone page, the send, and the verify with the right code.
func BenchmarkSignIn(b *testing.B) {
	h, _ := benchSession(b)
	h.limits.send.Count, h.limits.lockout.Count, h.limits.resendAfter = 1<<30, 1<<30, 0
	sender := h.sender.(*recordingSender)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		flowCookie, csrf := unitFlow(b, h)
		phone := "%2B120155501" + strconv.Itoa(10+i%90) // many numbers, as real traffic has
		post := func(path, body string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.AddCookie(flowCookie)
			w := httptest.NewRecorder()
			_ = serve(h, w, r)
			return w
		}
		h.flows.allow.phones.anyone = true
		if w := post("/.otp/send", "csrf="+csrf+"&phone="+phone); w.Code != http.StatusSeeOther {
			b.Fatalf("send: %d", w.Code)
		}
		code := sentCode(b, sender, i+1) // sent in the background
		if w := post("/.otp/verify", "csrf="+csrf+"&code="+code); w.Code != http.StatusSeeOther {
			b.Fatalf("verify: %d", w.Code)
		}
	}
}

// TestPendingFlowMemory measures what 100,000 pending flows (each with a code sent) cost in
// the memory store, and reports it; the limit is a budget for regressions, the number the
// benchmark documentation quotes comes from here.
func TestPendingFlowMemory(t *testing.T) {
	h, _ := newUnitHandler(t, nil)
	const flows = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < flows; i++ {
		id, _ := randomToken()
		f := &flow{Phone: "+1201555" + strconv.Itoa(1000+i%9000), Allowed: true,
			Hash: codeHash(h.keys.code, id, "123456"), Sent: h.now().UnixNano(), Expires: h.now().Add(5 * time.Minute).UnixNano()}
		if err := saveFlow(t.Context(), h.store, id, f, flowKeep(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perFlow := float64(after.HeapAlloc-before.HeapAlloc) / flows
	t.Logf("%.0f bytes of heap per pending flow", perFlow)
	if perFlow > 1024 {
		t.Errorf("a pending flow costs %.0f bytes, over the 1 KiB budget", perFlow)
	}
}
