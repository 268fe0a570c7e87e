package caddyotp

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-otp/caddy-otp/templates"
)

func TestEveryLanguageHasEveryKey(t *testing.T) {
	for lang, w := range catalog {
		for key := range catalog["en"] {
			if strings.TrimSpace(w[key]) == "" {
				t.Errorf("%s lacks %q", lang, key)
			}
		}
		for key := range w {
			if _, ok := catalog["en"][key]; !ok {
				t.Errorf("%s has %q, which English lacks", lang, key)
			}
		}
	}
	if len(catalog) != len(languages) {
		t.Errorf("%d catalogs for %d languages", len(catalog), len(languages))
	}
}

// TestEveryPageRendersInEveryLanguage renders each page with every field a handler may set, in
// each language: no template error, no "<no value>", the lang attribute right, no English left
// in a translated page's labels.
func TestEveryPageRendersInEveryLanguage(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"site_name": "Example", "logo": "/logo.svg"})
	full := page{Title: "T", Intro: "I", Info: "N", Text: "X", Error: "E", CSRF: "c", Phone: "+1", Hint: "H", Example: "+1",
		Regions: []regionOption{{Code: "US", Label: "+1 US", Example: "201", Selected: true}}, Expires: "5", ResendIn: 5, Trust: "T",
		CanCall: true, SignedIn: true, Wait: 3, WaitBefore: "in ", Clock: "0:03", Link: "/l", LinkText: "L",
		Action: &action{Label: "A", Path: "/verify", Post: true, Phone: "+1", Region: "US", Code: true, Everywhere: "1"}}
	for lang := range catalog {
		for _, name := range templates.Pages {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header.Set("Accept-Language", lang)
			w := httptest.NewRecorder()
			if err := h.pages.render(w, h.readVisit(withCaddyContext(r)), http.StatusOK, name, full); err != nil {
				t.Fatalf("%s in %s: %v", name, lang, err)
			}
			body := w.Body.String()
			if strings.Contains(body, "<no value>") || !strings.Contains(body, `<html lang="`+lang+`">`) {
				t.Errorf("%s in %s: missing value or language", name, lang)
			}
			if !strings.Contains(body, `<img src="/logo.svg" alt="">`) || !strings.Contains(body, "Example") {
				t.Errorf("%s in %s: no branding", name, lang)
			}
			if lang != "en" && (strings.Contains(body, ">Send code<") || strings.Contains(body, ">Verify<") || strings.Contains(body, ">Sign out<")) {
				t.Errorf("%s in %s: English label left", name, lang)
			}
		}
	}
}

func TestAcceptLanguagePicksThePagesLanguageAndLanguagePinsIt(t *testing.T) {
	for header, want := range map[string]string{
		"de-DE,de;q=0.9,en;q=0.8": "de", "fr-CA": "fr", "es-419,es;q=0.9": "es", "ja,en;q=0.5": "en", "": "en", "pt-BR": "en",
	} {
		if got := pickLanguage(header); got != want {
			t.Errorf("pickLanguage(%q) = %q, want %q", header, got, want)
		}
	}
	h, _ := newUnitHandler(t, map[string]any{"language": "fr"})
	r := httptest.NewRequest(http.MethodGet, "/.otp/login", nil)
	r.Header.Set("Accept-Language", "de")
	w := httptest.NewRecorder()
	_ = serve(h, w, r)
	if !strings.Contains(w.Body.String(), "Envoyer le code") {
		t.Errorf("language fr did not pin the page's language")
	}
}

func TestTemplateOverrideReplacesExactlyOnePage(t *testing.T) {
	dir := t.TempDir()
	custom := `{{template "top" .}}<h1>Welcome to ACME</h1><form method="post" action="{{.Path}}/send"><input type="hidden" name="csrf" value="{{.CSRF}}"><label for="p">{{.T.phone_label}}</label><input id="p" name="phone" type="tel" autocomplete="tel"></form>{{template "bottom" .}}`
	if err := os.WriteFile(filepath.Join(dir, "login.html"), []byte(custom), 0o600); err != nil {
		t.Fatal(err)
	}
	overridden, err := loadPages(dir)
	if err != nil {
		t.Fatal(err)
	}
	embedded, _ := loadPages("")
	h, _ := newUnitHandler(t, nil)
	for _, name := range templates.Pages {
		var a, b strings.Builder
		p := page{T: catalog["en"], Lang: "en", Nonce: "n", CSRF: "c", Path: "/.otp"}
		_ = overridden[name].Execute(&a, p)
		_ = embedded[name].Execute(&b, p)
		same := a.String() == b.String()
		if name == "login.html" && (same || !strings.Contains(a.String(), "Welcome to ACME")) {
			t.Errorf("login.html was not replaced")
		}
		if name != "login.html" && !same {
			t.Errorf("%s changed, but only login.html was overridden", name)
		}
	}
	_ = h
}

