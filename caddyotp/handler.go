package caddyotp

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// maxFormBody caps every form the gate reads.
const maxFormBody = 8 << 10

// maxNextLen caps the remembered destination; longer ones fall back to "/".
const maxNextLen = 2048

// ServeHTTP lets requests with a valid session through and serves the gate's pages under Path;
// every other request is sent to sign in.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if rest, ok := strings.CutPrefix(r.URL.Path, h.Path); ok && (rest == "" || rest[0] == '/') {
		return h.serveGate(w, r, rest)
	}
	secure := r.TLS != nil || h.cookies.httpsSite
	t := h.now() // the one clock read of a signed-in request
	a, ok, err := h.signins.admit(r.Context(), t, cookieValue(r, h.cookies.named(sessionCookie, secure)),
		func() string { return cookieValue(r, h.cookies.named(deviceCookie, secure)) }, func() string { return firstFactor(r) })
	switch {
	case err != nil:
		h.obs.storeFailed(err)
		if !isBrowser(r) {
			return h.refuseClient(w, r, http.StatusServiceUnavailable, "sign-in unavailable")
		}
		return h.pages.unavailable(w, h.readVisit(r))
	case !ok:
		return h.deny(w, r)
	case a.fresh:
		h.obs.trustedBrowser(a.s.Subject, clientIP(r, h.obs))
	}
	if a.fresh || a.slide {
		s := a.s
		s.Seen = t
		h.cookies.set(w, secure, sessionCookie, h.signins.sessions.encode(s), s.Expires.Sub(t))
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", a.name)
	h.cookies.stripRemembering(r, a.lines)
	return next.ServeHTTP(w, r)
}

// isBrowser says whether the client takes pages: it asked for HTML.
func isBrowser(r *http.Request) bool { return strings.Contains(r.Header.Get("Accept"), "text/html") }

// deny sends browsers to the phone page and tells other clients where it is.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && isBrowser(r) {
		w.Header().Set("Location", h.Path+"/login?next="+url.QueryEscape(originalURI(r)))
		w.WriteHeader(http.StatusSeeOther)
		return nil
	}
	return h.refuseClient(w, r, http.StatusUnauthorized, "sign-in required")
}

// refuseClient refuses a client that is not a browser: through Caddy's error routes when the
// server has them, so that handle_errors can shape the answer; else (Caddy would send the bare
// status) with a small JSON body that says where to sign in.
func (h *Handler) refuseClient(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	if status == http.StatusServiceUnavailable {
		setRetryAfter(w, 30*time.Second)
	}
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(status, errors.New(msg))
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, err := fmt.Fprintf(w, `{"error":%q,"login":%q}`+"\n", msg, h.Path+"/login")
	return err
}

// originalURI is the request's path and query as the client sent it, before any rewrite.
func originalURI(r *http.Request) string {
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		return or.URL.RequestURI()
	}
	return r.URL.RequestURI()
}

// serveGate routes the gate's own pages; rest is the path below Path. A form is read (within
// maxFormBody) and its Origin and CSRF token checked before anything else happens.
func (h *Handler) serveGate(w http.ResponseWriter, r *http.Request, rest string) error {
	type route struct {
		methods string
		serve   func(http.ResponseWriter, *http.Request, *visit) error
	}
	var rt route
	switch rest {
	case "/login":
		rt = route{"GET, HEAD", h.serveLogin}
	case "/send":
		rt = route{"POST", h.serveSend}
	case "/verify":
		rt = route{"GET, HEAD, POST", h.serveVerify}
	case "/resend":
		rt = route{"POST", h.serveAgain("sms")}
	case "/call":
		rt = route{"POST", h.serveAgain("call")}
	case "/status":
		rt = route{"GET, HEAD", h.serveStatus}
	case "/logout":
		rt = route{"GET, HEAD, POST", h.serveLogout}
	case "/passkey/remove":
		if h.passkeys == nil {
			return h.pages.message(w, h.readVisit(r), http.StatusNotFound, "not_found")
		}
		rt = route{"POST", h.passkeys.serveRemove}
	default:
		if op, ok := strings.CutPrefix(rest, "/passkey/"); ok && h.passkeys != nil {
			// The offer page, and the ceremonies' JSON: their own checks, in passkeyPages.serve.
			return h.passkeys.serve(w, r, op, h.readVisit(r))
		}
		if token, ok := strings.CutPrefix(rest, "/voice/"); ok {
			// The telephony provider fetches the call's script: no browser, no form, no CSRF.
			return h.webhooks.voiceScript(w, r, token)
		}
		if token, ok := strings.CutPrefix(rest, "/receipt/"); ok {
			// The SMS provider posts a delivery receipt: its token (and signature) authenticate it.
			return h.webhooks.receipt(w, r, token)
		}
		return h.pages.message(w, h.readVisit(r), http.StatusNotFound, "not_found")
	}
	if !slices.Contains(strings.Split(rt.methods, ", "), r.Method) {
		w.Header().Set("Allow", rt.methods)
		return h.pages.message(w, h.readVisit(r), http.StatusMethodNotAllowed, "method")
	}
	if r.Method != http.MethodPost {
		return rt.serve(w, r, h.readVisit(r))
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return h.pages.message(w, h.readVisit(r), http.StatusRequestEntityTooLarge, "too_large")
		}
		return h.pages.message(w, h.readVisit(r), http.StatusBadRequest, "bad_request")
	}
	v := h.readVisit(r)
	if !sameOrigin(r, h.origin) || !h.cookies.validCSRF(v.flowID, r.PostForm.Get("csrf")) {
		return h.pages.message(w, v, http.StatusForbidden, "form_expired")
	}
	v.form = visitForm{route: rest, phone: clip(r.PostForm.Get("phone"), 40), region: regionField(r.PostForm.Get("region"))}
	if r.PostForm.Get("everywhere") == "1" {
		v.form.everywhere = "1"
	}
	return rt.serve(w, r, v)
}

