package caddyotp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Infobip{})
}

// Infobip sends SMS through Infobip's SMS API v3: POST {base_url}/sms/3/messages with
// Authorization: App {api_key}, JSON, 200 with a status per message (which may already say
// REJECTED). base_url is the account's own (https://xxxxx.api.infobip.com, shown in the
// Infobip portal): there is no default. Delivery receipts are asked for per message; Infobip
// does not sign them (a Subscriptions profile can, with HMAC, but its header and canonical form
// are not documented), so the receipt URL's sealed, single-code token is their only
// authentication. Infobip's text-to-speech API (/tts/3/...) is not offered: its request body is
// not documented where this sender was written from.
type Infobip struct {
	// The account's API key, sent as "Authorization: App {api_key}". Never logged.
	APIKey string `json:"api_key,omitempty"`
	// The sender: a number (E.164 or digits) or an alphanumeric sender id.
	From string `json:"from,omitempty"`
	// The account's API base URL, e.g. https://xxxxx.api.infobip.com. Required.
	BaseURL string `json:"base_url,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Refused: see the type's comment.
	Voice bool `json:"voice,omitempty"`

	endpoint string
	api      *restClient
	logger   *zap.Logger
	unset    []string // the unset {env.VAR}s of api_key
}

// CaddyModule returns the Caddy module information.
func (Infobip) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.infobip",
		New: func() caddy.Module { return new(Infobip) },
	}
}

// Provision resolves placeholders and prepares a keep-alive HTTP client. It makes no request.
func (s *Infobip) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.APIKey, s.unset = resolved(repl, s.APIKey)
	s.APIKey = strings.TrimPrefix(s.APIKey, "App ") // as the portal's examples show it
	s.From, _ = resolved(repl, s.From)
	s.BaseURL, _ = resolved(repl, s.BaseURL)
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	if s.BaseURL != "" && !strings.Contains(s.BaseURL, "://") {
		s.BaseURL = "https://" + s.BaseURL // the portal shows the host alone
	}
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	s.endpoint = s.BaseURL + "/sms/3/messages"
	s.api = newRestClient("infobip", time.Duration(s.Timeout))
	return nil
}

// Validate reports missing settings, without echoing a value that could be a secret.
func (s *Infobip) Validate() error {
	const what = "infobip sender"
	switch {
	case s.Voice:
		return errors.New(what + ": voice is not offered: Infobip's text-to-speech API is not supported by this sender; put a sender that can call (twilio, restcomm) in a failover with it")
	case s.APIKey == "":
		return errors.New(what + ": api_key" + emptyBecause(s.unset))
	case s.From == "":
		return errors.New(what + ": from is empty: give the sender, a number of the account or an alphanumeric sender id registered with Infobip")
	case s.BaseURL == "":
		return errors.New(what + ": base_url is empty: give the account's own API base URL, shown in the Infobip portal, e.g. https://xxxxx.api.infobip.com")
	}
	return checkBaseURL(what, "base_url", s.BaseURL, "https://xxxxx.api.infobip.com")
}

// Cleanup closes idle connections to the API.
func (s *Infobip) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// infobipRequest is the body of POST /sms/3/messages for one message.
type infobipRequest struct {
	Messages []infobipMessage `json:"messages"`
}

type infobipMessage struct {
	Sender       string `json:"sender"`
	Destinations []struct {
		To string `json:"to"`
	} `json:"destinations"`
	Content struct {
		Text string `json:"text"`
	} `json:"content"`
	Webhooks *infobipWebhooks `json:"webhooks,omitempty"`
}

type infobipWebhooks struct {
	Delivery struct {
		URL                string `json:"url"`
		IntermediateReport bool   `json:"intermediateReport"`
	} `json:"delivery"`
	ContentType string `json:"contentType"`
}

// infobipStatus is a message's status, in an answer and in a receipt.
type infobipStatus struct {
	GroupID   int    `json:"groupId"`
	GroupName string `json:"groupName"`
	ID        int    `json:"id"`
	Name      string `json:"name"`
}

// Send posts one SMS, asking for its final delivery report at the message's receipt URL.
// The number goes without its + (the form of `to` is not given in the API description this
// sender follows; Infobip's own examples write numbers so, e.g. 41793026727).
func (s *Infobip) Send(ctx context.Context, msg Message) (Sent, error) {
	m := infobipMessage{Sender: s.From}
	m.Destinations = append(m.Destinations, struct {
		To string `json:"to"`
	}{strings.TrimPrefix(msg.To, "+")})
	m.Content.Text = msg.Body
	receipts := false
	if msg.Receipts != nil {
		if cb := msg.Receipts("infobip"); cb != "" {
			m.Webhooks = &infobipWebhooks{ContentType: "application/json"}
			m.Webhooks.Delivery.URL = cb
			receipts = true
		}
	}
	// The validity period (options) is not sent: its field is not documented for v3.
	body, _ := json.Marshal(infobipRequest{Messages: []infobipMessage{m}})
	header := http.Header{"Authorization": {"App " + s.APIKey}, "Content-Type": {"application/json"}, "Accept": {"application/json"}}
	a, err := s.api.do(ctx, http.MethodPost, s.endpoint, header, body)
	if err != nil {
		return Sent{Provider: "infobip"}, err
	}
	if !a.ok() {
		return Sent{Provider: "infobip"}, s.httpError(a)
	}
	var accepted struct {
		Messages []struct {
			MessageID string        `json:"messageId"`
			Status    infobipStatus `json:"status"`
		} `json:"messages"`
	}
	_ = json.Unmarshal(a.body, &accepted)
	if len(accepted.Messages) == 0 {
		return Sent{Provider: "infobip", Receipts: receipts}, nil // the status code is the contract
	}
	first := accepted.Messages[0]
	if g := first.Status.GroupID; g == 2 || g == 4 || g == 5 { // UNDELIVERABLE, EXPIRED, REJECTED
		se := infobipRejection(first.Status)
		se.Status = a.status
		return Sent{Provider: "infobip"}, se
	}
	return Sent{ID: first.MessageID, Provider: "infobip", Receipts: receipts}, nil
}

// infobipNumberRejections are the REJECTED statuses that belong to the visitor's number, with
// their reasons. Their ids come from a reseller's copy of Infobip's table (not from Infobip
// itself), as do those of infobipConfigRejections.
var infobipNumberRejections = map[int]string{
	8:  "invalid", // REJECTED_PREFIX_MISSING
	10: "blocked", // REJECTED_DND: the recipient is on a do-not-disturb list
	14: "invalid", // REJECTED_DESTINATION
	16: "invalid", // REJECTED_NOT_REACHABLE
	18: "invalid", // REJECTED_DESTINATION_NOT_REGISTERED
	51: "invalid", // MISSING_TO
	52: "invalid", // REJECTED_DESTINATION
}

// infobipConfigRejections are the REJECTED statuses the operator must act on, with what to do.
var infobipConfigRejections = map[int]string{
	11: "the sender is refused: check from",
	12: "not enough credit: top up the Infobip account",
	13: "the sender is refused: check from (an alphanumeric sender id must be registered with Infobip)",
	17: "the prepaid package has expired: renew it in the Infobip portal",
}

// infobipRejection classifies a message the answer already refused.
func infobipRejection(st infobipStatus) *SendError {
	se := &SendError{Provider: "infobip"}
	name := scrubbed(st.Name)
	if name == "" {
		name = "status " + strconv.Itoa(st.ID)
	}
	switch reason, number := infobipNumberRejections[st.ID]; {
	case st.GroupID == 5 && number:
		se.Fault, se.Reason, se.Detail = NumberFault, reason, "the number is refused ("+name+")"
	case st.GroupID == 5 && (st.ID == 20 || st.ID == 21): // REJECTED_FLOODING_FILTER, REJECTED_SYSTEM_ERROR
		se.Fault, se.Detail = TemporaryFault, "rejected for now ("+name+")"
	case st.GroupID == 5 && infobipConfigRejections[st.ID] != "":
		se.Detail = infobipConfigRejections[st.ID] + " (" + name + ")"
		se.Account = st.ID == 12 || st.ID == 17 // no credit, an expired package: every message fails
	default:
		se.Detail = "refused (" + name + "): see the message's status in the Infobip portal"
	}
	return se
}

// httpError classifies an answer outside 2xx, with what the v3 (or v2) error body says.
func (s *Infobip) httpError(a answer) *SendError {
	se := s.api.statusFault(a)
	if se.Fault == ConfigFault {
		switch a.status {
		case http.StatusUnauthorized:
			se.Detail = "credentials refused: check api_key (an API key of the account) and base_url (the account's own)"
		case http.StatusForbidden:
			se.Detail = "forbidden: check the API key's permissions (it must be allowed to send SMS)"
		case http.StatusNotFound:
			se.Detail = "not found: check base_url (the account's own, e.g. https://xxxxx.api.infobip.com)"
		default:
			se.Detail = "request refused: check from"
		}
	}
	var e struct {
		ErrorCode   string `json:"errorCode"`
		Description string `json:"description"`
		Action      string `json:"action"`
		Violations  []struct {
			Property  string `json:"property"`
			Violation string `json:"violation"`
		} `json:"violations"`
		RequestError struct {
			ServiceException struct {
				MessageID string `json:"messageId"`
				Text      string `json:"text"`
			} `json:"serviceException"`
		} `json:"requestError"`
	}
	_ = json.Unmarshal(a.body, &e)
	parts := []string{e.ErrorCode, e.Description, e.Action, e.RequestError.ServiceException.MessageID, e.RequestError.ServiceException.Text}
	for _, v := range e.Violations {
		parts = append(parts, v.Property+" "+v.Violation)
	}
	if text := scrubbed(strings.Join(nonEmpty(parts), "; ")); text != "" {
		se.Detail += ": " + text
	}
	return se
}

func nonEmpty(ss []string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ReceiptsEnabled is true: receipts are asked for with each message.
func (s *Infobip) ReceiptsEnabled() bool { return true }

// ReadReceipt reads a delivery report ({"results":[...]}, up to 100 a request): the first
// result in a final state says what became of the message. Infobip does not sign reports; the
// token of the URL, which dies with the code, authenticates them.
func (s *Infobip) ReadReceipt(r *http.Request, _, _ string) (Receipt, error) {
	var report struct {
		Results []struct {
			Status infobipStatus `json:"status"`
			Error  struct {
				GroupName string `json:"groupName"`
				Name      string `json:"name"`
			} `json:"error"`
		} `json:"results"`
	}
	if _, err := readJSONBody(r, &report); err != nil {
		return Receipt{}, err
	}
	for _, res := range report.Results {
		switch res.Status.GroupID {
		case 3: // DELIVERED
			if res.Status.ID == 2 { // DELIVERED_TO_OPERATOR: handed to the carrier, the phone not confirmed
				return Receipt{Status: ReceiptSent}, nil
			}
			return Receipt{Status: ReceiptDelivered}, nil
		case 2, 4, 5: // UNDELIVERABLE, EXPIRED, REJECTED
			reason := res.Status.Name
			if res.Error.Name != "" && res.Error.GroupName != "OK" {
				reason += ": " + res.Error.Name
			}
			return Receipt{Status: ReceiptFailed, Reason: scrubbed(reason)}, nil
		}
	}
	return Receipt{Status: ReceiptPending}, nil // PENDING, or nothing this sender knows
}

// UnmarshalCaddyfile reads the infobip sender's block:
//
//	sender infobip {
//		api_key  {env.INFOBIP_API_KEY}           # required
//		from     ExampleCo                       # required: a number or a registered sender id
//		base_url https://xxxxx.api.infobip.com   # required: the account's own
//		timeout  10s
//	}
func (s *Infobip) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	return parseBlock(d, "infobip sender", map[string]func() error{
		"api_key":  func() error { return oneString(d, &s.APIKey) },
		"from":     func() error { return oneString(d, &s.From) },
		"base_url": func() error { return oneString(d, &s.BaseURL) },
		"timeout":  func() error { return oneDuration(d, &s.Timeout) },
		"voice": func() error {
			return badValuef("not offered: Infobip's text-to-speech API is not supported by this sender; put a sender that can call (twilio, restcomm) in a failover with it")
		},
	})
}

var (
	_ Sender                = (*Infobip)(nil)
	_ ReceiptReader         = (*Infobip)(nil)
	_ caddy.Provisioner     = (*Infobip)(nil)
	_ caddy.Validator       = (*Infobip)(nil)
	_ caddy.CleanerUpper    = (*Infobip)(nil)
	_ caddyfile.Unmarshaler = (*Infobip)(nil)
)
