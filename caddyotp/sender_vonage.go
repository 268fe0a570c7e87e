package caddyotp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Vonage{})
}

// DefaultVonageBaseURL is the Vonage (formerly Nexmo) SMS API.
const DefaultVonageBaseURL = "https://rest.nexmo.com"

// Vonage sends SMS through the Vonage SMS API: POST {base_url}/sms/json, a form that carries
// api_key with api_secret, or with a signature (sig) when signature_secret is set. The API
// answers 200 even when it refuses: each message's status says ("0" is accepted). Every field
// takes placeholders such as {env.VONAGE_API_SECRET}, resolved at Provision.
type Vonage struct {
	// The account's API key (8 characters, from the dashboard).
	APIKey string `json:"api_key,omitempty"`
	// The account's API secret. Not needed when signature_secret is set: the request is then
	// signed instead (the API refuses both at once, error 32). Never logged.
	APISecret string `json:"api_secret,omitempty"`
	// The number (E.164) or alphanumeric sender id (up to 11 characters) messages come from.
	From string `json:"from,omitempty"`
	// The account's signature secret, when Vonage support turned signed requests and receipts
	// on for it: it signs every request and verifies every receipt's sig. Never logged.
	SignatureSecret string `json:"signature_secret,omitempty"`
	// The dashboard's signature method: md5hash (the default), or HMAC with md5, sha1, sha256
	// or sha512.
	SignatureMethod string `json:"signature_method,omitempty"`
	// The API's base URL. Default DefaultVonageBaseURL.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Refused at load: see Validate.
	Voice bool `json:"voice,omitempty"`

	endpoint string
	api      *restClient
	logger   *zap.Logger
	now      func() time.Time

	unset struct{ key, secret []string } // the unset {env.VAR}s of api_key and api_secret
}

// CaddyModule returns the Caddy module information.
func (Vonage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.vonage",
		New: func() caddy.Module { return new(Vonage) },
	}
}

