package caddyotp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
	"github.com/caddyserver/caddy/v2"
)

// vonageVectors are the published examples of Vonage's signing (its PHP library's
// SignatureTest.php, and its Python library's test_auth.py): each verifies as given.
var vonageVectors = []struct {
	secret, method, want string
	params               map[string]string
}{
	{"my_secret_key_for_testing", "md5hash", "d2e7b1dc968737c5998ad624e02f90b7", vonageInbound},
	{"my_secret_key_for_testing", "md5", "DDEBD46008C2D4E93CCE578A332A52D5", vonageInbound},
	{"my_secret_key_for_testing", "sha1", "27D0D05C2876C7CB1720DBCDBA4D492E1E55C09A", vonageInbound},
	{"my_secret_key_for_testing", "sha256", "DDB8397C2B90AAC7F3882D306475C9A5058C92322EEF43C92B298B6E0FC0D330", vonageInbound},
	{"my_secret_key_for_testing", "sha512", "E0D3C650F8C9D1A5C174D10DDDBFB003E561F59B265616208B0487C5D819481CD3C311D59CF6165ECD1139622D5BA3A256C0D763AC4A9AD9144B5A426B94FE82", vonageInbound},
	{"my_secret_key_for_testing", "md5hash", "e06d9763e3fd0b9c31beb5fc2fcb011c", map[string]string{"keyword": "TEST",
		"message-timestamp": "2017-04-04 22:57:47", "messageId": "0B00000042AC53BD", "msisdn": "14843472194",
		"nonce": "929d6744-bd28-42c8-b6cf-31d5b4f43732", "text": "Test with & and =", "timestamp": "1491346667",
		"to": "12192259404", "type": "text", "sig": "e06d9763e3fd0b9c31beb5fc2fcb011c"}},
	{"signature_secret", "sha256", "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287", vonageParams},
	{"signature_secret", "md5", "724c2bf6ca423c36e20631b11d1c5753", vonageParams},
	{"signature_secret", "md5", "2bbf0abafb2c55e5af6231513896a2ac", map[string]string{"param1": "value&1", "param2": "value=2", "timestamp": "1234567890"}},
	// The requests the PHP library signs.
	{"71efab63122f1d179f51c46bac838fb5", "md5", "51CDAFEBB4BBCE9525B195C1617CB8D2", vonageRequest},
	{"71efab63122f1d179f51c46bac838fb5", "sha1", "0162AEC64BC183B2E1256545951FE5639DC98020", vonageRequest},
	{"71efab63122f1d179f51c46bac838fb5", "sha256", "9FEC5EF6D0F2B3D2BB7558B6E4042569823CAB9EA0DD30503472B7B304601975", vonageRequest},
	{"71efab63122f1d179f51c46bac838fb5", "sha512", "40BD12B9A4B6000AD1138EEFD24FFE9FBD72AEE13C3FA04B32BB69DBC256AD0A04A463B1A9AF6660D10F6E1E769EE14B9CFF6A635502E93AFCD0BFAB29F38F87", vonageRequest},
	{"my_secret_key_for_testing", "md5hash", "17f5e3b22f778ec73464c01d180e9d0f", map[string]string{"api_key": "not_a_key",
		"from": "12192259404", "text": "Test&test=something", "timestamp": "1490638615", "to": "14843472194"}},
}

var (
	vonageInbound = map[string]string{"message-timestamp": "2013-11-21 15:27:30", "messageId": "020000001B0FE827",
		"msisdn": "14843472194", "text": "Test again", "timestamp": "1385047698", "to": "13239877404", "type": "text"}
	vonageParams  = map[string]string{"param1": "value1", "param2": "value2", "timestamp": "1234567890"}
	vonageRequest = map[string]string{"api_key": "fake_api_key", "to": "14155550100", "from": "AcmeInc",
		"text": "Test From Nexmo", "type": "text", "timestamp": "1540924779"}
)

func withField(p map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for key, val := range p {
		out[key] = val
	}
	if v == "" {
		delete(out, k)
	} else {
		out[k] = v
	}
	return out
}

