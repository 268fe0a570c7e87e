package caddyotp

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Sinch{})
}

// Sinch sends SMS through Sinch's SMS REST API: POST {base_url}/xms/v1/{service_plan_id}/batches
// with Authorization: Bearer {api_token}, JSON, a batch of one recipient; the base is
// https://{region}.sms.api.sinch.com unless base_url says otherwise. Each message asks for its
// final per-recipient delivery report at the message's receipt URL. Sinch signs reports only
// when the account has a callback secret (ask Sinch's account manager for one): with
// callback_secret set, a report must carry x-sinch-webhook-signature =
// base64(HMAC-SHA256(secret, body + "." + nonce + "." + timestamp)); without it, the receipt
// URL's sealed, single-code token is their only authentication. Sinch's voice API is not
// offered: it is not described where this sender was written from.
type Sinch struct {
	// The service plan's id, in the path.
	ServicePlanID string `json:"service_plan_id,omitempty"`
	// The service plan's API token, sent as a Bearer token. Never logged.
	APIToken string `json:"api_token,omitempty"`
	// The sender: a number of the service plan (E.164) or an alphanumeric sender id. Empty
	// only for a service plan with an Automatic Default Originator.
	From string `json:"from,omitempty"`
	// The API's region: us (the default), eu, au, br or ca. Only us and eu hosts are confirmed
	// in Sinch's documentation as read; for another, a warning says to check base_url.
	Region string `json:"region,omitempty"`
	// Instead of region: the API's base URL, e.g. https://eu.sms.api.sinch.com.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// The account's SMS callback secret, which verifies signed delivery reports. Never logged.
	CallbackSecret string `json:"callback_secret,omitempty"`
	// Refused: see the type's comment.
	Voice bool `json:"voice,omitempty"`

	endpoint string
	api      *restClient
	logger   *zap.Logger
	unset    struct{ plan, token, secret []string }
}

// sinchRegions are the regions region takes; the API's own list of hosts is not confirmed
// beyond us and eu (sinchConfirmedRegions).
var (
	sinchRegions          = []string{"us", "eu", "au", "br", "ca"}
	sinchConfirmedRegions = []string{"us", "eu"}
)

// sinchReportTolerance bounds how old (or how far ahead) a signed report's timestamp may be.
// Sinch publishes no tolerance; a genuine report of a live code is younger than code_ttl
// (at most 10 minutes), so 15 minutes leaves room for clock skew and stops older replays.
const sinchReportTolerance = 15 * time.Minute

// CaddyModule returns the Caddy module information.
func (Sinch) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.sinch",
		New: func() caddy.Module { return new(Sinch) },
	}
}

// Provision resolves placeholders and prepares a keep-alive HTTP client. It makes no request.
func (s *Sinch) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.ServicePlanID, s.unset.plan = resolved(repl, s.ServicePlanID)
	s.APIToken, s.unset.token = resolved(repl, s.APIToken)
	s.CallbackSecret, s.unset.secret = resolved(repl, s.CallbackSecret)
	s.From, _ = resolved(repl, s.From)
	s.BaseURL, _ = resolved(repl, s.BaseURL)
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	s.Region = strings.ToLower(strings.TrimSpace(s.Region))
	base := s.BaseURL
	if base == "" {
		base = "https://" + cmp.Or(s.Region, "us") + ".sms.api.sinch.com"
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	s.endpoint = base + "/xms/v1/" + url.PathEscape(s.ServicePlanID) + "/batches"
	s.api = newRestClient("sinch", time.Duration(s.Timeout))
	if s.Region != "" && s.BaseURL == "" && slices.Contains(sinchRegions, s.Region) && !slices.Contains(sinchConfirmedRegions, s.Region) {
		s.logger.Warn("sinch sender: region " + s.Region + " makes the host " + s.Region + ".sms.api.sinch.com, which is not confirmed; if sends fail to connect, set base_url to the SMS API's URL shown in the Sinch dashboard")
	}
	if s.From == "" {
		s.logger.Warn("sinch sender: no from: Sinch picks the sender only for a service plan with an Automatic Default Originator; without one, every send is refused")
	}
	if s.CallbackSecret == "" && len(s.unset.secret) == 0 {
		s.logger.Info("sinch sender: no callback_secret: delivery reports are authenticated by their URL's token alone; ask Sinch for an SMS callback secret to have them signed")
	}
	return nil
}

