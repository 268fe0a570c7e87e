package caddyotp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(loadCheck))
}

// loadCheck (app module otp) looks at where each gate of a config stands once the whole
// config is provisioned: a gate's own Provision cannot see the routes around it. Each gate loads
// it, so a config without gates has none. It refuses a config where no one could sign in, and
// warns of one that works but not as the operator meant.
type loadCheck struct {
	ctx     caddy.Context
	logger  *zap.Logger
	mu      sync.Mutex
	gates   []*Handler
	started bool
}

// CaddyModule returns the Caddy module information.
func (*loadCheck) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "otp", New: func() caddy.Module { return new(loadCheck) }}
}

// Provision keeps the config's context, to find the http app at Start.
func (lc *loadCheck) Provision(ctx caddy.Context) error {
	lc.ctx, lc.logger = ctx, ctx.Logger()
	return nil
}

// Cleanup runs the check of a config that `caddy validate` provisioned and cancels without
// starting, and says at error level what Start would refuse.
func (lc *loadCheck) Cleanup() error {
	lc.mu.Lock()
	started := lc.started
	lc.mu.Unlock()
	if cause := context.Cause(lc.ctx); !started && cause != nil && cause.Error() == "validation complete" {
		if err := lc.Start(); err != nil {
			lc.logger.Error("caddy run will refuse this config", zap.Error(err))
		}
	}
	return nil
}

// checkAtStart has the config's check look at where h stands once the config is provisioned.
// A gate provisioned outside a config (a program that embeds it on its own, unit tests) has no
// routes to check: Caddy's Context has no config then, and App panics on the nil config.
func checkAtStart(ctx caddy.Context, h *Handler) (err error) {
	var app any
	func() {
		defer func() {
			if recover() != nil {
				app, err = nil, nil
			}
		}()
		app, err = ctx.App("otp")
	}()
	if lc, ok := app.(*loadCheck); ok {
		lc.add(h)
	}
	return err
}

func (lc *loadCheck) add(h *Handler) {
	lc.mu.Lock()
	lc.gates = append(lc.gates, h)
	lc.mu.Unlock()
}

