package caddyotp

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("otp", parseCaddyfile)
	// After the first-factor handlers, before anything that answers: no `order` line needed.
	httpcaddyfile.RegisterDirectiveOrder("otp", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var m Handler
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return &m, err
}

// UnmarshalCaddyfile fills the handler from an `otp { ... }` block. It only parses: defaults
// and checks happen in Provision and Validate. Syntax (every subdirective but sender and
// phones/phones_file/users is optional):
//
//	otp {
//	    sender restcomm {
//	        account_sid {env.RESTCOMM_ACCOUNT_SID}
//	        auth_token  {env.RESTCOMM_AUTH_TOKEN}
//	        from        +12015550100
//	        base_url    https://cloud.restcomm.com/restcomm/2012-04-24
//	        timeout     10s
//	        voice                               # offer "call me instead" (needs public_url)
//	    }
//	    sender twilio {                         # or Twilio, or SignalWire with its base_url
//	        account_sid {env.TWILIO_ACCOUNT_SID}
//	        auth_token  {env.TWILIO_AUTH_TOKEN}
//	        from        +12015550100            # or: messaging_service_sid MG...
//	    }
//	    sender failover { restcomm {...} twilio {...} }  # in order; the next on failure
//	    sender log                              # development only: codes go to the log
//	    public_url https://example.com          # where the provider reaches the gate (voice
//	                                            # scripts, delivery receipts); the SMS's
//	                                            # autofill host; never taken from a request
//	    audience NAME                           # which gates share sessions (default: this one)
//	    phones +12015550123 +442079460000       # or: phones *  (anyone with a phone)
//	    phones_file /etc/caddy/otp-phones.txt   # one number a line, # comments
//	    default_region US                       # for numbers typed without +country
//	    regions US CA GB                        # destinations allowed
//	    code_length 6                           # 6..10
//	    code_ttl 5m                             # at most 10m
//	    max_attempts 5                          # wrong codes per code
//	    users {                                 # phones bound to first-factor users (basic_auth,
//	        alice +12015550123                  # forward_auth before the gate): the phone page
//	    }                                       # is skipped, the code goes to the user's phone
//	    users_file /etc/caddy/otp-users.txt     # "USER PHONE" a line
//	    resend_after 30s                        # per phone, whichever browser asks
//	    send_limit 5 10m                        # SMS per phone per window
//	    ip_limit 20 10m                         # sends and checks per client IP (IPv6: /64) per window
//	    ip_range_factor 5                       # ... and 5 times that per /24 (IPv6: /48)
//	    lockout 10 15m                          # consecutive failures per phone and address,
//	                                            # lock duration; 5x that from any address locks the phone
//	    max_sms_per_hour 200                    # codes per hour for this gate (a /24 or /48: a quarter)
//	    pumping_shield {                        # on by default; or: pumping_shield off|monitor
//	        prefix_limit 10                     # numbers per prefix per hour whose codes nobody typed -> quarantine
//	        country_limit 500 per 24h           # per country calling code (off by default)
//	        safe +4479111                       # prefixes never quarantined
//	    }
//	    session_ttl 12h                         # absolute
//	    session_idle 30m                        # sliding
//	    trust_device 30d                        # offer "trust this browser" (off by default)
//	    passkeys {                              # offer a passkey after the first code (off by
//	        rp_name "Example Docs"              # default; needs public_url); or just: passkeys
//	    }
//	    path /.otp
//	    cookie_name caddy_otp
//	    secret {env.OTP_SECRET}                 # else generated once, kept in Caddy storage
//	    store memory [NAME]                     # or: store redis { address 127.0.0.1:6379 ... }
//	    templates /etc/caddy/otp-templates      # files that replace the embedded pages
//	    message "{code} is your {host} sign-in code."
//	    site_name "Example Docs"                # on the pages and in the SMS
//	    logo /logo.svg                          # a path on this site
//	    language en                             # pin en, de, es or fr
//	    log_phones                              # log full numbers (masked by default)
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	str := func(dst *string) func() error { return func() error { return oneString(d, dst) } }
	dur := func(dst *caddy.Duration) func() error { return func() error { return oneDuration(d, dst) } }
	limit := func(dst **Limit) func() error {
		return func() (err error) { *dst, err = limitArgs(d); return err }
	}
	return parseBlock(d, "otp", map[string]func() error{
		"sender": func() (err error) {
			h.SenderRaw, err = guestModule(d, "sender", "http.handlers.otp.senders", "`sender restcomm { ... }` or `sender log`")
			return err
		},
		"store": func() (err error) {
			h.StoreRaw, err = guestModule(d, "store", "http.handlers.otp.stores", "`store memory` or `store redis { ... }`")
			return err
		},
		"phones": func() error {
			if err := someStrings(d, &h.Phones, "+12015550123 ... (or * for anyone)"); err != nil {
				return err
			}
			return splitPhone(h.Phones)
		},
		"phones_file":      str(&h.PhonesFile),
		"users":            func() error { return h.unmarshalUsers(d) },
		"users_file":       str(&h.UsersFile),
		"default_region":   str(&h.DefaultRegion),
		"regions":          func() error { return someStrings(d, &h.Regions, "US CA GB") },
		"code_length":      func() error { return oneInt(d, &h.CodeLength, "6 to 10") },
		"code_ttl":         dur(&h.CodeTTL),
		"max_attempts":     func() error { return oneInt(d, &h.MaxAttempts, "1 to 10") },
		"resend_after":     dur(&h.ResendAfter),
		"send_limit":       limit(&h.SendLimit),
		"ip_limit":         limit(&h.IPLimit),
		"ip_range_factor":  func() error { return oneInt(d, &h.IPRangeFactor, "1 or more") },
		"lockout":          limit(&h.Lockout),
		"max_sms_per_hour": func() error { return oneInt(d, &h.MaxSMSPerHour, "0 for no cap, or more") },
		"pumping_shield":   func() error { h.PumpingShield = new(PumpingShield); return unmarshalPumping(d, h.PumpingShield) },
		"session_ttl":      dur(&h.SessionTTL),
		"session_idle":     dur(&h.SessionIdle),
		"trust_device":     dur(&h.TrustDevice),
		"passkeys":         func() error { h.Passkeys = new(Passkeys); return unmarshalPasskeys(d, h.Passkeys) },
		"public_url":       str(&h.PublicURL),
		"audience":         str(&h.Audience),
		"path":             str(&h.Path),
		"cookie_name":      str(&h.CookieName),
		"secret":           str(&h.Secret),
		"templates":        str(&h.Templates),
		"message":          str(&h.Message),
		"site_name":        str(&h.SiteName),
		"logo":             str(&h.Logo),
		"language":         str(&h.Language),
		"log_phones":       func() error { return noValue(d, &h.LogPhones) },
	})
}

