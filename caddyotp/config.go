package caddyotp

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/nyaruka/phonenumbers"
)

// The checks and derivations of the configuration: defaults, Validate, public_url, the
// audience.

func (h *Handler) setDefaults() {
	if h.Path == "" {
		h.Path = defaultPath
	}
	if h.CookieName == "" {
		h.CookieName = defaultCookieName
	}
	if h.CodeLength == 0 {
		h.CodeLength = defaultCodeLength
	}
	if h.CodeTTL == 0 {
		h.CodeTTL = caddy.Duration(defaultCodeTTL)
	}
	if h.MaxAttempts == 0 {
		h.MaxAttempts = defaultMaxAttempts
	}
	if h.ResendAfter == 0 {
		h.ResendAfter = caddy.Duration(defaultResendAfter)
	}
	// Copies: a handler's limits are its own.
	if h.SendLimit == nil {
		l := defaultSendLimit
		h.SendLimit = &l
	}
	if h.IPLimit == nil {
		l := defaultIPLimit
		h.IPLimit = &l
	}
	if h.Lockout == nil {
		l := defaultLockout
		h.Lockout = &l
	}
	if h.IPRangeFactor == 0 {
		h.IPRangeFactor = defaultIPRangeFactor
	}
	if h.SessionTTL == 0 {
		h.SessionTTL = caddy.Duration(defaultSessionTTL)
	}
	if h.SessionIdle == 0 {
		h.SessionIdle = caddy.Duration(defaultSessionIdle)
	}
}

// Validate rejects configurations that would be unsafe or could not work, saying how to fix them.
func (h *Handler) Validate() error {
	switch {
	case h.sender == nil:
		return errors.New("otp: no sender: add `sender restcomm { ... }` (or, for development only, `sender log`)")
	case h.flows.who.phones.empty() && len(h.flows.who.users) == 0:
		return errors.New("otp: no one may sign in: add `phones +12015550123 ...`, `phones_file FILE`, `phones *` to let anyone with a phone sign in, or `users { NAME PHONE }` after basic_auth")
	case h.CodeLength < 6 || h.CodeLength > 10:
		return fmt.Errorf("otp: code_length %d is outside 6..10", h.CodeLength)
	case h.CodeTTL <= 0 || time.Duration(h.CodeTTL) > maxCodeTTL:
		return fmt.Errorf("otp: code_ttl %s must be more than 0 and at most %s", time.Duration(h.CodeTTL), maxCodeTTL)
	case h.MaxAttempts < 1 || h.MaxAttempts > 10:
		return fmt.Errorf("otp: max_attempts %d is outside 1..10", h.MaxAttempts)
	case h.ResendAfter < 0:
		return errors.New("otp: resend_after must not be negative")
	case h.SessionTTL <= 0:
		return errors.New("otp: session_ttl must be positive")
	case h.TrustDevice < 0 || time.Duration(h.TrustDevice) > 400*24*time.Hour:
		return fmt.Errorf("otp: trust_device %s must be between 0 (off) and 400d", time.Duration(h.TrustDevice))
	case h.CodeTTL < h.ResendAfter:
		return fmt.Errorf("otp: code_ttl %s is shorter than resend_after %s: a visitor whose code expired would have to wait for a new one; make code_ttl at least resend_after", time.Duration(h.CodeTTL), time.Duration(h.ResendAfter))
	case h.SessionIdle < 0 || h.SessionIdle > h.SessionTTL:
		return fmt.Errorf("otp: session_idle %s must be between 0 and session_ttl (%s)", time.Duration(h.SessionIdle), time.Duration(h.SessionTTL))
	case !strings.HasPrefix(h.Path, "/") || strings.HasSuffix(h.Path, "/") || strings.ContainsAny(h.Path, "?#% "):
		return fmt.Errorf("otp: path %q must start with / and not end with one, e.g. /.otp", h.Path)
	case !validCookieName(h.CookieName):
		return fmt.Errorf("otp: cookie_name %q may hold only letters, digits, - and _", h.CookieName)
	case h.Message != "" && !strings.Contains(h.Message, "{code}"):
		return errors.New("otp: message must contain {code}")
	case h.Message != "" && messagePlaceholder(h.Message) != "":
		return fmt.Errorf("otp: message may use only {code}, {site} and {host}, not %s: an SMS never carries what a request says", messagePlaceholder(h.Message))
	case h.public == nil && voiceOn(h.sender):
		return errors.New("otp: the sender's voice calls need public_url (e.g. `public_url https://example.com`): the provider fetches the call's script there, never from an address a request names")
	case len(h.SiteName) > 64 || strings.ContainsAny(h.SiteName, "\r\n"):
		return errors.New("otp: site_name must be one line of at most 64 characters")
	case h.Logo != "" && (!strings.HasPrefix(h.Logo, "/") || strings.HasPrefix(h.Logo, "//") || strings.ContainsAny(h.Logo, "\\ \"'<>")):
		return fmt.Errorf("otp: logo %q must be a path on this site, e.g. /logo.svg", h.Logo)
	case h.Language != "" && catalog[h.Language] == nil:
		return fmt.Errorf("otp: language %q is not one of %s", h.Language, strings.Join(languageNames(), ", "))
	}
	if h.MaxSMSPerHour < 0 {
		return errors.New("otp: max_sms_per_hour must not be negative")
	}
	if h.IPRangeFactor < 1 || h.IPRangeFactor > 1000 {
		return fmt.Errorf("otp: ip_range_factor %d is outside 1..1000 (how many times ip_limit one /24 or /48 may make)", h.IPRangeFactor)
	}
	for name, l := range map[string]*Limit{"send_limit": h.SendLimit, "ip_limit": h.IPLimit, "lockout": h.Lockout} {
		if l.Count < 1 || l.Window <= 0 {
			return fmt.Errorf("otp: %s needs a count of at least 1 and a positive window, e.g. `%s 5 10m`", name, name)
		}
	}
	return nil
}

