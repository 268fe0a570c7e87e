package caddyotp

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestLoginPageFloodStoresNothing: a stranger's cookie-less requests for the phone page (or a
// protected page) keep nothing on the server: here in the memory store, in
// TestLoginPageFloodStoresNothingInRedis in Redis.
func TestLoginPageFloodStoresNothing(t *testing.T) {
	next := "/" + strings.Repeat("a", 2000)
	h, _ := newUnitHandler(t, nil)
	for i := 0; i < 1000; i++ {
		w := httptest.NewRecorder()
		if err := serve(h, w, httptest.NewRequest(http.MethodGet, "/.otp/login?next="+url.QueryEscape(next+strconv.Itoa(i)), nil)); err != nil || w.Code != http.StatusOK {
			t.Fatalf("phone page: %d %v", w.Code, err)
		}
	}
	if n := h.store.(*MemoryStore).mem.c.ItemCount(); n != 0 {
		t.Fatalf("1000 requests for the phone page left %d entries in the store", n)
	}
}

// TestAccessLogFilterDeletesThePhone proves the log filter of docs/operations.md: Caddy's access
// log records {http.auth.user.id}, the phone, as user_id unless the filter deletes it.
func TestAccessLogFilterDeletesThePhone(t *testing.T) {
	sms := newRestcomm(t)
	dir := t.TempDir()
	plain, filtered := filepath.Join(dir, "plain.log"), filepath.Join(dir, "filtered.log")
	loadCaddyfile(t, nil, "", fmt.Sprintf(`http://localhost:9080 {
	log plain {
		output file %[1]s
		format json
	}
	log filtered {
		output file %[2]s
		format filter {
			wrap json
			user_id delete
		}
	}
	otp {
		%[3]s
		public_url http://localhost:9080
		phones %[4]s
		store memory %[5]s
	}
	respond "ok"
}
`, plain, filtered, senderBlock(sms, sms.AuthToken), alice, storeName(t)))
	v := newVisitor(t)
	v.signInWith(sms, alice)
	wantStatus(t, "signed in", v.get("/"), http.StatusOK)
	read := func(path string) string {
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), `"uri":"/"`) || time.Now().After(deadline) {
				return string(b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if log := read(plain); !strings.Contains(log, `"user_id":"`+alice+`"`) {
		t.Fatalf("the unfiltered access log does not show the phone as user_id, so the filter proves nothing: %.500s", log)
	}
	if log := read(filtered); !strings.Contains(log, `"uri":"/"`) || strings.Contains(log, "user_id") || strings.Contains(log, alice[1:]) {
		t.Fatalf("the filtered access log still holds the phone: %.500s", log)
	}
}

func TestNumberThatMayNotSignInIsIndistinguishable(t *testing.T) {
	g := startGate(t, "")
	known, unknown := newVisitor(t), newVisitor(t)
	ck, a := known.startSignIn("/", alice)
	cu, b := unknown.startSignIn("/", stranger)
	sameAnswer(t, "send", a, b)
	sameAnswer(t, "code page", known.get("/.otp/verify"), unknown.get("/.otp/verify"))
	sameAnswer(t, "wrong code", known.post("/.otp/verify", url.Values{"csrf": {ck}, "code": {"000000"}}),
		unknown.post("/.otp/verify", url.Values{"csrf": {cu}, "code": {"000000"}}))
	clock.Advance(31 * time.Second)
	sameAnswer(t, "resend", known.post("/.otp/resend", url.Values{"csrf": {ck}}), unknown.post("/.otp/resend", url.Values{"csrf": {cu}}))
	g.code(2)
	for _, m := range g.sms.Messages() {
		if m.To == stranger {
			t.Fatalf("an SMS went to a number that may not sign in")
		}
	}
}

// sameAnswer compares two answers as an attacker would: status, header names and the values
// that are not per-request (nonces, dates, cookie values), and the body with those masked.
func sameAnswer(t *testing.T, what string, a, b response) {
	t.Helper()
	mask := func(r response) string {
		var keys []string
		for k, v := range r.header {
			switch k {
			case "Date", "Content-Security-Policy":
				keys = append(keys, k)
			case "Set-Cookie":
				for _, c := range v {
					name, rest, _ := strings.Cut(c, "=")
					_, attrs, _ := strings.Cut(rest, ";")
					keys = append(keys, "Set-Cookie:"+name+";"+attrs)
				}
			default:
				keys = append(keys, k+":"+strings.Join(v, ","))
			}
		}
		body := regexpNonce.ReplaceAllString(r.body, "NONCE")
		body = regexpCSRF.ReplaceAllString(body, "CSRF")
		for _, p := range []string{alice, stranger} { // the number the visitor typed, as html/template writes it, masked or not
			body = strings.ReplaceAll(body, strings.ReplaceAll(unbreakable.Replace(maskPhoneDisplay(p)), "+", "&#43;"), "MASKED")
			body = strings.ReplaceAll(body, strings.ReplaceAll(unbreakable.Replace(formatPhone(p)), "+", "&#43;"), "SHOWN")
			body = strings.ReplaceAll(body, strings.ReplaceAll(p, "+", "&#43;"), "TYPED")
		}
		return strconv.Itoa(r.status) + "\n" + strings.Join(sortedCopy(keys), "\n") + "\n" + body
	}
	if ma, mb := mask(a), mask(b); ma != mb {
		t.Errorf("%s: answers differ:\n%s\n---\n%s", what, ma, mb)
	}
}

func TestLogsNeverHoldCodesTokensCookiesOrFullNumbers(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	_, code := g.code(1)
	flowID := v.cookie("caddy_otp_flow")
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	clock.Advance(31 * time.Second)
	v.post("/.otp/resend", url.Values{"csrf": {csrf}})
	_, code2 := g.code(2)
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code2}})
	session := v.cookie("caddy_otp")
	v.get("/")
	refused := newVisitor(t)
	refused.startSignIn("/", stranger)
	refused.settled()
	g.sms.Fail(restcommtest.InternalError)
	failed := newVisitor(t)
	failed.startSignIn("/", bob)
	failed.settled()
	g.sms.Fail(restcommtest.None)
	v.signOut(false)

	logs := g.logs()
	for _, want := range []string{"code sent", "code failed", "code verified", "sender error", "session revoked"} {
		if !strings.Contains(logs, `"msg":"`+want+`"`) {
			t.Errorf("no %q event in the log", want)
		}
	}
	for name, secret := range map[string]string{
		"code": code, "second code": code2, "auth token": g.sms.AuthToken, "session cookie": session,
		"flow id": flowID, "csrf token": csrf, "alice": alice, "bob": bob, "stranger": stranger,
		"alice, national digits": alice[2:],
	} {
		if secret != "" && strings.Contains(logs, secret) {
			t.Errorf("the log holds the %s", name)
		}
	}
}

