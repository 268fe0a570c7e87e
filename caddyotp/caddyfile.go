package caddyotp

import (
	"encoding/json"
	"errors"
	"strconv"

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

// UnmarshalCaddyfile fills the handler from an `otp { ... }` block; the syntax is in the package
// documentation. It only parses: defaults and checks happen in Provision and Validate.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "otp", func(name string) error {
		var err error
		switch name {
		case "sender":
			h.SenderRaw, err = guestModule(d, "sender", "http.handlers.otp.senders.", "`sender restcomm { ... }` or `sender log`")
		case "store":
			h.StoreRaw, err = guestModule(d, "store", "http.handlers.otp.stores.", "`store memory`")
		case "phones":
			if h.Phones = d.RemainingArgs(); len(h.Phones) == 0 {
				return d.ArgErr()
			}
		case "phones_file":
			err = oneString(d, &h.PhonesFile)
		case "users":
			err = h.unmarshalUsers(d)
		case "users_file":
			err = oneString(d, &h.UsersFile)
		case "default_region":
			err = oneString(d, &h.DefaultRegion)
		case "regions":
			if h.Regions = d.RemainingArgs(); len(h.Regions) == 0 {
				return d.ArgErr()
			}
		case "code_length":
			err = oneInt(d, &h.CodeLength)
		case "code_ttl":
			err = oneDuration(d, &h.CodeTTL)
		case "max_attempts":
			err = oneInt(d, &h.MaxAttempts)
		case "resend_after":
			err = oneDuration(d, &h.ResendAfter)
		case "send_limit":
			h.SendLimit, err = limitArgs(d)
		case "ip_limit":
			h.IPLimit, err = limitArgs(d)
		case "lockout":
			h.Lockout, err = limitArgs(d)
		case "max_sms_per_hour":
			err = oneInt(d, &h.MaxSMSPerHour)
		case "session_ttl":
			err = oneDuration(d, &h.SessionTTL)
		case "session_idle":
			err = oneDuration(d, &h.SessionIdle)
		case "trust_device":
			err = oneDuration(d, &h.TrustDevice)
		case "public_url":
			err = oneString(d, &h.PublicURL)
		case "audience":
			err = oneString(d, &h.Audience)
		case "path":
			err = oneString(d, &h.Path)
		case "cookie_name":
			err = oneString(d, &h.CookieName)
		case "secret":
			err = oneString(d, &h.Secret)
		case "templates":
			err = oneString(d, &h.Templates)
		case "message":
			err = oneString(d, &h.Message)
		case "site_name":
			err = oneString(d, &h.SiteName)
		case "logo":
			err = oneString(d, &h.Logo)
		case "language":
			err = oneString(d, &h.Language)
		case "log_phones":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.LogPhones = true
		default:
			return errUnknown
		}
		return err
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

// errUnknown is what a parseBlock callback returns for a subdirective it does not know.
var errUnknown = errors.New("unknown subdirective")

// parseBlock reads each subdirective of a block with parse, refusing unknown and repeated ones.
func parseBlock(d *caddyfile.Dispenser, what string, parse func(name string) error) error {
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		if seen[name] {
			return d.Errf("%s: %s given twice", what, name)
		}
		seen[name] = true
		if err := parse(name); err == errUnknown {
			return d.Errf("%s: unknown subdirective %q", what, name)
		} else if err != nil {
			return err
		}
	}
	return nil
}

// guestModule reads `KIND NAME [{ ... }]` and hands the rest to the module NAME of namespace.
func guestModule(d *caddyfile.Dispenser, kind, namespace, example string) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.Errf("otp: %s needs a name, e.g. %s", kind, example)
	}
	name := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, namespace+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "module", name, nil), nil
}

func oneString(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func oneInt(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if err := oneString(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return d.Errf("%q is not a whole number", s)
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
		return d.Errf("%q is not a duration such as 30s, 5m or 12h", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// limitArgs reads `COUNT WINDOW`, e.g. `5 10m`.
func limitArgs(d *caddyfile.Dispenser) (*Limit, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, d.Errf("expected a count and a window, e.g. `5 10m`")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return nil, d.Errf("%q is not a count of at least 1", args[0])
	}
	w, err := caddy.ParseDuration(args[1])
	if err != nil || w <= 0 {
		return nil, d.Errf("%q is not a positive duration such as 10m", args[1])
	}
	return &Limit{Count: n, Window: caddy.Duration(w)}, nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)
