package caddyotp

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-otp/caddy-otp/templates"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"
)

// page is what a template sees.
type page struct {
	Lang       string // the page's language
	T          words  // its sentences, for labels and buttons: {{.T.key}}, {{.T.Say "key" "name" value}}
	Title      string
	Heading    string // login.html: "Sign in to {site}"
	Intro      string // verify.html: where the code went
	Info       string // login.html: a notice, e.g. signed out
	Text       string // message.html and logout.html: what happened
	Error      string // a form's error line
	Path       string // the gate's base path, for form actions and links
	CSRF       string
	Nonce      string // for the inline style and script under the Content-Security-Policy
	SiteName   string // site_name, if set
	Site       string // site_name, or the host the visitor is on
	Logo       string // logo, if set
	Phone      string // login.html: the input, kept after an error
	Hint       string // login.html: how to write a number, with an example that never wraps
	Example    string // login.html: the example number, as the field's placeholder
	Regions    []regionOption
	CodeLength int
	Expires    string // verify.html: "The code expires in 5 minutes."
	ResendIn   int    // verify.html: seconds until a new code may be sent
	Trust      string // verify.html: the "trust this browser" label, if trusted browsers are on
	CanCall    bool   // verify.html: offer a call
	Devices    bool   // logout.html: trusted browsers are on, so say what "everywhere" ends
	SendTo     string // login.html in users mode: the user's masked phone, sent a code by a button
	SignedIn   bool   // logout.html: there is a session to end
	Action     *action
	Wait       int    // message.html: seconds until Action works; 0: it works now
	WaitBefore string // message.html: the sentence around the live countdown
	Clock      string
	WaitAfter  string
	Link       string // a secondary link: where else to go
	LinkText   string
	// verify.html: the number as "Delivered to ..." shows it (masked in users mode), and
	// whether "We could not reach this number" offers a call
	DeliveredTo string
	Voice       bool
}

// action is a page's one primary action: a link, or a form that posts (again) to Path.
type action struct {
	Label      string
	Path       string
	Post       bool   // a form with the CSRF token, else a link
	Phone      string // a hidden phone field (POST /send)
	Region     string // a hidden region field (POST /send)
	Code       bool   // the code field (POST /verify)
	Everywhere string // a hidden everywhere field (POST /logout)
}

// regionOption is one country of the phone page's select: its dial code and name, no flag.
type regionOption struct {
	Code     string
	Label    string
	Example  string
	Selected bool
}

// loadPages parses every page once, each with the layout. A file in dir replaces the embedded
// file of the same name; a broken one fails with its name and line.
func loadPages(dir string) (map[string]*template.Template, error) {
	read := func(name string) ([]byte, string, error) {
		if dir != "" {
			p := filepath.Join(dir, name)
			b, err := os.ReadFile(p)
			if err == nil {
				return b, p, nil
			}
			if !os.IsNotExist(err) {
				return nil, p, err
			}
		}
		b, err := fs.ReadFile(templates.FS, name)
		return b, name, err
	}
	if dir != "" {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("templates: %s is not a readable directory", dir)
		}
	}
	layout, layoutName, err := read("layout.html")
	if err != nil {
		return nil, fmt.Errorf("templates: %v", err)
	}
	pages := make(map[string]*template.Template, len(templates.Pages))
	for _, name := range templates.Pages {
		body, bodyName, err := read(name)
		if err != nil {
			return nil, fmt.Errorf("templates: %v", err)
		}
		t, err := template.New(layoutName).Option("missingkey=error").Parse(string(layout))
		if err != nil {
			return nil, fmt.Errorf("templates: %v", err)
		}
		if t, err = t.New(bodyName).Parse(string(body)); err != nil {
			return nil, fmt.Errorf("templates: %v", err)
		}
		pages[name] = t
	}
	if dir == "" { // the embedded pages fit: TestExportedTemplatesAreTheEmbeddedOnes loads a copy
		return pages, nil
	}
	if err := tryPages(pages); err != nil {
		return nil, fmt.Errorf("templates: %v; a copy made for another version of the gate must be made again: caddy otp export-templates DIR, then re-apply your changes", err)
	}
	return pages, nil
}

