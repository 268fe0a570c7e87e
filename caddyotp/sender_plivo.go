package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Plivo{})
}

// DefaultPlivoBaseURL is Plivo's API.
const DefaultPlivoBaseURL = "https://api.plivo.com"

// Plivo sends SMS through Plivo's Message API: POST {base_url}/v1/Account/{auth_id}/Message/,
// JSON, HTTP Basic auth with auth_id and auth_token, 202 on success. Plivo signs its delivery
// receipts with the auth token (X-Plivo-Signature-V2). Every field takes placeholders such as
// {env.PLIVO_AUTH_TOKEN}, resolved at Provision.
type Plivo struct {
	// The account's (or subaccount's) Auth ID, in the path and the HTTP Basic user name.
	AuthID string `json:"auth_id,omitempty"`
	// Its Auth Token: the HTTP Basic password, and the key receipts are signed with. Never logged.
	AuthToken string `json:"auth_token,omitempty"`
	// The number (E.164) or alphanumeric sender id messages come from (src).
	From string `json:"from,omitempty"`
	// The API's base URL. Default DefaultPlivoBaseURL.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Refused at load: see Validate.
	Voice bool `json:"voice,omitempty"`

	endpoint string
	api      *restClient
	logger   *zap.Logger

	unset struct{ id, token []string } // the unset {env.VAR}s of auth_id and auth_token
}

// CaddyModule returns the Caddy module information.
func (Plivo) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.plivo",
		New: func() caddy.Module { return new(Plivo) },
	}
}

// Provision resolves placeholders and prepares a keep-alive HTTP client. It makes no request.
func (s *Plivo) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.AuthID, s.unset.id = resolved(repl, s.AuthID)
	s.AuthToken, s.unset.token = resolved(repl, s.AuthToken)
	s.From, _ = resolved(repl, s.From)
	s.BaseURL, _ = resolved(repl, s.BaseURL)
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.BaseURL == "" {
		s.BaseURL = DefaultPlivoBaseURL
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	s.endpoint = s.BaseURL + "/v1/Account/" + url.PathEscape(s.AuthID) + "/Message/"
	s.api = newRestClient("plivo", time.Duration(s.Timeout))
	if len(s.From) <= 11 && alphanumericSender.MatchString(s.From) {
		s.logger.Warn("plivo sender: from " + s.From + " is an alphanumeric sender id, which Plivo disables by default, and which some countries (the US, Canada) do not carry: ask Plivo to enable it, or give a number of the account in E.164")
	}
	return nil
}

// plivoAuthID is what an Auth ID may hold: letters and digits (its exact form is not stated in
// the reference read), so that it cannot reach outside its path segment.
var plivoAuthID = regexp.MustCompile(`^[0-9A-Za-z]{1,64}$`)

// Validate reports missing or malformed credentials, sender and base URL, and refuses voice.
// It echoes no value that could be a secret pasted into the wrong field.
func (s *Plivo) Validate() error {
	if s.AuthID == "" {
		return errors.New("plivo sender: auth_id" + emptyBecause(s.unset.id))
	}
	if !plivoAuthID.MatchString(s.AuthID) {
		return fmt.Errorf("plivo sender: auth_id (%d characters) is not an Auth ID, which is letters and digits only; copy it from the Plivo console's overview (the token goes in auth_token)", len(s.AuthID))
	}
	if s.AuthToken == "" {
		return errors.New("plivo sender: auth_token" + emptyBecause(s.unset.token))
	}
	if s.From == "" {
		return errors.New("plivo sender: from is empty: give a number of the account in E.164, e.g. +12015550100 (or an alphanumeric sender id Plivo enabled)")
	}
	if !(len(s.From) <= 11 && alphanumericSender.MatchString(s.From)) {
		if _, _, err := normalizePhone(s.From, ""); err != nil {
			return fmt.Errorf("plivo sender: from %q is neither a phone number in E.164 (e.g. +12015550100) nor an alphanumeric sender id (up to 11 letters and digits)", s.From)
		}
	}
	if s.Voice {
		// A Plivo call (POST .../Call/ with answer_url) reads Plivo XML from the answer URL; the
		// element that speaks text is not confirmed in the reference read, and the gate serves
		// its call scripts in RCML (<Say>), which Plivo does not read.
		return errors.New("plivo sender: voice is not offered: a Plivo call reads Plivo XML, and the gate's call scripts are RCML; remove voice, or put a sender that can call (twilio, restcomm) after plivo in a failover")
	}
	return checkBaseURL("plivo sender", "base_url", s.BaseURL, DefaultPlivoBaseURL)
}

