package caddyotp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// httpSenderFrom reads, provisions and validates an http sender's Caddyfile block.
func httpSenderFrom(t *testing.T, block string) (*HTTPSender, error) {
	t.Helper()
	s := new(HTTPSender)
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(block)); err != nil {
		return nil, err
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := s.Provision(ctx); err != nil {
		return nil, err
	}
	return s, s.Validate()
}

// httpAPIBlock is an http sender's block for the generic fake, with a JSON body and extra lines.
func httpAPIBlock(api *restcommtest.HTTPAPI, extra ...string) string {
	return `http {
				url ` + api.Endpoint() + `
				header X-Api-Key {env.TEST_HTTP_API_KEY}
				from ExampleCo
				json <<JSON
					{"to": "{to}", "from": "{from}", "text": "{text}"}
					JSON
				message_id data.id
				number_error 422 error.code=invalid_number
				number_error blocked 409
				timeout 2s
				` + strings.Join(extra, "\n\t\t\t\t") + `
			}`
}

func TestHTTPSenderEscapesEachPlaceholderForItsBody(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	defer api.Close()
	t.Setenv("TEST_HTTP_API_KEY", api.APIKey)
	s, err := httpSenderFrom(t, httpAPIBlock(api))
	if err != nil {
		t.Fatal(err)
	}
	text := "123456 is your \"code\" \\ for <Example> & co\n@localhost #123456 – ✓"
	sent, err := s.Send(context.Background(), Message{To: alice, Body: text})
	if err != nil {
		t.Fatal(err)
	}
	m := api.Messages()[0]
	if m.Text != text || m.To != alice || m.From != "ExampleCo" || sent.ID != m.ID || sent.Provider != "http" || sent.Receipts {
		t.Errorf("sent %+v as %+v", sent, m)
	}
	if !json.Valid([]byte(m.RawBody)) || !strings.Contains(m.RawBody, `\"code\" \\ for <Example> & co\n@localhost`) {
		t.Errorf("the JSON body is not escaped as JSON strings are: %s", m.RawBody)
	}

	// A form: each value form-encoded; {to_digits} without its +.
	form, err := httpSenderFrom(t, `http {
		url `+api.Endpoint()+`
		header X-Api-Key `+api.APIKey+`
		form {
			to +{to_digits}
			from {from}
			text "Code: {text}"
		}
		from Example&Co=1
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := form.Send(context.Background(), Message{To: alice, Body: "a&b=c+d %"}); err != nil {
		t.Fatal(err)
	}
	m = api.Messages()[1]
	if m.Text != "Code: a&b=c+d %" || m.From != "Example&Co=1" || m.To != alice {
		t.Errorf("form fields arrived as %+v", m)
	}
	if q, err := url.ParseQuery(m.RawBody); err != nil || len(q) != 3 {
		t.Errorf("the form is not three encoded fields: %q", m.RawBody)
	}
}

func TestHTTPSenderPutsPlaceholdersInTheURLQueryEscaped(t *testing.T) {
	var got *url.URL
	srv := newEchoServer(t, func(u *url.URL) { got = u })
	s, err := httpSenderFrom(t, `http {
		url "`+srv+`/send?to={to}&msg={text}"
		method GET
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "a&b=c #1"}); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Query().Get("to") != alice || got.Query().Get("msg") != "a&b=c #1" || len(got.Query()) != 2 {
		t.Errorf("the query arrived as %v", got)
	}
}

