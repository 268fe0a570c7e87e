package caddyotp

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// siteInfo is what the config says of the site a request to the gate came for, never what the
// request says: the hosts written as the site's addresses, and the name of the gate that its
// budget is kept under.
type siteInfo struct {
	hosts map[string]bool // the literal hosts of the host matchers on the way to the gate, lower case
	gate  string          // the gate's name in store keys: its hosts as written, path and public origin, hashed
}

// maxBoundHost caps the host an SMS is bound to when public_url does not name it: a longer
// name would take segments of its own, and no site address needs one.
const maxBoundHost = 64

// sites finds, once per server, the site of the gate h: the hosts of every host matcher on the
// routes that lead to it, as Caddy provisioned them (a Caddyfile site block is a route with
// its addresses as a host matcher). Wildcards and placeholders are left out: they name hosts
// the config did not write, such as the names on-demand TLS takes from the client.
type sites struct {
	m sync.Map // *caddyhttp.Server → *site
}

func (ss *sites) of(r *http.Request, h *Handler) *siteInfo {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if s, ok := ss.m.Load(srv); ok {
		return s.(*siteInfo)
	}
	var hosts []string
	if srv != nil {
		hosts, _ = routeHosts(srv.Routes, h, nil)
	}
	s := &siteInfo{hosts: map[string]bool{}}
	// The gate's name: every host as written, wildcards too, and not where its server listens,
	// which may differ between the instances that share one store and must share the name.
	var names []string
	for _, host := range hosts {
		host = strings.ToLower(host)
		names = append(names, host)
		if !strings.ContainsAny(host, "*{}") {
			s.hosts[host] = true
		}
	}
	slices.Sort(names)
	sum := sha256.Sum256([]byte(strings.Join(slices.Compact(names), " ") + "\x00" + h.Path + "\x00" + h.origin))
	s.gate = hex.EncodeToString(sum[:8])
	actual, _ := ss.m.LoadOrStore(srv, s)
	return actual.(*siteInfo)
}

// routeHosts returns the hosts of the host matchers on the way through routes to h, and
// whether h is there at all.
func routeHosts(routes caddyhttp.RouteList, h *Handler, above []string) ([]string, bool) {
	for _, rt := range routes {
		hosts := slices.Clip(above)
		for _, set := range rt.MatcherSets {
			for _, m := range set {
				switch m := m.(type) {
				case caddyhttp.MatchHost:
					hosts = append(hosts, m...)
				case *caddyhttp.MatchHost:
					hosts = append(hosts, *m...)
				}
			}
		}
		for _, hd := range rt.Handlers {
			if hd == caddyhttp.MiddlewareHandler(h) {
				return hosts, true
			}
			if sub, ok := hd.(*caddyhttp.Subroute); ok {
				if found, ok := routeHosts(sub.Routes, h, hosts); ok {
					return found, true
				}
			}
		}
	}
	return nil, false
}
