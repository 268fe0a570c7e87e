package caddyotp

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-otp/caddy-otp/caddyotp/restcommtest"
)

// TestSessionSurvivesRestart runs this repository's Caddy as a real process, signs in, stops it
// and starts it again: the session still passes, because the signing key was generated once and
// kept in Caddy's storage. With other (empty) storage the same cookie is refused, which shows it
// is the stored key, not luck, that carries the session.
func TestSessionSurvivesRestart(t *testing.T) {
	sms := restcommtest.NewServer()
	defer sms.Close()
	port := freePort(t)
	config := func(storage string) string {
		return fmt.Sprintf(`{
	admin off
	storage file_system %s
}
http://localhost:%d {
	otp {
		%s
		public_url http://localhost:%d
		phones %s
	}
	respond "hello {http.auth.user.id}"
}
`, storage, port, senderBlock(sms, ""), port, alice)
	}
	token := "TEST_RESTCOMM_TOKEN=" + sms.AuthToken
	storage := t.TempDir()
	base := fmt.Sprintf("http://localhost:%d", port)

	first := runCaddy(t, config(storage), port, token)
	v := newVisitorAt(t, base)
	v.signInWith(sms, alice)
	wantStatus(t, "signed in", v.get("/"), http.StatusOK)
	first.stop()

	second := runCaddy(t, config(storage), port, token)
	r := v.get("/")
	second.stop()
	wantStatus(t, "after restart", r, http.StatusOK)
	if r.body != "hello "+alice {
		t.Errorf("body %q", r.body)
	}

	runCaddy(t, config(t.TempDir()), port, token)
	wantStatus(t, "with other storage", v.get("/"), http.StatusSeeOther)
}

var built struct {
	sync.Once
	bin string
	err error
	out []byte
}

// buildCaddy builds ./cmd/caddy once per test run.
func buildCaddy(t *testing.T) string {
	t.Helper()
	built.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-otp-bin")
		if err != nil {
			built.err = err
			return
		}
		built.bin = filepath.Join(dir, "caddy")
		args := []string{"build", "-o", built.bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		built.out, built.err = exec.Command("go", append(args, "../cmd/caddy")...).CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", built.err, built.out)
	}
	return built.bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, port int, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("caddy did not listen on %d:\n%s", port, out)
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
