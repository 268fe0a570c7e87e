package caddyotp

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(recordingSender))
}

// recordingSender keeps messages in memory (module http.handlers.otp.senders.test_record,
// registered only in tests): for benchmarks and fuzzing of the handler without a network.
type recordingSender struct {
	mu       *sync.Mutex
	sent     *sync.Cond // broadcast at every message
	last     Message
	callback string // the receipt URL the last message was given, if it was given one
	n        int
}

func (*recordingSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.otp.senders.test_record", New: func() caddy.Module {
		mu := new(sync.Mutex)
		return &recordingSender{mu: mu, sent: sync.NewCond(mu)}
	}}
}

func (s *recordingSender) Send(_ context.Context, m Message) (Sent, error) {
	sent := Sent{Provider: "test_record", Receipts: m.Receipts != nil}
	s.mu.Lock()
	s.last, s.n, s.callback = m, s.n+1, ""
	if sent.Receipts {
		s.callback = m.Receipts(sent.Provider)
	}
	s.mu.Unlock()
	s.sent.Broadcast()
	return sent, nil
}

// newUnitHandler provisions a Handler outside a server, with the recording sender, a memory
// store of the test's own and the JSON fields in cfg. Requests go through serve.
func newUnitHandler(tb testing.TB, cfg map[string]any) (*Handler, *recordingSender) {
	tb.Helper()
	base := map[string]any{
		"sender":     map[string]any{"module": "test_record"},
		"store":      map[string]any{"module": "memory", "name": "unit-" + tb.Name()},
		"phones":     []string{alice, bob},
		"secret":     "0123456789abcdef0123456789abcdef",
		"public_url": "http://localhost:9080",
	}
	for k, v := range cfg {
		base[k] = v
	}
	raw, _ := json.Marshal(base)
	h := new(Handler)
	if err := json.Unmarshal(raw, h); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		tb.Fatal(err)
	}
	// Caddy cleans up what it loaded; the gate itself was not loaded by the context, so it
	// leaves the admin API's gates (and its store's reach) only here.
	tb.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		tb.Fatal(err)
	}
	h.obs.logger = zap.NewNop() // benchmarks and fuzzing measure the gate, not the log
	recording, _ := h.sender.(*recordingSender)
	return h, recording
}

// upstream stands for the protected site.
var upstream = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusOK)
	return nil
})

// serve runs one request through the handler as Caddy would: with a replacer and vars in the context.
func serve(h *Handler, w http.ResponseWriter, r *http.Request) error {
	return serveAs(h, w, r, "192.0.2.1")
}

// serveAs serves r as from the client address ip, and ends r's context once the handler has
// returned, as net/http does.
func serveAs(h *Handler, w http.ResponseWriter, r *http.Request, ip string) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	return h.ServeHTTP(w, withClientIP(r.WithContext(ctx), ip), upstream)
}

// withCaddyContext gives r what Caddy's server puts in every request's context.
func withCaddyContext(r *http.Request) *http.Request { return withClientIP(r, "192.0.2.1") }

// unitFlow is a browser's flow cookie and its CSRF token, made by opening the phone page.
func unitFlow(tb testing.TB, h *Handler) (*http.Cookie, string) {
	tb.Helper()
	w := httptest.NewRecorder()
	if err := serve(h, w, httptest.NewRequest(http.MethodGet, "/.otp/login", nil)); err != nil {
		tb.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "caddy_otp_flow" {
			id, _, _ := strings.Cut(c.Value, ".")
			return c, h.cookies.csrf(id)
		}
	}
	tb.Fatal("no flow cookie")
	return nil, ""
}

// postForm is a browser's POST of form to path, with a flow cookie and its CSRF token (made by
// opening the phone page) and the other cookies given.
func postForm(tb testing.TB, h *Handler, path string, form url.Values, cookies ...*http.Cookie) (*httptest.ResponseRecorder, *http.Request) {
	tb.Helper()
	flowCookie, csrf := unitFlow(tb, h)
	form.Set("csrf", csrf)
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(flowCookie)
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return httptest.NewRecorder(), r
}

// begun is a transition's outcome once the handler has answered it: a new code's delivery
// begins, as the handler begins it after its answer (outcome.deliverAfter).
func begun(o outcome) outcome {
	if o.begin != nil {
		o.begin()
	}
	return o
}

// provisioned provisions the sender s as Caddy would outside a config, with edit applied first,
// and validates it.
func provisioned[S interface {
	caddy.Provisioner
	caddy.Validator
}](t *testing.T, s S, edit func(S)) (S, error) {
	t.Helper()
	if edit != nil {
		edit(s)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		return s, err
	}
	return s, s.Validate()
}

// refusal is a change to a sender's good settings that Validate refuses, with an error that
// holds want.
type refusal[S any] struct {
	name string
	edit func(S)
	want string
}

// wantRefused checks each refusal on a sender that build makes, with the refusal's edit: the
// error names the setting, and echoes neither the secret nor anything of the cases' that holds
// "supersecret".
func wantRefused[S any](t *testing.T, build func(*testing.T, func(S)) (S, error), secret string, cases []refusal[S]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, tc.edit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "supersecret") || strings.Contains(err.Error(), secret) {
				t.Errorf("the error echoes a secret: %v", err)
			}
		})
	}
}
