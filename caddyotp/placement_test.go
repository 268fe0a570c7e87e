package caddyotp

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestWhereAGateStandsIsCheckedAtLoad runs each config of testdata/placement in a real Caddy:
// each file holds the sites of a Caddyfile, a line of dashes, and the warnings the gate must log
// as it loads, one a line (none for a config that is right), or "error: " and what the load
// must be refused with. These are the configs that load cleanly but where no one can sign in, or
// the gate protects nothing.
func TestWhereAGateStandsIsCheckedAtLoad(t *testing.T) {
	files, _ := filepath.Glob("testdata/placement/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	tester := caddytest.NewTester(t)
	tester.InitServer("{\n\t"+testGlobals+"\n}\n", "caddyfile")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sites, expected, _ := strings.Cut(string(data), "----------")
			logFile := filepath.Join(t.TempDir(), "caddy.log")
			config := "{\n\t" + testGlobals + "\n\tlog {\n\t\toutput file " + logFile + "\n\t\tformat json\n\t\tlevel WARN\n\t}\n}\n" + sites
			refusal := loadThroughAdmin(t, config)
			expected = strings.TrimSpace(expected)
			if want, ok := strings.CutPrefix(expected, "error: "); ok {
				if !strings.Contains(refusal, want) {
					t.Fatalf("the load answered %q, want a refusal containing %q", refusal, want)
				}
				return
			}
			if refusal != "" {
				t.Fatalf("the load was refused: %s", refusal)
			}
			got := strings.Join(gateLines(t, logFile, "warn"), "\n")
			if got != expected {
				t.Errorf("the gate warned:\n%s\nwant:\n%s", got, expected)
			}
		})
	}
}

// loadThroughAdmin loads a Caddyfile into the running Caddy as `caddy reload` does, and returns
// the refusal, "" if it loaded.
func loadThroughAdmin(t *testing.T, config string) string {
	t.Helper()
	resp, err := http.Post("http://localhost:2999/load", "text/caddyfile", strings.NewReader(config))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	return string(body)
}

// gateLines are the messages the gate (logger http.handlers.otp) logged at level.
func gateLines(t *testing.T, logFile, level string) []string {
	t.Helper()
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ Level, Logger, Msg string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Level == level && line.Logger == "http.handlers.otp" {
			out = append(out, line.Msg)
		}
	}
	return out
}

// TestARefusedConfigSaysTheFixFirst: Caddy's error leads with the chain of modules that loaded
// the gate; the gate logs what to fix before it, and the chain stays in Caddy's answer.
func TestARefusedConfigSaysTheFixFirst(t *testing.T) {
	tester := caddytest.NewTester(t)
	tester.InitServer("{\n\t"+testGlobals+"\n}\n", "caddyfile")
	for _, tc := range []struct{ otp, fix string }{
		{"sender twilio {\n\t\t\taccount_sid {env.CADDY_OTP_UNSET_SID}\n\t\t\tauth_token x\n\t\t\tfrom +12015550100\n\t\t}\n\t\tphones +12015550123",
			"twilio sender: account_sid is empty: CADDY_OTP_UNSET_SID is not set in Caddy's environment (as {env.CADDY_OTP_UNSET_SID} asks); the config is not loaded"},
		{"sender log",
			"otp: no one may sign in: add `phones +12015550123 ...`, `phones_file FILE`, `phones *` to let anyone with a phone sign in, or `users { NAME PHONE }` after basic_auth; the config is not loaded"},
	} {
		logFile := filepath.Join(t.TempDir(), "caddy.log")
		refusal := loadThroughAdmin(t, "{\n\t"+testGlobals+"\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}\n}\nlocalhost:9080 {\n\totp {\n\t\t"+tc.otp+"\n\t}\n\trespond \"in\"\n}\n")
		if !strings.Contains(refusal, "loading module 'otp'") {
			t.Errorf("Caddy's answer lost its chain: %s", refusal)
		}
		if got := gateLines(t, logFile, "error"); len(got) != 1 || got[0] != tc.fix {
			t.Errorf("the gate logged %q, want the fix %q", got, tc.fix)
		}
	}
}