func TestBrokenTemplateOverrideFailsWithFileAndLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "verify.html")
	_ = os.WriteFile(path, []byte("{{template \"top\" .}}\n<h1>ok</h1>\n{{if .Error}\n{{template \"bottom\" .}}"), 0o600)
	_, err := loadPages(dir)
	if err == nil || !strings.Contains(err.Error(), path+":3") {
		t.Errorf("error %v does not name %s:3", err, path)
	}
}

func TestExportedTemplatesAreTheEmbeddedOnes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "otp-templates")
	if err := exportTemplates(dir); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(templates.FS, "*.html")
	for _, name := range names {
		want, _ := fs.ReadFile(templates.FS, name)
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != string(want) {
			t.Errorf("%s not exported as embedded: %v", name, err)
		}
	}
	if err := exportTemplates(dir); err == nil {
		t.Errorf("exporting over existing files did not refuse")
	}
	if _, err := loadPages(dir); err != nil {
		t.Errorf("exported templates do not load: %v", err)
	}
}

func TestMaskPhoneDisplayGroupsLikeTheCountry(t *testing.T) {
	for in, want := range map[string]string{"+12015550123": "+1 201-***-**23", "+442079460000": "+44 20 **** **00"} {
		if got := maskPhoneDisplay(in); got != want {
			t.Errorf("maskPhoneDisplay(%s) = %q, want %q", in, got, want)
		}
	}
}

// TestSignInHeadingNamesTheHostEscaped: without site_name the phone page says "Sign in to"
// the host the visitor asked for, escaped like every other byte of the request.
func TestSignInHeadingNamesTheHostEscaped(t *testing.T) {
	h, _ := newUnitHandler(t, map[string]any{"public_url": ""})
	for host, want := range map[string]string{
		"docs.example.com:8443": "<h1>Sign in to docs.example.com</h1>",
		"<b>x</b>":              "<h1>Sign in to &lt;b&gt;x&lt;/b&gt;</h1>",
	} {
		r := httptest.NewRequest(http.MethodGet, "/.otp/login", nil)
		r.Host = host
		w := httptest.NewRecorder()
		if err := serve(h, w, r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("host %q: want %s in %.400s", host, want, w.Body.String())
		}
	}
}

// TestPluralFormsInEveryLanguage: every counted sentence has its singular and plural forms, so
// that trust_device of one day says "1 day", never "1 days" (CLDR's forms: i18n_test.go).
func TestPluralFormsInEveryLanguage(t *testing.T) {
	for lang, w := range catalog {
		for _, key := range countedKeys(t) {
			one, two := words(w).count(key, 1), words(w).count(key, 2)
			if !strings.Contains(one, "1\u00a0") || !strings.Contains(two, "2\u00a0") || strings.Replace(two, "2\u00a0", "1\u00a0", 1) == one {
				t.Errorf("%s: %s has no proper singular and plural forms: %q / %q", lang, key, one, two)
			}
		}
	}
	if got := words(catalog["en"]).count("trust_device", 1); got != "Trust this browser for 1\u00a0day" {
		t.Errorf("one day: %q", got)
	}
	if got := words(catalog["de"]).count("trust_device", 30); got != "Diesem Browser 30\u00a0Tage lang vertrauen" {
		t.Errorf("30 days in German: %q", got)
	}
}

// TestCodePageShowsTheNumberTypedAndMasksAUsersPhone: the visitor who typed the number sees it
// whole, to catch a typo; in users mode, where nobody typed it, it stays masked.
func TestCodePageShowsTheNumberTypedAndMasksAUsersPhone(t *testing.T) {
	if got := shownPhone(&flow{Phone: alice}); got != "+1\u00a0201\u2011555\u20110123" {
		t.Errorf("a typed number is shown as %q", got)
	}
	if got := shownPhone(&flow{Phone: alice, User: "alice"}); got != "+1\u00a0201\u2011***\u2011**23" {
		t.Errorf("a user's phone is shown as %q", got)
	}
}

// TestOutdatedTemplateCopyFailsAtLoad: a copy made for another version of the gate, naming a
// field this one does not have, is refused when the config loads, with the file and what to do,
// not answered with 500s to visitors later.
func TestOutdatedTemplateCopyFailsAtLoad(t *testing.T) {
	for _, body := range []string{
		`{{template "top" .}}<p>{{.Masked}}</p>{{template "bottom" .}}`,                           // on every render
		`{{template "top" .}}{{if .Error}}{{.Retry}}{{end}}{{template "bottom" .}}`,               // only when there is an error
		`{{template "top" .}}{{if not .CanCall}}{{.T.no_such_key}}{{end}}{{template "bottom" .}}`, // only without a call
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, "verify.html")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := loadPages(dir)
		if err == nil || !strings.Contains(err.Error(), "verify.html") || !strings.Contains(err.Error(), "export-templates") {
			t.Errorf("%s: loaded, or an unclear error: %v", body, err)
		}
	}
}
