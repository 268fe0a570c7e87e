package caddyotp

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
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
func (h *Handler) Validate() (err error) {
	defer func() { sayFix(h.obs.logger, err) }()
	switch {
	case h.sender == nil:
		return errors.New("otp: no sender: add `sender restcomm { ... }` (or, for development only, `sender log`)")
	case h.flows.allow.phones.empty() && len(h.flows.allow.users) == 0:
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
	if err := h.PumpingShield.validate(); err != nil {
		return err
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

// warnings are the risks of a configuration that still loads, each with its fix; Provision logs
// them.
func (h *Handler) warnings() []string {
	var out []string
	if h.flows.allow.phones.anyone && (h.flows.allow.regions == nil || h.MaxSMSPerHour == 0) {
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

// Defaults and bounds of the configuration.
const (
	defaultPath        = "/.otp"
	defaultCookieName  = "caddy_otp"
	defaultCodeLength  = 6
	defaultCodeTTL     = 5 * time.Minute
	maxCodeTTL         = 10 * time.Minute
	defaultMaxAttempts = 5
	defaultResendAfter = 30 * time.Second
	defaultSessionTTL  = 12 * time.Hour
	defaultSessionIdle = 30 * time.Minute
	// defaultIPRangeFactor: how many times ip_limit one /24 or /48 may make.
	defaultIPRangeFactor = 5
)

var (
	defaultSendLimit = Limit{Count: 5, Window: caddy.Duration(10 * time.Minute)}
	defaultIPLimit   = Limit{Count: 20, Window: caddy.Duration(10 * time.Minute)}
	defaultLockout   = Limit{Count: 10, Window: caddy.Duration(15 * time.Minute)}
)

// defaultClock is the clock each new gate gives its parts; tests replace it to move time
// without sleeping.
var defaultClock = time.Now

// Handler is the otp gate (module http.handlers.otp). Its JSON fields are the configuration;
// the Caddyfile form is on UnmarshalCaddyfile.
type Handler struct {
	// The sender of SMS, a module in http.handlers.otp.senders (restcomm, twilio, failover, log).
	// Required.
	SenderRaw json.RawMessage `json:"sender,omitempty" caddy:"namespace=http.handlers.otp.senders inline_key=module"`
	// Where pending flows, counters and revocations live, a module in http.handlers.otp.stores.
	// Default: memory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=http.handlers.otp.stores inline_key=module"`

	// Phones that may sign in, normalised to E.164; "*" lets anyone with a phone sign in.
	Phones []string `json:"phones,omitempty"`
	// A file of phones that may sign in: one a line, blank lines and # comments allowed.
	PhonesFile string `json:"phones_file,omitempty"`
	// Phones bound to first-factor users ({http.auth.user.id} from basic_auth or forward_auth,
	// which must run before the gate): a signed-in user skips the phone page and the code goes
	// to their phone; the session is bound to the user.
	Users map[string]string `json:"users,omitempty"`
	// A file of "USER PHONE" lines, blank lines and # comments allowed.
	UsersFile string `json:"users_file,omitempty"`
	// Region (ISO 3166 alpha-2, e.g. US) for numbers written without a +country prefix.
	DefaultRegion string `json:"default_region,omitempty"`
	// Regions that codes may be sent to; empty means any.
	Regions []string `json:"regions,omitempty"`

	// Digits in a code, 6 to 10. Default 6.
	CodeLength int `json:"code_length,omitempty"`
	// How long a code lives, at most 10m. Default 5m.
	CodeTTL caddy.Duration `json:"code_ttl,omitempty"`
	// Wrong codes allowed per code before the flow is void. Default 5.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// How long before a visitor may ask for a new code. Default 30s.
	ResendAfter caddy.Duration `json:"resend_after,omitempty"`
	// SMS per phone per window. Default 5 per 10m.
	SendLimit *Limit `json:"send_limit,omitempty"`
	// Sends and code checks per client IP per window. Default 20 per 10m.
	IPLimit *Limit `json:"ip_limit,omitempty"`
	// How many times ip_limit the addresses of one range (an IPv4 /24, an IPv6 /48) may ask
	// for new codes together. Default 5.
	IPRangeFactor int `json:"ip_range_factor,omitempty"`
	// Consecutive failures per phone (count) before it is locked for window. Default 10, 15m.
	Lockout *Limit `json:"lockout,omitempty"`
	// Codes issued per hour by this gate (counted whether or not the number may sign in, so the
	// cap reveals nothing); 0 means no cap. Bounds what a bot can cost in SMS. One address range
	// (an IPv4 /24, an IPv6 /48) may spend a quarter of it; a try past a cap does not count.
	MaxSMSPerHour int `json:"max_sms_per_hour,omitempty"`
	// Holds back codes to number prefixes that bots pump (PumpingShield). On by default.
	PumpingShield *PumpingShield `json:"pumping_shield,omitempty"`

	// Absolute lifetime of a session. Default 12h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
	// A session unused this long ends. Default 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// Offers "trust this browser" on the code page: a signed cookie that skips the SMS for the
	// same phone or user on that browser for this long. Off unless set; at most 400 days.
	TrustDevice caddy.Duration `json:"trust_device,omitempty"`
	// Offers a passkey after the first sign-in with a code, so that later sign-ins need no SMS
	// (WebAuthn). Off unless set; needs public_url.
	Passkeys *Passkeys `json:"passkeys,omitempty"`

	// The site's public origin (scheme, host, optional port), e.g. https://example.com: where the
	// SMS provider fetches voice scripts, the host that SMS codes are bound to for autofill, the
	// origin forms must come from, and, when https, the reason cookies are Secure behind a proxy
	// that ends TLS. Never taken from a request. It must be https (http only on a loopback host).
	// Required for voice.
	PublicURL string `json:"public_url,omitempty"`
	// Which gates honour each other's sessions. Default: a name of this gate's own, made from
	// path, cookie_name and the store, so a session works only on the gate that issued it.
	Audience string `json:"audience,omitempty"`

	// Where the gate's pages live. Default /.otp.
	Path string `json:"path,omitempty"`
	// Session cookie name; the flow cookie adds "_flow". On HTTPS both get the __Host- prefix.
	// Default caddy_otp.
	CookieName string `json:"cookie_name,omitempty"`
	// Master secret (at least 32 characters) for every signature; placeholders allowed.
	// Default: a random key generated once and kept in Caddy's storage.
	Secret string `json:"secret,omitempty"`
	// A directory whose files replace the embedded pages of the same name.
	Templates string `json:"templates,omitempty"`
	// The SMS text; {code}, {site} (site_name or the host) and {host} are filled in. The line
	// "@host #code" is appended for browser autofill. Default: "{code} is your {site} sign-in
	// code." in the visitor's language.
	Message string `json:"message,omitempty"`
	// The site's name on the pages and in the SMS. Default: the host.
	SiteName string `json:"site_name,omitempty"`
	// A logo shown on the pages: a path on this site (the pages load nothing from elsewhere).
	Logo string `json:"logo,omitempty"`
	// Log full phone numbers instead of masked ones (+1201*****23). Off by default.
	LogPhones bool `json:"log_phones,omitempty"`
	// Pins the pages' and the default SMS's language (en, de, es, fr); default: the visitor's
	// Accept-Language.
	Language string `json:"language,omitempty"`

	sender     Sender
	store      Store
	health     *health // what recent real deliveries of this gate did
	healthName string  // its name in healthPool
	keys       keys
	public     *url.URL // public_url, parsed; nil if unset
	origin     string   // public_url's origin, as browsers send it
	now        func() time.Time
	obs        *observer // reports metrics, events and log lines for every part
	cookies    *gateCookies
	limits     *limits
	flows      *flows
	signins    *signins
	pages      *pageSet
	sites      *sites    // what the config says of the site of each server the gate serves
	keyCheck   *keyCheck // whether the gate's other instances share its key
	webhooks   *webhooks
	passkeys   *passkeyPages // nil unless passkeys
}
