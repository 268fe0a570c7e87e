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
	// login.html: offer a sign-in with a passkey; logout.html: the visitor's passkeys
	Passkeys    bool
	PasskeyRows []passkeyRow
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
		ResendIn: 30, Trust: "x", CanCall: true, Devices: true, SendTo: "x", SignedIn: true, Passkeys: true,
		PasskeyRows: []passkeyRow{{ID: "x", Name: "x", Made: "x", Used: "x"}},
		Action:      &action{Label: "x", Path: "/x", Post: true, Phone: "x", Region: "x", Code: true, Everywhere: "1"},
		Wait:        3, WaitBefore: "x", Clock: "0:03", WaitAfter: "x", Link: "/x", LinkText: "x"}
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
	passkeys      bool // passkeys are on
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
	p.Devices, p.Passkeys = ps.devices, ps.passkeys
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

// languageRegion is the country whose numbers the phone page shows as examples, by language.
var languageRegion = map[string]string{"en": "US", "de": "DE", "es": "ES", "fr": "FR"}

// unbreakable keeps a number on one line: no-break spaces and hyphens.
var unbreakable = strings.NewReplacer(" ", "\u00a0", "-", "\u2011")

// limited answers a request a limit refused: 429 with Retry-After, why, and a live countdown to
// the moment the action the visitor asked for works again.
func (ps *pageSet) limited(w http.ResponseWriter, v *visit, o outcome) error {
	setRetryAfter(w, o.wait)
	t := words(catalog[v.lang])
	secs := ceilSeconds(o.wait)
	p := page{Title: t["title_wait"], Text: t["text_wait_"+o.limit], CSRF: ps.cookies.csrf(v.flowID), Action: ps.retry(v, t, "")}
	switch o.limit {
	case "lockout":
		// The countdown says the wait: the words say why, and "your account" only where there is one.
		account := v.user != "" || (o.flow != nil && o.flow.User != "")
		p.Title, p.Text = t["title_locked"], t["text_locked"]
		if account {
			p.Text = t["text_locked_account"]
		}
		p.Link, p.LinkText = linkIf(!account, ps.path+"/login"), t["other_number"]
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
func (ps *pageSet) signOutPage(w http.ResponseWriter, v *visit, csrf, subject string, keys []passkeyRow) error {
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
		Text: t.Say("signed_in_as", "site", v.site, "who", who), PasskeyRows: keys})
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