// Provision resolves placeholders and prepares a keep-alive HTTP client. It makes no request.
func (s *Vonage) Provision(ctx caddy.Context) error {
	s.logger, s.now = ctx.Logger(), time.Now
	repl := caddy.NewReplacer()
	s.APIKey, s.unset.key = resolved(repl, s.APIKey)
	s.APISecret, s.unset.secret = resolved(repl, s.APISecret)
	for _, f := range []*string{&s.From, &s.SignatureSecret, &s.SignatureMethod, &s.BaseURL} {
		*f, _ = resolved(repl, *f)
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.BaseURL == "" {
		s.BaseURL = DefaultVonageBaseURL
	}
	if s.SignatureSecret != "" && s.SignatureMethod == "" {
		s.SignatureMethod = "md5hash" // the dashboard's default
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	s.endpoint = s.BaseURL + "/sms/json"
	s.api = newRestClient("vonage", time.Duration(s.Timeout))
	if s.SignatureSecret == "" {
		s.logger.Info("vonage sender: no signature_secret: delivery receipts are not signed, so the unguessable token of their URL alone authenticates them")
	}
	if alphanumericSender.MatchString(s.From) && strings.Contains(s.From, " ") {
		s.logger.Warn("vonage sender: Vonage drops the spaces of an alphanumeric from: messages come from " + strings.ReplaceAll(s.From, " ", ""))
	}
	return nil
}

// vonageKey is the form of an API key: 8 characters, as the SMS API's specification has it.
var vonageKey = regexp.MustCompile(`^[0-9A-Za-z]{8}$`)

// Validate reports missing or malformed credentials, sender, signature method and base URL,
// and refuses voice. It echoes no value that could be a secret pasted into the wrong field.
func (s *Vonage) Validate() error {
	if s.APIKey == "" {
		return errors.New("vonage sender: api_key" + emptyBecause(s.unset.key))
	}
	if !vonageKey.MatchString(s.APIKey) {
		return fmt.Errorf("vonage sender: api_key (%d characters) is not the 8 letters and digits of a Vonage API key; copy it from the dashboard (the secret goes in api_secret)", len(s.APIKey))
	}
	if s.APISecret == "" && s.SignatureSecret == "" {
		return errors.New("vonage sender: api_secret" + emptyBecause(s.unset.secret) + "; or give signature_secret, to sign requests instead")
	}
	if s.SignatureSecret != "" {
		if _, ok := vonageHashes[s.SignatureMethod]; !ok {
			return fmt.Errorf("vonage sender: signature_method %q is none of md5hash, md5, sha1, sha256, sha512: give the method the dashboard's signature settings show", s.SignatureMethod)
		}
	}
	if s.From == "" {
		return errors.New("vonage sender: from is empty: give the account's number in E.164 (e.g. +12015550100) or an alphanumeric sender id (up to 11 letters and digits)")
	}
	if !(len(s.From) <= 11 && alphanumericSender.MatchString(s.From)) {
		if _, _, err := normalizePhone(s.From, ""); err != nil {
			return fmt.Errorf("vonage sender: from %q is neither a phone number in E.164 (e.g. +12015550100) nor an alphanumeric sender id (up to 11 letters and digits)", s.From)
		}
	}
	if s.Voice {
		// The Voice API (POST https://api.nexmo.com/v1/calls, an NCCO with a talk action) takes a
		// JWT of a Vonage application, signed with its private key: not the SMS API's key and secret.
		return errors.New("vonage sender: voice is not offered: Vonage's Voice API needs an application's JWT (application id and private key), not api_key and api_secret; remove voice, or put a sender that can call (twilio, restcomm) after vonage in a failover")
	}
	return checkBaseURL("vonage sender", "base_url", s.BaseURL, DefaultVonageBaseURL)
}

// Cleanup closes idle connections to the API.
func (s *Vonage) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// Send posts one SMS: type=unicode when the text is not all GSM-7 (the API's default, text,
// would mangle it), the code's lifetime as ttl, and the receipt URL as callback.
func (s *Vonage) Send(ctx context.Context, msg Message) (Sent, error) {
	from := s.From
	if _, _, err := normalizePhone(from, ""); err == nil {
		from = withoutPlus(from) // numbers as the API writes them, like to; not found stated for from
	}
	params := map[string]string{"api_key": s.APIKey, "from": from, "to": withoutPlus(msg.To), "text": msg.Body}
	if !isGSM7(msg.Body) {
		params["type"] = "unicode"
	}
	if msg.Validity > 0 {
		params["ttl"] = strconv.FormatInt(min(max(msg.Validity.Milliseconds(), 20000), 604800000), 10)
	}
	receipts := msg.Receipts != nil
	if receipts {
		if cb := msg.Receipts("vonage"); cb != "" {
			params["callback"] = cb
		} else {
			receipts = false
		}
	}
	if s.SignatureSecret != "" {
		params["timestamp"] = strconv.FormatInt(s.now().Unix(), 10)
		params["sig"] = vonageSignature(s.SignatureMethod, s.SignatureSecret, params)
	} else {
		params["api_secret"] = s.APISecret
	}
	form := url.Values{}
	for k, v := range params {
		form.Set(k, v)
	}
	ans, err := s.api.post(ctx, s.endpoint, "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
	if err != nil {
		return Sent{Provider: "vonage"}, err
	}
	id, se := vonageAnswer(ans)
	if se != nil {
		se.Provider = "vonage"
		return Sent{Provider: "vonage"}, se
	}
	return Sent{ID: id, Provider: "vonage", Receipts: receipts}, nil
}

// vonageAnswer reads the API's answer: the id of the first part of the message, or the
// *SendError of the first part that was refused.
func vonageAnswer(ans answer) (string, *SendError) {
	if se := httpTrouble(ans.status, ans.header); se != nil {
		return "", se
	}
	if ans.status == http.StatusUnauthorized {
		return "", &SendError{Status: ans.status, Detail: "credentials refused: check api_key and api_secret"}
	}
	var body struct {
		Messages []struct {
			ID        string `json:"message-id"`
			Status    string `json:"status"`
			ErrorText string `json:"error-text"`
		} `json:"messages"`
	}
	if ans.status != http.StatusOK || json.Unmarshal(ans.body, &body) != nil || len(body.Messages) == 0 {
		return "", &SendError{Status: ans.status, Detail: responseDetail(ans.status, ans.body)}
	}
	for _, m := range body.Messages {
		if m.Status != "0" {
			se := vonageError(m.Status, m.ErrorText)
			se.Status = ans.status
			return "", se
		}
	}
	return body.Messages[0].ID, nil
}

// vonageErrors are the SMS API's refusals (messages[].status, in a 200), by code: whose fault,
// which refusal of the number, and what it means. A code not listed is a configuration fault.
var vonageErrors = map[string]struct {
	fault          Fault
	reason, detail string
}{
	"1":  {TemporaryFault, "", "throttled: sending faster than the account may"},
	"2":  {ConfigFault, "", "missing parameters: check from"},
	"3":  {ConfigFault, "", "invalid parameters: check from"},
	"4":  {ConfigFault, "", "credentials refused: check api_key and api_secret"},
	"5":  {TemporaryFault, "", "internal error of the provider"},
	"6":  {NumberFault, "invalid", "invalid message: the number's prefix is not recognised"},
	"7":  {NumberFault, "blocked", "the number is barred"},
	"8":  {ConfigFault, "", "the account is barred (suspended): contact Vonage"},
	"9":  {ConfigFault, "", "partner quota exceeded: the account has no credit left; top it up"},
	"10": {TemporaryFault, "", "too many existing binds"},
	"11": {ConfigFault, "", "the account is not enabled for the HTTP API: ask Vonage to enable it"},
	"12": {ConfigFault, "", "message too long: shorten site_name or message"},
	"14": {ConfigFault, "", "invalid signature: check signature_secret and signature_method against the dashboard"},
	"15": {ConfigFault, "", "invalid sender address: from is not allowed for this account or destination"},
	"22": {ConfigFault, "", "invalid network code"},
	"23": {ConfigFault, "", "invalid callback URL: check public_url"},
	// A demo account texts only the numbers whitelisted in its dashboard: the operator's to fix,
	// met only by some numbers.
	"29": {DestinationFault, "", "non-whitelisted destination: the account is a demo one; add the number in the dashboard, or add credit"},
	"32": {ConfigFault, "", "a signature and api_secret were both sent"},
	"33": {NumberFault, "invalid", "the number is de-activated"},
}

// vonageAccountRefusals are the codes that refuse the account itself: every message fails until
// the operator acts (credentials, barred, no credit, API not enabled, signature).
var vonageAccountRefusals = map[string]bool{"4": true, "8": true, "9": true, "11": true, "14": true}

func vonageError(code, text string) *SendError {
	e, ok := vonageErrors[code]
	se := &SendError{Fault: e.fault, Reason: e.reason, Detail: e.detail, Account: vonageAccountRefusals[code]}
	if !ok {
		se.Fault, se.Detail = ConfigFault, "refused"
	}
	se.Detail += " (status " + scrubbed(code) + ")"
	if text = scrubbed(text); text != "" {
		se.Detail += ": " + text
	}
	return se
}

// ReceiptsEnabled is true: Vonage posts a delivery receipt to each message's callback.
func (s *Vonage) ReceiptsEnabled() bool { return true }

// ReadReceipt reads a receipt, posted as JSON (as the API's specification has it) or as a form
// (the dashboard's POST method). With signature_secret its sig must verify over every other
// field; without, the callback's token alone authenticates it. The specification states no
// tolerance for its timestamp (not found), so none is enforced: the token, which dies with the
// code, bounds a replay, and a replayed receipt cannot move the state back.
func (s *Vonage) ReadReceipt(r *http.Request, _, _ string) (Receipt, error) {
	params, err := vonageReceiptParams(r)
	if err != nil {
		return Receipt{}, err
	}
	if s.SignatureSecret != "" && !validVonageSignature(s.SignatureMethod, s.SignatureSecret, params) {
		return Receipt{}, ErrForgedReceipt
	}
	return vonageReceipt(params["status"], params["err-code"]), nil
}

// UnmarshalCaddyfile reads the vonage sender's block:
//
//	sender vonage {
//		api_key          {env.VONAGE_API_KEY}          # required
//		api_secret       {env.VONAGE_API_SECRET}       # required, unless signature_secret is given
//		from             +12015550100                  # required: a number, or a sender id such as ExampleCo
//		signature_secret {env.VONAGE_SIGNATURE_SECRET} # signs requests and verifies receipts
//		signature_method md5hash                       # or md5, sha1, sha256, sha512 (HMAC); as the dashboard says
//		base_url         https://rest.nexmo.com
//		timeout          10s
//	}
func (s *Vonage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "vonage sender", map[string]func() error{
		"api_key":          func() error { return oneString(d, &s.APIKey) },
		"api_secret":       func() error { return oneString(d, &s.APISecret) },
		"from":             func() error { return oneString(d, &s.From) },
		"signature_secret": func() error { return oneString(d, &s.SignatureSecret) },
		"signature_method": func() error { return oneString(d, &s.SignatureMethod) },
		"base_url":         func() error { return oneString(d, &s.BaseURL) },
		"timeout":          func() error { return oneDuration(d, &s.Timeout) },
		"voice":            func() error { return noValue(d, &s.Voice) },
	})
}

var (
	_ Sender                = (*Vonage)(nil)
	_ ReceiptReader         = (*Vonage)(nil)
	_ caddy.Provisioner     = (*Vonage)(nil)
	_ caddy.Validator       = (*Vonage)(nil)
	_ caddy.CleanerUpper    = (*Vonage)(nil)
	_ caddyfile.Unmarshaler = (*Vonage)(nil)
)
