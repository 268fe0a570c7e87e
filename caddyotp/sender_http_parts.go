package caddyotp

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/net/http/httpguts"
)

// bodyTemplate is a text of the http sender (its url, json or a form field) cut at its
// placeholders: {env.NAME}, resolved once at Provision, and the message's own ({to},
// {to_digits}, {from}, {text}, {callback}), filled in for each message. Any other text in
// braces is kept as written, so JSON's own braces need no escaping.
type bodyTemplate struct {
	parts []templatePart
	unset []string // the {env.NAME}s that are not set
	env   []string // the values {env.NAME}s gave, which may be secrets
}

// templatePart is literal text, or the name of a message placeholder.
type templatePart struct{ text, slot string }

var templatePlaceholder = regexp.MustCompile(`\{(to|to_digits|from|text|callback|env\.[A-Za-z_][A-Za-z0-9_]*)\}`)

// parseBodyTemplate cuts s at its placeholders; envEscape, if not nil, escapes the values of
// environment variables as render escapes the message's.
func parseBodyTemplate(s string, envEscape func(string) string) *bodyTemplate {
	t := &bodyTemplate{}
	last := 0
	for _, m := range templatePlaceholder.FindAllStringSubmatchIndex(s, -1) {
		t.parts = append(t.parts, templatePart{text: s[last:m[0]]})
		name := s[m[2]:m[3]]
		if env, ok := strings.CutPrefix(name, "env."); ok {
			v, set := os.LookupEnv(env)
			if !set {
				t.unset = append(t.unset, env)
			} else if len(v) >= 4 {
				t.env = append(t.env, v)
			}
			if envEscape != nil {
				v = envEscape(v)
			}
			t.parts = append(t.parts, templatePart{text: v})
		} else {
			t.parts = append(t.parts, templatePart{slot: name})
		}
		last = m[1]
	}
	t.parts = append(t.parts, templatePart{text: s[last:]})
	return t
}

