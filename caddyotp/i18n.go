package caddyotp

import (
	"embed"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/nicksnyder/go-i18n/v2/i18n"
	msgtemplate "github.com/nicksnyder/go-i18n/v2/i18n/template"
	"golang.org/x/text/language"
)

// localeFiles are the sentences of the pages, the default SMS and the voice call, one TOML file
// per language for translators to edit: locales/<language tag>.toml. en.toml is the source;
// every other file has exactly its keys.
//
//go:embed locales/*.toml
var localeFiles embed.FS

// catalog holds every plain sentence by language and key, and, under langKey, the language
// itself; plurals says each language's counted sentences (see words.count); languages are the
// catalog's languages, English first: the fallback. A broken file stops the program here.
var catalog, plurals, languages = mustLoadCatalog(localeFiles)

var languageMatcher = language.NewMatcher(languages)

// languageNames are the catalog's languages' tags, English first.
func languageNames() []string {
	names := make([]string, len(languages))
	for i, tag := range languages {
		names[i] = tag.String()
	}
	return names
}

// langKey is the key under which a language's words keep the language's tag: no file can give a
// sentence that key.
const langKey = ""

// pickLanguage returns the catalog language for an Accept-Language header.
func pickLanguage(acceptLanguage string) string {
	_, i := language.MatchStrings(languageMatcher, acceptLanguage)
	return languages[i].String()
}

// words are one language's sentences.
type words map[string]string

// Say fills {name} placeholders of key's sentence from pairs of name, value.
func (w words) Say(key string, pairs ...string) string {
	return fill(w[key], pairs...)
}

func fill(s string, pairs ...string) string {
	for i := 0; i+1 < len(pairs); i += 2 {
		s = strings.ReplaceAll(s, "{"+pairs[i]+"}", pairs[i+1])
	}
	return s
}

// count says key's counted sentence for n, in the CLDR plural form that n takes in w's language
// (French's "one" is 0 and 1, English's only 1), with {n} filled in.
func (w words) count(key string, n int) string {
	l := plurals[w[langKey]]
	if l == nil {
		return ""
	}
	// The load checked that every counted sentence has every form its language takes; an
	// unknown key says "". Templates are off: {n} is the files' only placeholder syntax.
	s, _ := l.Localize(&i18n.LocalizeConfig{MessageID: key, PluralCount: n, TemplateParser: msgtemplate.IdentityParser{}})
	return fill(s, "n", strconv.Itoa(n))
}

// duration says d in whole seconds under a minute, else whole minutes, rounded up.
func (w words) duration(secs int) string {
	if secs < 60 {
		return w.count("seconds", secs)
	}
	return w.count("minutes", (secs+59)/60)
}

func mustLoadCatalog(fsys fs.FS) (map[string]map[string]string, map[string]*i18n.Localizer, []language.Tag) {
	c, p, l, err := loadCatalog(fsys)
	if err != nil {
		panic("caddyotp: the embedded sentences do not load: " + err.Error())
	}
	return c, p, l
}

// loadCatalog reads locales/*.toml of fsys and checks each file against en.toml: the same keys,
// the same placeholders, and for a counted sentence every CLDR plural form of the file's
// language and no other. An error names the file and the key.
func loadCatalog(fsys fs.FS) (map[string]map[string]string, map[string]*i18n.Localizer, []language.Tag, error) {
	names, err := fs.Glob(fsys, "locales/*.toml")
	if err != nil {
		return nil, nil, nil, err
	}
	bundle := i18n.NewBundle(language.English)
	bundle.RegisterUnmarshalFunc("toml", toml.Unmarshal)
	files := map[string]*i18n.MessageFile{}
	for _, name := range names {
		buf, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, nil, nil, err
		}
		f, err := bundle.ParseMessageFileBytes(buf, name)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %v", name, err)
		}
		if stem := strings.TrimSuffix(path.Base(name), ".toml"); f.Tag == language.Und {
			return nil, nil, nil, fmt.Errorf("%s: %q is not a language tag", name, stem)
		} else if f.Tag.String() != stem {
			return nil, nil, nil, fmt.Errorf("%s: name the file %s.toml, its language's canonical tag", name, f.Tag)
		}
		files[f.Tag.String()] = f
	}
	source := files["en"]
	if source == nil {
		return nil, nil, nil, fmt.Errorf("locales/en.toml is missing: it is the source of every language")
	}
	want := messagesByID(source)
	catalog := map[string]map[string]string{}
	plurals := map[string]*i18n.Localizer{}
	languages := []language.Tag{language.English}
	probes := i18n.NewBundle(language.English)
	for _, lang := range slices.Sorted(maps.Keys(files)) {
		f := files[lang]
		forms, err := cldrForms(probes, f.Tag)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %v", f.Path, err)
		}
		got := messagesByID(f)
		for _, id := range slices.Sorted(maps.Keys(want)) {
			m := got[id]
			if m == nil {
				return nil, nil, nil, fmt.Errorf("%s: %s is missing (en.toml has it)", f.Path, id)
			}
			if err := checkMessage(m, want[id], forms); err != nil {
				return nil, nil, nil, fmt.Errorf("%s: %s %v", f.Path, id, err)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(got)) {
			if want[id] == nil {
				return nil, nil, nil, fmt.Errorf("%s: %q is not a key of en.toml", f.Path, id)
			}
		}
		w := words{langKey: lang}
		for id, m := range got {
			if !counted(want[id]) {
				w[id] = m.Other
			}
		}
		catalog[lang], plurals[lang] = w, i18n.NewLocalizer(bundle, lang)
		if lang != "en" {
			languages = append(languages, f.Tag)
		}
	}
	return catalog, plurals, languages, nil
}

