package caddyotp

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// regionOption is one country of the phone page's select: its dial code and name, no flag.
type regionOption struct {
	Code     string
	Label    string
	Example  string
	Selected bool
}

// phonePageFor is the phone page: the field, its example and, with regions, the country select.
// Its example is a mobile number (codes go by SMS): local where national numbers are read, else
// international, from the visitor's language's country.
func (ps *pageSet) phonePageFor(v *visit, region string) page {
	t := words(catalog[v.lang])
	p := page{Title: t["title_sign_in"]}
	local := ps.defaultRegion
	if len(ps.regions) > 0 {
		if region == "" || !slices.Contains(ps.regions, region) {
			region = ps.selectRegion()
		}
		local = region
		for _, r := range ps.regionOrder() {
			p.Regions = append(p.Regions, regionOption{Code: r, Label: regionLabel(r, v.lang), Example: exampleNumber(r, true), Selected: r == region})
		}
	}
	if local != "" {
		p.Example = exampleNumber(local, true)
		p.Hint = t.Say("phone_hint_local", "example", p.Example)
	} else {
		p.Example = exampleNumber(languageRegion[v.lang], false)
		p.Hint = t.Say("phone_hint", "example", p.Example)
	}
	return p
}

// selectRegion is the country the select starts on: default_region when codes may go there,
// else the first of regions.
func (ps *pageSet) selectRegion() string {
	if slices.Contains(ps.regions, ps.defaultRegion) {
		return ps.defaultRegion
	}
	return ps.regions[0]
}

// regionOrder is regions with the one the select starts on first.
func (ps *pageSet) regionOrder() []string {
	first := ps.selectRegion()
	out := []string{first}
	for _, r := range ps.regions {
		if r != first {
			out = append(out, r)
		}
	}
	return out
}

// exampleNumber is libphonenumber's example mobile number of region, formatted nationally or
// internationally, on one line.
func exampleNumber(region string, national bool) string {
	num := phonenumbers.GetExampleNumberForType(region, phonenumbers.MOBILE)
	if num == nil {
		return ""
	}
	format := phonenumbers.INTERNATIONAL
	if national {
		format = phonenumbers.NATIONAL
	}
	return unbreakable.Replace(phonenumbers.Format(num, format))
}

// regionLabel is a country as the select shows it: its dial code and its name in lang.
func regionLabel(region, lang string) string {
	name := display.Regions(language.Make(lang)).Name(language.MustParseRegion(region))
	return "+" + strconv.Itoa(phonenumbers.GetCountryCodeForRegion(region)) + "\u00a0" + name
}

// regionNames are the names of regions in lang, for the error that lists where codes may go.
func regionNames(regions []string, lang string) string {
	names := make([]string, len(regions))
	namer := display.Regions(language.Make(lang))
	for i, r := range regions {
		names[i] = namer.Name(language.MustParseRegion(r))
	}
	return strings.Join(names, ", ")
}

// login renders the phone page.
func (ps *pageSet) login(w http.ResponseWriter, v *visit, p page) error {
	q := ps.phonePageFor(v, "")
	q.CSRF, q.Info, q.SendTo = p.CSRF, p.Info, p.SendTo
	return ps.render(w, v, http.StatusOK, "login.html", q)
}

// phonePage shows the phone page again with the visitor's input and an error that says what to
// do: add the country code, check the digits, or pick another country.
func (ps *pageSet) phonePage(w http.ResponseWriter, v *visit, input, region, errKey string) error {
	t := words(catalog[v.lang])
	p := ps.phonePageFor(v, region)
	p.CSRF, p.Phone = ps.cookies.csrf(v.flowID), clip(input, 40)
	switch errKey {
	case "err_not_phone":
		if ps.defaultRegion == "" && len(ps.regions) == 0 && !strings.Contains(input, "+") && strings.ContainsAny(input, "0123456789") {
			errKey = "err_no_country"
		}
		p.Error = t.Say(errKey, "example", p.Example)
	case "err_region":
		p.Error = t.Say(errKey, "regions", regionNames(ps.regions, v.lang))
	default:
		p.Error = t[errKey]
	}
	return ps.render(w, v, http.StatusBadRequest, "login.html", p)
}
