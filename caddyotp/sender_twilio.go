package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Twilio{})
}

// DefaultTwilioBaseURL is Twilio's API. SignalWire serves the same API (its "compatibility
// API") under https://SPACE.signalwire.com/api/laml/2010-04-01.
const DefaultTwilioBaseURL = "https://api.twilio.com/2010-04-01"

// Twilio sends SMS through a Twilio-style Messages API (Twilio, SignalWire):
// POST {base_url}/Accounts/{account_sid}/Messages.json, HTTP Basic auth, form-encoded, 201 on
// success. Every field takes placeholders such as {env.TWILIO_AUTH_TOKEN}, resolved at
// Provision, so secrets never need to be written in the config.
type Twilio struct {
	// The account's SID (AC and 32 hex digits; SignalWire: the project id, a UUID), in the path.
	AccountSID string `json:"account_sid,omitempty"`
	// The account's auth token (SignalWire: an API token); the HTTP Basic password. Never logged.
	AuthToken string `json:"auth_token,omitempty"`
	// Instead of auth_token: an API key's SID (SK and 32 hex digits) and secret.
	APIKey    string `json:"api_key,omitempty"`
	APISecret string `json:"api_secret,omitempty"`
	// The number (E.164) or alphanumeric sender id messages come from; or
	// messaging_service_sid (MG and 32 hex digits), which picks the number itself.
	From                string `json:"from,omitempty"`
	MessagingServiceSID string `json:"messaging_service_sid,omitempty"`
	// The API's base URL, up to and including the API version. Default DefaultTwilioBaseURL.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Offer a voice call that reads the code, once a visitor has asked for a second code.
	Voice bool `json:"voice,omitempty"`
	// The key the provider signs delivery receipts with (X-Twilio-Signature): Twilio signs
	// with the account's auth token, SignalWire with the project's Signing Key. Default:
	// auth_token. Without one (api_key and no signing_key) no receipts are asked for.
	SigningKey string `json:"signing_key,omitempty"`

	messages string
	calls    string
	api      *apiClient
	logger   *zap.Logger

	unset struct{ sid, token []string } // the unset {env.VAR}s of account_sid and auth_token
}

// CaddyModule returns the Caddy module information.
func (Twilio) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.twilio",
		New: func() caddy.Module { return new(Twilio) },
	}
}