func TestVonageSignaturesMatchVonagesPublishedExamples(t *testing.T) {
	for _, v := range vonageVectors {
		if got := vonageSignature(v.method, v.secret, v.params); !strings.EqualFold(got, v.want) {
			t.Errorf("%s of %v: %s, want %s", v.method, v.params, got, v.want)
		}
		if got := restcommtest.VonageSignature(v.method, v.secret, v.params); !strings.EqualFold(got, v.want) {
			t.Errorf("the fake signs %s of %v: %s, want %s", v.method, v.params, got, v.want)
		}
		signed := withField(v.params, "sig", v.want)
		if !validVonageSignature(v.method, v.secret, signed) {
			t.Errorf("%s: the published %s does not verify", v.method, v.want)
		}
		if !validVonageSignature(v.method, v.secret, withField(signed, "sig", strings.ToLower(v.want))) {
			t.Errorf("%s: the lower-case %s does not verify", v.method, v.want)
		}
		other := "sha256"
		if v.method == "sha256" {
			other = "md5hash"
		}
		for what, p := range map[string]map[string]string{
			"a changed text":      withField(signed, "text", "Test again!"),
			"a changed timestamp": withField(signed, "timestamp", "1999999999"),
			"a changed status":    withField(signed, "status", "delivered"),
			"a field taken away":  withField(signed, "timestamp", ""),
			"no sig":              withField(signed, "sig", ""),
			"a truncated sig":     withField(signed, "sig", v.want[:16]),
			"a field added":       withField(signed, "extra", "1"),
		} {
			if validVonageSignature(v.method, v.secret, p) {
				t.Errorf("%s: %s verifies", v.method, what)
			}
		}
		if validVonageSignature(v.method, "another secret", signed) || validVonageSignature(other, v.secret, signed) || validVonageSignature(v.method, "", signed) {
			t.Errorf("%s: another secret, another method or no secret verifies", v.method)
		}
	}
	// A field name that holds & or = could carry the fields after it: a signed receipt read with
	// its err-code folded into a name verifies over the same string, and is refused.
	real := map[string]string{"client-ref": "abc", "err-code": "5", "status": "delivered", "timestamp": "1700000000"}
	real["sig"] = vonageSignature("sha256", "s", real)
	folded := map[string]string{"client-ref=abc&err-code": "5", "status": "delivered", "timestamp": "1700000000", "sig": real["sig"]}
	if !validVonageSignature("sha256", "s", real) || validVonageSignature("sha256", "s", folded) {
		t.Error("a field folded into another's name verifies, or the real receipt does not")
	}
	// The & and = of a value become _: the canonical string holds no other & and =.
	if vonageSignature("md5hash", "s", map[string]string{"a": "x&y"}) != vonageSignature("md5hash", "s", map[string]string{"a": "x_y"}) {
		t.Error("& is not replaced by _ in values")
	}
}

func newTestVonage(t *testing.T, vf *restcommtest.Vonage, edit func(*Vonage)) (*Vonage, error) {
	t.Helper()
	return provisioned(t, &Vonage{APIKey: vf.APIKey, APISecret: vf.APISecret, From: fromNum, BaseURL: vf.URL, Timeout: caddy.Duration(2 * time.Second)}, edit)
}

