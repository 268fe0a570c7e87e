package caddyotp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// The gate's cookies: the session's is named cookie_name, the others add a suffix.
const (
	sessionCookie = ""
	flowCookie    = "_flow"
	deviceCookie  = "_device"
)

// gateCookies names, reads, writes and strips the gate's cookies.
type gateCookies struct {
	name      string // cookie_name
	flowKey   []byte // signs flow cookies
	csrfKey   []byte // signs the forms of a flow
	aud       []byte // the gate's audience: a flow cookie is this gate's only
	httpsSite bool   // public_url is https: the browser talks HTTPS, whatever the request says
}

// named is one of the gate's cookies' names: __Host- prefixed when the browser talks HTTPS.
func (c *gateCookies) named(kind string, secure bool) string {
	if secure {
		return "__Host-" + c.name + kind
	}
	return c.name + kind
}

// set sets (or, with maxAge < 0, clears) one of the gate's cookies.
func (c *gateCookies) set(w http.ResponseWriter, secure bool, kind, value string, maxAge time.Duration) {
	ck := &http.Cookie{Name: c.named(kind, secure), Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: secure}
	if maxAge < 0 {
		ck.MaxAge = -1
	} else {
		ck.MaxAge = max(1, int(maxAge/time.Second))
	}
	http.SetCookie(w, ck)
}

// The flow cookie holds the flow's id and where to go after sign-in, signed for this gate:
// id "." base64url(next) "." base64url(HMAC-SHA256(flow key, audience ‖ id "." base64url(next))).
// The gate accepts only ids it issued, and keeps nothing on the server until a code is asked for.

// encodeFlow returns the flow cookie's value for id and next.
func (c *gateCookies) encodeFlow(id, next string) string {
	payload := id + "." + base64.RawURLEncoding.EncodeToString([]byte(next))
	return payload + "." + base64.RawURLEncoding.EncodeToString(c.flowMAC(payload))
}

// flowMAC signs a flow cookie for this gate only: a flow started on another gate that shares
// the store was judged by that gate's allowlist and regions.
func (c *gateCookies) flowMAC(payload string) []byte {
	m := hmac.New(sha256.New, c.flowKey)
	m.Write(c.aud)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// decodeFlow returns the flow id and next of a flow cookie's value; id is "" unless the gate
// issued it.
func (c *gateCookies) decodeFlow(value string) (id, next string) {
	if len(value) > maxFlowCookie {
		return "", ""
	}
	payload, mac, ok := cutLast(value, ".")
	id, nextB64, ok2 := strings.Cut(payload, ".")
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if !ok || !ok2 || err != nil || !validToken(id) || !hmac.Equal(got, c.flowMAC(payload)) {
		return "", ""
	}
	b, err := base64.RawURLEncoding.DecodeString(nextB64)
	if err != nil {
		return "", ""
	}
	return id, string(b)
}

// maxFlowCookie bounds the flow cookie: an id, the longest next in base64, a MAC.
const maxFlowCookie = flowIDLen + 1 + (maxNextLen*4+2)/3 + 1 + 43

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// csrf binds a form to the flow cookie of the browser it was shown to.
func (c *gateCookies) csrf(flowID string) string {
	m := hmac.New(sha256.New, c.csrfKey)
	m.Write([]byte(flowID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// validCSRF says whether token is the form token of flowID.
func (c *gateCookies) validCSRF(flowID, token string) bool {
	return flowID != "" && token != "" && hmac.Equal([]byte(token), []byte(c.csrf(flowID)))
}

// cookieValue finds a cookie without parsing every cookie of the request.
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && k == name {
				return strings.Trim(v, `"`)
			}
		}
	}
	return ""
}

// strip removes the gate's cookies from the request before it goes upstream: the site behind
// the gate never sees a session or flow token. It rewrites the header in place.
func (c *gateCookies) strip(r *http.Request) { c.stripRemembering(r, nil) }

// A strippedLine is a Cookie line and what strip makes of it.
type strippedLine struct{ line, kept string }

// maxRememberedLine bounds the Cookie lines that stripRemembering keeps. There is one per
// remembered session cookie (verifiedSlots of a gate at most), so with the lines stripped they
// take 16 MiB at the very most, for 8,192 live sessions of one gate each sending a line this
// long; a longer line is stripped every time and not kept.
const maxRememberedLine = 1024

// stripRemembering is strip, with the last line it stripped for one session cookie remembered
// in memo (nil: none): a browser sends the same Cookie line request after request, and an
// exact match gives the same result without reading the line again.
func (c *gateCookies) stripRemembering(r *http.Request, memo *atomic.Pointer[strippedLine]) {
	lines := r.Header["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if !strings.Contains(line, c.name) {
			kept = append(kept, line)
			continue
		}
		if memo == nil {
			line = c.stripLine(line)
		} else if m := memo.Load(); m != nil && m.line == line {
			line = m.kept
		} else if len(line) <= maxRememberedLine {
			line = strings.Clone(line) // not a piece of whatever buffer the request was read into
			m = &strippedLine{line, c.stripLine(line)}
			memo.Store(m)
			line = m.kept
		} else {
			line = c.stripLine(line)
		}
		if line != "" {
			kept = append(kept, line)
		}
	}
	switch {
	case len(kept) == 0:
		r.Header.Del("Cookie")
	case len(kept) < len(lines):
		r.Header["Cookie"] = kept
	} // else the lines were rewritten where they are
}