// Provision resolves placeholders and prepares a keep-alive HTTP client. It makes no request.
func (s *Twilio) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.AccountSID, s.unset.sid = resolved(repl, s.AccountSID)
	s.AuthToken, s.unset.token = resolved(repl, s.AuthToken)
	for _, f := range []*string{&s.APIKey, &s.APISecret, &s.From, &s.MessagingServiceSID, &s.BaseURL, &s.SigningKey} {
		*f, _ = resolved(repl, *f)
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.BaseURL == "" {
		s.BaseURL = DefaultTwilioBaseURL
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	if s.SigningKey == "" {
		s.SigningKey = s.AuthToken
	}
	account := s.BaseURL + "/Accounts/" + url.PathEscape(s.AccountSID)
	s.messages, s.calls = account+"/Messages.json", account+"/Calls.json"
	user, pass := s.AccountSID, s.AuthToken
	if s.APIKey != "" {
		user, pass = s.APIKey, s.APISecret
	}
	s.api = newAPIClient("twilio", user, pass, time.Duration(s.Timeout), twilioError)
	if s.SigningKey == "" {
		s.logger.Warn("twilio sender: no signing_key (and no auth_token to default to): delivery receipts are off, so the code page cannot say whether a code was delivered")
	}
	return nil
}

var (
	apiKeySID    = regexp.MustCompile(`^SK[0-9a-fA-F]{32}$`)
	messagingSID = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
)

// Validate reports missing or malformed credentials, sender and base URL. It echoes no value
// that could be a secret pasted into the wrong field.
func (s *Twilio) Validate() error {
	if s.AccountSID == "" {
		return errors.New("twilio sender: account_sid" + emptyBecause(s.unset.sid))
	}
	if apiKeySID.MatchString(s.AccountSID) {
		return errors.New("twilio sender: account_sid is an API key (SK...): put it in api_key, with its secret in api_secret, and the account's SID (AC...) in account_sid")
	}
	if !accountSID.MatchString(s.AccountSID) && !uuidSID.MatchString(s.AccountSID) {
		return fmt.Errorf("twilio sender: account_sid (%d characters) is neither AC and 32 hex digits (Twilio) nor a UUID (a SignalWire project id); copy it from the provider's console", len(s.AccountSID))
	}
	switch {
	case s.APIKey == "" && s.APISecret == "" && s.AuthToken == "":
		return errors.New("twilio sender: auth_token" + emptyBecause(s.unset.token) + "; or give api_key and api_secret")
	case (s.APIKey == "") != (s.APISecret == ""):
		return errors.New("twilio sender: api_key and api_secret go together; give both, or auth_token alone")
	}
	if s.APIKey != "" && !apiKeySID.MatchString(s.APIKey) {
		return fmt.Errorf("twilio sender: api_key (%d characters) is not SK and 32 hex digits; the key's secret goes in api_secret", len(s.APIKey))
	}
	switch {
	case s.From == "" && s.MessagingServiceSID == "":
		return errors.New("twilio sender: give from (the account's number in E.164, e.g. +12015550100, or a sender id) or messaging_service_sid")
	case s.From != "" && s.MessagingServiceSID != "":
		return errors.New("twilio sender: give from or messaging_service_sid, not both (the messaging service picks the number)")
	case s.MessagingServiceSID != "" && !messagingSID.MatchString(s.MessagingServiceSID):
		return fmt.Errorf("twilio sender: messaging_service_sid %q is not MG and 32 hex digits", s.MessagingServiceSID)
	}
	if s.From != "" {
		alphanumeric := len(s.From) <= 11 && alphanumericSender.MatchString(s.From)
		if !alphanumeric {
			if _, _, err := normalizePhone(s.From, ""); err != nil {
				return fmt.Errorf("twilio sender: from %q is neither a phone number in E.164 (e.g. +12015550100) nor an alphanumeric sender id (up to 11 letters, digits and spaces)", s.From)
			}
		} else if s.Voice {
			return fmt.Errorf("twilio sender: voice needs from to be a phone number that can call, not the sender id %q", s.From)
		}
	}
	if s.Voice && s.From == "" {
		return errors.New("twilio sender: voice needs from, a number of the account that can call (a messaging service cannot)")
	}
	u, err := url.Parse(s.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("twilio sender: base_url %q must be an http(s) URL such as %s (SignalWire: https://SPACE.signalwire.com/api/laml/2010-04-01)", s.BaseURL, DefaultTwilioBaseURL)
	}
	if u.User != nil {
		return errors.New("twilio sender: base_url must not hold credentials; use account_sid and auth_token")
	}
	return nil
}

// Cleanup closes idle connections to the API.
func (s *Twilio) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// Send posts one SMS. The API answers 201 when it has queued the message; every other answer
// becomes a *SendError, classified by the error code in its JSON body (twilioError).
func (s *Twilio) Send(ctx context.Context, msg Message) (Sent, error) {
	form := url.Values{"To": {msg.To}, "Body": {msg.Body}}
	if s.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", s.MessagingServiceSID)
	} else {
		form.Set("From", s.From)
	}
	if msg.Validity > 0 {
		secs := int64((msg.Validity + time.Second - 1) / time.Second)
		form.Set("ValidityPeriod", strconv.FormatInt(min(max(secs, 1), 36000), 10))
	}
	return s.api.send(ctx, s.messages, form, msg, s.ReceiptsEnabled())
}

// VoiceEnabled reports the `voice` option.
func (s *Twilio) VoiceEnabled() bool { return s.Voice }

// Call places a voice call (POST {base_url}/Accounts/{sid}/Calls.json) whose script the
// provider fetches from script with POST when the call is answered.
func (s *Twilio) Call(ctx context.Context, to, script string) (Sent, error) {
	if !s.Voice {
		return Sent{}, &SendError{Provider: "twilio", Detail: "voice calls are off: add `voice` to the twilio sender"}
	}
	return s.api.call(ctx, s.calls, s.From, to, script)
}

// ReceiptsEnabled says whether receipts can be verified: there is a key to check them with.
func (s *Twilio) ReceiptsEnabled() bool { return s.SigningKey != "" }

// ReadReceipt reads a receipt once its X-Twilio-Signature verifies with signing_key, in constant
// time, over callback and the posted fields.
func (s *Twilio) ReadReceipt(r *http.Request, _, callback string) (Receipt, error) {
	return readFormReceipt(r, func(form url.Values) bool {
		return validTwilioSignature(s.SigningKey, callback, form, r.Header.Get("X-Twilio-Signature"))
	})
}

// twilioNumberErrors are the API's errors that belong to the destination number, SMS and
// calls alike: every provider would refuse it, so failover stops, and whoever types such
// numbers must not open a breaker. Each has its reason (SendError.Reason) and its meaning.
var twilioNumberErrors = map[int][2]string{
	21211: {"invalid", "not a valid phone number"},
	21217: {"invalid", "not a valid phone number"},
	21265: {"invalid", "a short code, which cannot be texted"},
	21266: {"invalid", "the sender's own number"},
	13223: {"invalid", "not a valid phone number to call"},
	13224: {"invalid", "a number the provider cannot call"},
	21612: {"landline", "not reachable by SMS"},
	21614: {"landline", "not a mobile number"},
	21610: {"blocked", "the recipient replied STOP to this sender"},
}