// Validate reports missing or conflicting settings, without echoing a value that could be a
// secret.
func (s *Sinch) Validate() error {
	const what = "sinch sender"
	switch {
	case s.Voice:
		return errors.New(what + ": voice is not offered: Sinch's voice API is not supported by this sender; put a sender that can call (twilio, restcomm) in a failover with it")
	case s.ServicePlanID == "":
		return errors.New(what + ": service_plan_id" + emptyBecause(s.unset.plan))
	case strings.ContainsAny(s.ServicePlanID, "/?# "):
		return fmt.Errorf("%s: service_plan_id (%d characters) holds a character no id has; copy it from the Sinch dashboard (SMS, APIs)", what, len(s.ServicePlanID))
	case s.APIToken == "":
		return errors.New(what + ": api_token" + emptyBecause(s.unset.token))
	case len(s.unset.secret) > 0 && s.CallbackSecret == "":
		return errors.New(what + ": callback_secret" + emptyBecause(s.unset.secret))
	case s.Region != "" && s.BaseURL != "":
		return errors.New(what + ": give region or base_url, not both")
	case s.Region != "" && !slices.Contains(sinchRegions, s.Region):
		return fmt.Errorf("%s: region %q is not one of %s", what, s.Region, strings.Join(sinchRegions, ", "))
	}
	if s.From != "" && !(len(s.From) <= 11 && alphanumericSender.MatchString(s.From)) {
		if _, _, err := normalizePhone(s.From, ""); err != nil {
			return fmt.Errorf("%s: from %q is neither a phone number in E.164 (e.g. +12015550100) nor an alphanumeric sender id (up to 11 letters, digits and spaces)", what, s.From)
		}
	}
	if s.BaseURL != "" {
		return checkBaseURL(what, "base_url", s.BaseURL, "https://eu.sms.api.sinch.com")
	}
	return nil
}

// Cleanup closes idle connections to the API.
func (s *Sinch) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// sinchBatch is the body of POST .../batches for one text message.
type sinchBatch struct {
	From           string   `json:"from,omitempty"`
	To             []string `json:"to"`
	Body           string   `json:"body"`
	Type           string   `json:"type"`
	DeliveryReport string   `json:"delivery_report,omitempty"`
	CallbackURL    string   `json:"callback_url,omitempty"`
}

// Send posts a batch of one message. The batch's expire_at is not set: its format is not in
// the API description this sender follows.
func (s *Sinch) Send(ctx context.Context, msg Message) (Sent, error) {
	batch := sinchBatch{From: s.From, To: []string{msg.To}, Body: msg.Body, Type: "mt_text"}
	receipts := false
	if msg.Receipts != nil {
		if cb := msg.Receipts("sinch"); cb != "" {
			batch.DeliveryReport, batch.CallbackURL, receipts = "per_recipient_final", cb, true
		}
	}
	body, _ := json.Marshal(batch)
	header := http.Header{"Authorization": {"Bearer " + s.APIToken}, "Content-Type": {"application/json"}, "Accept": {"application/json"}}
	a, err := s.api.do(ctx, http.MethodPost, s.endpoint, header, body)
	if err != nil {
		return Sent{Provider: "sinch"}, err
	}
	if !a.ok() {
		return Sent{Provider: "sinch"}, s.refusal(a)
	}
	var created struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(a.body, &created) // the status code is the contract
	return Sent{ID: created.ID, Provider: "sinch", Receipts: receipts}, nil
}

// refusal classifies an answer outside 2xx by its status and its {"code", "text"} body.
func (s *Sinch) refusal(a answer) *SendError {
	se := s.api.statusFault(a)
	var e struct{ Code, Text string }
	_ = json.Unmarshal(a.body, &e)
	if se.Fault == ConfigFault {
		switch {
		case e.Code == "illegal_number_type":
			se.Fault, se.Reason, se.Detail = NumberFault, "invalid", "the number is of a type Sinch will not text"
		case a.status == http.StatusUnauthorized:
			se.Detail = "credentials refused: check api_token, and that it is the token of service_plan_id"
		case e.Code == "blocked_account":
			se.Detail = "the account is blocked: see the Sinch dashboard or ask Sinch's support"
		case a.status == http.StatusNotFound:
			se.Detail = "not found: check service_plan_id, and region or base_url (the plan's own region)"
		case a.status == http.StatusForbidden:
			se.Detail = "forbidden: check the service plan's settings and from"
		default:
			se.Detail = "request refused: check from"
		}
	}
	if text := scrubbed(strings.TrimSpace(e.Code + " " + e.Text)); text != "" {
		se.Detail += ": " + text
	}
	return se
}