// Start checks each server's routes. Its error refuses the config before it serves.
func (lc *loadCheck) Start() error {
	app, err := lc.ctx.App("http")
	if err != nil {
		return nil // no http app: no gate can be reached, and Caddy says so itself
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return nil
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	lc.started = true
	for _, name := range sortedKeys(httpApp.Servers) {
		srv := httpApp.Servers[name]
		var placed []gatePlace
		for _, h := range lc.gates {
			if p, ok := findGate(srv.Routes, h, gatePlace{gate: h}); ok {
				placed = append(placed, p)
			}
		}
		if err := samePath(placed); err != nil {
			return err
		}
		for _, p := range placed {
			for _, w := range p.warnings(len(srv.TLSConnPolicies) == 0) {
				p.gate.obs.logger.Warn(w)
			}
		}
	}
	return nil
}

// Stop does nothing: the check holds nothing.
func (lc *loadCheck) Stop() error { return nil }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// gatePlace is what stands on the way to one gate through a server's routes.
type gatePlace struct {
	gate        *Handler
	hosts       []string // the host matchers on the way, as written
	unreachable string   // the matcher on the way that the gate's own pages do not pass, as written
	blockedBy   string   // a handler before the gate that answers every request itself
	firstFactor bool     // an authentication handler (basic_auth, forward_auth) runs before the gate
	conditional bool     // a matcher on the way looks at more than the host and the path
}

// withinHosts is the hosts of an inner host matcher that an outer one lets through: a route
// inside a site block takes only the requests both match.
func withinHosts(outer, inner []string) []string {
	if len(outer) == 0 {
		return inner
	}
	var out []string
	for _, h := range inner {
		if slices.ContainsFunc(outer, func(o string) bool { return strings.EqualFold(o, h) }) {
			out = append(out, h)
		}
	}
	return out
}

// findGate walks routes to h as Caddy will run them, noting what stands before it.
func findGate(routes caddyhttp.RouteList, h *Handler, at gatePlace) (gatePlace, bool) {
	for _, rt := range routes {
		here := at
		var hosts []string
		for _, set := range rt.MatcherSets {
			for _, m := range set {
				switch m := m.(type) {
				case caddyhttp.MatchHost:
					hosts = append(hosts, m...)
				case *caddyhttp.MatchHost:
					hosts = append(hosts, *m...)
				case caddyhttp.MatchPath, *caddyhttp.MatchPath, *caddyhttp.MatchPathRE:
				default:
					here.conditional = true
				}
			}
		}
		if len(hosts) > 0 {
			here.hosts = withinHosts(at.hosts, hosts)
		}
		if here.unreachable == "" && !passesPath(rt.MatcherSets, h.Path+"/") {
			here.unreachable = pathMatchers(rt.MatcherSets)
		}
		for _, hd := range rt.Handlers {
			if hd == caddyhttp.MiddlewareHandler(h) {
				return here, true
			}
			if sub, ok := hd.(*caddyhttp.Subroute); ok {
				if found, ok := findGate(sub.Routes, h, here); ok {
					return found, true
				}
			}
			if authenticates(hd) {
				here.firstFactor = true
			}
			if name := answersAll(hd); name != "" && here.blockedBy == "" {
				here.blockedBy = name
			}
		}
		// A first factor anywhere before counts (its matcher may well cover the gate's route);
		// an answer stands in the way only where it takes every request.
		at.firstFactor = at.firstFactor || here.firstFactor
		if len(rt.MatcherSets) == 0 && at.blockedBy == "" {
			at.blockedBy = here.blockedBy
		}
	}
	return gatePlace{}, false
}

// passesPath says whether a request for path could pass sets, looking at their path matchers
// only: a set passes when each of its path matchers does, and any set will do.
func passesPath(sets caddyhttp.MatcherSets, path string) bool {
	if len(sets) == 0 {
		return true
	}
	repl := caddy.NewReplacer()
	req := (&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}, Header: http.Header{}}).
		WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, repl))
	for _, set := range sets {
		passes := true
		for _, m := range set {
			switch m := m.(type) {
			case caddyhttp.MatchPath, *caddyhttp.MatchPath, *caddyhttp.MatchPathRE:
				ok, err := m.(caddyhttp.RequestMatcherWithError).MatchWithError(req)
				passes = passes && (ok || err != nil)
			}
		}
		if passes {
			return true
		}
	}
	return false
}

// pathMatchers writes the path matchers of sets as a Caddyfile would.
func pathMatchers(sets caddyhttp.MatcherSets) string {
	var out []string
	for _, set := range sets {
		for _, m := range set {
			switch m := m.(type) {
			case caddyhttp.MatchPath:
				out = append(out, strings.Join(m, " "))
			case *caddyhttp.MatchPath:
				out = append(out, strings.Join(*m, " "))
			case *caddyhttp.MatchPathRE:
				out = append(out, "path_regexp "+m.Pattern)
			}
		}
	}
	return strings.Join(out, ", ")
}

// authenticates says whether hd is a first factor: basic_auth (or another authentication
// provider), or forward_auth, a reverse proxy that goes on to the next handler on a good answer.
func authenticates(hd caddyhttp.MiddlewareHandler) bool {
	switch hd := hd.(type) {
	case *caddyauth.Authentication:
		return true
	case *reverseproxy.Handler:
		return len(hd.HandleResponse) > 0
	}
	return false
}

// answersAll names hd if it answers every request it gets without calling the next handler.
func answersAll(hd caddyhttp.MiddlewareHandler) string {
	switch hd := hd.(type) {
	case caddyhttp.StaticResponse, *caddyhttp.StaticResponse:
		return "respond"
	case caddyhttp.StaticError, *caddyhttp.StaticError:
		return "error"
	case *reverseproxy.Handler:
		if len(hd.HandleResponse) == 0 {
			return "reverse_proxy"
		}
	}
	if m, ok := hd.(caddy.Module); ok && m.CaddyModule().ID == "http.handlers.file_server" {
		return "file_server"
	}
	return ""
}