// headerTransport adds headers to every request, as a proxy in front of Caddy would.
type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestPagesCarrySecurityHeadersAndNoExternalAssets(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	g.code(1)
	pages := map[string]response{
		"phone page":   v.get("/.otp/login"),
		"code page":    v.get("/.otp/verify"),
		"wrong code":   v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {"000000"}}),
		"rate limited": v.post("/.otp/resend", url.Values{"csrf": {csrf}}),
		"logout page":  v.get("/.otp/logout"),
		"not found":    v.get("/.otp/nope"),
	}
	for name, r := range pages {
		csp := r.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", name, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") {
			t.Errorf("%s: CSP allows unsafe-inline", name)
		}
		for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
			if got := r.header.Get(h); got != want {
				t.Errorf("%s: %s = %q, want %q", name, h, got, want)
			}
		}
		if strings.Contains(r.body, "src=\"http") || strings.Contains(r.body, "href=\"http") || strings.Contains(r.body, "url(") {
			t.Errorf("%s references an external asset", name)
		}
		if !strings.Contains(r.body, `<html lang="en">`) {
			t.Errorf("%s has no language", name)
		}
	}
}

func TestStoreKeysHoldNoPhoneNumberOrIP(t *testing.T) {
	h, _ := newUnitHandler(t, nil)
	flowCookie, csrf := unitFlow(t, h)
	r := httptest.NewRequest(http.MethodPost, "/.otp/send", strings.NewReader("csrf="+csrf+"&phone=%2B12015550123"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(flowCookie)
	w := httptest.NewRecorder()
	if err := serve(h, w, r); err != nil || w.Code != http.StatusSeeOther {
		t.Fatalf("send: %d %v", w.Code, err)
	}
	items := h.store.(*MemoryStore).mem.c.Items()
	if len(items) < 3 {
		t.Fatalf("only %d store keys after a send: the limits did not count", len(items))
	}
	for key := range items {
		if strings.Contains(key, "2015550123") || strings.Contains(key, "192.0.2.1") {
			t.Errorf("store key %q holds the phone or the client IP", key)
		}
	}
}

// TestAnAnswerInTheLogShowsNoPartOfACode: what the log keeps of a provider's answer is cut to a
// bound after the digits that could be a code or a number are redacted, never before, so that a
// code the answer echoes at the cut does not leave its first digits behind.
func TestAnAnswerInTheLogShowsNoPartOfACode(t *testing.T) {
	for _, at := range []int{150, 195, 196, 199, 200} {
		answer := strings.Repeat("x", at) + "769945 is your code"
		if got := scrubbed(answer); strings.Contains(got, "7699") || strings.Contains(got, "769") {
			t.Errorf("a code at byte %d leaves %q in the log", at, got)
		}
	}
	if got := scrubbed(strings.Repeat("é", 150)); !utf8.ValidString(got) {
		t.Errorf("the cut splits a character: %q", got)
	}
}