// ReceiptsEnabled is true: every message asks for its final delivery report.
func (s *Sinch) ReceiptsEnabled() bool { return true }

// ReadReceipt reads a per-recipient delivery report, once its signature verifies when
// callback_secret is set. Sinch's reports may carry their status in any case (Delivered,
// DELIVERED); Unknown is final but says nothing of the phone, so it changes nothing.
func (s *Sinch) ReadReceipt(r *http.Request, _, _ string) (Receipt, error) {
	var report struct {
		Type   string `json:"type"`
		Status string `json:"status"`
		Code   int    `json:"code"`
	}
	body, err := readJSONBody(r, &report)
	if s.CallbackSecret != "" && !validSinchSignature(s.CallbackSecret, body, r.Header.Get("x-sinch-webhook-signature-nonce"),
		r.Header.Get("x-sinch-webhook-signature-timestamp"), r.Header.Get("x-sinch-webhook-signature"), time.Now()) {
		return Receipt{}, ErrForgedReceipt // checked before the body's JSON, so a forgery never learns more
	}
	if err != nil {
		return Receipt{}, err
	}
	if report.Type != "" && !strings.HasPrefix(report.Type, "recipient_delivery_report") {
		return Receipt{Status: ReceiptPending}, nil // a batch report: per-recipient ones were asked for
	}
	switch status := strings.ToLower(report.Status); status {
	case "delivered":
		return Receipt{Status: ReceiptDelivered}, nil
	case "dispatched":
		return Receipt{Status: ReceiptSent}, nil
	case "aborted", "rejected", "deleted", "failed", "expired", "cancelled":
		return Receipt{Status: ReceiptFailed, Reason: status + " (code " + strconv.Itoa(report.Code) + ")"}, nil
	}
	return Receipt{Status: ReceiptPending}, nil // queued, unknown, or a status this sender does not know
}

// sinchSignature is the x-sinch-webhook-signature of a report:
// base64(HMAC-SHA256(secret, body + "." + nonce + "." + timestamp)).
func sinchSignature(secret string, body []byte, nonce, timestamp string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	m.Write([]byte("." + nonce + "." + timestamp))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// validSinchSignature checks a report's signature in constant time, and that its timestamp (Unix
// seconds) is within sinchReportTolerance of now. The nonce is signed but not remembered: a
// replay within the tolerance can only repeat a state the report already set.
func validSinchSignature(secret string, body []byte, nonce, timestamp, signature string, now time.Time) bool {
	if secret == "" || signature == "" || nonce == "" {
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(ts, 0)); d > sinchReportTolerance || d < -sinchReportTolerance {
		return false
	}
	return hmac.Equal([]byte(sinchSignature(secret, body, nonce, timestamp)), []byte(signature))
}

// UnmarshalCaddyfile reads the sinch sender's block:
//
//	sender sinch {
//		service_plan_id {env.SINCH_SERVICE_PLAN_ID}   # required
//		api_token       {env.SINCH_API_TOKEN}         # required
//		from            +12015550100                  # a number of the plan, or a sender id
//		region          eu                            # us (default), eu, au, br, ca
//		base_url        https://eu.sms.api.sinch.com  # instead of region
//		callback_secret {env.SINCH_CALLBACK_SECRET}   # verifies signed delivery reports
//		timeout         10s
//	}
func (s *Sinch) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "sinch sender", map[string]func() error{
		"service_plan_id": func() error { return oneString(d, &s.ServicePlanID) },
		"api_token":       func() error { return oneString(d, &s.APIToken) },
		"from":            func() error { return oneString(d, &s.From) },
		"region":          func() error { return oneString(d, &s.Region) },
		"base_url":        func() error { return oneString(d, &s.BaseURL) },
		"callback_secret": func() error { return oneString(d, &s.CallbackSecret) },
		"timeout":         func() error { return oneDuration(d, &s.Timeout) },
		"voice": func() error {
			return badValuef("not offered: Sinch's voice API is not supported by this sender; put a sender that can call (twilio, restcomm) in a failover with it")
		},
	})
}

var (
	_ Sender                = (*Sinch)(nil)
	_ ReceiptReader         = (*Sinch)(nil)
	_ caddy.Provisioner     = (*Sinch)(nil)
	_ caddy.Validator       = (*Sinch)(nil)
	_ caddy.CleanerUpper    = (*Sinch)(nil)
	_ caddyfile.Unmarshaler = (*Sinch)(nil)
)