// readVisit reads what the gate's pages need from the request, once.
func (h *Handler) readVisit(r *http.Request) *visit {
	v := &visit{client: clientIP(r, h.obs), user: firstFactor(r), secure: r.TLS != nil || h.cookies.httpsSite}
	v.lang = h.Language
	if v.lang == "" {
		v.lang = pickLanguage(r.Header.Get("Accept-Language"))
	}
	public := ""
	if h.public != nil {
		public = h.public.Hostname()
	}
	site := h.sites.of(r, h)
	v.host, v.gate = trustedHost(r, public, site.hosts), site.gate
	switch {
	case h.SiteName != "":
		v.site = h.SiteName
	case v.host != "":
		v.site = v.host
	default: // a page shown only to the client that sent the request
		v.site = strings.ToLower(requestHost(r))
	}
	v.flowID, v.next = h.cookies.decodeFlow(cookieValue(r, h.cookies.named(flowCookie, v.secure)))
	v.session = cookieValue(r, h.cookies.named(sessionCookie, v.secure))
	v.device = cookieValue(r, h.cookies.named(deviceCookie, v.secure))
	v.enrol, v.offered = h.passkeys.readCookies(r, v.secure)
	return v
}

// flowFor returns the visitor's flow id, giving it a new flow cookie (remembering next) if it
// has none the gate issued. It stores nothing.
func (h *Handler) flowFor(w http.ResponseWriter, v *visit, next string) (string, error) {
	id := v.flowID
	if id != "" && next == v.next {
		return id, nil
	}
	if id == "" {
		var err error
		if id, err = randomToken(); err != nil {
			return "", caddyhttp.Error(http.StatusInternalServerError, err)
		}
	}
	h.cookies.set(w, v.secure, flowCookie, h.cookies.encodeFlow(id, next), flowCookieTTL)
	return id, nil
}

// serveLogin shows the phone page, or in users mode the button that sends the code to the
// user's phone. It stores nothing and sends nothing: where the visitor was going rides in the
// signed flow cookie.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request, v *visit) error {
	query := r.URL.Query()
	next := v.next
	if query.Has("next") || v.flowID == "" {
		next = localPath(query.Get("next"), h.Path)
	}
	id, err := h.flowFor(w, v, next)
	if err != nil {
		return err
	}
	p := page{Title: catalog[v.lang]["title_sign_in"], CSRF: h.cookies.csrf(id)}
	if query.Has("signed_out") {
		p.Info = catalog[v.lang]["signed_out"]
	}
	if allow := h.flows.allow; allow.bound(v.user) {
		phone, refusal := allow.userPhone(v.user)
		if refusal != "" {
			return h.pages.refusal(w, v, refusal)
		}
		p.SendTo = unbreakable.Replace(maskPhoneDisplay(phone))
	}
	return h.pages.login(w, v, p)
}

// serveSend starts a fresh flow for the phone typed (or, in users mode, the signed-in user's
// phone) and sends it a code in the background. Whether or not the number may sign in, the
// answer is the same 303 to the code page; only allowed numbers get an SMS.
func (h *Handler) serveSend(w http.ResponseWriter, r *http.Request, v *visit) error {
	o := h.flows.start(r.Context(), v, r.PostForm.Get("phone"), v.form.region)
	if o.kind == sent { // a counted request that stores a flow: the gate writes to its store anyway
		h.keyCheck.begin(v.gate)
	}
	return o.deliverAfter(w, r, h.answer(w, v, o))
}

// serveAgain is /resend (a new code by SMS) or /call (by a voice call).
func (h *Handler) serveAgain(channel string) func(http.ResponseWriter, *http.Request, *visit) error {
	return func(w http.ResponseWriter, r *http.Request, v *visit) error {
		o := h.flows.again(r.Context(), v, channel)
		return o.deliverAfter(w, r, h.answer(w, v, o))
	}
}

