package caddyotp

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

// render writes a page with the headers every page gets: a strict Content-Security-Policy with a
// fresh nonce, no framing, no referrer, no caching.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) error {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	p.Nonce = base64.RawStdEncoding.EncodeToString(nonce[:])
	p.Lang = h.language(r)
	p.T = catalog[p.Lang]
	p.Path, p.SiteName, p.Site, p.Logo, p.CodeLength = h.Path, h.SiteName, h.siteName(r), h.Logo, h.CodeLength
	p.TrustDays, p.Devices = int(time.Duration(h.TrustDevice)/(24*time.Hour)), h.devices != nil
	var buf bytes.Buffer
	if err := h.pages[name].Execute(&buf, p); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("rendering %s: %v", name, err))
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+p.Nonce+"'; script-src 'nonce-"+p.Nonce+
		"'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// message renders message.html with the sentences title_KEY and text_KEY and a link to start again.
func (h *Handler) message(w http.ResponseWriter, r *http.Request, status int, key string) error {
	t := h.words(r)
	return h.render(w, r, status, "message.html", page{Title: t["title_"+key], Text: t["text_"+key], Link: h.Path + "/login", LinkText: t["start_again"]})
}

// language is the pinned language, or the best match for the visitor's Accept-Language.
func (h *Handler) language(r *http.Request) string {
	if h.Language != "" {
		return h.Language
	}
	return pickLanguage(r.Header.Get("Accept-Language"))
}

func (h *Handler) words(r *http.Request) words { return catalog[h.language(r)] }

// siteName is what the pages call the site: site_name, else the host it is known by, else (on
// a page shown only to the client that sent it) the request's host.
func (h *Handler) siteName(r *http.Request) string {
	if site, _ := h.smsNames(r); site != "" {
		return site
	}
	host := r.Host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		host = hn
	}
	return strings.ToLower(host)
}