func TestHTTPSenderClassifiesAnswersAndLogsNoSecret(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	defer api.Close()
	t.Setenv("TEST_HTTP_API_KEY", api.APIKey)
	s, err := httpSenderFrom(t, httpAPIBlock(api))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		failure  restcommtest.HTTPAPIFailure
		status   int
		fault    Fault
		reason   string
		mentions string
	}{
		{restcommtest.HTTPAPIInvalidNumber, 422, NumberFault, "invalid", "number_error"},
		{restcommtest.HTTPAPIOptedOut, 409, NumberFault, "blocked", "opted out"},
		{restcommtest.HTTPAPINoBalance, 402, ConfigFault, "", "balance"},
		{restcommtest.HTTPAPIRateLimited, 429, TemporaryFault, "", "Retry-After 7s"},
		{restcommtest.HTTPAPIInternalError, 500, TemporaryFault, "", "provider failure"},
		{restcommtest.HTTPAPIDropConnection, 0, TemporaryFault, "", "connection failed"},
	}
	for _, tc := range cases {
		api.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok {
			t.Fatalf("%d: %v is not a *SendError", tc.failure, err)
		}
		if se.Status != tc.status || se.Fault != tc.fault || se.Reason != tc.reason || !strings.Contains(se.Detail, tc.mentions) || se.Provider != "http" {
			t.Errorf("%d: %+v, want status %d, %v %q, mentioning %q", tc.failure, se, tc.status, tc.fault, tc.reason, tc.mentions)
		}
		for _, secret := range []string{"987654", alice, api.APIKey} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%d: the error holds %q: %v", tc.failure, secret, err)
			}
		}
	}
	api.Fail(restcommtest.HTTPAPINone)
	t.Setenv("TEST_HTTP_API_KEY", "wrong-key")
	wrong, _ := httpSenderFrom(t, httpAPIBlock(api))
	_, err = wrong.Send(context.Background(), Message{To: alice, Body: "x"})
	if se, ok := err.(*SendError); !ok || se.Status != 401 || se.Fault != ConfigFault || !strings.Contains(se.Detail, "check the header lines") || providerTrouble(se) != true {
		t.Errorf("a wrong key: %v", err)
	}
}

// TestHTTPSenderNumberErrorMatchesStatusAndFieldsTogether: a number_error's statuses and its
// PATH=VALUE pairs must both hold; one without a status also names a 2xx answer.
func TestHTTPSenderNumberErrorMatchesStatusAndFieldsTogether(t *testing.T) {
	body := []byte(`{"messages":[{"status":"6","error-text":"Invalid Message"}],"error":{"code":21211}}`)
	for _, tc := range []struct {
		match  []string
		status int
		want   bool
	}{
		{[]string{"400"}, 400, true},
		{[]string{"400"}, 422, false},
		{[]string{"400", "error.code=21211"}, 400, true},
		{[]string{"400", "error.code=21614"}, 400, false},
		{[]string{"400", "error.code=21614", "error.code=21211"}, 400, true},
		{[]string{"error.code=21211"}, 404, true},
		{[]string{"messages.0.status=6"}, 200, true},
		{[]string{"messages.1.status=6"}, 200, false},
		{[]string{"messages.0=6"}, 200, false},
	} {
		m, err := parseNumberError(HTTPNumberError{Match: tc.match})
		if err != nil {
			t.Fatal(err)
		}
		if got := m.matches(answer{status: tc.status, body: body}); got != tc.want {
			t.Errorf("%v on %d: %v, want %v", tc.match, tc.status, got, tc.want)
		}
	}
	for _, bad := range []HTTPNumberError{{Match: []string{"40"}}, {Match: []string{"=x"}}, {Match: []string{"a..b=1"}}, {Reason: "fraud", Match: []string{"400"}}, {}} {
		if _, err := parseNumberError(bad); err == nil {
			t.Errorf("%+v is accepted", bad)
		}
	}
}