// deliverAfter sends the answer already written to w (its error is err) to the client, and
// begins the delivery of a sent outcome only once the request is over (the server ends r's
// context when the handler has returned, or answerGrace at most) and answerSettle later, while
// the client reads the answer: whatever the delivery does, for a number that may sign in or one
// that may not, cannot overlap the answer, on the server or on a client that shares its CPUs.
func (o outcome) deliverAfter(w http.ResponseWriter, r *http.Request, err error) error {
	if o.begin != nil {
		_ = http.NewResponseController(w).Flush()
		done := r.Context().Done()
		go func() {
			t := time.NewTimer(answerGrace)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
			}
			time.Sleep(answerSettle)
			o.begin()
		}()
	}
	return err
}

const (
	answerGrace  = time.Second           // how long a delivery waits for its request to end at most
	answerSettle = 10 * time.Millisecond // and then, for the answer to reach the client
)

// serveVerify shows the code page (GET) or checks a code (POST); a right one makes the session.
func (h *Handler) serveVerify(w http.ResponseWriter, r *http.Request, v *visit) error {
	if r.Method != http.MethodPost {
		f, state, _, err := h.flows.shown(r.Context(), v)
		if err != nil {
			return h.answer(w, v, failedWith(err))
		}
		return h.pages.pending(w, v, f, state)
	}
	o := h.flows.check(r.Context(), v, cleanCode(r.PostForm.Get("code"), h.CodeLength))
	if o.kind == noFlow {
		return h.pages.message(w, v, http.StatusUnauthorized, "flow_expired")
	}
	if o.kind != verified {
		return h.answer(w, v, o)
	}
	s, err := h.signins.signIn(w, v, o.subject, r.PostForm.Get("trust") == "1")
	if err != nil {
		return err
	}
	if h.passkeys != nil {
		return h.passkeys.afterCode(w, v, s)
	}
	return seeOther(w, localPath(v.next, h.Path))
}

// serveStatus answers the delivery state of the visitor's pending code, as JSON.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request, v *visit) error {
	f, state, reason, err := h.flows.shown(r.Context(), v)
	if err != nil {
		return h.answer(w, v, failedWith(err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if f == nil || state == "" {
		w.WriteHeader(http.StatusNotFound)
		_, err = fmt.Fprintf(w, `{"error":"no code is on its way","login":%q}`+"\n", h.Path+"/login")
		return err
	}
	if reason != "" { // the number's own: invalid, landline (no texts) or blocked (replied STOP)
		_, err = fmt.Fprintf(w, `{"delivery":%q,"reason":%q}`+"\n", state, reason)
		return err
	}
	_, err = fmt.Fprintf(w, `{"delivery":%q}`+"\n", state)
	return err
}

// serveLogout shows the sign-out buttons (GET) or signs out (POST, signOutVisitor).
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request, v *visit) error {
	if r.Method != http.MethodPost {
		s, _, ok, err := h.signins.current(r.Context(), v.session, func() string { return v.device }, v.user)
		if err != nil {
			return h.answer(w, v, failedWith(err))
		}
		if !ok {
			return h.pages.signOutPage(w, v, "", "", nil)
		}
		id, err := h.flowFor(w, v, v.next)
		if err != nil {
			return err
		}
		keys, err := h.passkeys.list(r.Context(), s.Subject)
		if err != nil {
			return h.answer(w, v, failedWith(err))
		}
		return h.pages.signOutPage(w, v, h.cookies.csrf(id), s.Subject, keys)
	}
	return h.answer(w, v, h.signins.signOutVisitor(r.Context(), w, v, r.PostForm.Get("everywhere") == "1"))
}

// answer turns what a part decided into the page, the redirect or the error the visitor gets.
func (h *Handler) answer(w http.ResponseWriter, v *visit, o outcome) error {
	switch o.kind {
	case sent, toCode:
		return seeOther(w, h.Path+"/verify")
	case noFlow:
		return seeOther(w, h.Path+"/login")
	case signedOut:
		return seeOther(w, h.Path+"/login?signed_out")
	case limited:
		h.obs.limited(o.limit, o.wait, v.client)
		return h.pages.limited(w, v, o)
	case badPhone:
		return h.pages.phonePage(w, v, o.input, v.form.region, o.key)
	case refused:
		return h.pages.refusal(w, v, o.key)
	case busy:
		return h.pages.busy(w, v)
	case wrong:
		return h.pages.codePage(w, v, http.StatusUnauthorized, o.flow, words(catalog[v.lang]).count("err_wrong", o.left))
	case expired:
		return h.pages.expired(w, v, http.StatusUnauthorized, o.flow)
	case exhausted:
		return h.pages.message(w, v, http.StatusUnauthorized, "exhausted")
	}
	h.obs.storeFailed(o.err) // failed: nobody passes, the visitor is told, the log says why
	return h.pages.unavailable(w, v)
}

// regionField is the phone page's region field if it has the shape of a region code (two
// letters), upper-cased; else "". Whether codes may go there is the flow's to judge.
func regionField(s string) string {
	if len(s) != 2 || !isLetter(s[0]) || !isLetter(s[1]) {
		return ""
	}
	return strings.ToUpper(s)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func seeOther(w http.ResponseWriter, location string) error {
	w.Header().Set("Location", location)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusSeeOther)
	return nil
}
