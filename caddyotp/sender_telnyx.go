package caddyotp

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Telnyx{})
}

// DefaultTelnyxBaseURL is Telnyx's API.
const DefaultTelnyxBaseURL = "https://api.telnyx.com"

// telnyxTolerance is how far a receipt's telnyx-timestamp may be from now, either way: the
// tolerance of Telnyx's own libraries.
const telnyxTolerance = 5 * time.Minute

// Telnyx sends SMS through Telnyx's Messaging API v2: POST {base_url}/v2/messages, JSON, with
// the API key as a bearer token. Telnyx signs its delivery webhooks with Ed25519; with the
// account's public_key the gate asks for them and verifies each. Every field takes
// placeholders such as {env.TELNYX_API_KEY}, resolved at Provision.
type Telnyx struct {
	// An API key of the account (Mission Control, API Keys). Never logged.
	APIKey string `json:"api_key,omitempty"`
	// The number (E.164), short code or alphanumeric sender id messages come from.
	From string `json:"from,omitempty"`
	// A messaging profile: instead of from, its number pool picks the number; with an
	// alphanumeric from, the profile it is sent under (Telnyx requires one).
	MessagingProfileID string `json:"messaging_profile_id,omitempty"`
	// The account's public key (base64, Mission Control, Keys & Credentials): verifies receipts.
	// Without it no receipts are asked for.
	PublicKey string `json:"public_key,omitempty"`
	// The API's base URL. Default DefaultTelnyxBaseURL.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Refused at load: see Validate.
	Voice bool `json:"voice,omitempty"`

	endpoint string
	key      ed25519.PublicKey
	api      *restClient
	logger   *zap.Logger
	now      func() time.Time

	unset []string // the unset {env.VAR}s of api_key
}

// CaddyModule returns the Caddy module information.
func (Telnyx) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.telnyx",
		New: func() caddy.Module { return new(Telnyx) },
	}
}

