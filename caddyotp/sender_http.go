package caddyotp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(HTTPSender{})
}

// HTTPSender sends SMS through any HTTP API the other senders do not speak (a national gateway,
// a provider of one's own): one request to url, with the operator's headers and a body written
// as a form or as JSON, in which the placeholders {to} (E.164), {to_digits} (E.164 without +),
// {from}, {text} and {callback} are filled in for each message, escaped for where they stand
// (JSON string escaping in json, form encoding in form, query escaping in url). Any 2xx answer
// is accepted; number_error names the answers that blame the visitor's number; any other answer
// is temporary for 5xx and 429 (and timeouts, dropped connections), and the configuration's
// otherwise. It reads no delivery receipts: {callback} is for an API that insists on posting
// back; such a post is answered 204, authenticated by the URL's token alone, and changes
// nothing. It places no calls.
type HTTPSender struct {
	// Where to send: the full URL, or a path under base_url. It may hold placeholders, which
	// are query-escaped.
	URL string `json:"url,omitempty"`
	// Joined before url, if given, so that url can be a path.
	BaseURL string `json:"base_url,omitempty"`
	// GET, POST (the default), PUT or PATCH. With GET a form goes in the query.
	Method string `json:"method,omitempty"`
	// Headers of every request, e.g. Authorization: "Bearer {env.SMS_API_KEY}". Values are
	// secrets: never logged, and removed from any answer that echoes them.
	Headers map[string][]string `json:"headers,omitempty"`
	// The body as form fields (name: value with placeholders), or as JSON text with
	// placeholders inside its strings; not both.
	Form map[string]string `json:"form,omitempty"`
	JSON string            `json:"json,omitempty"`
	// What {from} stands for: the sender number or id.
	From string `json:"from,omitempty"`
	// Where the message's id is in a JSON answer: keys joined by dots, numbers indexing arrays
	// (data.id, messages.0.message-id).
	MessageID string `json:"message_id,omitempty"`
	// The answers that blame the visitor's number.
	NumberErrors []HTTPNumberError `json:"number_errors,omitempty"`
	// How long one send may take, connection included. Default 10s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Refused: this sender cannot place calls.
	Voice bool `json:"voice,omitempty"`

	url      *bodyTemplate
	json     *bodyTemplate
	form     map[string]*bodyTemplate
	header   http.Header
	secrets  []string // header and {env.*} values, removed from answers before they are logged
	matchers []numberMatcher
	api      *restClient
	logger   *zap.Logger
	unset    []string // the unset {env.VAR}s of url, json and form
}