func messagesByID(f *i18n.MessageFile) map[string]*i18n.Message {
	ms := make(map[string]*i18n.Message, len(f.Messages))
	for _, m := range f.Messages {
		ms[m.ID] = m
	}
	return ms
}

// pluralTexts are a message's texts by CLDR plural form, the empty ones left out.
func pluralTexts(m *i18n.Message) map[string]string {
	t := map[string]string{}
	for form, s := range map[string]string{"zero": m.Zero, "one": m.One, "two": m.Two, "few": m.Few, "many": m.Many, "other": m.Other} {
		if s != "" {
			t[form] = s
		}
	}
	return t
}

// counted says whether the source message is a counted sentence rather than a plain one.
func counted(source *i18n.Message) bool { return len(pluralTexts(source)) > 1 || source.Other == "" }

// checkMessage checks a translation m of the source message: a plain sentence for a plain one,
// every plural form in forms for a counted one, and the source's placeholders in every text.
func checkMessage(m, source *i18n.Message, forms map[string]int) error {
	texts := pluralTexts(m)
	if m.ID == langKey {
		return fmt.Errorf("has no key")
	}
	if !counted(source) {
		if len(texts) > 1 || len(texts) == 1 && m.Other == "" {
			return fmt.Errorf("is a plain sentence in en.toml, not a counted one: give it as %s = \"...\"", m.ID)
		}
		if strings.TrimSpace(m.Other) == "" {
			return fmt.Errorf("is empty")
		}
	} else {
		for _, form := range slices.Sorted(maps.Keys(forms)) {
			if _, ok := texts[form]; !ok {
				return fmt.Errorf("lacks its %q form, which CLDR gives %s", form, forNumber(forms[form]))
			}
		}
		for _, form := range slices.Sorted(maps.Keys(texts)) {
			if _, ok := forms[form]; !ok {
				return fmt.Errorf("has a %q form, which CLDR does not give whole numbers in this language", form)
			}
		}
	}
	wantNames := placeholders(source.Other)
	for _, form := range slices.Sorted(maps.Keys(texts)) {
		if got := placeholders(texts[form]); !slices.Equal(got, wantNames) {
			if counted(source) {
				return fmt.Errorf("(form %q) has placeholders %v, en.toml has %v", form, got, wantNames)
			}
			return fmt.Errorf("has placeholders %v, en.toml has %v", got, wantNames)
		}
	}
	return nil
}

func forNumber(n int) string {
	if n < 0 {
		return "fractions"
	}
	return "the number " + strconv.Itoa(n)
}

var placeholderRE = regexp.MustCompile(`\{[a-z_]+\}`)

// placeholders are the distinct {name}s of s, sorted.
func placeholders(s string) []string {
	names := placeholderRE.FindAllString(s, -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// cldrForms are the CLDR plural forms a whole number takes in tag's language, as go-i18n says
// them, each with the smallest such number that this checks; "other" is always among them.
// probes is a bundle of cldrForms's own, for a message that says its form.
func cldrForms(probes *i18n.Bundle, tag language.Tag) (map[string]int, error) {
	probe := &i18n.Message{ID: "form", Zero: "zero", One: "one", Two: "two", Few: "few", Many: "many", Other: "other"}
	if err := probes.AddMessages(tag, probe); err != nil {
		return nil, err
	}
	l := i18n.NewLocalizer(probes, tag.String())
	forms := map[string]int{}
	var samples []int
	for n := range 201 {
		samples = append(samples, n)
	}
	for _, n := range append(samples, 1e3, 1e4, 1e5, 1e6, 2e6, 1e7, 1e9) {
		form, err := l.Localize(&i18n.LocalizeConfig{MessageID: probe.ID, PluralCount: n, TemplateParser: msgtemplate.IdentityParser{}})
		if err != nil {
			return nil, err
		}
		if _, ok := forms[form]; !ok {
			forms[form] = n
		}
	}
	if _, ok := forms["other"]; !ok {
		forms["other"] = -1 // only fractions take it here; go-i18n falls back to it
	}
	return forms, nil
}
