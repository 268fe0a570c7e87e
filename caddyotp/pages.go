package caddyotp

import (
	"github.com/nyaruka/phonenumbers"

	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
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
	Intro      string // verify.html: where the code went
	Info       string // login.html: a notice, e.g. signed out
	Text       string // message.html: the message
	Error      string // a form's error line
	Path       string // the gate's base path, for form actions and links
	CSRF       string
	Nonce      string // for the inline style and script under the Content-Security-Policy
	SiteName   string // site_name, if set
	Site       string // site_name, or the host
	Logo       string // logo, if set
	Phone      string // login.html: the input, kept after an error
	CodeLength int
	ResendIn   int    // verify.html: seconds until a new code may be sent
	TrustDays  int    // verify.html: offer "trust this browser" for this many days, if not 0
	CanCall    bool   // verify.html: offer "call me instead"
	Devices    bool   // logout.html: trusted browsers are on, so say what "everywhere" ends
	SendTo     string // login.html in users mode: the user's masked phone, sent a code by a button
	Retry      bool   // message.html: offer "Try again", a new code to the same number
	RetryPhone string // message.html: the number to try again (none in users mode)
	Link       string // message.html: where to go next
	LinkText   string
	// verify.html: the number as "Delivered to ..." shows it (masked in users mode), and
	// whether "We could not reach this number" offers a call
	DeliveredTo string
	Voice       bool
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
	return pages, nil
}

// pageSet renders the gate's pages: the parsed templates and what every page shows.
type pageSet struct {
	templates   map[string]*template.Template
	path        string
	siteName    string // site_name, if set
	logo        string
	codeLength  int
	trustDays   int  // "trust this browser" for this many days, if not 0
	devices     bool // trusted browsers are on
	resendAfter time.Duration
	canCall     bool
	cookies     *gateCookies // for the forms' CSRF tokens
	now         func() time.Time
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
	p.TrustDays, p.Devices = ps.trustDays, ps.devices
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
	return ps.render(w, v, status, "message.html", page{Title: t["title_"+key], Text: t["text_"+key], Link: ps.path + "/login", LinkText: t["start_again"]})
}

// refusal answers 403 with the sentences title_KEY and text_KEY and no way forward but the
// site's administrator.
func (ps *pageSet) refusal(w http.ResponseWriter, v *visit, key string) error {
	t := words(catalog[v.lang])
	return ps.render(w, v, http.StatusForbidden, "message.html", page{Title: t["title_"+key], Text: t["text_"+key]})
}

// codePage shows the code page for flow f, with an error line if errMsg is set.
func (ps *pageSet) codePage(w http.ResponseWriter, v *visit, status int, f *flow, errMsg string) error {
	t := words(catalog[v.lang])
	resendIn := ceilSeconds(time.Unix(0, f.Sent).Add(ps.resendAfter).Sub(ps.now()))
	return ps.render(w, v, status, "verify.html", page{Title: t["title_code"], CSRF: ps.cookies.csrf(v.flowID), Error: errMsg,
		Intro:    t.Say("code_intro", "n", strconv.Itoa(ps.codeLength), "phone", unbreakable.Replace(maskPhoneDisplay(f.Phone))),
		ResendIn: max(0, resendIn), CanCall: ps.canCall && f.Resends > 0, DeliveredTo: unbreakable.Replace(deliveredTo(f)), Voice: ps.canCall})
}

// deliveredTo is the number the code page's delivery line names: the one the visitor typed,
// or, in users mode, the user's phone masked.
func deliveredTo(f *flow) string {
	if f.User != "" {
		return maskPhoneDisplay(f.Phone)
	}
	if num, err := phonenumbers.Parse(f.Phone, ""); err == nil {
		return phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
	}
	return f.Phone
}

// unbreakable keeps a number on one line: no-break spaces and hyphens.
var unbreakable = strings.NewReplacer(" ", "\u00a0", "-", "\u2011")

// phonePage shows the phone page again with the visitor's input and an error.
func (ps *pageSet) phonePage(w http.ResponseWriter, v *visit, input, errKey string) error {
	t := words(catalog[v.lang])
	return ps.render(w, v, http.StatusBadRequest, "login.html", page{Title: t["title_sign_in"], CSRF: ps.cookies.csrf(v.flowID), Phone: clip(input, 40), Error: t[errKey]})
}

// notSent answers the code page of a flow whose code could not be delivered: 502 when the site's
// provider setup is broken, 503 (and a retry) when the provider failed or is down.
func (ps *pageSet) notSent(w http.ResponseWriter, v *visit, f *flow, state string) error {
	status := http.StatusBadGateway
	if state == deliveryFailed {
		status = http.StatusServiceUnavailable
		setRetryAfter(w, 30*time.Second)
	}
	t := words(catalog[v.lang])
	p := page{Title: t["title_not_sent"], Text: t["text_not_sent"], CSRF: ps.cookies.csrf(v.flowID), Retry: true, Link: ps.path + "/login", LinkText: t["other_number"]}
	if f.User == "" {
		p.RetryPhone = f.Phone // in users mode the code goes to the user's phone anyway
	}
	return ps.render(w, v, status, "message.html", p)
}

// limited answers a request a limit refused: 429 with Retry-After and how long to wait.
func (ps *pageSet) limited(w http.ResponseWriter, v *visit, o outcome) error {
	setRetryAfter(w, o.wait)
	t := words(catalog[v.lang])
	if o.limit == "resend" {
		return ps.render(w, v, http.StatusTooManyRequests, "message.html", page{Title: t["title_wait"],
			Text: t.Say("text_resend_wait", "wait", t.duration(ceilSeconds(o.wait))), Link: ps.path + "/verify", LinkText: t["back_to_code"]})
	}
	return ps.render(w, v, http.StatusTooManyRequests, "message.html", page{Title: t["title_wait"],
		Text: t.Say("text_wait", "wait", t.duration(ceilSeconds(o.wait))), Link: ps.path + "/login", LinkText: t["start_again"]})
}

// busy answers a code asked for while every sender is busy.
func (ps *pageSet) busy(w http.ResponseWriter, v *visit) error {
	setRetryAfter(w, 30*time.Second)
	t := words(catalog[v.lang])
	return ps.render(w, v, http.StatusServiceUnavailable, "message.html", page{Title: t["title_not_sent"], Text: t["text_not_sent"],
		Link: ps.path + "/login", LinkText: t["start_again"]})
}

// unavailable answers when the store failed: nobody passes, and the visitor is told.
func (ps *pageSet) unavailable(w http.ResponseWriter, v *visit) error {
	setRetryAfter(w, 30*time.Second)
	t := words(catalog[v.lang])
	return ps.render(w, v, http.StatusServiceUnavailable, "message.html", page{Title: t["title_unavailable"], Text: t["text_unavailable"]})
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
