// Package caddyotp is a Caddy HTTP handler that puts SMS one-time-code sign-in in front of a site.
//
// A visitor without a valid session is sent to a phone-number page, receives a code by SMS,
// types it on a code page and gets a signed session cookie; from then on requests pass through.
//
// Caddyfile syntax (every subdirective but sender and phones/phones_file is optional):
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
//	    sender log                              # development only: codes go to the log
//	    public_url https://example.com          # where the provider reaches the gate; the SMS's
//	                                            # autofill host; never taken from a request
//	    audience NAME                           # which gates share sessions (default: this one)
//	    phones +12015550123 +442079460000       # or: phones *  (anyone with a phone)
//	    phones_file /etc/caddy/otp-phones.txt   # one number a line, # comments
//	    default_region US                       # for numbers typed without +country
//	    regions US CA GB                        # destinations allowed
//	    code_length 6                           # 6..10
//	    code_ttl 5m                             # at most 10m
//	    max_attempts 5                          # wrong codes per code
//	    resend_after 30s
//	    send_limit 5 10m                        # SMS per phone per window
//	    ip_limit 20 10m                         # sends and checks per client IP per window
//	    lockout 10 15m                          # consecutive failures per phone and address,
//	                                            # lock duration; 5x that from any address locks the phone
//	    session_ttl 12h
//	    session_idle 30m
//	    path /.otp
//	    cookie_name caddy_otp
//	    secret {env.OTP_SECRET}                 # else generated once, kept in Caddy storage
//	    store memory [name]
//	    templates /etc/caddy/otp-templates
//	    message "{code} is your {host} sign-in code."
//	}
package caddyotp

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/nyaruka/phonenumbers"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
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
)

var (
	defaultSendLimit = Limit{Count: 5, Window: caddy.Duration(10 * time.Minute)}
	defaultIPLimit   = Limit{Count: 20, Window: caddy.Duration(10 * time.Minute)}
	defaultLockout   = Limit{Count: 10, Window: caddy.Duration(15 * time.Minute)}
)

// now is the gate's clock; tests replace it to move time without sleeping.
var now = time.Now

