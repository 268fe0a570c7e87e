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

// TestCaddyfileAdapt checks configs against testdata/adapt: each file holds a Caddyfile, a line
// of dashes, and either the JSON it must adapt to, or the error it must fail with, from adapting
// or else from provisioning and validating every module as `caddy validate` does.
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
			expected = strings.TrimSpace(expected)
			if !strings.HasPrefix(expected, "{") && expected != "" {
				if err := adaptAndValidate(t, caddyfile); err == nil || !strings.Contains(err.Error(), expected) {
					t.Errorf("error %v, want one containing %q", err, expected)
				}
				return
			}
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
			if !caddytest.CompareAdapt(t, file, caddyfile, "caddyfile", expected) {
				t.Errorf("%s does not adapt to its JSON", file)
			}
		})
	}
}

// adaptAndValidate adapts a Caddyfile and runs what `caddy validate` runs on the result, with the
// storage in a temporary directory.
func adaptAndValidate(t *testing.T, caddyfile string) error {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return err
	}
	var c caddy.Config
	if err := json.Unmarshal(out, &c); err != nil {
		return err
	}
	c.Admin = &caddy.AdminConfig{Disabled: true}
	c.StorageRaw = json.RawMessage(`{"module": "file_system", "root": "` + t.TempDir() + `"}`)
	return caddy.Validate(&c)
}

// TestWarningsAtLoadNameTheRiskAndTheFix: configurations that load but carry a risk say which,
// and how to fix it; safe ones say nothing.
func TestWarningsAtLoadNameTheRiskAndTheFix(t *testing.T) {
	for name, tc := range map[string]struct {
		cfg  map[string]any
		want string
	}{
		"phones * without guards":         {map[string]any{"phones": []string{"*"}}, "SMS toll fraud"},
		"phones * with regions only":      {map[string]any{"phones": []string{"*"}, "regions": []string{"US"}}, "max_sms_per_hour"},
		"log sender on a public site":     {map[string]any{"sender": map[string]any{"module": "log"}, "public_url": "https://example.com"}, "anyone who reads the log can sign in"},
		"phones * with regions and a cap": {map[string]any{"phones": []string{"*"}, "regions": []string{"US"}, "max_sms_per_hour": 100}, ""},
		"an allowlist":                    {nil, ""},
		"log sender on localhost":         {map[string]any{"sender": map[string]any{"module": "log"}}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			h, _ := newUnitHandler(t, tc.cfg)
			got := strings.Join(h.warnings(), "\n")
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("warnings %q, want one containing %q", got, tc.want)
			}
		})
	}
}
