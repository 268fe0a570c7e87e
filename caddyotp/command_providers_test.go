//go:build integration

package caddyotp

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestSendTestCommandWorksWithSinchInfobipAndTheHTTPSender: `caddy otp send-test` sends through
// each, says the provider's id, and names the setting to fix when the credentials are refused,
// without the secret.
func TestSendTestCommandWorksWithSinchInfobipAndTheHTTPSender(t *testing.T) {
	bin := buildCaddy(t)
	sn, ib, api := restcommtest.NewSinch(), restcommtest.NewInfobip(), restcommtest.NewHTTPAPI()
	defer sn.Close()
	defer ib.Close()
	defer api.Close()
	run := func(sender string, env ...string) (string, error) {
		config := filepath.Join(t.TempDir(), "Caddyfile")
		cfg := fmt.Sprintf("http://localhost:1 {\n\totp {\n\t\tsender %s\n\t\tphones %s\n\t}\n\trespond \"in\"\n}\n", sender, alice)
		writeFile(t, config, cfg)
		cmd := exec.Command(bin, "otp", "send-test", "--config", config, bob)
		cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir()), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	key := "TEST_HTTP_API_KEY=" + api.APIKey
	for _, tc := range []struct {
		name, sender string
		id           func() string
	}{
		{"sinch", sinchBlock(sn), func() string { return sn.Batches()[0].ID }},
		{"infobip", infobipBlock(ib), func() string { return ib.Messages()[0].MessageID }},
		{"http", httpAPIBlock(api), func() string { return api.Messages()[0].ID }},
	} {
		out, err := run(tc.sender, key)
		if err != nil || !strings.Contains(out, "through "+tc.name+": accepted, message id "+tc.id()) {
			t.Errorf("send-test through %s: %v\n%s", tc.name, err, out)
		}
	}
	if b := sn.Batches(); len(b) != 1 || b[0].To != bob || !strings.Contains(b[0].Body, "the sinch sender works") {
		t.Errorf("sinch's test message %+v", b)
	}

	token, block := sn.APIToken, sinchBlock(sn)
	sn.SetAPIToken("rotated") // the configured token no longer works
	out, err := run(block)
	if err == nil || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "check api_token") || strings.Contains(out, token) {
		t.Errorf("sinch with a refused token: %v\n%s", err, out)
	}
	out, err = run(httpAPIBlock(api), "TEST_HTTP_API_KEY=wrong-key-value")
	if err == nil || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "check the header lines") || strings.Contains(out, "wrong-key-value") {
		t.Errorf("http with a refused key: %v\n%s", err, out)
	}
	out, err = run("failover {\n\t\t\t" + block + "\n\t\t\t" + infobipBlock(ib) + "\n\t\t}")
	if err != nil || !strings.Contains(out, "through failover, provider infobip: accepted") {
		t.Errorf("send-test through a failover of sinch and infobip: %v\n%s", err, out)
	}
}
