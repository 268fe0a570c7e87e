package caddyotp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
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
func (c *gateCookies) strip(r *http.Request) {
	lines := r.Header["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if !strings.Contains(line, c.name) {
			kept = append(kept, line)
			continue
		}
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
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		r.Header.Del("Cookie")
	} else {
		r.Header["Cookie"] = kept
	}
}

// isGateCookie says whether a cookie name is one of the gate's, prefixed or not.
func (c *gateCookies) isGateCookie(name string) bool {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "__Host-"), c.name)
	return ok && (rest == sessionCookie || rest == flowCookie || rest == deviceCookie)
}