// Cleanup closes idle connections to the API.
func (s *Plivo) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// Send posts one SMS, with the receipt URL as its status callback (url, posted with POST).
// Plivo picks the encoding itself (GSM-7, else UCS-2).
func (s *Plivo) Send(ctx context.Context, msg Message) (Sent, error) {
	body := map[string]string{"src": s.From, "dst": msg.To, "text": msg.Body, "type": "sms"}
	receipts := msg.Receipts != nil
	if receipts {
		if cb := msg.Receipts("plivo"); cb != "" {
			body["url"], body["method"] = cb, http.MethodPost
		} else {
			receipts = false
		}
	}
	b, _ := json.Marshal(body)
	ans, err := s.api.post(ctx, s.endpoint, "application/json", b, http.Header{"Authorization": {basicAuth(s.AuthID, s.AuthToken)}})
	if err != nil {
		return Sent{Provider: "plivo"}, err
	}
	if ans.status >= 200 && ans.status < 300 {
		var accepted struct {
			UUIDs []string `json:"message_uuid"`
		}
		_ = json.Unmarshal(ans.body, &accepted) // the status is the contract; the body is informative
		id := ""
		if len(accepted.UUIDs) > 0 {
			id = accepted.UUIDs[0]
		}
		return Sent{ID: id, Provider: "plivo", Receipts: receipts}, nil
	}
	se := plivoError(ans)
	se.Provider, se.Status = "plivo", ans.status
	return Sent{Provider: "plivo"}, se
}