// samePath refuses two gates of one site that share a path: the first takes every request for
// the pages of both, so no one can sign in at the second.
func samePath(placed []gatePlace) error {
	for i, a := range placed {
		for _, b := range placed[i+1:] {
			// A matcher of the client (remote_ip, a header, ...) can send each request, its
			// pages' with the rest, to one gate of the two: only where none does are both
			// sure to meet.
			if a.gate.Path == b.gate.Path && !a.conditional && !b.conditional && sameSite(a.hosts, b.hosts) {
				return fmt.Errorf("give each otp gate of site %s its own `path` (e.g. `path /admin/.otp`): two share %s, and the first takes every request for the pages of both, so no one could sign in at the second",
					siteLabel(a.hosts), a.gate.Path)
			}
		}
	}
	return nil
}

// sameSite says whether two gates' host lists name one site: the same hosts, or none. Site
// blocks of different hosts are routes of their own, so the route that takes a gate's pages is
// the one that takes what it protects, even when one of them is the catch-all.
func sameSite(a, b []string) bool {
	norm := func(hosts []string) []string {
		out := make([]string, len(hosts))
		for i, h := range hosts {
			out[i] = strings.ToLower(h)
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

func siteLabel(hosts []string) string {
	if len(hosts) == 0 {
		return "(any host)"
	}
	return strings.Join(hosts, ", ")
}

// warnings says what the gate at p will do that its operator may not expect; plainHTTP says
// whether its server serves without TLS.
func (p gatePlace) warnings(plainHTTP bool) []string {
	h, site := p.gate, siteLabel(p.hosts)
	var out []string
	if p.unreachable != "" {
		out = append(out, fmt.Sprintf("set `path %s` in the otp block of site %s: the gate's pages are under %s, which its route (%s) does not pass, so visitors are sent to a page that another handler serves and cannot sign in",
			suggestPath(p.unreachable), site, h.Path, p.unreachable))
	}
	if p.blockedBy != "" {
		out = append(out, fmt.Sprintf("move otp before %s on its route in site %s: %s answers every request first, so the gate protects nothing there", p.blockedBy, site, p.blockedBy))
	}
	if h.flows.allow.bound("") && !p.firstFactor {
		out = append(out, fmt.Sprintf("put basic_auth (or forward_auth) before otp in site %s: users binds phones to the users of a first factor, and nothing before the gate signs them in, so every visitor gets a 403", site))
	}
	public := slices.ContainsFunc(p.hosts, func(host string) bool { return !loopbackHost(host) }) || len(p.hosts) == 0
	if h.public == nil && public && plainHTTP {
		w := fmt.Sprintf("set `public_url https://...` in the otp block of site %s if a proxy in front of Caddy ends TLS: the site is plain http here, so its cookies are not Secure", site)
		if len(p.hosts) == 0 {
			w += ", and the SMS has no autofill line, having no host to bind the code to"
		}
		out = append(out, w)
	}
	if _, log := h.sender.(*LogSender); log && h.public == nil && public {
		out = append(out, "use a real sender on site "+site+": the log sender writes sign-in codes to the log, and the site has a public address, so anyone who reads the log can sign in")
	}
	return out
}

// suggestPath is the gate's path under the first literal prefix of a path matcher.
func suggestPath(matcher string) string {
	prefix, _, _ := strings.Cut(matcher, " ")
	prefix, _, _ = strings.Cut(prefix, "*")
	if !strings.HasPrefix(prefix, "/") || strings.HasPrefix(matcher, "path_regexp") {
		return "/PREFIX/.otp"
	}
	return strings.TrimRight(prefix, "/") + defaultPath
}

// Interface guards
var (
	_ caddy.App          = (*loadCheck)(nil)
	_ caddy.Provisioner  = (*loadCheck)(nil)
	_ caddy.CleanerUpper = (*loadCheck)(nil)
)