// twilioRegionErrors are the geographic permissions refusing the number's region, for SMS
// (21408) and calls (21215): the operator's anti-fraud control.
var twilioRegionErrors = map[int]bool{21408: true, 21215: true}

// twilioError reads a Twilio-style JSON error ({"code":21211,"message":"...","status":400})
// and classifies it: the visitor's number (twilioNumberErrors), the number's region
// (twilioRegionErrors), temporary (429, 5xx), or a configuration fault (everything else: 401
// credentials, missing fields, an unknown account).
func twilioError(status int, body []byte) *SendError {
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(body, &e)
	se := &SendError{}
	var meaning string
	number, isNumber := twilioNumberErrors[e.Code]
	switch {
	case status == http.StatusTooManyRequests || e.Code == 20429:
		se.Fault, meaning = TemporaryFault, "too many requests"
	case status >= 500:
		se.Fault, meaning = TemporaryFault, "provider failure"
	case status == http.StatusUnauthorized || e.Code == 20003:
		meaning = "credentials refused: check account_sid and auth_token (or api_key and api_secret)"
	case isNumber:
		se.Fault, se.Reason, meaning = NumberFault, number[0], number[1]
	case twilioRegionErrors[e.Code]:
		se.Fault, meaning = DestinationFault, "no permission to send to this region: enable it in the provider's geographic permissions"
	case e.Code == 21602 || e.Code == 21603 || e.Code == 21604:
		meaning = "a required field is missing (Body, From or To): check from or messaging_service_sid"
	case status == http.StatusNotFound || e.Code == 20404:
		meaning = "not found: check account_sid and base_url"
	default:
		meaning = "refused"
	}
	detail := meaning
	if e.Code != 0 {
		detail += " (error " + strconv.Itoa(e.Code) + ")"
	}
	text := e.Message
	if text == "" {
		text = string(body)
	}
	if text = scrubbed(text); text != "" {
		detail += ": " + text
	}
	se.Detail = detail
	return se
}

// UnmarshalCaddyfile reads the twilio sender's block (Twilio, or SignalWire with its base_url):
//
//	sender twilio {
//	    account_sid {env.TWILIO_ACCOUNT_SID}     # required
//	    auth_token  {env.TWILIO_AUTH_TOKEN}      # or: api_key SK... and api_secret ...
//	    from        +12015550100                 # or: messaging_service_sid MG...
//	    base_url    https://api.twilio.com/2010-04-01
//	    timeout     10s
//	    signing_key {env.SIGNALWIRE_SIGNING_KEY} # verifies receipts; default auth_token
//	    voice                                    # offer "call me instead" (needs public_url)
//	}
func (s *Twilio) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "twilio sender", map[string]func() error{
		"account_sid":           func() error { return oneString(d, &s.AccountSID) },
		"auth_token":            func() error { return oneString(d, &s.AuthToken) },
		"api_key":               func() error { return oneString(d, &s.APIKey) },
		"api_secret":            func() error { return oneString(d, &s.APISecret) },
		"from":                  func() error { return oneString(d, &s.From) },
		"messaging_service_sid": func() error { return oneString(d, &s.MessagingServiceSID) },
		"base_url":              func() error { return oneString(d, &s.BaseURL) },
		"timeout":               func() error { return oneDuration(d, &s.Timeout) },
		"signing_key":           func() error { return oneString(d, &s.SigningKey) },
		"voice":                 func() error { return noValue(d, &s.Voice) },
	})
}

var (
	_ Sender                = (*Twilio)(nil)
	_ Caller                = (*Twilio)(nil)
	_ ReceiptReader         = (*Twilio)(nil)
	_ caddy.Provisioner     = (*Twilio)(nil)
	_ caddy.Validator       = (*Twilio)(nil)
	_ caddy.CleanerUpper    = (*Twilio)(nil)
	_ caddyfile.Unmarshaler = (*Twilio)(nil)
)

// twilioSignature is the X-Twilio-Signature of a callback: base64(HMAC-SHA1(key, the URL as
// given, followed by every POST field's name and value, fields sorted by name)).
func twilioSignature(key, callback string, form url.Values) string {
	names := make([]string, 0, len(form))
	for name := range form {
		names = append(names, name)
	}
	sort.Strings(names)
	m := hmac.New(sha1.New, []byte(key))
	m.Write([]byte(callback))
	for _, name := range names {
		for _, v := range form[name] {
			m.Write([]byte(name))
			m.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// validTwilioSignature compares signature with the expected one in constant time.
func validTwilioSignature(key, callback string, form url.Values, signature string) bool {
	if key == "" || signature == "" {
		return false
	}
	return hmac.Equal([]byte(twilioSignature(key, callback, form)), []byte(signature))
}
