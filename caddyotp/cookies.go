package caddyotp

import (
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
	if r.TLS != nil {
		return "__Host-" + h.CookieName + kind
	}
	return h.CookieName + kind
}

func (h *Handler) setSession(w http.ResponseWriter, r *http.Request, s Session) {
	h.setCookie(w, r, h.cookieName(r, sessionCookie), h.sessions.encode(s), s.Expires.Sub(now()))
}

// setCookie sets (or, with maxAge < 0, clears) one of the gate's cookies.
func (h *Handler) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
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
