//go:build integration

package caddyotp

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestTheDemoSignsInAndSaysWhatItWithholds runs the README's demo, Caddyfile.example, as the
// README says: the code of the allowed number is written to the terminal, it signs in, and a
// number that may not sign in is told there too, since the demo's user is its operator, who
// would otherwise wait for a code that never comes. The page says nothing of it.
func TestTheDemoSignsInAndSaysWhatItWithholds(t *testing.T) {
	cfg, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	demo := runCaddy(t, string(cfg), 8080)
	v := newVisitorAt(t, "http://localhost:8080")
	wantStatus(t, "the protected page", v.get("/"), http.StatusSeeOther)

	csrf, sent := v.startSignIn("/", "+1 201 555 0123")
	wantStatus(t, "asking for a code", sent, http.StatusSeeOther)
	code := waitFor(t, demo.out, regexp.MustCompile(`(\d{6})  is the sign-in code for \+1201\*+23`))
	wantStatus(t, "typing the code", v.post("/.otp/verify", url.Values{"csrf": {csrf}, "code": {code}}), http.StatusSeeOther)
	if page := v.get("/"); page.status != http.StatusOK || !strings.Contains(page.body, "through the gate") {
		t.Fatalf("the protected page after sign-in: %d %q", page.status, page.body)
	}

	other := newVisitorAt(t, "http://localhost:8080")
	_, refused := other.startSignIn("/", "+1 201 555 0145")
	wantStatus(t, "asking for a code for a number that may not sign in", refused, http.StatusSeeOther)
	waitFor(t, demo.out, regexp.MustCompile(`\+1201\*+45 gets no code here \(not in phones, users or regions\): no code sent`))
}

// waitFor waits for pattern in out, and returns its first group.
func waitFor(t *testing.T, out interface{ String() string }, pattern *regexp.Regexp) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := pattern.FindStringSubmatch(out.String()); m != nil {
			if len(m) > 1 {
				return m[1]
			}
			return m[0]
		}
	}
	t.Fatalf("the terminal never said %q:\n%s", pattern, out)
	return ""
}
