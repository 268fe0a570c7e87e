package caddyotp

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

var update = flag.Bool("update", false, "rewrite the JSON half of testdata/adapt/*.caddyfiletest")

// TestCaddyfileAdapt checks `caddy adapt` output against testdata/adapt: each file holds a
// Caddyfile, a line of dashes, and the JSON it must adapt to.
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, _ := strings.Cut(string(data), "----------")
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			if *update {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				_ = json.Indent(&pretty, out, "", "\t") // the same layout CompareAdapt reads
				_ = os.WriteFile(file, []byte(caddyfile+"----------\n"+pretty.String()+"\n"), 0o644)
				return
			}
			if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", strings.TrimSpace(expected)) {
				t.Errorf("%s does not adapt to its JSON", file)
			}
		})
	}
}

func TestCaddyfileErrorsNameTheProblem(t *testing.T) {
	for name, tc := range map[string]struct{ block, want string }{
		"unknown subdirective": {"phone +12015550123", `otp: unknown subdirective "phone"`},
		"given twice":          {"code_ttl 5m\ncode_ttl 6m", "otp: code_ttl given twice"},
		"bad duration":         {`code_ttl "5 minutes"`, `"5 minutes" is not a duration`},
		"limit without window": {"send_limit 5", "expected a count and a window"},
		"limit zero count":     {"ip_limit 0 10m", `"0" is not a count of at least 1`},
		"bad number":           {"code_length six", `"six" is not a whole number`},
		"sender without name":  {"sender", "sender needs a name"},
		"unknown sender":       {"sender twilio", "http.handlers.otp.senders.twilio"},
		"restcomm unknown":     {"sender restcomm {\ntoken x\n}", `restcomm sender: unknown subdirective "token"`},
		"log sender options":   {"sender log verbose", "log sender takes no options"},
		"argument on otp":      {"", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			head := "otp {"
			if name == "argument on otp" {
				head = "otp extra {"
			}
			cfg := ":8080 {\n" + head + "\n" + tc.block + "\n}\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestValidateRejectsUnsafeOrUnworkableConfigs runs what `caddy validate` runs: adapt, then
// provision and validate every module without starting servers.
func TestValidateRejectsUnsafeOrUnworkableConfigs(t *testing.T) {
	phonesFile := filepath.Join(t.TempDir(), "phones.txt")
	_ = os.WriteFile(phonesFile, []byte("+12015550123\n+1 555 0100\n"), 0o600)
	const ok = "sender log\nphones +12015550123\nsecret 0123456789abcdef0123456789abcdef\n"
	for name, tc := range map[string]struct{ block, want string }{
		"no sender":          {"phones +12015550123\nsecret 0123456789abcdef0123456789abcdef", "no sender"},
		"no phones":          {"sender log\nsecret 0123456789abcdef0123456789abcdef", "no one may sign in"},
		"invalid phone":      {ok + "phones_file " + phonesFile, phonesFile + ":2"},
		"phone not E.164":    {"sender log\nphones 2015550123\nsecret 0123456789abcdef0123456789abcdef", `"2015550123" is not a valid phone number`},
		"code_ttl over 10m":  {ok + "code_ttl 11m", "code_ttl 11m0s must be"},
		"code_length 5":      {ok + "code_length 5", "code_length 5 is outside 6..10"},
		"code_length 11":     {ok + "code_length 11", "code_length 11 is outside 6..10"},
		"short secret":       {"sender log\nphones +12015550123\nsecret short", "at least 32"},
		"idle over ttl":      {ok + "session_ttl 1h\nsession_idle 2h", "session_idle"},
		"bad path":           {ok + "path /.otp/", "path"},
		"bad cookie":         {ok + "cookie_name a;b", "cookie_name"},
		"no {code}":          {ok + `message "hello"`, "must contain {code}"},
		"bad region":         {ok + "regions US XX", `regions: "XX"`},
		"restcomm no token":  {"sender restcomm {\naccount_sid AC1\nfrom +12015550100\n}\nphones +12015550123\nsecret 0123456789abcdef0123456789abcdef", "auth_token is empty"},
		"missing templates":  {ok + "templates /nonexistent/otp", "not a readable directory"},
		"max_attempts 0":     {ok + "max_attempts 0", ""}, // 0 means default: valid
		"the working config": {ok, ""},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := "{\n\tadmin off\n\tstorage file_system " + t.TempDir() + "\n}\n:8080 {\notp {\n" + tc.block + "\n}\n}\n"
			out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var c caddy.Config
			if err := json.Unmarshal(out, &c); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&c)
			if tc.want == "" {
				if err != nil {
					t.Errorf("valid config refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
