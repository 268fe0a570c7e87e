package caddyotp

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// caddyfileFence is a fenced Caddyfile block of a Markdown file, at the start of a line.
var caddyfileFence = regexp.MustCompile("(?ms)^```caddyfile\n(.*?)^```")

// TestEveryCaddyfileInTheDocsAdaptsAndIsFormatted: a snippet copied from README.md or docs/ must
// be a whole Caddyfile that adapts, and as `caddy fmt` writes it, so that Caddy gives no
// formatting warning for it.
func TestEveryCaddyfileInTheDocsAdaptsAndIsFormatted(t *testing.T) {
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	snippets := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range caddyfileFence.FindAllSubmatchIndex(data, -1) {
			snippets++
			snippet := data[m[2]:m[3]]
			line := 1 + bytes.Count(data[:m[2]], []byte("\n"))
			where := filepath.Base(file) + ":" + strconv.Itoa(line)
			if formatted := caddyfile.Format(snippet); !bytes.Equal(formatted, snippet) {
				t.Errorf("%s: not as caddy fmt writes it; it would be:\n%s", where, formatted)
			}
			if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(snippet, map[string]any{"filename": where}); err != nil {
				t.Errorf("%s: does not adapt: %v", where, err)
			}
		}
	}
	if snippets < 10 {
		t.Fatalf("found %d Caddyfile snippets in the docs; the fence is ```caddyfile", snippets)
	}
}