// unmarshalUsers reads `users { NAME PHONE ... }`.
func (h *Handler) unmarshalUsers(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	h.Users = map[string]string{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		user := d.Val()
		var phone string
		if !d.Args(&phone) || d.NextArg() {
			return d.Errf("users: expected a user and a phone number, e.g. `alice +12015550123`")
		}
		if _, dup := h.Users[user]; dup {
			return d.Errf("users: %s given twice", user)
		}
		h.Users[user] = phone
	}
	return nil
}

// parseBlock reads each subdirective of a block with its function in subs, refusing unknown
// and repeated ones. An error names the block and the subdirective, and an unknown name gets a
// suggestion.
func parseBlock(d *caddyfile.Dispenser, what string, subs map[string]func() error) error {
	return parseBlockAt(d, 0, what, subs)
}

// parseBlockAt is parseBlock for a block nested at nesting (d.Nesting()) in another.
func parseBlockAt(d *caddyfile.Dispenser, nesting int, what string, subs map[string]func() error) error {
	seen := map[string]bool{}
	for d.NextBlock(nesting) {
		name := d.Val()
		if seen[name] {
			return d.Errf("%s: %s given twice", what, name)
		}
		seen[name] = true
		parse, ok := subs[name]
		if !ok {
			return d.Errf("%s: unknown subdirective %q%s", what, name, suggestion(name, slices.Collect(maps.Keys(subs))))
		}
		var bad badValue
		if err := parse(); errors.As(err, &bad) {
			return d.Errf("%s: %s: %s", what, name, bad.msg)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// badValue is a subdirective's value that is not what it takes; parseBlock names the
// subdirective and where it is.
type badValue struct{ msg string }

func (b badValue) Error() string { return b.msg }

func badValuef(format string, args ...any) error { return badValue{fmt.Sprintf(format, args...)} }

// suggestion is `; did you mean "X"?` for the known name closest to name (at most two edits
// away), else the list of known names.
func suggestion(name string, known []string) string {
	slices.Sort(known)
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(name, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; it takes " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// guestModule reads `KIND NAME [{ ... }]` and hands the rest to the module NAME of namespace.
func guestModule(d *caddyfile.Dispenser, kind, namespace, example string) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("otp: %s needs a name, e.g. %s", kind, example)
	}
	name := d.Val()
	if _, err := caddy.GetModule(namespace + "." + name); err != nil {
		var names []string
		for _, m := range caddy.GetModules(namespace) {
			if n := m.ID.Name(); !strings.HasPrefix(n, "test_") {
				names = append(names, n)
			}
		}
		slices.Sort(names)
		hint := suggestion(name, names)
		if !strings.HasPrefix(hint, "; it takes") {
			hint += "; " + kind + "s: " + strings.Join(names, ", ")
		} else {
			hint = "; " + kind + "s: " + strings.Join(names, ", ")
		}
		return nil, d.Errf("otp: unknown %s %q%s", kind, name, hint)
	}
	unm, err := caddyfile.UnmarshalModule(d, namespace+"."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "module", name, nil), nil
}

// oneString reads a subdirective's one value.
func oneString(d *caddyfile.Dispenser, dst *string) error {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return badValuef("takes one value, not %d", len(args))
	}
	*dst = args[0]
	return nil
}

// someStrings reads a subdirective's values, at least one.
func someStrings(d *caddyfile.Dispenser, dst *[]string, example string) error {
	if *dst = d.RemainingArgs(); len(*dst) == 0 {
		return badValuef("needs at least one value, e.g. %s", example)
	}
	return nil
}

// noValue reads a subdirective that takes no value.
func noValue(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return badValuef("takes no value")
	}
	*dst = true
	return nil
}

func oneInt(d *caddyfile.Dispenser, dst *int, allowed string) error {
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return badValuef("%q is not a whole number (%s)", s, allowed)
	}
	*dst = n
	return nil
}

func oneDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return badValuef("%q is not a duration such as 30s, 5m or 12h", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// limitArgs reads `COUNT WINDOW`, e.g. `5 10m`.
func limitArgs(d *caddyfile.Dispenser) (*Limit, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, badValuef("expected a count and a window, e.g. `5 10m`")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return nil, badValuef("%q is not a count of at least 1", args[0])
	}
	w, err := caddy.ParseDuration(args[1])
	if err != nil || w <= 0 {
		return nil, badValuef("%q is not a positive duration such as 10m", args[1])
	}
	return &Limit{Count: n, Window: caddy.Duration(w)}, nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)

// splitPhone finds a number that the Caddyfile's spaces split into values ("+1 201 555 0123"
// is four): one that starts with + and is no number alone, but is one with the digits after it.
func splitPhone(values []string) error {
	for i, v := range values {
		if !strings.HasPrefix(v, "+") {
			continue
		}
		if _, _, err := normalizePhone(v, ""); err == nil {
			continue
		}
		for j := i + 1; j < len(values) && j <= i+5 && isDigits(values[j]); j++ {
			typed := strings.Join(values[i:j+1], " ")
			if e164, _, err := normalizePhone(typed, ""); err == nil {
				return badValuef("%q is split into %d values by its spaces: quote it (%q) or write it in E.164 (%s)", typed, j-i+1, typed, e164)
			}
		}
	}
	return nil
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