// Handler is the otp gate (module http.handlers.otp). Its JSON fields are the configuration;
// the Caddyfile form is in the package documentation.
type Handler struct {
	// The sender of SMS, a module in http.handlers.otp.senders (restcomm, log). Required.
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
	// Consecutive failures per phone (count) before it is locked for window. Default 10, 15m.
	Lockout *Limit `json:"lockout,omitempty"`
	// Codes issued per hour for the whole site (counted whether or not the number may sign in,
	// so the cap reveals nothing); 0 means no cap. Bounds what a bot can cost in SMS.
	MaxSMSPerHour int `json:"max_sms_per_hour,omitempty"`

	// Absolute lifetime of a session. Default 12h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
	// A session unused this long ends. Default 30m.
	SessionIdle caddy.Duration `json:"session_idle,omitempty"`
	// Offers "trust this browser" on the code page: a signed cookie that skips the SMS for the
	// same phone or user on that browser for this long. Off unless set; at most 400 days.
	TrustDevice caddy.Duration `json:"trust_device,omitempty"`

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

	sender   Sender
	store    Store
	phones   phoneList
	users    userPhones
	regions  map[string]bool
	keys     keys
	sessions *sessionCodec
	devices  *sessionCodec // nil unless trust_device
	// reads trusted-browser cookies for sign-out: devices, or while trust_device is off, one
	// that takes any the key signed
	deviceCookies *sessionCodec
	pages         map[string]*template.Template
	logger        *zap.Logger
	outbox        *outbox                                    // deliveries in the background
	health        *health                                    // what recent real deliveries did
	wait          func(ctx context.Context, d time.Duration) // how simulated deliveries wait
	aud           []byte                                     // names this gate in its cookies (audience)
	public        *url.URL                                   // public_url, parsed; nil if unset
	origin        string                                     // public_url's origin, as browsers send it

	obs *observer // reports metrics, events and log lines for every part
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills in defaults, loads the sender and store, reads the phone list, derives the keys
// and parses the pages. It makes no network call.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.wait, h.outbox = sleepCtx, newOutbox(outboxSize)
	repl := caddy.NewReplacer()
	h.setDefaults()
	h.Secret = repl.ReplaceKnown(h.Secret, "")
	h.Message = repl.ReplaceKnown(h.Message, "")
	h.SiteName = strings.TrimSpace(repl.ReplaceKnown(h.SiteName, ""))
	h.Logo = repl.ReplaceKnown(h.Logo, "")
	h.Language = strings.ToLower(repl.ReplaceKnown(h.Language, ""))
	h.DefaultRegion = strings.ToUpper(repl.ReplaceKnown(h.DefaultRegion, ""))
	h.Audience = repl.ReplaceKnown(h.Audience, "")
	h.PublicURL = repl.ReplaceKnown(h.PublicURL, "")
	var err error
	if h.public, h.origin, err = parsePublicURL(h.PublicURL); err != nil {
		return err
	}

	var mod any
	if h.SenderRaw != nil {
		mod, err = ctx.LoadModule(h, "SenderRaw")
		if err != nil {
			return fmt.Errorf("loading sender: %v", err)
		}
		h.sender = mod.(Sender)
		hv, _, err := healthPool.LoadOrNew(healthKey(h.SenderRaw), func() (caddy.Destructor, error) { return new(health), nil })
		if err != nil {
			return err
		}
		h.health = hv.(*health)
	}
	if h.StoreRaw == nil {
		h.StoreRaw = caddyconfig.JSONModuleObject(MemoryStore{}, "module", "memory", nil)
	}
	mod, err = ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading store: %v", err)
	}
	h.store = mod.(Store)

	if h.DefaultRegion != "" && !knownRegion(h.DefaultRegion) {
		return fmt.Errorf("default_region %q is not a region code such as US or GB", h.DefaultRegion)
	}
	h.phones = phoneList{}
	for _, p := range h.Phones {
		if err := h.phones.add(repl.ReplaceKnown(p, ""), h.DefaultRegion, "phones"); err != nil {
			return err
		}
	}
	if h.PhonesFile != "" {
		if err := h.phones.addFile(repl.ReplaceKnown(h.PhonesFile, ""), h.DefaultRegion); err != nil {
			return err
		}
	}
	h.users = userPhones{}
	for user, phone := range h.Users {
		if err := h.users.add(user, repl.ReplaceKnown(phone, ""), h.DefaultRegion, "users"); err != nil {
			return err
		}
	}
	if h.UsersFile != "" {
		if err := h.users.addFile(repl.ReplaceKnown(h.UsersFile, ""), h.DefaultRegion); err != nil {
			return err
		}
	}
	h.regions = nil
	for _, r := range h.Regions {
		r = strings.ToUpper(r)
		if !knownRegion(r) {
			return fmt.Errorf("regions: %q is not a region code such as US or GB", r)
		}
		if h.regions == nil {
			h.regions = make(map[string]bool)
		}
		h.regions[r] = true
	}

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	h.obs = &observer{logger: h.logger, logPhones: h.LogPhones, path: h.Path, ctx: ctx}
	if app, err := ctx.AppIfConfigured("events"); err == nil { // no events app, no one to hear them
		h.obs.events, _ = app.(*caddyevents.App)
	}
	master, err := masterKey(ctx, h.Secret)
	if err != nil {
		return err
	}
	h.keys = deriveKeys(master)
	aud := h.audience()
	h.aud = aud
	h.sessions = newSessionCodec(h.keys.session, h.keys.subject, aud, time.Duration(h.SessionTTL), time.Duration(h.SessionIdle))
	// Trusted-browser cookies are read to sign out even while trust_device is off: one issued
	// before must be revoked, or it would sign in again once trust is back.
	h.devices = nil
	h.deviceCookies = newSessionCodec(h.keys.device, h.keys.subject, aud, subjectRevocationTTL, 0)
	if h.TrustDevice > 0 {
		h.devices = newSessionCodec(h.keys.device, h.keys.subject, aud, time.Duration(h.TrustDevice), 0)
		h.deviceCookies = h.devices
	}

	h.pages, err = loadPages(h.Templates)
	return err
}

// Cleanup lets go of the sender's health; deliveries still on their way finish on their own.
func (h *Handler) Cleanup() error {
	if h.health != nil {
		_, err := healthPool.Delete(healthKey(h.SenderRaw))
		return err
	}
	return nil
}

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
	case h.phones.empty() && len(h.users) == 0:
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
		return fmt.Errorf("otp: language %q is not one of en, de, es, fr", h.Language)
	}
	if h.MaxSMSPerHour < 0 {
		return errors.New("otp: max_sms_per_hour must not be negative")
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
func (h *Handler) audience() []byte {
	name := "name\x00" + h.Audience
	if h.Audience == "" {
		store := ""
		if n, ok := h.store.(interface{ storeName() string }); ok {
			store = n.storeName()
		}
		name = "gate\x00" + h.Path + "\x00" + h.CookieName + "\x00" + store + "\x00" + h.origin
	}
	sum := sha256.Sum256([]byte(name))
	return sum[:8]
}

func voiceOn(s Sender) bool {
	c, ok := s.(Caller)
	return ok && c.VoiceEnabled()
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

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
