package caddyotp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Restcomm{})
}

// DefaultRestcommBaseURL is Restcomm's hosted API.
const DefaultRestcommBaseURL = "https://cloud.restcomm.com/restcomm/2012-04-24"

// Restcomm sends SMS through the Restcomm REST API
// (POST {base_url}/Accounts/{account_sid}/SMS/Messages.json, HTTP Basic auth, form-encoded).
// Every field takes placeholders such as {env.RESTCOMM_AUTH_TOKEN}, resolved at Provision,
// so secrets never need to be written in the config.
type Restcomm struct {
	// The account's SID (AC followed by 32 hex digits); the HTTP Basic user name.
	AccountSID string `json:"account_sid,omitempty"`
	// The account's auth token; the HTTP Basic password. Never logged.
	AuthToken string `json:"auth_token,omitempty"`
	// The SMS-enabled number of the account that messages come from, in E.164.
	From string `json:"from,omitempty"`
	// The API's base URL, up to and including the API version. Default DefaultRestcommBaseURL.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Offer a voice call that reads the code, once a visitor has asked for a second code.
	Voice bool `json:"voice,omitempty"`

	endpoint string
	calls    string
	api      *apiClient
	logger   *zap.Logger

	unset struct{ sid, token []string } // the unset {env.VAR}s of account_sid and auth_token
}

// CaddyModule returns the Caddy module information.
func (Restcomm) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.restcomm",
		New: func() caddy.Module { return new(Restcomm) },
	}
}

// Provision resolves placeholders and prepares a keep-alive HTTP client. It makes no request.
func (s *Restcomm) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.AccountSID, s.unset.sid = resolved(repl, s.AccountSID)
	s.AuthToken, s.unset.token = resolved(repl, s.AuthToken)
	s.From = strings.TrimSpace(repl.ReplaceKnown(s.From, ""))
	s.BaseURL = strings.TrimRight(strings.TrimSpace(repl.ReplaceKnown(s.BaseURL, "")), "/")
	if s.BaseURL == "" {
		s.BaseURL = DefaultRestcommBaseURL
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	s.endpoint = s.BaseURL + "/Accounts/" + url.PathEscape(s.AccountSID) + "/SMS/Messages.json"
	s.calls = s.BaseURL + "/Accounts/" + url.PathEscape(s.AccountSID) + "/Calls.json"
	s.api = newAPIClient("restcomm", s.AccountSID, s.AuthToken, time.Duration(s.Timeout), restcommError)
	return nil
}

// Validate reports missing credentials and a malformed base URL or sender number.
func (s *Restcomm) Validate() error {
	if s.AccountSID == "" {
		return errors.New("restcomm sender: account_sid" + emptyBecause(s.unset.sid))
	}
	if s.AuthToken == "" {
		return errors.New("restcomm sender: auth_token" + emptyBecause(s.unset.token))
	}
	if !accountSID.MatchString(s.AccountSID) && !uuidSID.MatchString(s.AccountSID) {
		// Not echoed: a token pasted into the wrong field would land in the log.
		return fmt.Errorf("restcomm sender: account_sid (%d characters) is neither AC and 32 hex digits (Restcomm, Twilio) nor a UUID (a SignalWire project id); copy it from the provider's console", len(s.AccountSID))
	}
	if s.From == "" {
		return errors.New("restcomm sender: from is empty: give the account's SMS number in E.164, e.g. +12015550100")
	}
	alphanumeric := len(s.From) <= 11 && alphanumericSender.MatchString(s.From)
	if alphanumeric && s.Voice {
		return fmt.Errorf("restcomm sender: voice needs from to be a phone number that can call, not the sender id %q", s.From)
	}
	if !strings.HasPrefix(s.From, "client:") && !alphanumeric {
		if _, _, err := normalizePhone(s.From, ""); err != nil {
			return fmt.Errorf("restcomm sender: from %q is neither a phone number in E.164 (e.g. +12015550100) nor an alphanumeric sender id (up to 11 letters, digits and spaces, e.g. ExampleCo)", s.From)
		}
	}
	u, err := url.Parse(s.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("restcomm sender: base_url %q must be an http(s) URL such as %s", s.BaseURL, DefaultRestcommBaseURL)
	}
	if u.User != nil {
		return errors.New("restcomm sender: base_url must not hold credentials; use account_sid and auth_token")
	}
	return nil
}

// Cleanup closes idle connections to the API.
func (s *Restcomm) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// Send posts one SMS. Restcomm answers 200 when it has queued the message; every other answer
// becomes a *SendError: 401/403/400 are configuration or input problems that retrying will not
// fix, 5xx, 429, timeouts and dropped connections are temporary.
func (s *Restcomm) Send(ctx context.Context, msg Message) (Sent, error) {
	form := url.Values{"From": {s.From}, "To": {msg.To}, "Body": {msg.Body}}
	if !isGSM7(msg.Body) {
		form.Set("Encoding", "UCS-2") // Restcomm's default, GSM, would mangle the text
	}
	return s.api.send(ctx, s.endpoint, form, msg, true)
}

// ReceiptsEnabled is true: Restcomm posts delivery receipts to a StatusCallback.
func (s *Restcomm) ReceiptsEnabled() bool { return true }