// HTTPNumberError names answers that blame the visitor's number: those whose HTTP status is
// one of the match's statuses (any, if it gives none) and, if it gives PATH=VALUE pairs, whose
// JSON holds one of them. A match without a status also applies to a 2xx answer, for an API
// that reports refusals inside one.
type HTTPNumberError struct {
	// invalid (the default), landline or blocked (the recipient opted out): shown to the visitor.
	Reason string `json:"reason,omitempty"`
	// Statuses ("400") and PATH=VALUE pairs ("error.code=21211").
	Match []string `json:"match,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (HTTPSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.senders.http",
		New: func() caddy.Module { return new(HTTPSender) },
	}
}

// Provision resolves the {env.*} placeholders (and, in headers, any of Caddy's), reads the
// templates and prepares a keep-alive HTTP client. It makes no request.
func (s *HTTPSender) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.From, _ = resolved(repl, s.From)
	s.BaseURL = strings.TrimRight(strings.TrimSpace(s.BaseURL), "/")
	s.Method = strings.ToUpper(cmp.Or(strings.TrimSpace(s.Method), http.MethodPost))
	if s.Timeout <= 0 {
		s.Timeout = caddy.Duration(10 * time.Second)
	}
	s.url = parseBodyTemplate(s.BaseURL+strings.TrimSpace(s.URL), nil)
	if s.JSON != "" {
		s.json = parseBodyTemplate(s.JSON, jsonEscape)
	}
	if s.Form != nil {
		s.form = make(map[string]*bodyTemplate, len(s.Form))
		for name, value := range s.Form {
			s.form[name] = parseBodyTemplate(value, nil)
		}
	}
	for _, t := range s.templates() {
		s.unset = append(s.unset, t.unset...)
		s.secrets = append(s.secrets, t.env...)
	}
	s.header = http.Header{}
	for name, values := range s.Headers {
		for _, raw := range values {
			v, unset := resolved(repl, raw)
			s.unset = append(s.unset, unset...)
			s.header.Add(name, v)
			s.secrets = append(s.secrets, headerSecrets(repl, raw, v)...)
			if secretHeader.MatchString(name) && !strings.Contains(raw, "{") {
				s.logger.Warn("http sender: header " + name + " is written in the config: take its secret from the environment, e.g. {env.SMS_API_KEY}")
			}
		}
	}
	if u, err := url.Parse(s.url.render(sampleMessage, url.QueryEscape)); err == nil && u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		s.logger.Warn("http sender: url is plain http: its headers (credentials) and every code cross the network unencrypted; use https")
	}
	s.api = newRestClient("http", time.Duration(s.Timeout))
	return nil
}

// Validate reports what is missing or malformed, without echoing a value that could be a secret.
func (s *HTTPSender) Validate() error {
	const what = "http sender"
	if s.Voice {
		return errors.New(what + ": voice is not offered: a call API differs too much from one provider to the next to be written as one request; put a sender that can call (twilio, restcomm) in a failover with this one")
	}
	if len(s.unset) > 0 {
		return errors.New(what + ": " + strings.Join(s.unset, ", ") + " is not set in Caddy's environment (as {env." + s.unset[0] + "} asks)")
	}
	if strings.TrimSpace(s.URL) == "" {
		return errors.New(what + ": url is empty: give the API's URL, e.g. https://sms.example.com/v1/messages")
	}
	if err := checkBaseURL(what, "url", s.url.render(sampleMessage, url.QueryEscape), "https://sms.example.com/v1/messages"); err != nil {
		return err
	}
	if !slices.Contains([]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch}, s.Method) {
		return fmt.Errorf("%s: method %q is not GET, POST, PUT or PATCH", what, s.Method)
	}
	switch {
	case s.json != nil && s.form != nil:
		return errors.New(what + ": give the body as json or as form, not both")
	case s.json != nil && s.Method == http.MethodGet:
		return errors.New(what + ": a GET request has no body: use form (it goes in the query) or another method")
	}
	if s.json != nil {
		if err := checkJSONTemplate(s.json); err != nil {
			return errors.New(what + ": " + err.Error())
		}
	}
	switch {
	case !s.uses("text"):
		return errors.New(what + ": the message goes nowhere: put {text} in the json, form or url")
	case !s.uses("to") && !s.uses("to_digits"):
		return errors.New(what + ": the number goes nowhere: put {to} (E.164) or {to_digits} (without +) in the json, form or url")
	case s.uses("from") && s.From == "":
		return errors.New(what + ": {from} is used but from is empty: give the sender number or id")
	}
	if err := checkHeaders(s.header); err != nil {
		return errors.New(what + ": " + err.Error())
	}
	if s.MessageID != "" && slices.Contains(strings.Split(s.MessageID, "."), "") {
		return fmt.Errorf("%s: message_id %q is not a path of keys joined by dots, e.g. data.id", what, s.MessageID)
	}
	s.matchers = s.matchers[:0]
	for _, ne := range s.NumberErrors {
		m, err := parseNumberError(ne)
		if err != nil {
			return errors.New(what + ": number_error: " + err.Error())
		}
		s.matchers = append(s.matchers, m)
	}
	return nil
}

// Cleanup closes idle connections to the API.
func (s *HTTPSender) Cleanup() error {
	s.api.closeIdle()
	return nil
}

// Send makes the one request of the message and reads its answer.
func (s *HTTPSender) Send(ctx context.Context, msg Message) (Sent, error) {
	values := map[string]string{"to": msg.To, "to_digits": strings.TrimPrefix(msg.To, "+"), "from": s.From, "text": msg.Body}
	if msg.Receipts != nil && s.uses("callback") {
		values["callback"] = msg.Receipts("http")
	}
	endpoint := s.url.render(values, url.QueryEscape)
	header := s.header.Clone()
	var body []byte
	switch {
	case s.json != nil:
		body = []byte(s.json.render(values, jsonEscape))
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/json")
		}
	case s.form != nil:
		form := url.Values{}
		for name, t := range s.form {
			form.Set(name, t.render(values, nil))
		}
		if s.Method == http.MethodGet {
			sep := "?"
			if strings.Contains(endpoint, "?") {
				sep = "&"
			}
			endpoint += sep + form.Encode()
			break
		}
		body = []byte(form.Encode())
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	a, err := s.api.do(ctx, s.Method, endpoint, header, body)
	if err != nil {
		return Sent{Provider: "http"}, err
	}
	if se := s.refusal(a); se != nil {
		return Sent{Provider: "http"}, se
	}
	sent := Sent{Provider: "http"}
	if s.MessageID != "" {
		id, ok := jsonAt(a.body, s.MessageID)
		if !ok {
			s.logger.Warn("http sender: the API accepted the message, but its answer has no message_id at "+s.MessageID, zap.Int("status", a.status))
		}
		sent.ID = id
	}
	return sent, nil
}

// refusal is the *SendError of an answer: nil for a 2xx that no number_error names.
func (s *HTTPSender) refusal(a answer) *SendError {
	for _, m := range s.matchers {
		if m.matches(a) {
			return &SendError{Provider: "http", Status: a.status, Fault: NumberFault, Reason: m.reason,
				Detail: "the answer is one number_error names (" + m.reason + ")" + s.answerText(a)}
		}
	}
	if a.ok() {
		return nil
	}
	se := s.api.statusFault(a)
	if se.Fault == ConfigFault {
		switch a.status {
		case http.StatusUnauthorized, http.StatusForbidden:
			se.Detail = "credentials refused: check the header lines (e.g. Authorization) and url"
		case http.StatusNotFound, http.StatusMethodNotAllowed:
			se.Detail = "not found: check url and method"
		case http.StatusPaymentRequired:
			se.Detail = "payment required: check the account's balance"
		default:
			se.Detail = "refused: check the body (json or form) and from, or add a number_error for the answers that blame the number"
		}
	}
	se.Detail += s.answerText(a)
	return se
}

// ReceiptsEnabled says whether the templates give the API a {callback}: posts to it are
// answered, and change nothing.
func (s *HTTPSender) ReceiptsEnabled() bool { return s.uses("callback") }

// ReadReceipt takes a post to {callback}, authenticated by its token alone, and reports
// nothing new: the sender knows no API's receipts.
func (s *HTTPSender) ReadReceipt(*http.Request, string, string) (Receipt, error) {
	return Receipt{Status: ReceiptPending}, nil
}

// UnmarshalCaddyfile reads the http sender's block. header and number_error may be given more
// than once; the body is a form block or a json text (a heredoc reads best):
//
//	sender http {
//		url          https://sms.example.com/v1/messages   # required; or a path under base_url
//		base_url     https://sms.example.com
//		method       POST                                  # GET, POST (default), PUT, PATCH
//		header       Authorization "Bearer {env.SMS_API_KEY}"
//		from         ExampleCo                             # what {from} stands for
//		json <<JSON
//			{"to": "{to}", "from": "{from}", "text": "{text}", "status_url": "{callback}"}
//			JSON
//		# or: form {
//		#	to   {to_digits}
//		#	text {text}
//		# }
//		message_id   data.id                               # where the id is in a JSON answer
//		number_error 400 error.code=invalid_number         # answers that blame the number
//		number_error blocked 409                           # reason first: invalid, landline, blocked
//		timeout      10s
//	}
func (s *HTTPSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	const what = "http sender"
	subs := map[string]func() error{
		"url":      func() error { return oneString(d, &s.URL) },
		"base_url": func() error { return oneString(d, &s.BaseURL) },
		"method":   func() error { return oneString(d, &s.Method) },
		"from":     func() error { return oneString(d, &s.From) },
		"json":     func() error { return oneString(d, &s.JSON) },
		"timeout":  func() error { return oneDuration(d, &s.Timeout) },
		"header": func() error {
			args := d.RemainingArgs()
			if len(args) != 2 {
				return badValuef("takes a name and a value, e.g. header Authorization \"Bearer {env.SMS_API_KEY}\"")
			}
			if s.Headers == nil {
				s.Headers = map[string][]string{}
			}
			name := http.CanonicalHeaderKey(args[0])
			s.Headers[name] = append(s.Headers[name], args[1])
			return nil
		},
		"form": func() error {
			if d.NextArg() {
				return badValuef("takes a block of fields, e.g. form { to {to} text {text} }")
			}
			s.Form = map[string]string{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				field := d.Val()
				args := d.RemainingArgs()
				if len(args) != 1 {
					return badValuef("field %q takes one value, not %d", field, len(args))
				}
				if _, dup := s.Form[field]; dup {
					return badValuef("field %q given twice", field)
				}
				s.Form[field] = args[0]
			}
			return nil
		},
		"message_id": func() error { return oneString(d, &s.MessageID) },
		"number_error": func() error {
			args := d.RemainingArgs()
			ne := HTTPNumberError{}
			if len(args) > 0 && slices.Contains([]string{"invalid", "landline", "blocked"}, args[0]) {
				ne.Reason, args = args[0], args[1:]
			}
			if len(args) == 0 {
				return badValuef("takes statuses or PATH=VALUE pairs, e.g. number_error 400 error.code=21211")
			}
			ne.Match = args
			s.NumberErrors = append(s.NumberErrors, ne)
			return nil
		},
		"voice": func() error {
			return badValuef("the http sender cannot place calls; put a sender that can (twilio, restcomm) in a failover with it")
		},
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		name := d.Val()
		parse, ok := subs[name]
		if !ok {
			return d.Errf("%s: unknown subdirective %q%s", what, name, suggestion(name, slices.Collect(maps.Keys(subs))))
		}
		if seen[name] && name != "header" && name != "number_error" {
			return d.Errf("%s: %s given twice", what, name)
		}
		seen[name] = true
		var bad badValue
		if err := parse(); errors.As(err, &bad) {
			return d.Errf("%s: %s: %s", what, name, bad.msg)
		} else if err != nil {
			return err
		}
	}
	return nil
}

var (
	_ Sender                = (*HTTPSender)(nil)
	_ ReceiptReader         = (*HTTPSender)(nil)
	_ caddy.Provisioner     = (*HTTPSender)(nil)
	_ caddy.Validator       = (*HTTPSender)(nil)
	_ caddy.CleanerUpper    = (*HTTPSender)(nil)
	_ caddyfile.Unmarshaler = (*HTTPSender)(nil)
)