func TestHTTPSenderValidateSaysWhatToFixAndEchoesNoSecret(t *testing.T) {
	t.Setenv("TEST_HTTP_SECRET", "supersecretvalue")
	base := "url https://sms.example.com/v1\n\t\theader Authorization \"Bearer {env.TEST_HTTP_SECRET}\"\n\t\t"
	for _, tc := range []struct{ block, want string }{
		{"http {\n\t\theader A b\n\t}", "url is empty"},
		{"http {\n\t\turl ftp://supersecretvalue@x\n\t\tjson `{\"t\":\"{text}\",\"to\":\"{to}\"}`\n\t}", "must not hold credentials"},
		{"http {\n\t\turl supersecretvalue\n\t\tjson `{\"t\":\"{text}\",\"to\":\"{to}\"}`\n\t}", "must be an http(s) URL"},
		{"http {\n\t\t" + base + "json `{\"t\": {text}, \"to\": \"{to}\"}`\n\t}", "write each placeholder inside a string"},
		{"http {\n\t\t" + base + "json `{\"to\": \"{to}\"}`\n\t}", "put {text}"},
		{"http {\n\t\t" + base + "json `{\"text\": \"{text}\"}`\n\t}", "put {to}"},
		{"http {\n\t\t" + base + "json `{\"text\": \"{text}\", \"to\": \"{to}\", \"from\": \"{from}\"}`\n\t}", "from is empty"},
		{"http {\n\t\t" + base + "method GET\n\t\tjson `{\"text\": \"{text}\", \"to\": \"{to}\"}`\n\t}", "GET request has no body"},
		{"http {\n\t\t" + base + "method DELETE\n\t\tform {\n\t\t\tt {text}\n\t\t\tn {to}\n\t\t}\n\t}", "not GET, POST"},
		{"http {\n\t\t" + base + "header X-Key {env.SURELY_UNSET_HTTP_KEY}\n\t\tform {\n\t\t\tt {text}\n\t\t\tn {to}\n\t\t}\n\t}", "SURELY_UNSET_HTTP_KEY is not set"},
		{"http {\n\t\t" + base + "form {\n\t\t\tt {text}\n\t\t\tn {to}\n\t\t}\n\t\tvoice\n\t}", "cannot place calls"},
		{"http {\n\t\t" + base + "form {\n\t\t\tt {text}\n\t\t\tn {to}\n\t\t}\n\t\tnumber_error fraud\n\t}", "is neither an HTTP status"},
		{"http {\n\t\t" + base + "form {\n\t\t\tt {text}\n\t\t\tn {to}\n\t\t}\n\t\tmessage_id data..id\n\t}", "message_id"},
	} {
		_, err := httpSenderFrom(t, tc.block)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n error %v, want one containing %q", tc.block, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "supersecretvalue") {
			t.Errorf("the error echoes a secret: %v", err)
		}
	}
	s := &HTTPSender{URL: "https://x.example", JSON: `{"t":"{text}","n":"{to}"}`, Voice: true}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	_ = s.Provision(ctx)
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "voice is not offered") {
		t.Errorf("voice in JSON config: %v", err)
	}
}

// newEchoServer answers 200 to every request and hands its URL to seen.
func newEchoServer(t *testing.T, seen func(*url.URL)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen(r.URL)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestHTTPSenderKeepsTheCredentialInsideAHeaderOutOfTheLog: an API that echoes the key it
// refused echoes the key alone, not the header's whole value: the key an {env.*} gave, the token
// after the scheme word, and a Basic header's user and password are all cut out of the answer
// before it is logged.
func TestHTTPSenderKeepsTheCredentialInsideAHeaderOutOfTheLog(t *testing.T) {
	api := restcommtest.NewHTTPAPI()
	t.Cleanup(api.Close)
	t.Setenv("CADDY_OTP_HTTP_KEY", "sk_live_ABCDEFabcdef")
	t.Setenv("TEST_HTTP_API_KEY", api.APIKey)
	basic := base64.StdEncoding.EncodeToString([]byte("account-7f3a:pa55w0rd-9c"))
	s, err := httpSenderFrom(t, httpAPIBlock(api, `header Authorization "Bearer {env.CADDY_OTP_HTTP_KEY}"`, `header X-Legacy-Auth "Basic `+basic+`"`, `header X-Token "Token tk_4471be"`))
	if err != nil {
		t.Fatal(err)
	}
	echo := "api key sk_live_ABCDEFabcdef is not valid for account-7f3a (password pa55w0rd-9c), token tk_4471be, header " + basic
	got := s.answerText(answer{status: http.StatusUnauthorized, body: []byte(echo)})
	for _, secret := range []string{"sk_live_ABCDEFabcdef", "account-7f3a", "pa55w0rd-9c", "tk_4471be", basic} {
		if strings.Contains(got, secret) {
			t.Errorf("the logged answer holds %q: %s", secret, got)
		}
	}
}