// stripLine is a Cookie line without the gate's cookies: the others trimmed of spaces, and
// joined by "; ". When they stand that way in the line already (the gate's cookies first or
// last, as a browser often sends them), that is a piece of the line, and nothing is copied;
// else it copies them once, into a string of the exact size.
func (c *gateCookies) stripLine(line string) string {
	var kept [8][2]int // where the first kept cookies start and stop; the rest are read again
	first, last, n, size, contiguous := 0, 0, 0, 0, true
	for i := 0; i < len(line); {
		start, stop, next, ok := c.nextKept(line, i)
		if !ok {
			return c.stripLineSlowly(line) // a space TrimSpace knows and this does not, maybe
		}
		if i = next; start == stop {
			continue // empty, or the gate's
		}
		switch {
		case n == 0:
			first = start
		case start != last+2 || line[last:start] != "; ":
			contiguous = false
		}
		if n < len(kept) {
			kept[n] = [2]int{start, stop}
		}
		last, n, size = stop, n+1, size+stop-start
	}
	switch {
	case n == 0:
		return ""
	case contiguous:
		return line[first:last]
	}
	var b strings.Builder
	b.Grow(size + 2*(n-1))
	for j, k := range kept[:min(n, len(kept))] {
		if j > 0 {
			b.WriteString("; ")
		}
		b.WriteString(line[k[0]:k[1]])
	}
	for i := kept[len(kept)-1][1]; n > len(kept) && i < len(line); {
		start, stop, next, _ := c.nextKept(line, i)
		if i = next; start != stop {
			b.WriteString("; ")
			b.WriteString(line[start:stop])
		}
	}
	return b.String()
}

// nextKept reads the cookie of line that begins at i, up to the next ';': where it starts and
// stops once trimmed (the same place if it is empty or one of the gate's), and where the next
// one begins. ok is false if an edge of it is not ASCII, which may be a space that
// strings.TrimSpace trims.
func (c *gateCookies) nextKept(line string, i int) (start, stop, next int, ok bool) {
	end := strings.IndexByte(line[i:], ';')
	if end < 0 {
		end, next = len(line), len(line)
	} else {
		end += i
		next = end + 1
	}
	start, stop, ok = trimASCIISpace(line, i, end)
	if !ok {
		return 0, 0, next, false
	}
	name := line[start:stop]
	if eq := strings.IndexByte(name, '='); eq >= 0 {
		name = name[:eq]
	}
	if c.isGateCookie(name) {
		return start, start, next, true
	}
	return start, stop, next, true
}

// trimASCIISpace is where line[start:stop] starts and stops once trimmed of the spaces
// strings.TrimSpace trims; ok is false when an edge is not ASCII, which may be a Unicode space.
func trimASCIISpace(line string, start, stop int) (int, int, bool) {
	for start < stop && asciiSpace(line[start]) {
		start++
	}
	for stop > start && asciiSpace(line[stop-1]) {
		stop--
	}
	return start, stop, start == stop || line[start] < utf8.RuneSelf && line[stop-1] < utf8.RuneSelf
}

func asciiSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}

// stripLineSlowly is stripLine for any line: cookie by cookie, trimmed by strings.TrimSpace.
func (c *gateCookies) stripLineSlowly(line string) string {
	var b strings.Builder
	b.Grow(len(line))
	for rest := line; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, ";")
		part = strings.TrimSpace(part)
		if k, _, _ := strings.Cut(part, "="); part == "" || c.isGateCookie(k) {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	return b.String()
}

// isGateCookie says whether a cookie name is one of the gate's, prefixed or not.
func (c *gateCookies) isGateCookie(name string) bool {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "__Host-"), c.name)
	return ok && (rest == sessionCookie || rest == flowCookie || rest == deviceCookie || rest == enrolCookie || rest == offeredCookie || rest == challengeCookie)
}

func validCookieName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}
