package caddyotp

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// visit is what the gate reads from a request to its pages, once: the parts below the handler
// see only this, never the request.
type visit struct {
	client string // the address the request counts under, which the client cannot choose
	lang   string // the pages' and the SMS's language
	user   string // the first-factor user ({http.auth.user.id} before the gate), or ""
	secure bool   // the browser talks HTTPS to the site
	host   string // the host the site is known by without believing the request (trustedHost), or ""
	gate   string // the gate's name in store keys, from the config (siteInfo)
	site   string // what the pages call the site
	flowID string // from a flow cookie the gate issued, or ""
	next   string // where to go after sign-in, from the flow cookie
	// the session and trusted-browser cookies' values, as sent
	session, device string
	// with passkeys: the enrol cookie's value, and whether this browser was offered a passkey
	enrol   string
	offered bool
	form    visitForm // the form posted, if any
}

// visitForm is what a posted form asked for, kept to offer the same again on a page that
// refuses it for now (a limit, a busy sender): the route and the fields a retry posts again.
// Every value is the client's and goes back to that client only, escaped.
type visitForm struct {
	route      string // /send, /resend, /call, /verify, /logout
	phone      string // /send: as typed, clipped
	region     string // /send: as chosen, if it has the shape of a region code
	everywhere string // /logout: "1" or ""
}

// firstFactor is the user a preceding handler authenticated, or "".
func firstFactor(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	user, _ := repl.GetString("http.auth.user.id")
	return user
}

// clientIP is the address the request is counted under, which the client cannot choose. It is
// Caddy's client_ip, which honours trusted_proxies. But when the request came through a trusted
// proxy and the server is not in trusted_proxies_strict mode, Caddy takes the leftmost
// forwarded address, which the client wrote itself; the gate takes the rightmost one instead,
// the address the nearest proxy saw.
func clientIP(r *http.Request, obs *observer) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.TrustedProxiesStrict == 0 {
			obs.notStrict(srv.ClientIPHeaders)
			if right := rightmostForwarded(r, srv.ClientIPHeaders); right != "" {
				return right
			}
			return remoteHost(r) // the proxy's own: never an entry the client wrote
		}
	}
	if ip != "" {
		return ip
	}
	return remoteHost(r)
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// rightmostForwarded is the rightmost entry of the client IP header a proxy appends to, if it
// is an address: the one the nearest proxy wrote; any entry left of it may be the client's.
// That header is X-Forwarded-For when it is configured and present, since proxies append to
// it; else the last configured header the request has. A client can add a header the proxy
// does not write; only trusted_proxies_strict, where Caddy skips the proxies it trusts, settles
// which header to believe.
func rightmostForwarded(r *http.Request, headers []string) string {
	order := make([]string, 0, len(headers))
	for i := len(headers) - 1; i >= 0; i-- {
		if http.CanonicalHeaderKey(headers[i]) == "X-Forwarded-For" {
			order = append([]string{headers[i]}, order...)
		} else {
			order = append(order, headers[i])
		}
	}
	for _, name := range order {
		values := r.Header.Values(name)
		if len(values) == 0 {
			continue
		}
		parts := strings.Split(values[len(values)-1], ",")
		host := strings.TrimSpace(parts[len(parts)-1])
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host, _, _ = strings.Cut(strings.Trim(host, "[]"), "%")
		if ip, err := netip.ParseAddr(host); err == nil {
			return ip.Unmap().String()
		}
		return ""
	}
	return ""
}

// limitRange is the range of a client address that the range limits count: an IPv4 /24, an
// IPv6 /48 (what one site or one customer of a provider commonly holds).
func limitRange(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap().WithZone("")
	bits := 48
	if addr.Is4() {
		bits = 24
	}
	p, _ := addr.Prefix(bits)
	return p.String()
}

// limitAddr is the name a client address is counted under by the per-address limits: an IPv4
// address itself, an IPv6 address by its /64, since one host commonly holds a whole /64.
func limitAddr(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, _ := addr.WithZone("").Prefix(64)
	return p.String()
}

// trustedHost is the host the site is known by without believing the request alone:
// public_url's, else on HTTPS the TLS server name when the request is for that same host and
// the config writes it as one of the site's addresses (hosts, from siteInfo), within
// maxBoundHost. Otherwise it is "": the Host header, and the server name when it names another
// site or one that on-demand TLS took from the client, are the client's to choose, and a code
// bound to a host of the attacker's choosing would autofill on the attacker's page.
func trustedHost(r *http.Request, public string, hosts map[string]bool) string {
	if public != "" {
		return public
	}
	if r.TLS == nil || r.TLS.ServerName == "" {
		return ""
	}
	name := strings.ToLower(r.TLS.ServerName)
	if !strings.EqualFold(requestHost(r), name) || !hosts[name] || len(name) > maxBoundHost {
		return ""
	}
	return name
}

// requestHost is the request's host, without a port.
func requestHost(r *http.Request) string {
	if hn, _, err := net.SplitHostPort(r.Host); err == nil {
		return hn
	}
	return r.Host
}

// sameOrigin says whether a form's Origin is the site's: want (public_url's origin) when set,
// so that a proxy that ends TLS in front still works, else the request's scheme and host.
// Browsers send "null" for a form on any page with Referrer-Policy no-referrer, the gate's own
// and a sibling subdomain's alike, so "null" passes only with Sec-Fetch-Site: same-origin,
// which no page can set. No Origin at all is a client that is not a browser: the CSRF token
// still applies.
func sameOrigin(r *http.Request, want string) bool {
	origin := r.Header.Get("Origin")
	switch origin {
	case "":
		return true
	case "null":
		return r.Header.Get("Sec-Fetch-Site") == "same-origin"
	}
	if want == "" {
		want = "http://" + r.Host
		if r.TLS != nil {
			want = "https://" + r.Host
		}
	}
	return strings.EqualFold(origin, want)
}
