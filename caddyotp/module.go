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
//	    session_ttl 12h                         # absolute
//	    session_idle 30m                        # sliding
//	    trust_device 30d                        # offer "trust this browser" (off by default)
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
package caddyotp

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
// the Caddyfile form is in the package documentation.
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
	health   *health // what recent real deliveries of this gate did
	keys     keys
	public   *url.URL // public_url, parsed; nil if unset
	origin   string   // public_url's origin, as browsers send it
	now      func() time.Time
	obs      *observer // reports metrics, events and log lines for every part
	cookies  *gateCookies
	limits   *limits
	flows    *flows
	signins  *signins
	pages    *pageSet
	sites    *sites    // what the config says of the site of each server the gate serves
	keyCheck *keyCheck // whether the gate's other instances share its key
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision fills in defaults, loads the sender and store, reads who may sign in, derives the
// keys, parses the pages and wires the parts. It makes no network call.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.now = defaultClock
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
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	h.obs = &observer{logger: ctx.Logger(), logPhones: h.LogPhones, path: h.Path, ctx: ctx}
	if app, err := ctx.AppIfConfigured("events"); err == nil { // no events app, no one to hear them
		h.obs.events, _ = app.(*caddyevents.App)
	}

	if h.SenderRaw != nil {
		mod, err := ctx.LoadModule(h, "SenderRaw")
		if err != nil {
			return fmt.Errorf("loading sender: %v", err)
		}
		h.sender = mod.(Sender)
	}
	if h.StoreRaw == nil {
		h.StoreRaw = caddyconfig.JSONModuleObject(MemoryStore{}, "module", "memory", nil)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading store: %v", err)
	}
	h.store = mod.(Store)
	who, err := h.who(repl)
	if err != nil {
		return err
	}
	if h.sender != nil {
		hv, _, err := healthPool.LoadOrNew(h.healthKey(), func() (caddy.Destructor, error) { return new(health), nil })
		if err != nil {
			return err
		}
		h.health = hv.(*health)
	}
	master, err := masterKey(ctx, h.Secret)
	if err != nil {
		return err
	}
	h.keys = deriveKeys(master)
	templates, err := loadPages(h.Templates)
	if err != nil {
		return err
	}
	h.wire(who, templates)
	for _, w := range h.warnings() {
		h.obs.logger.Warn(w)
	}
	registerGate(h)
	return nil
}

// who reads who may sign in: phones, users and regions.
func (h *Handler) who(repl *caddy.Replacer) (*who, error) {
	if h.DefaultRegion != "" && !knownRegion(h.DefaultRegion) {
		return nil, fmt.Errorf("default_region %q is not a region code such as US or GB", h.DefaultRegion)
	}
	w := &who{phones: phoneList{}, users: userPhones{}, defaultRegion: h.DefaultRegion, obs: h.obs}
	for _, p := range h.Phones {
		if err := w.phones.add(repl.ReplaceKnown(p, ""), h.DefaultRegion, "phones"); err != nil {
			return nil, err
		}
	}
	if h.PhonesFile != "" {
		if err := w.phones.addFile(repl.ReplaceKnown(h.PhonesFile, ""), h.DefaultRegion); err != nil {
			return nil, err
		}
	}
	for user, phone := range h.Users {
		if err := w.users.add(user, repl.ReplaceKnown(phone, ""), h.DefaultRegion, "users"); err != nil {
			return nil, err
		}
	}
	if h.UsersFile != "" {
		if err := w.users.addFile(repl.ReplaceKnown(h.UsersFile, ""), h.DefaultRegion); err != nil {
			return nil, err
		}
	}
	for _, r := range h.Regions {
		r = strings.ToUpper(r)
		if !knownRegion(r) {
			return nil, fmt.Errorf("regions: %q is not a region code such as US or GB", r)
		}
		if w.regions == nil {
			w.regions = make(map[string]bool)
		}
		w.regions[r] = true
	}
	return w, nil
}