func TestVonageValidateNamesTheSettingAndEchoesNoSecret(t *testing.T) {
	vf := restcommtest.NewVonage()
	defer vf.Close()
	wantRefused(t, func(t *testing.T, edit func(*Vonage)) (*Vonage, error) { return newTestVonage(t, vf, edit) }, vf.APISecret, []refusal[*Vonage]{
		{"no key", func(s *Vonage) { s.APIKey = "" }, "api_key is empty"},
		{"a key from an unset variable", func(s *Vonage) { s.APIKey = "{env.SURELY_UNSET_VONAGE_KEY}" }, "SURELY_UNSET_VONAGE_KEY is not set"},
		{"a secret in the key's field", func(s *Vonage) { s.APIKey = "supersecrettoken" }, "api_key (16 characters)"},
		{"no secret", func(s *Vonage) { s.APISecret = "" }, "api_secret is empty"},
		{"an unknown method", func(s *Vonage) { s.SignatureSecret, s.SignatureMethod = "supersecrettoken", "sha384" }, "signature_method"},
		{"no from", func(s *Vonage) { s.From = "" }, "from is empty"},
		{"a bad from", func(s *Vonage) { s.From = "12-34" }, "from \"12-34\""},
		{"voice", func(s *Vonage) { s.Voice = true }, "voice is not offered"},
		{"a bad base URL", func(s *Vonage) { s.BaseURL = "rest.nexmo.com" }, "base_url"},
		{"credentials in the URL", func(s *Vonage) { s.BaseURL = "https://k:supersecrettoken@rest.nexmo.com" }, "must not hold credentials"},
	})
	for name, edit := range map[string]func(*Vonage){
		"a number":                  nil,
		"a sender id":               func(s *Vonage) { s.From = "ExampleCo" },
		"a signature secret alone":  func(s *Vonage) { s.APISecret, s.SignatureSecret = "", "x" },
		"a signature method of its": func(s *Vonage) { s.SignatureSecret, s.SignatureMethod = "x", "sha512" },
	} {
		if _, err := newTestVonage(t, vf, edit); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestVonageSendsWhatTheAPIWantsAndClassifiesEachRefusal: every refusal comes in a 200, and
// each code is the number's, the configuration's or a passing fault, none with a secret.
func TestVonageSendsWhatTheAPIWantsAndClassifiesEachRefusal(t *testing.T) {
	vf := restcommtest.NewVonage()
	defer vf.Close()
	s, err := newTestVonage(t, vf, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := s.Send(context.Background(), Message{To: alice, Body: "Ваш код 987654", Validity: 5 * time.Minute,
		Receipts: func(p string) string { return "https://gate.example/.otp/receipt/" + p }})
	msgs := vf.Messages()
	if err != nil || len(msgs) != 1 || sent.ID != msgs[0].ID || !sent.Receipts || sent.Provider != "vonage" {
		t.Fatalf("send: %+v %v (%d messages)", sent, err, len(msgs))
	}
	if m := msgs[0]; m.To != "12015550123" || m.From != "12015550100" || m.Type != "unicode" || m.Text != "Ваш код 987654" ||
		m.TTL != "300000" || m.Callback != "https://gate.example/.otp/receipt/vonage" || m.Signed {
		t.Errorf("message as sent: %+v", m)
	}
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"}); err != nil || vf.Messages()[1].Type != "" {
		t.Errorf("a GSM-7 text: %v, type %q", err, vf.Messages()[1].Type)
	}

	for _, tc := range []struct {
		failure restcommtest.VonageFailure
		fault   Fault
		reason  string
		says    string
	}{
		{restcommtest.VonageInvalidMessage, NumberFault, "invalid", "status 6"},
		{restcommtest.VonageNumberBarred, NumberFault, "blocked", "barred"},
		{restcommtest.VonageNumberDeactivated, NumberFault, "invalid", "de-activated"},
		{restcommtest.VonageNonWhitelisted, DestinationFault, "", "whitelisted"},
		{restcommtest.VonageInvalidCredentials, ConfigFault, "", "check api_key and api_secret"},
		{restcommtest.VonageAccountBarred, ConfigFault, "", "suspended"},
		{restcommtest.VonageQuotaExceeded, ConfigFault, "", "no credit"},
		{restcommtest.VonageInvalidSender, ConfigFault, "", "from is not allowed"},
		{restcommtest.VonageThrottled, TemporaryFault, "", "throttled"},
		{restcommtest.VonageInternalError, TemporaryFault, "", "status 5"},
		{restcommtest.VonageHTTP500, TemporaryFault, "", "provider failure"},
		{restcommtest.VonageDropConnection, TemporaryFault, "", "connection failed"},
	} {
		vf.Fail(tc.failure)
		_, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code"})
		se, ok := err.(*SendError)
		if !ok || se.Fault != tc.fault || se.Reason != tc.reason || !strings.Contains(se.Detail, tc.says) || se.Provider != "vonage" {
			t.Errorf("%s: %#v, want %v %q saying %q", tc.failure, err, tc.fault, tc.reason, tc.says)
			continue
		}
		for _, secret := range []string{"987654", alice, "12015550123", vf.APISecret} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error holds %q: %v", tc.failure, secret, err)
			}
		}
	}
	vf.Fail(restcommtest.VonageNone)
	s.APISecret = "wrong" + vf.APISecret
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "x"}); err == nil || !strings.Contains(err.Error(), "check api_key and api_secret") || strings.Contains(err.Error(), vf.APISecret) {
		t.Errorf("a wrong secret: %v", err)
	}
}

