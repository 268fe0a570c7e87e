package caddyotp

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzNormalizePhone: any input either fails or yields an E.164 number that normalises to itself.
func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{"+12015550123", "(201) 555-0123", "+44 20 7946 0000", "", "+", "++1", "0", "+1 555 123 4567", "tel:+12015550123", "+١٢٠١٥٥٥٠١٢٣"} {
		f.Add(s, "US")
	}
	f.Fuzz(func(t *testing.T, input, region string) {
		e164, _, err := normalizePhone(input, region)
		if err != nil {
			return
		}
		if !strings.HasPrefix(e164, "+") || len(e164) > 16 || strings.Trim(e164[1:], "0123456789") != "" {
			t.Fatalf("normalizePhone(%q, %q) = %q, not E.164", input, region, e164)
		}
		again, _, err := normalizePhone(e164, "")
		if err != nil || again != e164 {
			t.Fatalf("E.164 %q does not normalise to itself: %q, %v", e164, again, err)
		}
		if m := maskPhone(e164); strings.Contains(m, e164[5:len(e164)-2]) && len(e164) > 9 {
			t.Fatalf("mask %q shows the middle of %q", m, e164)
		}
	})
}

// FuzzSessionDecode: no input but a cookie the codec made itself decodes, and decoding never panics.
func FuzzSessionDecode(f *testing.F) {
	c := testCodec()
	t0 := time.Unix(1_800_000_000, 0)
	s, _ := c.issue(alice, t0)
	valid := c.encode(s)
	for _, seed := range []string{valid, valid[:len(valid)-1], "", ".", "a.b", strings.Repeat("A", 60) + "." + strings.Repeat("B", 43)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, err := c.decode(value, t0)
		if err != nil {
			return
		}
		if c.encode(got) != value {
			t.Fatalf("accepted %q, which is not the codec's encoding of %+v", value, got)
		}
	})
}

// FuzzLocalPath: whatever next is, the result is "/" or a normalised path a browser reads as
// this site's, outside the gate, and normalising it again changes nothing.
func FuzzLocalPath(f *testing.F) {
	for _, s := range []string{"/", "/a?b=c", "//evil", "/\\evil", "https://evil", "/%2F%2Fevil", "/\t/evil", "/.otp/login", "\x00",
		"/..//evil", "/%2e%2e//evil", "/a/./b/../../..//evil?x#y", "/.%2e/.otp/verify"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := localPath(next, "/.otp")
		if got == "/" {
			return
		}
		if got[0] != '/' || (len(got) > 1 && (got[1] == '/' || got[1] == '\\')) || strings.ContainsAny(got, "\\\t\r\n\x00") {
			t.Fatalf("localPath(%q) = %q", next, got)
		}
		if again := localPath(got, "/.otp"); again != got {
			t.Fatalf("localPath(%q) = %q, but that normalises to %q", next, got, again)
		}
		u, err := url.Parse(got)
		if err != nil || u.Host != "" || u.Scheme != "" || strings.HasPrefix(u.Path, "/.otp/") || u.Path == "/.otp" || strings.Contains("/"+u.Path+"/", "/../") {
			t.Fatalf("localPath(%q) = %q: %v", next, got, err)
		}
	})
}

// FuzzCleanCode: the result is empty or exactly n ASCII digits.
func FuzzCleanCode(f *testing.F) {
	for _, s := range []string{"123456", "123 456", "12-34-56", "١٢٣٤٥٦", "1234567", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := cleanCode(s, 6)
		if got != "" && (len(got) != 6 || strings.Trim(got, "0123456789") != "") {
			t.Fatalf("cleanCode(%q) = %q", s, got)
		}
	})
}

// FuzzFormHandlers posts arbitrary bodies to every form endpoint with a valid flow and token:
// the gate never panics, answers only with its documented statuses, and never signs anyone in
// (nobody can know the code).
func FuzzFormHandlers(f *testing.F) {
	h, _ := newUnitHandler(f, nil)
	flowCookie, csrf := unitFlow(f, h)
	for _, seed := range []string{
		"phone=%2B12015550123", "phone=%2B12015550199", "phone=", "code=123456", "code=12%2034%2056", "code=" + strings.Repeat("9", 100),
		"phone=%2B1&phone=%2B2", "%zz", strings.Repeat("a=b&", 3000), "phone=\x00", "csrf=x",
	} {
		for path := uint8(0); path < 4; path++ {
			f.Add(path, seed, true)
		}
	}
	paths := []string{"/.otp/send", "/.otp/verify", "/.otp/resend", "/.otp/logout"}
	allowed := map[int]bool{303: true, 400: true, 401: true, 403: true, 413: true, 429: true, 502: true, 503: true}
	f.Fuzz(func(t *testing.T, path uint8, body string, withCSRF bool) {
		if withCSRF {
			body = "csrf=" + csrf + "&" + body
		}
		r := httptest.NewRequest(http.MethodPost, paths[int(path)%len(paths)], strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(flowCookie)
		w := httptest.NewRecorder()
		if err := serve(h, w, r); err != nil {
			t.Fatalf("handler error: %v", err)
		}
		if !allowed[w.Code] {
			t.Fatalf("POST %s %q: status %d", r.URL.Path, body, w.Code)
		}
		for _, c := range w.Result().Cookies() {
			if c.Name == "caddy_otp" && c.MaxAge > 0 {
				t.Fatalf("POST %s %q signed someone in", r.URL.Path, body)
			}
		}
	})
}

// FuzzFlowCookie: a flow cookie the gate did not issue never yields a flow id, and one it issued
// yields its id and next back.
func FuzzFlowCookie(f *testing.F) {
	h, _ := newUnitHandler(f, nil)
	id, _ := randomToken()
	valid := h.cookies.encodeFlow(id, "/reports?q=1")
	for _, s := range []string{valid, valid[:len(valid)-1], strings.Repeat("A", 43), strings.Repeat("A", 43) + ".Lw.x", "", "..", id + "." + id + "." + id} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		got, next := h.cookies.decodeFlow(value)
		if got == "" {
			return
		}
		if value != h.cookies.encodeFlow(got, next) {
			t.Fatalf("flow cookie %q accepted as (%q, %q), which the gate encodes otherwise", value, got, next)
		}
	})
}
