package caddyotp_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-otp/caddy-otp/caddyotp"
)

// jsonSender is a sender as a third party would write it in a module of its own, with nothing
// but the package's exported contract: its provider takes JSON, and posts JSON receipts signed
// with an HMAC-SHA256 of the body in a header.
type jsonSender struct{}

var jsonProvider = struct {
	sync.Mutex
	callbacks []string
}{}

const jsonSecret = "receipt-secret"

func init() { caddy.RegisterModule(jsonSender{}) }

func (jsonSender) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.otp.senders.test_json", New: func() caddy.Module { return new(jsonSender) }}
}

func (*jsonSender) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	return nil
}

func (*jsonSender) Send(_ context.Context, m caddyotp.Message) (caddyotp.Sent, error) {
	sent := caddyotp.Sent{ID: "J1", Provider: "test_json"}
	if m.Receipts != nil {
		jsonProvider.Lock()
		jsonProvider.callbacks = append(jsonProvider.callbacks, m.Receipts(sent.Provider))
		jsonProvider.Unlock()
		sent.Receipts = true
	}
	return sent, nil
}

func (*jsonSender) ReceiptsEnabled() bool { return true }

func (*jsonSender) ReadReceipt(r *http.Request, _, _ string) (caddyotp.Receipt, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return caddyotp.Receipt{}, err
	}
	if !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(jsonSign(body))) {
		return caddyotp.Receipt{}, caddyotp.ErrForgedReceipt
	}
	var rec struct{ Status string }
	if err := json.Unmarshal(body, &rec); err != nil {
		return caddyotp.Receipt{}, err
	}
	if rec.Status == "delivered" {
		return caddyotp.Receipt{Status: caddyotp.ReceiptDelivered}, nil
	}
	return caddyotp.Receipt{Status: caddyotp.ReceiptPending}, nil
}

func jsonSign(body []byte) string {
	m := hmac.New(sha256.New, []byte(jsonSecret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// TestASenderOfAnotherModuleGetsItsReceipts: a sender written outside the package, with its own
// receipt format and signature, is given a receipt URL, and the receipts it finds authentic move
// the visitor's code to "delivered"; one it finds forged is refused and changes nothing.
func TestASenderOfAnotherModuleGetsItsReceipts(t *testing.T) {
	const site = "http://localhost:9080"
	caddytest.NewTester(t).InitServer(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
}
http://localhost:9080 {
	otp {
		sender test_json
		phones +12015550123
		public_url http://localhost:9080
	}
	respond "in"
}`, "caddyfile")
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, site+path, nil)
		req.Header.Set("Accept", "application/json, text/html")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(get("/.otp/login"))
	if m == nil {
		t.Fatal("no CSRF token on the phone page")
	}
	req, _ := http.NewRequest(http.MethodPost, site+"/.otp/send", strings.NewReader(url.Values{"csrf": {m[1]}, "phone": {"+12015550123"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", site)
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("send: %v %v", resp, err)
	}
	resp.Body.Close()
	var callback string
	for deadline := time.Now().Add(5 * time.Second); callback == "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		jsonProvider.Lock()
		if n := len(jsonProvider.callbacks); n > 0 {
			callback = jsonProvider.callbacks[n-1]
		}
		jsonProvider.Unlock()
	}
	if !strings.HasPrefix(callback, site+"/.otp/receipt/") {
		t.Fatalf("the sender was given the receipt URL %q", callback)
	}
	state := func() string {
		var s struct{ Delivery string }
		_ = json.Unmarshal([]byte(get("/.otp/status")), &s)
		return s.Delivery
	}
	post := func(body, signature string) int {
		req, _ := http.NewRequest(http.MethodPost, callback, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Signature", signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	delivered := `{"status":"delivered"}`
	if code := post(delivered, jsonSign([]byte(`{"status":"failed"}`))); code != http.StatusForbidden || state() == "delivered" {
		t.Errorf("a forged receipt: %d, state %q; want 403 and no change", code, state())
	}
	if code := post(delivered, jsonSign([]byte(delivered))); code != http.StatusNoContent {
		t.Errorf("an authentic receipt: %d, want 204", code)
	}
	if s := state(); s != "delivered" {
		t.Errorf("after an authentic receipt the code is %q, want delivered", s)
	}
}
