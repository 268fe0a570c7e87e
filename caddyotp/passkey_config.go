package caddyotp

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/go-webauthn/webauthn/webauthn"
)

// Passkeys offers each visitor, after their first sign-in with a code, a passkey (WebAuthn)
// for this site: later sign-ins take a touch (a fingerprint, a face, a screen lock or a security
// key) and no SMS. The relying party is public_url: its host is the id, its origin the only one
// accepted. Passkeys are kept in Caddy's storage, or in the Redis store when the gate uses one.
type Passkeys struct {
	// The site's name as the browser shows it when making a passkey. Default: site_name, else
	// public_url's host.
	RPName string `json:"rp_name,omitempty"`
}

// validate refuses passkeys without a relying party that browsers accept: public_url must be
// set, name a domain (an IP address cannot be a relying party id), and be https, or plain http
// only on localhost, which browsers treat as a secure context.
func (p *Passkeys) validate(public *url.URL) error {
	if p == nil {
		return nil
	}
	if public == nil {
		return errors.New("otp: passkeys need public_url (e.g. `public_url https://example.com`): its host is the passkeys' relying party id, and its origin the only one they work on")
	}
	host := public.Hostname()
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Errorf("otp: passkeys need public_url to name a domain, not the IP address %s: a passkey's relying party id is a domain name (for a test on this machine, use http://localhost)", host)
	}
	if public.Scheme != "https" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("otp: passkeys need public_url to be https (plain http only on localhost, which browsers treat as secure), not %s", public.Scheme+"://"+public.Host)
	}
	if len(p.RPName) > 64 || strings.ContainsAny(p.RPName, "\r\n") {
		return errors.New("otp: passkeys: rp_name must be one line of at most 64 characters")
	}
	return nil
}

// unmarshalPasskeys reads `passkeys` or `passkeys { rp_name NAME }`.
func unmarshalPasskeys(d *caddyfile.Dispenser, p *Passkeys) error {
	if d.NextArg() {
		return d.Errf("passkeys takes no value; for its options: passkeys { rp_name \"Example Docs\" }")
	}
	return parseBlockAt(d, d.Nesting(), "passkeys", map[string]func() error{
		"rp_name": func() error { return oneString(d, &p.RPName) },
	})
}

// newPasskeyPages wires the passkeys of a provisioned gate, or returns nil when they are off.
// It makes no network call: the vault is opened, not read.
func newPasskeyPages(ctx caddy.Context, h *Handler) (*passkeyPages, error) {
	if h.Passkeys == nil {
		return nil, nil
	}
	// Here rather than in Validate, which Caddy runs after Provision: the relying party comes
	// from public_url, and the gate's reason must come before the library's.
	if err := h.Passkeys.validate(h.public); err != nil {
		return nil, err
	}
	name := caddy.NewReplacer().ReplaceKnown(h.Passkeys.RPName, "")
	if name == "" {
		name = h.SiteName
	}
	if name == "" {
		name = h.public.Hostname()
	}
	wa, err := webauthn.New(&webauthn.Config{RPID: h.public.Hostname(), RPDisplayName: name, RPOrigins: []string{h.origin},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: passkeyChallengeTTL, TimeoutUVD: passkeyChallengeTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: passkeyChallengeTTL, TimeoutUVD: passkeyChallengeTTL}}})
	if err != nil {
		return nil, fmt.Errorf("otp: passkeys: %v", err)
	}
	pk := &passkeys{wa: wa, vault: newPasskeyVault(h.store, ctx.Storage(), h.public.Hostname()), store: h.store, limits: h.limits,
		allow: h.flows.allow, subjects: h.keys.subject, seal: newSealer(subKey(h.keys.passkey, "subject")),
		tokens: newSealer(subKey(h.keys.passkey, "challenge")), now: h.now, obs: h.obs}
	return &passkeyPages{pk: pk, signins: h.signins, cookies: h.cookies, pages: h.pages, key: subKey(h.keys.passkey, "enrol"),
		path: h.Path, origin: h.origin, obs: h.obs}, nil
}

// subKey derives the key of one purpose from the passkeys' key, so that no key serves two.
func subKey(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// offeredTTL is how long a browser remembers that it was offered a passkey: as long as a
// browser keeps a cookie.
const offeredTTL = 400 * 24 * time.Hour