// Provision resolves placeholders, reads the public key and prepares a keep-alive HTTP client.
// It makes no request.
func (s *Telnyx) Provision(ctx caddy.Context) error {
	s.logger, s.now = ctx.Logger(), time.Now
	repl := caddy.NewReplacer()
	s.APIKey, s.unset = resolved(repl, s.APIKey)
	for _, f := range []*string{&s.From, &s.MessagingProfileID, &s.PublicKey, &s.BaseURL} {
		*f, _ = resolved(repl, *f)
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.BaseURL == "" {
		s.BaseURL = DefaultTelnyxBaseURL
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	if b, err := base64.StdEncoding.DecodeString(s.PublicKey); err == nil && len(b) == ed25519.PublicKeySize {
		s.key = ed25519.PublicKey(b)
	}
	s.endpoint = s.BaseURL + "/v2/messages"
	s.api = newRestClient("telnyx", time.Duration(s.Timeout))
	if s.PublicKey == "" {
		s.logger.Warn("telnyx sender: no public_key: delivery receipts are off, so the code page cannot say whether a code was delivered; copy the public key from Mission Control (Keys & Credentials)")
	}
	return nil
}

// Validate reports missing credentials, sender, a malformed public key and base URL, and
// refuses voice. It echoes no value that could be a secret pasted into the wrong field.
func (s *Telnyx) Validate() error {
	if s.APIKey == "" {
		return errors.New("telnyx sender: api_key" + emptyBecause(s.unset))
	}
	alphanumeric := len(s.From) <= 11 && alphanumericSender.MatchString(s.From)
	switch {
	case s.From == "" && s.MessagingProfileID == "":
		return errors.New("telnyx sender: give from (a number of the account in E.164, e.g. +12015550100) or messaging_profile_id (whose number pool picks the number)")
	case alphanumeric && s.MessagingProfileID == "":
		return fmt.Errorf("telnyx sender: the alphanumeric from %q needs messaging_profile_id: Telnyx sends a sender id only under a messaging profile", s.From)
	case s.From != "" && !alphanumeric && !shortCode(s.From):
		if _, _, err := normalizePhone(s.From, ""); err != nil {
			return fmt.Errorf("telnyx sender: from %q is neither a phone number in E.164 (e.g. +12015550100), a short code, nor an alphanumeric sender id (up to 11 letters and digits)", s.From)
		}
	}
	if s.PublicKey != "" && s.key == nil {
		return fmt.Errorf("telnyx sender: public_key (%d characters) is not a base64 Ed25519 public key (44 characters); copy it from Mission Control (Keys & Credentials), not an API key", len(s.PublicKey))
	}
	if s.Voice {
		// Call Control dials (POST /v2/calls), and speaks (POST /v2/calls/{id}/actions/speak) only
		// once the call is answered, which Telnyx reports by webhook: the gate takes no such
		// webhooks, and it serves call scripts in RCML, which Telnyx does not fetch.
		return errors.New("telnyx sender: voice is not offered: a Telnyx call speaks only after its call.answered webhook, which the gate does not take; remove voice, or put a sender that can call (twilio, restcomm) after telnyx in a failover")
	}
	return checkBaseURL("telnyx sender", "base_url", s.BaseURL, DefaultTelnyxBaseURL)
}

// shortCode says whether from is a short code: 3 to 8 digits.
func shortCode(from string) bool {
	if len(from) < 3 || len(from) > 8 {
		return false
	}
	_, err := strconv.ParseUint(from, 10, 32)
	return err == nil
}

// Cleanup closes idle connections to the API.
func (s *Telnyx) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// Send posts one SMS, with the receipt URL as webhook_url when receipts are on. Telnyx picks
// the encoding itself (encoding auto: GSM-7, else UCS-2).
func (s *Telnyx) Send(ctx context.Context, msg Message) (Sent, error) {
	body := map[string]string{"to": msg.To, "text": msg.Body}
	if s.From != "" {
		body["from"] = s.From
	}
	if s.MessagingProfileID != "" {
		body["messaging_profile_id"] = s.MessagingProfileID
	}
	receipts := s.ReceiptsEnabled() && msg.Receipts != nil
	if receipts {
		if cb := msg.Receipts("telnyx"); cb != "" {
			body["webhook_url"] = cb
		} else {
			receipts = false
		}
	}
	b, _ := json.Marshal(body)
	ans, err := s.api.post(ctx, s.endpoint, "application/json", b, http.Header{"Authorization": {"Bearer " + s.APIKey}})
	if err != nil {
		return Sent{Provider: "telnyx"}, err
	}
	if ans.status >= 200 && ans.status < 300 { // which 2xx is not confirmed: 200, 201 or 202
		var accepted struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.Unmarshal(ans.body, &accepted)
		return Sent{ID: accepted.Data.ID, Provider: "telnyx", Receipts: receipts}, nil
	}
	se := telnyxError(ans)
	se.Provider, se.Status = "telnyx", ans.status
	return Sent{Provider: "telnyx"}, se
}

// telnyxErr is one of an answer's or a webhook's errors[].
type telnyxErr struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Source struct {
		Pointer string `json:"pointer"`
	} `json:"source"`
}

// telnyxNumberErrors are Telnyx's error codes that belong to the destination number, with
// their reason (SendError.Reason) and meaning. The 403xx table of request errors was only
// partly read; codes not listed here are the configuration's.
var telnyxNumberErrors = map[string][2]string{
	"40300": {"blocked", "the recipient replied STOP to this sender"},
	"10002": {"invalid", "not a valid phone number"},
	"10016": {"invalid", "not a phone number in +E.164"},
	"40001": {"landline", "not routable (a landline?)"},
	"40012": {"invalid", "invalid destination number"},
}

// telnyxError reads an error answer ({"errors":[{"code":"10011","title":...}]}): 429 and 5xx,
// 10007 and 10008 are temporary; the number's codes (telnyxNumberErrors) are the number's
// unless they point at from; anything else (10009 credentials, 10010 permissions, 40013 the
// source number) is the configuration's.
func telnyxError(ans answer) *SendError {
	var body struct {
		Errors []telnyxErr `json:"errors"`
	}
	_ = json.Unmarshal(ans.body, &body)
	var e telnyxErr
	if len(body.Errors) > 0 {
		e = body.Errors[0]
	}
	se := httpTrouble(ans.status, ans.header)
	number, isNumber := telnyxNumberErrors[e.Code]
	switch {
	case se != nil:
	case e.Code == "10007" || e.Code == "10008" || e.Code == "10011":
		se = &SendError{Fault: TemporaryFault, Detail: "provider trouble"}
	case isNumber && e.Source.Pointer != "/from":
		se = &SendError{Fault: NumberFault, Reason: number[0], Detail: number[1]}
	case ans.status == http.StatusUnauthorized || e.Code == "10009":
		se = &SendError{Detail: "credentials refused: check api_key"}
	case ans.status == http.StatusForbidden || e.Code == "10010":
		se = &SendError{Detail: "not authorized: check the API key's permissions, from and messaging_profile_id"}
	case e.Code == "40013" || e.Source.Pointer == "/from":
		se = &SendError{Detail: "the source number is refused: check from and messaging_profile_id"}
	default:
		se = &SendError{Detail: "refused"}
	}
	if e.Code != "" {
		se.Detail += " (error " + scrubbed(e.Code) + ")"
	}
	for _, text := range []string{e.Title, e.Detail} {
		if text = scrubbed(text); text != "" {
			se.Detail += ": " + text
		}
	}
	return se
}

// ReceiptsEnabled says whether receipts can be verified: there is a public key.
func (s *Telnyx) ReceiptsEnabled() bool { return s.key != nil }

// ReadReceipt reads a delivery webhook once its telnyx-signature-ed25519 verifies with
// public_key over telnyx-timestamp, "|" and the raw body, and the timestamp is within 5
// minutes of now.
func (s *Telnyx) ReadReceipt(r *http.Request, _, _ string) (Receipt, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return Receipt{}, err
	}
	if !validTelnyxSignature(s.key, r.Header.Get("telnyx-timestamp"), body, r.Header.Get("telnyx-signature-ed25519"), s.now()) {
		return Receipt{}, ErrForgedReceipt
	}
	var event struct {
		Data struct {
			EventType string `json:"event_type"`
			Payload   struct {
				To []struct {
					Status string `json:"status"`
				} `json:"to"`
				Errors []telnyxErr `json:"errors"`
			} `json:"payload"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &event); err != nil {
		return Receipt{}, err
	}
	status := ""
	if len(event.Data.Payload.To) > 0 {
		status = event.Data.Payload.To[0].Status
	}
	return telnyxReceipt(status, event.Data.Payload.Errors), nil
}

// telnyxReceipt maps a webhook's status: delivered; delivery_failed, sending_failed and
// expired are failures, with their first error; sent is handed to the carrier; queued,
// sending and delivery_unconfirmed (the carrier gave no receipt) say nothing new.
func telnyxReceipt(status string, errs []telnyxErr) Receipt {
	switch status {
	case "delivered":
		return Receipt{Status: ReceiptDelivered}
	case "sent":
		return Receipt{Status: ReceiptSent}
	case "delivery_failed", "sending_failed", "expired":
		reason := status
		if len(errs) > 0 {
			reason += ": " + scrubbed(errs[0].Title) + " (error " + scrubbed(errs[0].Code) + ")"
		}
		return Receipt{Status: ReceiptFailed, Reason: reason}
	}
	return Receipt{Status: ReceiptPending}
}

// validTelnyxSignature checks an Ed25519 signature (base64) of timestamp + "|" + body with key,
// and that timestamp (Unix seconds) is within telnyxTolerance of now.
func validTelnyxSignature(key ed25519.PublicKey, timestamp string, body []byte, signature string, now time.Time) bool {
	if len(key) != ed25519.PublicKeySize || timestamp == "" || signature == "" {
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > telnyxTolerance || d < -telnyxTolerance {
		return false
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(key, append([]byte(timestamp+"|"), body...), sig)
}

// UnmarshalCaddyfile reads the telnyx sender's block:
//
//	sender telnyx {
//		api_key              {env.TELNYX_API_KEY}    # required
//		from                 +12015550100            # or: messaging_profile_id (both for a sender id)
//		messaging_profile_id {env.TELNYX_PROFILE_ID}
//		public_key           {env.TELNYX_PUBLIC_KEY} # verifies receipts; without it none are asked for
//		base_url             https://api.telnyx.com
//		timeout              10s
//	}
func (s *Telnyx) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "telnyx sender", map[string]func() error{
		"api_key":              func() error { return oneString(d, &s.APIKey) },
		"from":                 func() error { return oneString(d, &s.From) },
		"messaging_profile_id": func() error { return oneString(d, &s.MessagingProfileID) },
		"public_key":           func() error { return oneString(d, &s.PublicKey) },
		"base_url":             func() error { return oneString(d, &s.BaseURL) },
		"timeout":              func() error { return oneDuration(d, &s.Timeout) },
		"voice":                func() error { return noValue(d, &s.Voice) },
	})
}

var (
	_ Sender                = (*Telnyx)(nil)
	_ ReceiptReader         = (*Telnyx)(nil)
	_ caddy.Provisioner     = (*Telnyx)(nil)
	_ caddy.Validator       = (*Telnyx)(nil)
	_ caddy.CleanerUpper    = (*Telnyx)(nil)
	_ caddyfile.Unmarshaler = (*Telnyx)(nil)
)
