package caddyotp

import (
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	"golang.org/x/text/language"
)

// TestPluralFrenchZeroIsSingular: CLDR puts 0 in French's "one", so zero days, tries or
// seconds take the singular, as French speakers say them.
func TestPluralFrenchZeroIsSingular(t *testing.T) {
	fr := words(catalog["fr"])
	for _, c := range []struct {
		key  string
		n    int
		want string
	}{
		{"trust_device", 0, "Faire confiance à ce navigateur pendant 0\u00a0jour"},
		{"trust_device", 1, "Faire confiance à ce navigateur pendant 1\u00a0jour"},
		{"trust_device", 2, "Faire confiance à ce navigateur pendant 2\u00a0jours"},
		{"err_wrong", 0, "Ce code est incorrect. Il vous reste 0\u00a0essai."},
		{"seconds", 0, "0\u00a0seconde"},
	} {
		if got := fr.count(c.key, c.n); got != c.want {
			t.Errorf("fr %s(%d) = %q, want %q", c.key, c.n, got, c.want)
		}
	}
	if got := fr.duration(0); got != "0\u00a0seconde" {
		t.Errorf("fr duration(0) = %q", got)
	}
}

// TestPluralEnglishOneIsOnlyOne: English's singular is 1 alone; 0 takes the plural.
func TestPluralEnglishOneIsOnlyOne(t *testing.T) {
	en := words(catalog["en"])
	for got, want := range map[string]string{
		en.count("trust_device", 1): "Trust this browser for 1\u00a0day",
		en.count("trust_device", 0): "Trust this browser for 0\u00a0days",
		en.count("trust_device", 2): "Trust this browser for 2\u00a0days",
		en.count("err_wrong", 1):    "That code is not right. 1\u00a0try left.",
		en.count("err_wrong", 0):    "That code is not right. 0\u00a0tries left.",
		en.duration(0):              "0\u00a0seconds",
		en.duration(1):              "1\u00a0second",
		en.duration(59):             "59\u00a0seconds",
		en.duration(60):             "1\u00a0minute",
		en.duration(61):             "2\u00a0minutes",
		en.duration(15 * 60):        "15\u00a0minutes",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// TestPluralGermanAndSpanishForms: German has one and other; Spanish has one (1 alone), other
// (0 too) and many, for whole millions ("1000000 de días"), and so has French.
func TestPluralGermanAndSpanishForms(t *testing.T) {
	de, es, fr := words(catalog["de"]), words(catalog["es"]), words(catalog["fr"])
	for got, want := range map[string]string{
		de.count("trust_device", 1):       "Diesem Browser 1\u00a0Tag lang vertrauen",
		de.count("trust_device", 0):       "Diesem Browser 0\u00a0Tage lang vertrauen",
		de.count("err_wrong", 1):          "Der Code stimmt nicht. Noch 1\u00a0Versuch.",
		de.count("err_wrong", 4):          "Der Code stimmt nicht. Noch 4\u00a0Versuche.",
		de.count("trust_device", 1000000): "Diesem Browser 1000000\u00a0Tage lang vertrauen",
		de.duration(1):                    "1\u00a0Sekunde",
		de.duration(120):                  "2\u00a0Minuten",
		es.count("trust_device", 1):       "Confiar en este navegador durante 1\u00a0día",
		es.count("trust_device", 0):       "Confiar en este navegador durante 0\u00a0días",
		es.count("trust_device", 30):      "Confiar en este navegador durante 30\u00a0días",
		es.count("err_wrong", 1):          "El código no es correcto. Te queda 1\u00a0intento.",
		es.count("err_wrong", 3):          "El código no es correcto. Te quedan 3\u00a0intentos.",
		es.count("trust_device", 1000000): "Confiar en este navegador durante 1000000\u00a0de\u00a0días",
		es.count("trust_device", 1000001): "Confiar en este navegador durante 1000001\u00a0días",
		es.duration(1):                    "1\u00a0segundo",
		es.duration(0):                    "0\u00a0segundos",
		fr.count("trust_device", 2000000): "Faire confiance à ce navigateur pendant 2000000\u00a0de\u00a0jours",
		fr.count("err_wrong", 1000000):    "Ce code est incorrect. Il vous reste 1000000\u00a0d’essais.",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

// cldrPlurals are the plural forms CLDR gives whole numbers in each language of the catalog.
var cldrPlurals = map[string][]string{
	"en": {"one", "other"},
	"de": {"one", "other"},
	"es": {"many", "one", "other"},
	"fr": {"many", "one", "other"},
}

// localeTOML reads every embedded locale file as plain TOML, apart from the loader: by
// language, key (a counted sentence's forms as key.form) and text.
func localeTOML(t *testing.T) map[string]map[string]string {
	t.Helper()
	names, _ := fs.Glob(localeFiles, "locales/*.toml")
	files := map[string]map[string]string{}
	for _, name := range names {
		var raw map[string]any
		if _, err := toml.DecodeFS(localeFiles, name, &raw); err != nil {
			t.Fatal(err)
		}
		flat := map[string]string{}
		for key, v := range raw {
			switch v := v.(type) {
			case string:
				flat[key] = v
			case map[string]any:
				for form, text := range v {
					flat[key+"."+form], _ = text.(string)
				}
			default:
				t.Errorf("%s: %s is a %T", name, key, v)
			}
		}
		files[strings.TrimSuffix(strings.TrimPrefix(name, "locales/"), ".toml")] = flat
	}
	return files
}

// countedKeys are the keys of en.toml's counted sentences.
func countedKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	for key := range localeTOML(t)["en"] {
		if base, ok := strings.CutSuffix(key, ".other"); ok {
			keys = append(keys, base)
		}
	}
	slices.Sort(keys)
	if len(keys) < 4 {
		t.Fatalf("counted sentences %v: trust_device, err_wrong, seconds and minutes at least", keys)
	}
	return keys
}

// TestCatalogFilesHaveEveryKeyAndCLDRsPluralForms: every file has every key of en.toml, and
// each counted sentence exactly the forms CLDR gives its language, each with {n}; the loader's
// own reading of CLDR agrees.
func TestCatalogFilesHaveEveryKeyAndCLDRsPluralForms(t *testing.T) {
	files := localeTOML(t)
	if len(files) != len(cldrPlurals) || len(languages) != len(files) || languages[0] != language.English {
		t.Fatalf("files %v, languages %v", slices.Sorted(maps.Keys(files)), languages)
	}
	counted := countedKeys(t)
	for lang, file := range files {
		if got := slices.Sorted(maps.Keys(mustForms(t, lang))); !slices.Equal(got, cldrPlurals[lang]) {
			t.Errorf("%s: the loader takes forms %v, CLDR %v", lang, got, cldrPlurals[lang])
		}
		for key := range files["en"] {
			if base, _, ok := strings.Cut(key, "."); ok && slices.Contains(counted, base) {
				continue
			}
			if strings.TrimSpace(file[key]) == "" {
				t.Errorf("%s lacks %q", lang, key)
			}
		}
		for _, key := range counted {
			var forms []string
			for k, text := range file {
				if base, form, ok := strings.Cut(k, "."); ok && base == key {
					forms = append(forms, form)
					if !strings.Contains(text, "{n}") {
						t.Errorf("%s: %s has no {n}: %q", lang, k, text)
					}
				}
			}
			if slices.Sort(forms); !slices.Equal(forms, cldrPlurals[lang]) {
				t.Errorf("%s: %s has forms %v, CLDR gives %v", lang, key, forms, cldrPlurals[lang])
			}
			for n := range 1001 {
				if s := words(catalog[lang]).count(key, n); s == "" || strings.Contains(s, "{n}") {
					t.Errorf("%s: %s for %d says %q", lang, key, n, s)
				}
			}
		}
		for key := range file {
			base, _, _ := strings.Cut(key, ".")
			if _, ok := files["en"][key]; !ok && !slices.Contains(counted, base) {
				t.Errorf("%s has %q, which en.toml lacks", lang, key)
			}
		}
	}
}

func mustForms(t *testing.T, lang string) map[string]int {
	t.Helper()
	forms, err := cldrForms(i18n.NewBundle(language.English), language.Make(lang))
	if err != nil {
		t.Fatal(err)
	}
	return forms
}

// TestCatalogPlaceholdersAreTheSameInEveryLanguage: a sentence names the same {placeholders}
// in every language, and every form of a counted one those of English's "other".
func TestCatalogPlaceholdersAreTheSameInEveryLanguage(t *testing.T) {
	files := localeTOML(t)
	for key, text := range files["en"] {
		base, _, counted := strings.Cut(key, ".")
		want := placeholders(text)
		if counted {
			want = placeholders(files["en"][base+".other"])
		}
		for lang, file := range files {
			for k, s := range file {
				if k == key || counted && strings.HasPrefix(k, base+".") {
					if got := placeholders(s); !slices.Equal(got, want) {
						t.Errorf("%s: %s has %v, English %v", lang, k, got, want)
					}
				}
			}
		}
	}
	if got := placeholders("{code} is your {site} sign-in code at {site}."); !slices.Equal(got, []string{"{code}", "{site}"}) {
		t.Errorf("placeholders: %v", got)
	}
}

// TestCatalogKeepsEverySentenceByteForByte: the files' escapes decode to the no-break spaces
// the sentences had, and the typographic marks stay as they are.
func TestCatalogKeepsEverySentenceByteForByte(t *testing.T) {
	for _, c := range []struct{ lang, key, want string }{
		{"en", "phone_hint", "Include your country code, e.g.\u00a0{example}"},
		{"en", "everywhere_hint", "“Sign out everywhere” ends every session of your account, on every browser."},
		{"de", "everywhere_devices", "„Überall abmelden“ beendet alle Sitzungen Ihres Kontos und vergisst alle vertrauenswürdigen Browser."},
		{"es", "code_intro", "Hemos enviado un código de {n}\u00a0dígitos al {phone}."},
		{"fr", "everywhere_hint", "«\u202fSe déconnecter partout\u202f» met fin à toutes les sessions de votre compte, sur tous les navigateurs."},
		{"fr", "didnt_get", "Vous n’avez pas reçu le code\u202f?"},
		{"fr", "text_misconfigured", "Ce site ne peut pas envoyer de codes pour le moment\u202f; son exploitant a été prévenu."},
	} {
		if got := catalog[c.lang][c.key]; got != c.want {
			t.Errorf("%s %s = %q, want %q", c.lang, c.key, got, c.want)
		}
	}
}

// TestWordsSayAndCountUnknownSayNothing: Say fills placeholders; an unknown key, or words of no
// language, say "" rather than panic.
func TestWordsSayAndCountUnknownSayNothing(t *testing.T) {
	if got := words(catalog["de"]).Say("sign_in_to", "site", "Example"); got != "Bei Example anmelden" {
		t.Errorf("Say: %q", got)
	}
	if got := words(catalog["en"]).count("no_such_key", 3); got != "" {
		t.Errorf("unknown counted key: %q", got)
	}
	if got := words(catalog["xx"]).count("trust_device", 3) + words(catalog["xx"]).duration(5); got != "" {
		t.Errorf("no language: %q", got)
	}
}

// localesWith copies the embedded locale files, edited: edit returns name's new content, or ""
// to leave the file out.
func localesWith(t *testing.T, edit map[string]func(string) string) fstest.MapFS {
	t.Helper()
	m := fstest.MapFS{}
	names, _ := fs.Glob(localeFiles, "locales/*.toml")
	for _, name := range names {
		b, _ := fs.ReadFile(localeFiles, name)
		m[name] = &fstest.MapFile{Data: b}
	}
	for name, f := range edit {
		var old string
		if m[name] != nil {
			old = string(m[name].Data)
		}
		if s := f(old); s != "" {
			m[name] = &fstest.MapFile{Data: []byte(s)}
		} else {
			delete(m, name)
		}
	}
	return m
}

func replace(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

// TestCatalogLoadErrorsNameTheFileAndKey: a broken file fails the load with its name and the key
// (or line) at fault, and the embedded files' loader panics with it.
func TestCatalogLoadErrorsNameTheFileAndKey(t *testing.T) {
	if _, _, _, err := loadCatalog(localesWith(t, nil)); err != nil {
		t.Fatalf("the embedded files, copied: %v", err)
	}
	for _, c := range []struct {
		name string
		edit map[string]func(string) string
		want []string
	}{
		{"syntax", map[string]func(string) string{"locales/fr.toml": replace(`verify = "Valider"`, `verify = "Valider`)}, []string{"locales/fr.toml", "line"}},
		{"duplicate", map[string]func(string) string{"locales/de.toml": replace(`verify = `, `sms = "x"`+"\n"+`verify = `)}, []string{"locales/de.toml", "sms"}},
		{"missing key", map[string]func(string) string{"locales/de.toml": replace(`verify = "Bestätigen"`+"\n", "")}, []string{"locales/de.toml", "verify"}},
		{"extra key", map[string]func(string) string{"locales/es.toml": replace(`verify = `, `verfiy = "x"`+"\n"+`verify = `)}, []string{"locales/es.toml", "verfiy"}},
		{"empty sentence", map[string]func(string) string{"locales/es.toml": replace(`verify = "Verificar"`, `verify = " "`)}, []string{"locales/es.toml", "verify", "empty"}},
		{"missing CLDR form", map[string]func(string) string{"locales/fr.toml": replace(`trust_device.many = "Faire confiance à ce navigateur pendant {n}\u00A0de\u00A0jours"`+"\n", "")}, []string{"locales/fr.toml", "trust_device", `"many"`, "1000000"}},
		{"form CLDR does not give", map[string]func(string) string{"locales/de.toml": replace(`seconds.one = `, `seconds.few = "{n} Sek."`+"\n"+`seconds.one = `)}, []string{"locales/de.toml", "seconds", `"few"`}},
		{"counted as plain", map[string]func(string) string{"locales/de.toml": replace(`minutes.one = "{n}\u00A0Minute"`+"\n"+`minutes.other = "{n}\u00A0Minuten"`, `minutes = "{n}\u00A0Minuten"`)}, []string{"locales/de.toml", "minutes", `"one"`}},
		{"plain as counted", map[string]func(string) string{"locales/fr.toml": replace(`verify = "Valider"`, `verify.one = "Valider"`+"\n"+`verify.other = "Valider"`)}, []string{"locales/fr.toml", "verify", "plain"}},
		{"placeholder lost", map[string]func(string) string{"locales/es.toml": replace(`sms = "{code} es tu código para {site}."`, `sms = "{codigo} es tu código para {site}."`)}, []string{"locales/es.toml", "sms", "{code}"}},
		{"placeholder lost in a form", map[string]func(string) string{"locales/fr.toml": replace(`err_wrong.one = "Ce code est incorrect. Il vous reste {n}\u00A0essai."`, `err_wrong.one = "Ce code est incorrect. Il vous reste 1\u00A0essai."`)}, []string{"locales/fr.toml", "err_wrong", `"one"`, "{n}"}},
		{"no English", map[string]func(string) string{"locales/en.toml": func(string) string { return "" }}, []string{"locales/en.toml"}},
		{"not a tag", map[string]func(string) string{"locales/french.toml": func(string) string { return `verify = "x"` }}, []string{"locales/french.toml"}},
		{"not canonical", map[string]func(string) string{"locales/pt_BR.toml": func(string) string { return `verify = "x"` }}, []string{"locales/pt_BR.toml", "pt-BR.toml"}},
	} {
		_, _, _, err := loadCatalog(localesWith(t, c.edit))
		if err == nil {
			t.Errorf("%s: loaded", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %s", c.name, err, w)
			}
		}
	}
	defer func() {
		if r, _ := recover().(string); !strings.Contains(r, "locales/de.toml") || !strings.Contains(r, "verify") {
			t.Errorf("mustLoadCatalog: %q", r)
		}
	}()
	mustLoadCatalog(localesWith(t, map[string]func(string) string{"locales/de.toml": replace(`verify = "Bestätigen"`+"\n", "")}))
}

// TestCatalogANewLanguageIsOneFile: a file with en.toml's keys and the forms CLDR gives its
// language adds the language: its sentences, its plural rule, Accept-Language picks it.
func TestCatalogANewLanguageIsOneFile(t *testing.T) {
	it := func(string) string {
		b, _ := fs.ReadFile(localeFiles, "locales/en.toml")
		s := strings.Replace(string(b), `trust_device.other = "Trust this browser for {n}`+"\\u00A0"+`days"`, `trust_device.other = "Considera attendibile questo browser per {n} giorni"`, 1)
		for _, key := range []string{"trust_device", "err_wrong", "seconds", "minutes"} {
			s = strings.Replace(s, key+".one = ", key+`.many = "{n} di x"`+"\n"+key+".one = ", 1) // Italian: one, many, other
		}
		return s
	}
	c, p, langs, err := loadCatalog(localesWith(t, map[string]func(string) string{"locales/it.toml": it}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []language.Tag{language.English, language.German, language.Spanish, language.French, language.Italian}; !slices.Equal(langs, want) || p["it"] == nil {
		t.Fatalf("languages %v, want %v", langs, want)
	}
	w := words(c["it"])
	if w[langKey] != "it" || w["verify"] != "Verify" {
		t.Errorf("it: %q, %q", w[langKey], w["verify"])
	}
	saved := plurals
	plurals = p
	defer func() { plurals = saved }()
	if got := w.count("trust_device", 2); got != "Considera attendibile questo browser per 2 giorni" {
		t.Errorf("it: %q", got)
	}
	if _, i := language.MatchStrings(language.NewMatcher(langs), "it-IT,it;q=0.9"); langs[i] != language.Italian {
		t.Errorf("it-IT picks %v", langs[i])
	}
}

// TestLanguageNamesAreTheFilesEnglishFirst: the languages the configuration accepts and the
// SMS is measured in are the files', English first.
func TestLanguageNamesAreTheFilesEnglishFirst(t *testing.T) {
	if got := languageNames(); !slices.Equal(got, []string{"en", "de", "es", "fr"}) {
		t.Errorf("languageNames() = %v", got)
	}
	h, _ := newUnitHandler(t, nil)
	h.Language = "it"
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), `language "it" is not one of en, de, es, fr`) {
		t.Errorf("Validate: %v", err)
	}
}
