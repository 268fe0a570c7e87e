//go:build integration

package caddyotp

import (
	"fmt"
	"net"
	"net/http"
	"testing"

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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