// plivoError reads an error answer ({"api_id":"...","error":"..."}): 401 is the credentials,
// 404 the account in the path, "Insufficient Credit" the balance; 429 and 5xx are temporary.
// Plivo's reference lists no error text for a destination it refuses (not found), so no
// answer is taken for the number's fault: those arrive in receipts (ErrorCode 50, 200...).
func plivoError(ans answer) *SendError {
	if se := httpTrouble(ans.status, ans.header); se != nil {
		return se
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(ans.body, &e)
	var meaning string
	account := false // the account refused: every message fails until the operator acts
	switch {
	case ans.status == http.StatusUnauthorized:
		meaning = "credentials refused: check auth_id and auth_token"
	case strings.Contains(strings.ToLower(e.Error), "insufficient credit"):
		meaning, account = "insufficient credit: top up the Plivo account", true
	case ans.status == http.StatusNotFound:
		meaning, account = "not found: check auth_id and base_url", true
	case ans.status == http.StatusBadRequest:
		meaning = "request refused: check from (a number of the account, or an enabled sender id)"
	default:
		meaning = "refused"
	}
	text := e.Error
	if text == "" {
		text = string(ans.body)
	}
	if text = scrubbed(text); text != "" {
		meaning += ": " + text
	}
	return &SendError{Detail: meaning, Account: account}
}

// ReceiptsEnabled is true: Plivo posts signed receipts to each message's url.
func (s *Plivo) ReceiptsEnabled() bool { return true }

// ReadReceipt reads a receipt (a form: the gate asks for POST) once its X-Plivo-Signature-V2
// verifies with auth_token over callback and X-Plivo-Signature-V2-Nonce. Plivo signs neither
// the body nor a time (not found in its reference): the token, which dies with the code,
// bounds a replay, and a replayed receipt cannot move the state back.
func (s *Plivo) ReadReceipt(r *http.Request, _, callback string) (Receipt, error) {
	if !validPlivoSignature(s.AuthToken, callback, r.Header.Get("X-Plivo-Signature-V2-Nonce"), r.Header.Get("X-Plivo-Signature-V2")) {
		return Receipt{}, ErrForgedReceipt
	}
	if err := r.ParseForm(); err != nil {
		return Receipt{}, err
	}
	return plivoReceipt(r.PostForm.Get("Status"), r.PostForm.Get("ErrorCode")), nil
}

// plivoReceiptErrors are the receipts' ErrorCode meanings (Plivo's SMS error codes).
var plivoReceiptErrors = map[string]string{
	"10": "invalid message", "20": "network error", "30": "spam detected", "40": "invalid source number: check from",
	"50": "invalid destination number (or a landline)", "60": "loop detected", "70": "destination permanently unavailable",
	"80": "destination temporarily unavailable", "90": "no route available", "100": "prohibited by carrier",
	"110": "message too long", "200": "the recipient replied STOP to this sender", "201": "US toll-free number to Canada blocked",
	"900": "insufficient credit: top up the Plivo account", "1000": "unknown",
}

// plivoReceipt maps a receipt's Status: delivered; failed (not sent to the carrier),
// undelivered and rejected (older documents) are failures, with their ErrorCode; queued and
// sent (which may stay the last where carriers give no receipt) say nothing new.
func plivoReceipt(status, errorCode string) Receipt {
	switch status {
	case "delivered":
		return Receipt{Status: ReceiptDelivered}
	case "failed", "undelivered", "rejected":
		reason := status
		if errorCode != "" {
			meaning := plivoReceiptErrors[errorCode]
			if meaning == "" {
				meaning = "error"
			}
			reason += ": " + meaning + " (ErrorCode " + scrubbed(errorCode) + ")"
		}
		return Receipt{Status: ReceiptFailed, Reason: reason}
	}
	return Receipt{Status: ReceiptPending}
}

// plivoSignature is X-Plivo-Signature-V2: base64(HMAC-SHA256(token, the URL without its query
// + nonce)).
func plivoSignature(token, callback, nonce string) string {
	base, _, _ := strings.Cut(callback, "?")
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(base + nonce))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// validPlivoSignature compares signature with the expected one in constant time.
func validPlivoSignature(token, callback, nonce, signature string) bool {
	if token == "" || nonce == "" || signature == "" {
		return false
	}
	return sameText(plivoSignature(token, callback, nonce), signature)
}

// UnmarshalCaddyfile reads the plivo sender's block:
//
//	sender plivo {
//		auth_id    {env.PLIVO_AUTH_ID}    # required
//		auth_token {env.PLIVO_AUTH_TOKEN} # required; also verifies receipts
//		from       +12015550100           # required: a number of the account (or an enabled sender id)
//		base_url   https://api.plivo.com
//		timeout    10s
//	}
func (s *Plivo) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "plivo sender", map[string]func() error{
		"auth_id":    func() error { return oneString(d, &s.AuthID) },
		"auth_token": func() error { return oneString(d, &s.AuthToken) },
		"from":       func() error { return oneString(d, &s.From) },
		"base_url":   func() error { return oneString(d, &s.BaseURL) },
		"timeout":    func() error { return oneDuration(d, &s.Timeout) },
		"voice":      func() error { return noValue(d, &s.Voice) },
	})
}

var (
	_ Sender                = (*Plivo)(nil)
	_ ReceiptReader         = (*Plivo)(nil)
	_ caddy.Provisioner     = (*Plivo)(nil)
	_ caddy.Validator       = (*Plivo)(nil)
	_ caddy.CleanerUpper    = (*Plivo)(nil)
	_ caddyfile.Unmarshaler = (*Plivo)(nil)
)
