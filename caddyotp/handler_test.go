package caddyotp

import (
	"net/http"
	"strings"
	"testing"
)

func TestLocalPathRefusesEverythingThatLeavesTheSite(t *testing.T) {
	t.Parallel() // no server, no shared clock
	for _, next := range []string{
		"", "evil", "//evil.example", "/\\evil.example", "\\\\evil", "https://evil.example", "http:/evil",
		"javascript:alert(1)", "/\t/evil", "/a\nb", "/%", "/.otp/login", "/.otp", "/" + strings.Repeat("a", 2048),
	} {
		if got := localPath(next, "/.otp"); got != "/" {
			t.Errorf("localPath(%q) = %q, want /", next, got)
		}
	}
	for _, next := range []string{"/", "/a/b?c=d&e=%2F%2Fx", "/%2F%2Fevil", "/.otpx", "/a#frag"} {
		if got := localPath(next, "/.otp"); got != next {
			t.Errorf("localPath(%q) = %q, want it kept", next, got)
		}
	}
}

func TestStripCookiesRemovesOnlyTheGatesCookies(t *testing.T) {
	t.Parallel() // no server, no shared clock
	c := &gateCookies{name: "caddy_otp"}
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header["Cookie"] = []string{
		"a=1; caddy_otp=S; caddy_otp_flow=F; b=2",
		"__Host-caddy_otp=S2",
		"caddy_otp_theme=dark",
	}
	c.strip(r)
	got := strings.Join(r.Header["Cookie"], " | ")
	if got != "a=1; b=2 | caddy_otp_theme=dark" {
		t.Errorf("Cookie after strip = %q", got)
	}
	r.Header["Cookie"] = []string{"caddy_otp=S"}
	c.strip(r)
	if _, ok := r.Header["Cookie"]; ok {
		t.Errorf("empty Cookie header left behind")
	}
}

func TestCookieValueFindsExactName(t *testing.T) {
	t.Parallel() // no server, no shared clock
	r, _ := http.NewRequest("GET", "/", nil)
	r.Header["Cookie"] = []string{"caddy_otp_flow=F; x=1", `caddy_otp="S"`}
	if got := cookieValue(r, "caddy_otp"); got != "S" {
		t.Errorf("cookieValue = %q", got)
	}
	if got := cookieValue(r, "caddy"); got != "" {
		t.Errorf("prefix matched: %q", got)
	}
}
