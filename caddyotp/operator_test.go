package caddyotp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// scrape reads Caddy's admin /metrics and returns the otp series, by name with labels.
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(b), "+1201") || strings.Contains(string(b), "2015550") {
		t.Errorf("a metric holds a phone number")
	}
	series := map[string]float64{}
	for _, m := range regexp.MustCompile(`(?m)^(caddy_otp_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+]+)$`).FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		series[m[1]] = v
	}
	return series
}

func TestMetricsCountAFlowAndItsFailures(t *testing.T) {
	g := startGate(t, "")
	before := scrape(t)

	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	v.settled()
	_, code := g.code(1)
	v.post("/.otp/resend", url.Values{"csrf": {csrf}})                            // too early: 429
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}}) // wrong
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}})            // right
	v.signOut(false)
	refused := newVisitor(t)
	refused.startSignIn("/", stranger)
	refused.settled()
	g.sms.Fail(restcommtest.InternalError)
	failed := newVisitor(t)
	failed.startSignIn("/", bob)
	failed.settled()
	g.sms.Fail(restcommtest.None)

	after := scrape(t)
	for series, want := range map[string]float64{
		`caddy_otp_sms_sent_total{result="sent"}`:             1,
		`caddy_otp_sms_sent_total{result="not_allowed"}`:      1,
		`caddy_otp_sms_sent_total{result="failed_temporary"}`: 1,
		`caddy_otp_verifications_total{result="wrong"}`:       1,
		`caddy_otp_verifications_total{result="accepted"}`:    1,
		`caddy_otp_rate_limited_total{limit="resend"}`:        1,
		`caddy_otp_sessions_issued_total`:                     1,
		`caddy_otp_sessions_revoked_total`:                    1,
		`caddy_otp_sender_duration_seconds_count`:             2,
	} {
		if got := after[series] - before[series]; got != want {
			t.Errorf("%s went up by %v, want %v", series, got, want)
		}
	}
}

// logEvents returns the log entries with the given message.
func logEvents(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(logs, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(l), &e) == nil && e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

func TestLogEventsOfAFlowHaveStableFields(t *testing.T) {
	g := startGate(t, "lockout 2 15m")
	v := newVisitor(t)
	csrf, _ := v.startSignIn("/", alice)
	msg, code := g.code(1)
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {otherCode(code)}})
	clock.Advance(31 * time.Second)
	v.post("/.otp/resend", url.Values{"csrf": {csrf}})
	_, code2 := g.code(2)
	v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code2}})
	v.signOut(false)
	w := newVisitor(t)
	c, _ := w.startSignIn("/", bob)
	_, bobCode := g.code(3)
	for i := 0; i < 2; i++ {
		w.post("/.otp/verify", url.Values{"csrf": {c}, "code": {otherCode(bobCode)}})
	}
	sent := g.waitLogEvents("code sent", 3) // logged from the background, when each delivery ends
	logs := g.logs()

	// Deliveries log when each ends, in the order they end: find the first SMS's line.
	first := slices.IndexFunc(sent, func(e map[string]any) bool { return e["message_id"] == msg.SID })
	if len(sent) != 3 || first < 0 || sent[first]["phone"] != "+1201*****23" || sent[first]["sms_sent"] != true || sent[first]["client_ip"] != "127.0.0.1" {
		t.Errorf("code sent (first message %s): %v", msg.SID, sent)
	}
	failed := logEvents(t, logs, "code failed")
	// lockout 2: after one wrong code the lockout leaves 1 try, fewer than the code's 4.
	if len(failed) < 1 || failed[0]["reason"] != "wrong" || failed[0]["attempts_left"] != float64(1) {
		t.Errorf("code failed: %v", failed)
	}
	if e := logEvents(t, logs, "code verified"); len(e) != 1 || e[0]["phone"] != "+1201*****23" {
		t.Errorf("code verified: %v", e)
	}
	if e := logEvents(t, logs, "session revoked"); len(e) != 1 || e[0]["phone"] != "+1201*****23" {
		t.Errorf("session revoked: %v", e)
	}
	// Two wrong codes lock this address out for bob's phone; the phone itself is not locked.
	if e := logEvents(t, logs, "address locked out for a phone"); len(e) != 1 || e[0]["phone"] != "+1201*****45" || e[0]["failures"] != float64(2) || e[0]["client_ip"] != "127.0.0.1" {
		t.Errorf("address locked out: %v", e)
	}
	if e := logEvents(t, logs, "phone locked"); len(e) != 0 {
		t.Errorf("phone locked by one address: %v", e)
	}
	w.post("/.otp/verify", url.Values{"csrf": {c}, "code": {bobCode}})
	if e := logEvents(t, g.logs(), "rate limited"); len(e) == 0 || e[len(e)-1]["limit"] != "lockout" {
		t.Errorf("rate limited: %v", e)
	}
}

func TestLogPhonesLogsFullNumbers(t *testing.T) {
	g := startGate(t, "log_phones")
	v := newVisitor(t)
	v.startSignIn("/", alice)
	v.settled()
	if e := logEvents(t, g.logs(), "code sent"); len(e) != 1 || e[0]["phone"] != alice {
		t.Errorf("with log_phones, code sent: %v", e)
	}
}

// waitLogEvents waits until the log holds at least n entries with the message msg, and returns
// them: deliveries log from the background.
func (g *gate) waitLogEvents(msg string, n int) []map[string]any {
	g.t.Helper()
	var got []map[string]any
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = logEvents(g.t, g.logs(), msg); len(got) >= n {
			break
		}
	}
	return got
}