// parsePublicURL checks public_url: an origin (scheme, host, optional port) that is https, or
// http on a loopback host, since voice scripts carry codes. It returns the URL and its origin as
// a browser writes it in an Origin header.
func parsePublicURL(raw string) (*url.URL, string, error) {
	if raw == "" {
		return nil, "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return nil, "", fmt.Errorf("otp: public_url %q must be an origin such as https://example.com (scheme, host and optional port, no path)", raw)
	}
	u.Scheme, u.Host, u.Path = strings.ToLower(u.Scheme), strings.ToLower(u.Host), ""
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && loopbackHost(u.Hostname()):
	default:
		return nil, "", fmt.Errorf("otp: public_url %q must be https (plain http only on a loopback host such as localhost): voice scripts carry codes", raw)
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if strings.HasSuffix(u.Host, ":") || u.Port() != "" {
		port, err := strconv.Atoi(u.Port())
		if err != nil || port < 1 || port > 65535 {
			return nil, "", fmt.Errorf("otp: public_url %q has no valid port", raw)
		}
		if !(port == 443 && u.Scheme == "https" || port == 80 && u.Scheme == "http") {
			host += ":" + strconv.Itoa(port) // as a browser writes it in Origin
		}
	}
	u.Host = host
	return u, u.Scheme + "://" + u.Host, nil
}

func loopbackHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// messagePlaceholder returns the first placeholder of an SMS template other than {code},
// {site} and {host} ({http.request.host} is how the Caddyfile writes {host}), or "".
func messagePlaceholder(msg string) string {
	for rest := msg; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return ""
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return ""
		}
		switch p := rest[i : i+j+1]; p {
		case "{code}", "{site}", "{host}", "{http.request.host}":
		default:
			return p
		}
		rest = rest[i+j+1:]
	}
}

// audience names the gates whose sessions this one honours: the configured name, else this
// gate's path, cookie name, store and public_url.
func (h *Handler) audience(store Store) []byte {
	name := "name\x00" + h.Audience
	if h.Audience == "" {
		name = "gate\x00" + h.Path + "\x00" + h.CookieName + "\x00" + storeIdentity(store) + "\x00" + h.origin
	}
	sum := sha256.Sum256([]byte(name))
	return sum[:8]
}

func knownRegion(r string) bool {
	return phonenumbers.GetCountryCodeForRegion(r) != 0
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

// warnings are the risks of a configuration that still loads, each with its fix; Provision logs
// them.
// longSMS says, when it is so, that the SMS with this site's name and public_url's host would
// take more than one segment (each billed) in a language the pages speak, and what to do.
func (h *Handler) longSMS() string {
	host := ""
	if h.public != nil {
		host = h.public.Hostname()
	}
	site := h.SiteName
	if site == "" {
		site = host
	}
	if site == "" {
		return "" // the host is known only per request: nothing to measure at load
	}
	langs := languageNames()
	if h.Language != "" {
		langs = []string{h.Language}
	}
	code := strings.Repeat("0", h.CodeLength)
	for _, lang := range langs {
		text := h.Message
		if text == "" {
			text = catalog[lang]["sms"]
		}
		if n := smsSegments(smsBody(text, code, site, cmp.Or(host, site), host)); n > 1 {
			return fmt.Sprintf("the SMS takes %d segments in %s (each billed, and some phones show them late): shorten site_name (with public_url's host, at most %d characters keep the default SMS in one segment in every language) or set a shorter message", n, lang, smsSiteBudget)
		}
	}
	return ""
}

func (h *Handler) warnings() []string {
	var out []string
	if h.flows.who.phones.anyone && (h.flows.who.regions == nil || h.MaxSMSPerHour == 0) {
		out = append(out, "phones * lets anyone ask for codes: without regions and max_sms_per_hour, SMS toll fraud (codes sent to premium numbers abroad) can run up the bill; set `regions US ...` and `max_sms_per_hour N`")
	}
	if w := h.longSMS(); w != "" {
		out = append(out, w)
	}
	if _, ok := h.sender.(*LogSender); ok && h.public != nil && !loopbackHost(h.public.Hostname()) {
		out = append(out, "the log sender writes sign-in codes to the log on a site with a public address ("+h.origin+"): anyone who reads the log can sign in; use `sender restcomm { ... }`")
	}
	return out
}