// ReadReceipt reads every receipt: Restcomm does not sign them, so the callback URL's sealed,
// single-flow token, which dies with the code, is their only authentication.
func (s *Restcomm) ReadReceipt(r *http.Request, _, _ string) (Receipt, error) {
	return readFormReceipt(r, func(url.Values) bool { return true })
}

// VoiceEnabled reports the `voice` option.
func (s *Restcomm) VoiceEnabled() bool { return s.Voice }

// Call places a voice call (POST {base_url}/Accounts/{sid}/Calls.json) whose script Restcomm
// fetches from script with POST when the call is answered. It is available with `voice`.
func (s *Restcomm) Call(ctx context.Context, to, script string) (Sent, error) {
	if !s.Voice {
		return Sent{}, &SendError{Provider: "restcomm", Detail: "voice calls are off: add `voice` to the restcomm sender"}
	}
	return s.api.call(ctx, s.calls, s.From, to, script)
}

// namesTo finds the To field named in a Restcomm error ("Invalid To number: ...").
var namesTo = regexp.MustCompile(`\bTo\b`)

// restcommError reads an error answer: 401/403/400 are configuration or input problems that
// retrying will not fix; 5xx and 429 are temporary.
func restcommError(status int, body []byte) *SendError {
	se := &SendError{Detail: responseDetail(status, body)}
	if status >= 500 || status == http.StatusTooManyRequests {
		se.Fault = TemporaryFault
	}
	// A 400 is a bad number or message. Only one that names To (and not From, nor a missing
	// field: "... can not be null.") is the visitor's number; anything else is the gate's own
	// configuration, which the next provider may not share.
	text := string(body)
	if status == http.StatusBadRequest && namesTo.MatchString(text) && !strings.Contains(text, "From") && !strings.Contains(text, "null") {
		se.Fault, se.Reason = NumberFault, "invalid"
	}
	return se
}

// transportDetail describes a failed round trip without the URL (url.Error would repeat it).
func transportDetail(ctx context.Context, err error) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "no answer before the timeout"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return "connection failed: " + err.Error()
}

// longDigits matches runs that could be a code or a phone number, which must not reach a log.
var longDigits = regexp.MustCompile(`\+?[0-9]{6,}`)

// responseDetail explains an error answer: what it means, then a short, scrubbed body prefix.
func responseDetail(status int, body []byte) string {
	var meaning string
	switch {
	case status == http.StatusUnauthorized:
		meaning = "credentials refused: check account_sid and auth_token"
	case status == http.StatusForbidden:
		var ext struct{ Message, Error string }
		if json.Unmarshal(body, &ext) == nil && ext.Error != "" {
			meaning = "refused by the provider (" + ext.Error + ")"
		} else {
			meaning = "account not active, or no permission on this account"
		}
	case status == http.StatusBadRequest:
		meaning = "bad request (number or message refused)"
	case status >= 500:
		meaning = "provider failure"
	default:
		meaning = "unexpected answer"
	}
	if prefix := scrubbed(string(body)); prefix != "" {
		return meaning + ": " + prefix
	}
	return meaning
}

// scrubbed is a bounded prefix of an answer's text for the log: control characters blanked,
// and runs of digits that could be a code or a phone number redacted.
// The digits are redacted before the text is cut, so that a code the cut falls in leaves none
// of its digits behind.
func scrubbed(text string) string {
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	text = longDigits.ReplaceAllString(text, "[redacted]")
	if len(text) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut]
	}
	return strings.TrimSpace(text)
}

var (
	accountSID = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	uuidSID    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// an alphanumeric sender id: 1 to 11 letters, digits and spaces, at least one letter
	alphanumericSender = regexp.MustCompile(`^(?:[A-Za-z0-9 ]*[A-Za-z][A-Za-z0-9 ]*)$`)
)

// UnmarshalCaddyfile reads the restcomm sender's block:
//
//	sender restcomm {
//	    account_sid {env.RESTCOMM_ACCOUNT_SID}   # required
//	    auth_token  {env.RESTCOMM_AUTH_TOKEN}    # required
//	    from        +12015550100                 # required: an SMS-enabled number of the account
//	    base_url    https://cloud.restcomm.com/restcomm/2012-04-24
//	    timeout     10s
//	    voice                                    # offer "call me instead" (needs public_url)
//	}
func (s *Restcomm) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "restcomm sender", map[string]func() error{
		"account_sid": func() error { return oneString(d, &s.AccountSID) },
		"auth_token":  func() error { return oneString(d, &s.AuthToken) },
		"from":        func() error { return oneString(d, &s.From) },
		"base_url":    func() error { return oneString(d, &s.BaseURL) },
		"timeout":     func() error { return oneDuration(d, &s.Timeout) },
		"voice":       func() error { return noValue(d, &s.Voice) },
	})
}

var (
	_ Sender                = (*Restcomm)(nil)
	_ Caller                = (*Restcomm)(nil)
	_ ReceiptReader         = (*Restcomm)(nil)
	_ caddy.Provisioner     = (*Restcomm)(nil)
	_ caddy.Validator       = (*Restcomm)(nil)
	_ caddy.CleanerUpper    = (*Restcomm)(nil)
	_ caddyfile.Unmarshaler = (*Restcomm)(nil)
)
