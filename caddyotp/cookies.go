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

// cookieName is one of the gate's cookies' names for this request: __Host- prefixed on HTTPS.
func (h *Handler) cookieName(r *http.Request, kind string) string {
	if h.secure(r) {
		return "__Host-" + h.CookieName + kind
	}
	return h.CookieName + kind
}

// secure says whether the visitor's browser talks HTTPS to the site: the request came over TLS,
// or public_url says so, as it does behind a proxy that ends TLS.
func (h *Handler) secure(r *http.Request) bool {
	return r.TLS != nil || h.public != nil && h.public.Scheme == "https"
}

// The flow cookie holds the flow's id and where to go after sign-in, signed:
// id "." base64url(next) "." base64url(HMAC-SHA256(flow key, id "." base64url(next))).
// The gate accepts only ids it issued, and keeps nothing on the server until a code is asked for.

// encodeFlow returns the flow cookie's value for id and next.
func (h *Handler) encodeFlow(id, next string) string {
	payload := id + "." + base64.RawURLEncoding.EncodeToString([]byte(next))
	return payload + "." + base64.RawURLEncoding.EncodeToString(h.flowMAC(payload))
}

// flowMAC signs a flow cookie for this gate only: a flow started on another gate that shares
// the store was judged by that gate's allowlist and regions.
func (h *Handler) flowMAC(payload string) []byte {
	m := hmac.New(sha256.New, h.keys.flow)
	m.Write(h.aud)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// flowCookie returns the flow id and next of the request's flow cookie; id is "" unless the
// gate issued the cookie.
func (h *Handler) flowCookie(r *http.Request) (id, next string) {
	value := cookieValue(r, h.cookieName(r, flowCookie))
	if len(value) > maxFlowCookie {
		return "", ""
	}
	payload, mac, ok := cutLast(value, ".")
	id, nextB64, ok2 := strings.Cut(payload, ".")
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if !ok || !ok2 || err != nil || !validToken(id) || !hmac.Equal(got, h.flowMAC(payload)) {
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

// setFlow gives the browser the flow cookie for id and next.
func (h *Handler) setFlow(w http.ResponseWriter, r *http.Request, id, next string) {
	h.setCookie(w, r, h.cookieName(r, flowCookie), h.encodeFlow(id, next), flowTTL)
}

func (h *Handler) setSession(w http.ResponseWriter, r *http.Request, s Session) {
	h.setCookie(w, r, h.cookieName(r, sessionCookie), h.sessions.encode(s), s.Expires.Sub(now()))
}

// setCookie sets (or, with maxAge < 0, clears) one of the gate's cookies.
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: h.secure(r)}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = max(1, int(maxAge/time.Second))
	}
	http.SetCookie(w, c)
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

// stripCookies removes the gate's cookies from the request before it goes upstream: the site
// behind the gate never sees a session or flow token. It rewrites the header in place.
func (h *Handler) stripCookies(r *http.Request) {
	lines := r.Header["Cookie"]
	kept := lines[:0]
	for _, line := range lines {
		if !strings.Contains(line, h.CookieName) {
			kept = append(kept, line)
			continue
		}
		var b strings.Builder
		b.Grow(len(line))
		for rest := line; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			part = strings.TrimSpace(part)
			if k, _, _ := strings.Cut(part, "="); part == "" || h.isGateCookie(k) {
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
func (h *Handler) isGateCookie(name string) bool {
	rest, ok := strings.CutPrefix(strings.TrimPrefix(name, "__Host-"), h.CookieName)
	return ok && (rest == sessionCookie || rest == flowCookie || rest == deviceCookie)
}