// tryPages renders every page in every language, once with every field set and once with
// none, so that a template naming a field or a sentence this version does not have fails at
// load, not in front of visitors.
func tryPages(pages map[string]*template.Template) error {
	full := page{Title: "x", Heading: "x", Intro: "x", Info: "x", Text: "x", Error: "x", Path: "/x", CSRF: "x",
		SiteName: "x", Site: "x", Logo: "/x.png", Phone: "x", Hint: "x", Example: "x",
		Regions: []regionOption{{Code: "US", Label: "x", Example: "x", Selected: true}}, CodeLength: 6, Expires: "x",
		ResendIn: 30, Trust: "x", CanCall: true, Devices: true, SendTo: "x", SignedIn: true,
		Action: &action{Label: "x", Path: "/x", Post: true, Phone: "x", Region: "x", Code: true, Everywhere: "1"},
		Wait:   3, WaitBefore: "x", Clock: "0:03", WaitAfter: "x", Link: "/x", LinkText: "x"}
	for _, name := range slices.Sorted(maps.Keys(pages)) {
		for _, lang := range slices.Sorted(maps.Keys(catalog)) {
			for _, p := range []page{full, {}} {
				p.Lang, p.T, p.Nonce = lang, catalog[lang], "x"
				if err := pages[name].Execute(io.Discard, p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// pageSet renders the gate's pages: the parsed templates and what every page shows.
type pageSet struct {
	templates     map[string]*template.Template
	path          string
	siteName      string // site_name, if set
	logo          string
	codeLength    int
	codeTTL       time.Duration
	trustDays     int  // "trust this browser" for this many days, if not 0
	devices       bool // trusted browsers are on
	resendAfter   time.Duration
	canCall       bool
	defaultRegion string       // national numbers are read in this region
	regions       []string     // the regions codes may go to, in the configured order; none: any
	cookies       *gateCookies // for the forms' CSRF tokens
	now           func() time.Time
}

// render writes a page with the headers every page gets: a strict Content-Security-Policy with a
// fresh nonce, no framing, no referrer, no caching.
func (ps *pageSet) render(w http.ResponseWriter, v *visit, status int, name string, p page) error {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	p.Nonce = base64.RawStdEncoding.EncodeToString(nonce[:])
	p.Lang, p.T = v.lang, catalog[v.lang]
	p.Path, p.SiteName, p.Site, p.Logo, p.CodeLength = ps.path, ps.siteName, v.site, ps.logo, ps.codeLength
	p.Devices = ps.devices
	if ps.trustDays > 0 {
		p.Trust = p.T.count("trust_device", ps.trustDays)
	}
	if p.Heading = p.T["title_sign_in"]; v.site != "" {
		p.Heading = p.T.Say("sign_in_to", "site", v.site)
	}
	var buf bytes.Buffer
	if err := ps.templates[name].Execute(&buf, p); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("rendering %s: %v", name, err))
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+p.Nonce+"'; script-src 'nonce-"+p.Nonce+
		"'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// message renders message.html with the sentences title_KEY and text_KEY and a link to start again.
func (ps *pageSet) message(w http.ResponseWriter, v *visit, status int, key string) error {
	t := words(catalog[v.lang])
	return ps.render(w, v, status, "message.html", page{Title: t["title_"+key], Text: t["text_"+key],
		Action: &action{Label: t["start_again"], Path: "/login"}})
}

// refusal answers 403 with the sentences title_KEY and text_KEY and no way forward but the
// site's administrator.
func (ps *pageSet) refusal(w http.ResponseWriter, v *visit, key string) error {
	t := words(catalog[v.lang])
	return ps.render(w, v, http.StatusForbidden, "message.html", page{Title: t["title_"+key], Text: t["text_"+key]})
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

// languageRegion is the country whose numbers the phone page shows as examples, by language.
var languageRegion = map[string]string{"en": "US", "de": "DE", "es": "ES", "fr": "FR"}

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

// codePage shows the code page for flow f, with an error line if errMsg is set. The number is
// shown whole, as typed, so that a typo shows; in users mode, where nobody typed it, masked.
func (ps *pageSet) codePage(w http.ResponseWriter, v *visit, status int, f *flow, errMsg string) error {
	t := words(catalog[v.lang])
	t0 := ps.now()
	resendIn := ceilSeconds(time.Unix(0, f.Sent).Add(ps.resendAfter).Sub(t0))
	return ps.render(w, v, status, "verify.html", page{Title: t["title_code"], CSRF: ps.cookies.csrf(v.flowID), Error: errMsg,
		Intro:    t.Say("code_intro", "n", strconv.Itoa(ps.codeLength), "phone", shownPhone(f)),
		Expires:  t.Say("code_expires", "wait", t.duration(ceilSeconds(time.Unix(0, f.Expires).Sub(t0)))),
		ResendIn: max(0, resendIn), CanCall: ps.canCall && f.Resends > 0, Clock: countdown(max(0, resendIn)),
		Link: linkIf(f.User == "", ps.path+"/login"), LinkText: t["other_number"],
		DeliveredTo: shownPhone(f), Voice: ps.canCall})
}

// unbreakable keeps a number on one line: no-break spaces and hyphens.
var unbreakable = strings.NewReplacer(" ", "\u00a0", "-", "\u2011")

// shownPhone is flow f's number as its pages show it: whole and grouped when the visitor typed
// it, masked in users mode.
func shownPhone(f *flow) string {
	if f.User != "" {
		return unbreakable.Replace(maskPhoneDisplay(f.Phone))
	}
	return unbreakable.Replace(formatPhone(f.Phone))
}

// expired shows that the flow's code is dead, and the one thing to do: get a new code.
func (ps *pageSet) expired(w http.ResponseWriter, v *visit, status int, f *flow) error {
	t := words(catalog[v.lang])
	wait := max(0, ceilSeconds(time.Unix(0, f.Sent).Add(ps.resendAfter).Sub(ps.now())))
	p := page{Title: t["title_expired"], Text: t.Say("text_expired", "wait", t.duration(ceilSeconds(ps.codeTTL))),
		Action: &action{Label: t["resend"], Path: "/resend", Post: true}, CSRF: ps.cookies.csrf(v.flowID),
		Link: linkIf(f.User == "", ps.path+"/login"), LinkText: t["other_number"]}
	ps.waitFor(&p, t, wait)
	return ps.render(w, v, status, "message.html", p)
}

// waitFor makes the page's action wait secs, with a live countdown.
func (ps *pageSet) waitFor(p *page, t words, secs int) {
	if secs <= 0 {
		return
	}
	p.Wait, p.Clock = secs, countdown(secs)
	p.WaitBefore, p.WaitAfter, _ = strings.Cut(t["ready_in"], "{clock}")
}

// countdown is how long to wait as the pages show it: m:ss.
func countdown(secs int) string {
	return fmt.Sprintf("%d:%02d", secs/60, secs%60)
}

func linkIf(ok bool, link string) string {
	if ok {
		return link
	}
	return ""
}

// retry is the action that asks again for what the visitor asked for (v.form): the same form
// posted again, or the code field; on a page that was not a form, the sign-in page.
func (ps *pageSet) retry(v *visit, t words, label string) *action {
	switch v.form.route {
	case "/send":
		return &action{Label: orWord(label, t["send_code"]), Path: "/send", Post: true, Phone: v.form.phone, Region: v.form.region}
	case "/resend":
		return &action{Label: orWord(label, t["resend"]), Path: "/resend", Post: true}
	case "/call":
		return &action{Label: orWord(label, t["call_me"]), Path: "/call", Post: true}
	case "/verify":
		return &action{Label: t["verify"], Path: "/verify", Post: true, Code: true}
	case "/logout":
		return &action{Label: orWord(label, t["sign_out"]), Path: "/logout", Post: true, Everywhere: v.form.everywhere}
	}
	return &action{Label: orWord(label, t["start_again"]), Path: "/login"}
}

func orWord(s, otherwise string) string {
	if s != "" {
		return s
	}
	return otherwise
}

// notSent answers the code page of a flow whose code could not be delivered: 502 when the site's
// provider setup is broken (nothing the visitor can do; the operator's log says why), 503 and a
// retry when the provider failed or is down.
func (ps *pageSet) notSent(w http.ResponseWriter, v *visit, f *flow, state string) error {
	t := words(catalog[v.lang])
	if state != deliveryFailed {
		return ps.render(w, v, http.StatusBadGateway, "message.html", page{Title: t["title_not_sent"], Text: t["text_misconfigured"]})
	}
	setRetryAfter(w, 30*time.Second)
	p := page{Title: t["title_not_sent"], Text: t["text_not_sent"], CSRF: ps.cookies.csrf(v.flowID),
		Action: &action{Label: t["try_again"], Path: "/send", Post: true},
		Link:   linkIf(f.User == "", ps.path+"/login"), LinkText: t["other_number"]}
	if f.User == "" {
		p.Action.Phone = f.Phone // in users mode the code goes to the user's phone anyway
	}
	return ps.render(w, v, http.StatusServiceUnavailable, "message.html", p)
}

// limited answers a request a limit refused: 429 with Retry-After, why, and a live countdown to
// the moment the action the visitor asked for works again.
func (ps *pageSet) limited(w http.ResponseWriter, v *visit, o outcome) error {
	setRetryAfter(w, o.wait)
	t := words(catalog[v.lang])
	secs := ceilSeconds(o.wait)
	p := page{Title: t["title_wait"], Text: t["text_wait_"+o.limit], CSRF: ps.cookies.csrf(v.flowID), Action: ps.retry(v, t, "")}
	switch o.limit {
	case "lockout":
		p.Title, p.Text = t.Say("title_locked", "wait", t.duration(secs)), t["text_locked"]
		if v.form.route == "/verify" && (o.flow == nil || o.flow.Expires <= ps.now().Add(o.wait).UnixNano()) {
			// The code dies before the lock ends: what comes back is a new code.
			p.Action = &action{Label: t["resend"], Path: "/resend", Post: true}
		}
	case "resend":
		p.Link, p.LinkText = ps.path+"/verify", t["back_to_code"] // the code field works now
	}
	ps.waitFor(&p, t, secs)
	return ps.render(w, v, http.StatusTooManyRequests, "message.html", p)
}

// busy answers a code asked for while every sender is busy: ask again.
func (ps *pageSet) busy(w http.ResponseWriter, v *visit) error {
	setRetryAfter(w, 30*time.Second)
	t := words(catalog[v.lang])
	return ps.render(w, v, http.StatusServiceUnavailable, "message.html", page{Title: t["title_not_sent"], Text: t["text_busy"],
		CSRF: ps.cookies.csrf(v.flowID), Action: ps.retry(v, t, t["try_again"])})
}

// unavailable answers when the store failed: nobody passes, the visitor is told, and may try
// again (a page that was not a form is simply loaded again).
func (ps *pageSet) unavailable(w http.ResponseWriter, v *visit) error {
	setRetryAfter(w, 30*time.Second)
	t := words(catalog[v.lang])
	a := &action{Label: t["try_again"]} // an empty link: this same page
	if v.form.route != "" {
		a = ps.retry(v, t, t["try_again"])
	}
	return ps.render(w, v, http.StatusServiceUnavailable, "message.html", page{Title: t["title_unavailable"], Text: t["text_unavailable"],
		CSRF: ps.csrfFor(v), Action: a})
}

// csrfFor is the CSRF token of the visitor's flow, if it has one.
func (ps *pageSet) csrfFor(v *visit) string {
	if v.flowID == "" {
		return ""
	}
	return ps.cookies.csrf(v.flowID)
}

// signOutPage says who is signed in and offers to sign out; or, without a session, says so and
// links to sign in.
func (ps *pageSet) signOutPage(w http.ResponseWriter, v *visit, csrf, subject string) error {
	t := words(catalog[v.lang])
	if subject == "" {
		return ps.render(w, v, http.StatusOK, "logout.html", page{Title: t["title_not_signed_in"], Text: t.Say("text_not_signed_in", "site", v.site),
			Action: &action{Label: t["title_sign_in"], Path: "/login"}})
	}
	who := subjectName(subject)
	if strings.HasPrefix(who, "+") {
		who = unbreakable.Replace(formatPhone(who))
	}
	return ps.render(w, v, http.StatusOK, "logout.html", page{Title: t["title_sign_out"], SignedIn: true, CSRF: csrf,
		Text: t.Say("signed_in_as", "site", v.site, "who", who)})
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(d)))
}

// ceilSeconds is d in whole seconds, rounded up.
func ceilSeconds(d time.Duration) int {
	return int((d + time.Second - 1) / time.Second)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