// render fills in the message's values, each escaped with escape (if not nil).
func (t *bodyTemplate) render(values map[string]string, escape func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.slot == "" {
			b.WriteString(p.text)
			continue
		}
		v := values[p.slot]
		if escape != nil {
			v = escape(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// uses says whether the template names the message placeholder.
func (t *bodyTemplate) uses(slot string) bool {
	for _, p := range t.parts {
		if p.slot == slot {
			return true
		}
	}
	return false
}

// jsonEscape is s as the inside of a JSON string: quotes, backslashes and control characters
// escaped, the rest (non-ASCII included) as it is.
func jsonEscape(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}

// numberMatcher is one number_error, read.
type numberMatcher struct {
	reason   string
	statuses []int
	fields   [][2]string
}

// parseNumberError reads one number_error: a reason and its matches.
func parseNumberError(ne HTTPNumberError) (numberMatcher, error) {
	m := numberMatcher{reason: cmp.Or(ne.Reason, "invalid")}
	if !slices.Contains([]string{"invalid", "landline", "blocked"}, m.reason) {
		return m, fmt.Errorf("reason %q is not invalid, landline or blocked", ne.Reason)
	}
	for _, arg := range ne.Match {
		if path, value, ok := strings.Cut(arg, "="); ok {
			if path == "" || slices.Contains(strings.Split(path, "."), "") {
				return m, fmt.Errorf("%q: write PATH=VALUE with a path of keys joined by dots, e.g. error.code=21211", arg)
			}
			m.fields = append(m.fields, [2]string{path, value})
			continue
		}
		status, err := strconv.Atoi(arg)
		if err != nil || status < 100 || status > 599 {
			return m, fmt.Errorf("%q is neither an HTTP status (e.g. 400) nor PATH=VALUE (e.g. error.code=21211)", arg)
		}
		m.statuses = append(m.statuses, status)
	}
	if len(m.statuses) == 0 && len(m.fields) == 0 {
		return m, errors.New("give the statuses or PATH=VALUE pairs of the answers that blame the number, e.g. number_error 400 error.code=21211")
	}
	return m, nil
}

// matches says whether the answer is one that m names.
func (m numberMatcher) matches(a answer) bool {
	if len(m.statuses) == 0 && len(m.fields) == 0 {
		return false
	}
	if len(m.statuses) > 0 && !slices.Contains(m.statuses, a.status) {
		return false
	}
	return len(m.fields) == 0 || slices.ContainsFunc(m.fields, func(f [2]string) bool {
		v, ok := jsonAt(a.body, f[0])
		return ok && v == f[1]
	})
}

// answerText is ": " and a bounded, scrubbed prefix of the answer, with every configured
// secret removed first; "" for an empty answer.
func (s *HTTPSender) answerText(a answer) string {
	text := string(a.body)
	for _, secret := range s.secrets {
		text = strings.ReplaceAll(text, secret, "[redacted]")
	}
	if text = scrubbed(text); text != "" {
		return ": " + text
	}
	return ""
}

// headerSecrets are the parts of a header's value (raw as written, value resolved) that an
// answer may echo on their own: the whole value, what each {env.*} gave, the credential after a
// scheme word ("Bearer KEY"), and a Basic credential's user and password. Shorter ones than 4
// characters are left: they would redact common words.
func headerSecrets(repl *caddy.Replacer, raw, value string) []string {
	parts := []string{value}
	for _, m := range envPlaceholder.FindAllString(raw, -1) {
		parts = append(parts, repl.ReplaceKnown(m, ""))
	}
	if scheme, cred, ok := strings.Cut(strings.TrimSpace(value), " "); ok {
		cred = strings.TrimSpace(cred)
		parts = append(parts, cred)
		if strings.EqualFold(scheme, "Basic") {
			if b, err := base64.StdEncoding.DecodeString(cred); err == nil {
				user, pass, _ := strings.Cut(string(b), ":")
				parts = append(parts, user, pass)
			}
		}
	}
	var out []string
	for _, p := range parts {
		if len(p) >= 4 {
			out = append(out, p)
		}
	}
	// The longest first: a whole value goes before the credential inside it.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// secretHeader finds the names of headers that usually carry a credential.
var secretHeader = regexp.MustCompile(`(?i)auth|key|token|secret|password`)

// sampleMessage fills the templates to check them at load.
var sampleMessage = map[string]string{"to": "+12015550123", "to_digits": "12015550123", "from": "ExampleCo",
	"text": "123456 is your code \"x\" & y\n@example.com #123456", "callback": "https://example.com/.otp/receipt/token"}

func (s *HTTPSender) templates() []*bodyTemplate {
	out := []*bodyTemplate{s.url}
	if s.json != nil {
		out = append(out, s.json)
	}
	for _, name := range slices.Sorted(maps.Keys(s.form)) {
		out = append(out, s.form[name])
	}
	return out
}

// uses says whether a template names the placeholder.
func (s *HTTPSender) uses(name string) bool {
	return slices.ContainsFunc(s.templates(), func(t *bodyTemplate) bool { return t.uses(name) })
}

// checkHeaders reports a header name or value that cannot be sent, without the value.
func checkHeaders(h http.Header) error {
	for name, values := range h {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("header name %q is not a valid HTTP header name", name)
		}
		for _, v := range values {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("the value of header %s holds a line break or a control character", name)
			}
		}
	}
	return nil
}

// checkJSONTemplate reports a json body that is not JSON once filled in, without the body.
func checkJSONTemplate(t *bodyTemplate) error {
	err := json.Unmarshal([]byte(t.render(sampleMessage, jsonEscape)), new(any))
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	at := ""
	if errors.As(err, &se) {
		at = fmt.Sprintf(" (at byte %d once filled in)", se.Offset)
	}
	return errors.New("json is not valid JSON" + at + ": write each placeholder inside a string, e.g. \"text\": \"{text}\"")
}
