//go:build integration

package caddyotp

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

func TestCaddyOtpRevokeCallsTheAdminAPI(t *testing.T) {
	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, alice)
	out, err := exec.Command(buildCaddy(t), "otp", "revoke", "--address", "localhost:2999", "+12015550123").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revoked every session and trusted browser of "+maskPhone(alice)) {
		t.Fatalf("caddy otp revoke: %v\n%s", err, out)
	}
	wantStatus(t, "alice after caddy otp revoke", v.get("/"), http.StatusSeeOther)
	out, err = exec.Command(buildCaddy(t), "otp", "revoke", "--address", "localhost:2999", "not-a-phone").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not a phone number") {
		t.Fatalf("caddy otp revoke with a bad number: %v\n%s", err, out)
	}
}

func TestExportTemplatesCommand(t *testing.T) {
	bin := buildCaddy(t)
	dir := filepath.Join(t.TempDir(), "pages")
	out, err := exec.Command(bin, "otp", "export-templates", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy otp export-templates: %v\n%s", err, out)
	}
	for _, name := range []string{"layout.html", "login.html", "verify.html", "message.html", "logout.html"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s not exported", name)
		}
	}
	if out, err := exec.Command(bin, "otp", "export-templates", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), "exists already") {
		t.Errorf("second export did not refuse: %v %s", err, out)
	}
}

func TestSendTestCommandReportsTheProvidersAnswer(t *testing.T) {
	bin := buildCaddy(t)
	sms := restcommtest.NewServer()
	defer sms.Close()
	config := filepath.Join(t.TempDir(), "Caddyfile")
	cfg := fmt.Sprintf("http://localhost:1 {\n\totp {\n\t\t%s\n\t\tphones %s\n\t}\n\trespond \"in\"\n}\n", senderBlock(sms, ""), alice)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(token string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"otp", "send-test", "--config", config}, args...)...)
		cmd.Env = append(os.Environ(), "TEST_RESTCOMM_TOKEN="+token, "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run(sms.AuthToken, bob)
	msgs := sms.Messages()
	if err != nil || len(msgs) != 1 || !strings.Contains(out, "accepted, message id "+msgs[0].SID) {
		t.Fatalf("send-test: %v\n%s", err, out)
	}
	if msgs[0].To != bob || msgs[0].From != fromNum || !strings.Contains(msgs[0].Body, "the restcomm sender works") {
		t.Errorf("test SMS %+v", msgs[0])
	}

	out, err = run("wrong-token", bob)
	if err == nil || !strings.Contains(out, "HTTP 401") || !strings.Contains(out, "check account_sid and auth_token") || strings.Contains(out, "wrong-token") {
		t.Errorf("with a wrong token: %v\n%s", err, out)
	}
	if out, err := run(sms.AuthToken, "2015550145"); err == nil || !strings.Contains(out, "E.164") {
		t.Errorf("with a national number: %v\n%s", err, out)
	}
}

func TestSendTestCommandWorksWithEverySenderAndNamesTheProvider(t *testing.T) {
	bin := buildCaddy(t)
	sms := restcommtest.NewServer()
	defer sms.Close()
	tw := restcommtest.NewTwilio()
	defer tw.Close()
	run := func(sender string) (string, error) {
		config := filepath.Join(t.TempDir(), "Caddyfile")
		cfg := fmt.Sprintf("http://localhost:1 {\n\totp {\n\t\t%s\n\t\tphones %s\n\t}\n\trespond \"in\"\n}\n", sender, alice)
		if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "otp", "send-test", "--config", config, bob)
		cmd.Env = append(os.Environ(), "TEST_RESTCOMM_TOKEN=rotated", "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("sender " + twilioBlock(tw))
	if msgs := tw.Messages(); err != nil || len(msgs) != 1 || !strings.Contains(out, "through twilio: accepted, message id "+msgs[0].SID) {
		t.Fatalf("send-test through twilio: %v\n%s", err, out)
	}
	// Restcomm refuses the (rotated) token: the failover sends through twilio, and says so.
	out, err = run("sender failover {\n\t\t\t" + strings.TrimPrefix(senderBlock(sms, ""), "sender ") + "\n\t\t\t" + twilioBlock(tw) + "\n\t\t}")
	if msgs := tw.Messages(); err != nil || len(msgs) != 2 || !strings.Contains(out, "through failover, provider twilio: accepted, message id "+msgs[1].SID) {
		t.Fatalf("send-test through failover: %v\n%s", err, out)
	}
	if strings.Contains(out, tw.AuthToken) || len(sms.Messages()) != 0 {
		t.Errorf("send-test output holds the token, or restcomm sent: %s", out)
	}
	out, err = run("sender failover {\n\t\t\t" + strings.TrimPrefix(senderBlock(sms, ""), "sender ") + "\n\t\t\tlog\n\t\t}")
	if err != nil || !strings.Contains(out, "through failover, provider log") {
		t.Errorf("send-test through failover to log: %v\n%s", err, out)
	}
}

// TestCommandsTakeNumbersAsPeopleTypeThem: `caddy otp send-test +1 201 555 0145` and `caddy otp
// revoke +1 201 555 0123` take the number unquoted, send-test finds ./Caddyfile as caddy run
// does, and either command without a number says what is missing.
func TestCommandsTakeNumbersAsPeopleTypeThem(t *testing.T) {
	bin := buildCaddy(t)
	sms := restcommtest.NewServer()
	defer sms.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("http://localhost:1 {\n\totp {\n\t\t%s\n\t\tphones %s\n\t}\n\trespond \"in\"\n}\n", senderBlock(sms, sms.AuthToken), alice)
	writeFile(t, filepath.Join(dir, "Caddyfile"), cfg)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"otp"}, args...)...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("send-test", "+1", "201", "555", "0145")
	if msgs := sms.Messages(); err != nil || len(msgs) != 1 || msgs[0].To != bob {
		t.Fatalf("send-test with ./Caddyfile and the number in four words: %v %+v\n%s", err, msgs, out)
	}
	for _, args := range [][]string{{"send-test"}, {"revoke", "--address", "localhost:2999"}} {
		out, err := run(args...)
		if err == nil || !strings.Contains(out, "phone number") || !strings.Contains(out, "+12015550123") {
			t.Errorf("%v without a number: %v\n%s", args, err, out)
		}
	}

	g := startGate(t, "")
	v := newVisitor(t)
	v.signIn(g, alice)
	if out, err := run("revoke", "--address", "localhost:2999", "+1", "201", "555", "0123"); err != nil || !strings.Contains(out, maskPhone(alice)) {
		t.Fatalf("revoke with the number in four words: %v\n%s", err, out)
	}
	wantStatus(t, "alice after the revoke", v.get("/"), http.StatusSeeOther)
}