// wire makes the gate's parts from the configuration, each with the clock and the observer.
func (h *Handler) wire(w *who, templates map[string]*template.Template) {
	aud := h.audience(h.store)
	h.sites = new(sites)
	h.keyCheck = newKeyCheck(h.store, h.keys.subject, h.obs)
	h.cookies = &gateCookies{name: h.CookieName, flowKey: h.keys.flow, csrfKey: h.keys.csrf, aud: aud,
		httpsSite: h.public != nil && h.public.Scheme == "https"}
	h.limits = &limits{store: h.store, subjects: h.keys.subject, ip: *h.IPLimit, send: *h.SendLimit, lockout: *h.Lockout,
		rangeFactor: h.IPRangeFactor, perHour: h.MaxSMSPerHour, resendAfter: time.Duration(h.ResendAfter), now: h.now, obs: h.obs}
	codeTTL := time.Duration(h.CodeTTL)
	h.flows = &flows{store: h.store, limits: h.limits, who: w, codeKey: h.keys.code, codeLength: h.CodeLength, codeTTL: codeTTL,
		maxAttempts: h.MaxAttempts, message: h.Message, siteName: h.SiteName, now: h.now, obs: h.obs,
		deliveries: &deliveries{store: h.store, limits: h.limits, sender: h.sender, outbox: newOutbox(outboxSize, outboxPerClient, outboxPerRange), health: h.health,
			codeKey: h.keys.code, codeLength: h.CodeLength, codeTTL: codeTTL, wait: sleepCtx, now: h.now, obs: h.obs,
			endings: endings{store: h.store, gate: strings.TrimPrefix(h.healthKey(), "otp.health.")[:16]}}}
	if rs, ok := h.sender.(ReceiptReader); ok && h.public != nil && rs.ReceiptsEnabled() {
		h.flows.deliveries.receipts = newReceiptBook(h.keys.receipt, h.origin+h.Path+"/receipt/", codeTTL)
	}
	if c, ok := h.sender.(Caller); ok && h.public != nil && c.VoiceEnabled() {
		h.flows.voice = &voiceScripts{store: h.store, calls: c, key: h.keys.voice, url: h.origin + h.Path + "/voice/", ttl: codeTTL, now: h.now}
	}
	h.signins = &signins{store: h.store, who: w, limits: h.limits, flows: h.flows, now: h.now, obs: h.obs,
		sessions: newSessionCodec(h.keys.session, h.keys.subject, aud, time.Duration(h.SessionTTL), time.Duration(h.SessionIdle)),
		// Trusted-browser cookies are read to sign out even while trust_device is off: one
		// issued before must be revoked, or it would sign in again once trust is back.
		deviceCookies: newSessionCodec(h.keys.device, h.keys.subject, aud, subjectRevocationTTL, 0)}
	if h.TrustDevice > 0 {
		h.signins.devices = newSessionCodec(h.keys.device, h.keys.subject, aud, time.Duration(h.TrustDevice), 0)
		h.signins.deviceCookies = h.signins.devices
	}
	regions := make([]string, 0, len(h.Regions))
	for _, r := range h.Regions {
		if r = strings.ToUpper(r); !slices.Contains(regions, r) {
			regions = append(regions, r)
		}
	}
	h.pages = &pageSet{templates: templates, path: h.Path, siteName: h.SiteName, logo: h.Logo, codeLength: h.CodeLength, codeTTL: codeTTL,
		trustDays: int(time.Duration(h.TrustDevice) / (24 * time.Hour)), devices: h.signins.devices != nil,
		resendAfter: time.Duration(h.ResendAfter), canCall: h.flows.voice != nil, cookies: h.cookies, now: h.now,
		defaultRegion: h.DefaultRegion, regions: regions}
}

// healthKey names this gate's delivery health: its sender and its rules of who may sign in.
func (h *Handler) healthKey() string {
	rules, _ := json.Marshal([]any{h.Phones, h.PhonesFile, h.Users, h.UsersFile, h.Regions, h.DefaultRegion, h.Path, h.CookieName, h.PublicURL})
	return healthKey(h.SenderRaw, rules)
}

// Cleanup leaves the admin API's gates and lets go of the sender's health; deliveries still on
// their way finish on their own.
func (h *Handler) Cleanup() error {
	unregisterGate(h)
	if h.health != nil {
		_, err := healthPool.Delete(h.healthKey())
		return err
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
