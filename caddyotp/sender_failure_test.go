package caddyotp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func TestSenderFailuresShowRetryPageAndLogStatusWithoutSecrets(t *testing.T) {
	g := startGate(t, "send_limit 50 10m\n\t\tip_limit 100 10m")
	cases := []struct {
		name    string
		failure restcommtest.Failure
		delay   time.Duration
		status  int // what the visitor gets
		logged  int // the provider status in the log line
	}{
		{"provider internal error", restcommtest.InternalError, 0, http.StatusServiceUnavailable, 500},
		{"extension refused the send", restcommtest.LimitExceeded, 0, http.StatusBadGateway, 403},
		{"account not active", restcommtest.AccountInactive, 0, http.StatusBadGateway, 403},
		{"number refused", restcommtest.NumberRejected, 0, http.StatusServiceUnavailable, 400}, // the number's, as Twilio's 21211
		{"connection dropped", restcommtest.DropConnection, 0, http.StatusServiceUnavailable, 0},
		{"no answer before the timeout", restcommtest.None, 3 * time.Second, http.StatusServiceUnavailable, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock.Advance(31 * time.Second) // resend_after since the last case's code to alice
			g.sms.Fail(tc.failure)
			g.sms.Delay(tc.delay)
			defer func() { g.sms.Fail(restcommtest.None); g.sms.Delay(0) }()

			v := newVisitor(t)
			csrf, sent := v.startSignIn("/", alice)
			wantStatus(t, "send", sent, http.StatusSeeOther) // the SMS goes out in the background
			v.settled()
			r := v.get("/.otp/verify")
			wantStatus(t, "code page", r, tc.status)
			// A 503 (the provider failed) offers a retry; a 502 (the site's setup is broken)
			// says the operator must act, and offers nothing that cannot work.
			if tc.status == http.StatusServiceUnavailable && (!strings.Contains(r.body, "could not send your code") || !strings.Contains(r.body, `action="/.otp/send"`)) {
				t.Errorf("page does not explain and offer a retry: %.400s", r.body)
			}
			if tc.status == http.StatusBadGateway && (!strings.Contains(r.body, "This site cannot send codes right now; its operator has been told.") || strings.Contains(r.body, "<form")) {
				t.Errorf("502 page does not say the operator must act, or offers a form: %.400s", r.body)
			}
			if tc.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After")
			}
			msg := "sender error"
			if tc.failure == restcommtest.NumberRejected {
				msg = "number refused by the provider"
			}
			line := lastLogLine(t, g.logs(), msg)
			if got := int(line["status"].(float64)); got != tc.logged {
				t.Errorf("logged status %d, want %d (line %v)", got, tc.logged, line)
			}
			assertNoSecrets(t, g, line)

			// The retry button works once the provider is back.
			g.sms.Fail(restcommtest.None)
			if tc.status != http.StatusServiceUnavailable {
				return
			}
			g.sms.Delay(0)
			n := len(g.sms.Messages())
			if r.csrf() != csrf {
				t.Errorf("the retry button is not the visitor's own form")
			}
			retry := v.post("/.otp/send", url.Values{"csrf": {r.csrf()}, "phone": {alice}})
			wantStatus(t, "retry", retry, http.StatusSeeOther)
			g.code(n + 1)
		})
	}
}

func TestWrongCredentialsAreAConfigurationErrorForTheVisitorAndTheLog(t *testing.T) {
	g := startGate(t, "")
	g.sms.AuthToken = "rotated-" + g.sms.AuthToken // the operator's token no longer matches
	v := newVisitor(t)
	v.startSignIn("/", alice)
	v.settled()
	r := v.get("/.otp/verify")
	wantStatus(t, "code page", r, http.StatusBadGateway)
	line := lastLogLine(t, g.logs(), "sender error")
	if line["status"].(float64) != 401 || !strings.Contains(line["detail"].(string), "auth_token") {
		t.Errorf("log line does not point at the credentials: %v", line)
	}
	assertNoSecrets(t, g, line)
}

// lastLogLine returns the last JSON log entry whose msg is msg.
func lastLogLine(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(l), &entry) == nil && entry["msg"] == msg {
			found = entry
		}
	}
	if found == nil {
		t.Fatalf("no log line %q", msg)
	}
	return found
}

// assertNoSecrets checks a log entry for the auth token, the full phone numbers and any SMS body.
func assertNoSecrets(t *testing.T, g *gate, entry map[string]any) {
	t.Helper()
	b, _ := json.Marshal(entry)
	s := string(b)
	secrets := []string{g.sms.AuthToken, strings.TrimPrefix(g.sms.AuthToken, "rotated-"), alice, bob, stranger}
	for _, m := range g.sms.Messages() {
		secrets = append(secrets, m.Body)
	}
	for _, secret := range secrets {
		if strings.Contains(s, secret) {
			t.Errorf("log line holds a secret %q: %s", secret, s)
		}
	}
}