func TestVonageSignsItsRequestsWhenGivenASignatureSecret(t *testing.T) {
	vf := restcommtest.NewVonage()
	defer vf.Close()
	vf.SignWith("sha256", "the-signature-secret")
	s, err := newTestVonage(t, vf, func(s *Vonage) {
		s.APISecret, s.SignatureSecret, s.SignatureMethod = "", "the-signature-secret", "sha256"
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "987654 is your code & more = this"}); err != nil || !vf.Messages()[0].Signed {
		t.Fatalf("a signed send: %v %+v", err, vf.Messages())
	}
	s.SignatureSecret = "another-secret"
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "x"}); err == nil || !strings.Contains(err.Error(), "check signature_secret and signature_method") {
		t.Errorf("signed with another secret: %v", err)
	}
	// With api_secret as well, the request is signed, not both (the API refuses both: 32).
	s.SignatureSecret, s.APISecret = "the-signature-secret", vf.APISecret
	if _, err := s.Send(context.Background(), Message{To: alice, Body: "x"}); err != nil {
		t.Errorf("signed, with api_secret configured too: %v", err)
	}
}

func TestVonageReceiptsVerifyTheirSigAndMapFinalStates(t *testing.T) {
	vf := restcommtest.NewVonage()
	defer vf.Close()
	vf.SignWith("md5hash", "the-signature-secret")
	s, err := newTestVonage(t, vf, func(s *Vonage) { s.SignatureSecret = "the-signature-secret" })
	if err != nil {
		t.Fatal(err)
	}
	m := restcommtest.VonageMessage{ID: "0B00000127FDBC63", From: "12015550100", To: "12015550123"}
	read := func(params map[string]string, form bool) (Receipt, error) {
		var r *http.Request
		if form {
			f := url.Values{}
			for k, v := range params {
				f.Set(k, v)
			}
			r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(f.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			b := "{"
			for k, v := range params {
				b += `"` + k + `":"` + v + `",`
			}
			r = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.TrimSuffix(b, ",")+"}"))
			r.Header.Set("Content-Type", "application/json")
		}
		return s.ReadReceipt(r, "vonage", "https://gate.example/.otp/receipt/x")
	}
	for _, tc := range []struct {
		status string
		code   int
		want   ReceiptStatus
		reason string
	}{
		{"delivered", 0, ReceiptDelivered, ""},
		{"accepted", 0, ReceiptPending, ""},
		{"buffered", 2, ReceiptPending, ""},
		{"failed", 9, ReceiptFailed, "failed: illegal number (the recipient opted out) (err-code 9)"},
		{"rejected", 14, ReceiptFailed, "rejected: number blocked by carrier (err-code 14)"},
		{"expired", 0, ReceiptFailed, "expired"},
		{"delivered", 8, ReceiptFailed, "delivered: network error (err-code 8)"},
		{"unknown", 1, ReceiptPending, ""},
	} {
		for _, form := range []bool{false, true} {
			got, err := read(vf.ReceiptParams(m, tc.status, tc.code), form)
			if err != nil || got.Status != tc.want || got.Reason != tc.reason {
				t.Errorf("%s %d (form %v): %+v %v, want %v %q", tc.status, tc.code, form, got, err, tc.want, tc.reason)
			}
		}
	}
	p := vf.ReceiptParams(m, "delivered", 0)
	for what, forged := range map[string]map[string]string{
		"no sig":             withField(p, "sig", ""),
		"a status changed":   withField(p, "status", "failed"),
		"a timestamp change": withField(p, "timestamp", "1"),
		"a nonce changed":    withField(p, "nonce", "929d6744-bd28-42c8-b6cf-31d5b4f43732"),
		"signed by another":  withField(p, "sig", restcommtest.VonageSignature("md5hash", "guess", p)),
	} {
		if _, err := read(forged, false); err != ErrForgedReceipt {
			t.Errorf("%s: %v, want ErrForgedReceipt", what, err)
		}
	}
	// Without signature_secret the receipt is taken on its token alone.
	unsigned, err := newTestVonage(t, vf, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"status":"delivered","err-code":"0","messageId":"X"}`))
	r.Header.Set("Content-Type", "application/json")
	if got, err := unsigned.ReadReceipt(r, "vonage", ""); err != nil || got.Status != ReceiptDelivered {
		t.Errorf("an unsigned receipt without signature_secret: %+v %v", got, err)
	}
}
