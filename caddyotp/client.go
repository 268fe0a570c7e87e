package caddyotp

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// clientIP is the address the request is counted under, which the client cannot choose. It is
// Caddy's client_ip, which honours trusted_proxies. But when the request came through a trusted
// proxy and the server is not in trusted_proxies_strict mode, Caddy takes the leftmost
// forwarded address, which the client wrote itself; the gate takes the rightmost one instead,
// the address the nearest proxy saw.
func (h *Handler) clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.TrustedProxiesStrict == 0 {
			h.obs.notStrict(srv.ClientIPHeaders)
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

// rightmostForwarded is the rightmost entry of the first client IP header the request has, if
// it is an address: the one the nearest proxy wrote. Any entry left of it may be the client's.
func rightmostForwarded(r *http.Request, headers []string) string {
	for _, name := range headers {
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
