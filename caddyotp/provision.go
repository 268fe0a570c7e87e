package caddyotp

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
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
func (h *Handler) Provision(ctx caddy.Context) (err error) {
	defer func() { sayFix(ctx.Logger(), err) }()
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

	if h.StoreRaw == nil {
		h.StoreRaw = caddyconfig.JSONModuleObject(MemoryStore{}, "module", "memory", nil)
	}
	// The gate's delivery health is named by its sender, its rules of who may sign in and its
	// store (read before LoadModule, which clears the raw JSON it loads): a reload keeps it, and
	// another gate, on another sender or another store, has its own.
	rules, _ := json.Marshal([]any{h.Phones, h.PhonesFile, h.Users, h.UsersFile, h.Regions, h.DefaultRegion, h.Path, h.CookieName, h.PublicURL, h.StoreRaw})
	h.healthName = healthKey(h.SenderRaw, rules)
	if h.SenderRaw != nil {
		mod, err := ctx.LoadModule(h, "SenderRaw")
		if err != nil {
			return fmt.Errorf("loading sender: %v", err)
		}
		h.sender = mod.(Sender)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading store: %v", err)
	}
	h.store = mod.(Store)
	allow, err := newAllowlist(h, repl)
	if err != nil {
		return err
	}
	if h.sender != nil {
		hv, _, err := healthPool.LoadOrNew(h.healthName, func() (caddy.Destructor, error) { return new(health), nil })
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
	h.wire(allow, templates)
	if h.passkeys, err = newPasskeyPages(ctx, h); err != nil {
		return err
	}
	h.pages.passkeys = h.passkeys != nil
	for _, w := range h.warnings() {
		h.obs.logger.Warn(w)
	}
	if err := checkAtStart(ctx, h); err != nil {
		return err
	}
	registerGate(h)
	return nil
}

// sayFix logs what to fix in a config the gate refuses, before Caddy prints its error, which
// leads with the chain of modules that loaded the gate: the operator reads the fix first.
func sayFix(logger *zap.Logger, err error) {
	if err != nil {
		logger.Error(caddyChain.ReplaceAllString(err.Error(), "") + "; the config is not loaded")
	}
}

// caddyChain matches the prefixes Caddy and the gate put before the message of a module's error.
var caddyChain = regexp.MustCompile(`^((loading (sender|store|module '[^']*')|provision [\w.]+|[a-z]+(\.[\w]+)+|invalid configuration): )+`)

// wire makes the gate's parts from the configuration, each with the clock and the observer.
func (h *Handler) wire(w *allowlist, templates map[string]*template.Template) {
	aud := h.audience(h.store)
	h.sites = new(sites)
	h.keyCheck = newKeyCheck(h.store, h.keys.subject, h.obs, h.now, keyFingerprintTTL)
	h.cookies = &gateCookies{name: h.CookieName, flowKey: h.keys.flow, csrfKey: h.keys.csrf, aud: aud,
		httpsSite: h.public != nil && h.public.Scheme == "https"}
	h.limits = &limits{store: h.store, subjects: h.keys.subject, ip: *h.IPLimit, send: *h.SendLimit, lockout: *h.Lockout,
		rangeFactor: h.IPRangeFactor, perHour: h.MaxSMSPerHour, resendAfter: time.Duration(h.ResendAfter), now: h.now, obs: h.obs}
	codeTTL := time.Duration(h.CodeTTL)
	h.flows = &flows{store: h.store, limits: h.limits, allow: w, codeKey: h.keys.code, codeLength: h.CodeLength, codeTTL: codeTTL,
		maxAttempts: h.MaxAttempts, message: h.Message, siteName: h.SiteName, now: h.now, obs: h.obs,
		deliveries: &deliveries{store: h.store, limits: h.limits, sender: h.sender, outbox: newOutbox(outboxSize, outboxPerClient, outboxPerRange), health: h.health,
			codeKey: h.keys.code, codeLength: h.CodeLength, codeTTL: codeTTL, wait: sleepCtx, now: h.now, obs: h.obs,
			endings: endings{store: h.store, gate: strings.TrimPrefix(h.healthName, "otp.health.")[:16]},
			shield:  newPumpingShield(h.PumpingShield, h.store, h.keys.subject, pumpGate(h, aud), h.now, h.obs)}}
	if rs, ok := h.sender.(ReceiptReader); ok && h.public != nil && rs.ReceiptsEnabled() {
		h.flows.deliveries.receipts = newReceiptBook(h.keys.receipt, h.origin+h.Path+"/receipt/", aud, codeTTL)
	}
	if c, ok := h.sender.(Caller); ok && h.public != nil && c.VoiceEnabled() {
		h.flows.voice = &voiceScripts{store: h.store, calls: c, key: h.keys.voice, url: h.origin + h.Path + "/voice/", ttl: codeTTL, now: h.now}
	}
	h.signins = &signins{store: h.store, allow: w, limits: h.limits, flows: h.flows, now: h.now, obs: h.obs, cookies: h.cookies,
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
	h.webhooks = &webhooks{voice: h.flows.voice, deliveries: h.flows.deliveries, obs: h.obs,
		unavailable: func(w http.ResponseWriter, r *http.Request, err error) error {
			return h.answer(w, h.readVisit(r), failedWith(err))
		}}
	if rr, ok := h.sender.(ReceiptReader); ok {
		h.webhooks.reader = rr
	}
	h.pages = &pageSet{templates: templates, path: h.Path, siteName: h.SiteName, logo: h.Logo, codeLength: h.CodeLength, codeTTL: codeTTL,
		trustDays: int(time.Duration(h.TrustDevice) / (24 * time.Hour)), devices: h.signins.devices != nil,
		resendAfter: time.Duration(h.ResendAfter), canCall: h.flows.voice != nil, cookies: h.cookies, now: h.now,
		defaultRegion: h.DefaultRegion, regions: regions}
}

// Cleanup leaves the admin API's gates and lets go of the sender's health; deliveries still on
// their way finish on their own.
func (h *Handler) Cleanup() error {
	unregisterGate(h)
	if h.health != nil {
		_, err := healthPool.Delete(h.healthName)
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
