package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
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
	t := now()
	s, ok, err := h.session(r, t)
	if err == nil && !ok {
		s, ok, err = h.trustedBrowser(w, r, t)
	}
	if err != nil {
		return h.storeFailed(w, r, err)
	}
	if !ok {
		return h.deny(w, r)
	}
	if h.sessions.needsSlide(s, t) {
		s.Seen = t
		h.setSession(w, r, s)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", strings.TrimPrefix(s.Subject, userPrefix))
	h.stripCookies(r)
	return next.ServeHTTP(w, r)
}

// session returns the request's session if its cookie is valid, unexpired, not revoked and its
// subject may still sign in here. An error means the store could not be asked.
func (h *Handler) session(r *http.Request, t time.Time) (Session, bool, error) {
	value := cookieValue(r, h.cookieName(r, sessionCookie))
	if value == "" {
		return Session{}, false, nil
	}
	s, err := h.sessions.decode(value, t)
	if err != nil || !h.subjectAllowed(r, s.Subject) {
		return Session{}, false, nil
	}
	revoked, err := h.revoked(r.Context(), s)
	return s, !revoked && err == nil, err
}

// revoked asks the store whether a session or trusted browser, or its subject, was revoked.
func (h *Handler) revoked(ctx context.Context, s Session) (bool, error) {
	own, err := h.store.RevokedAt(ctx, s.ID)
	if err != nil {
		return false, err
	}
	subject, err := h.store.RevokedAt(ctx, s.subjectID)
	return revokedBy(s, own, subject), err
}

// trustedBrowser signs the visitor in from a valid trusted-browser cookie, without an SMS: a
// new session for the same subject. ok is false when there is no such cookie.
func (h *Handler) trustedBrowser(w http.ResponseWriter, r *http.Request, t time.Time) (Session, bool, error) {
	if h.devices == nil {
		return Session{}, false, nil
	}
	value := cookieValue(r, h.cookieName(r, deviceCookie))
	if value == "" {
		return Session{}, false, nil
	}
	d, err := h.devices.decode(value, t)
	if err != nil || !h.subjectAllowed(r, d.Subject) {
		return Session{}, false, nil
	}
	if revoked, err := h.revoked(r.Context(), d); err != nil || revoked {
		return Session{}, false, err
	}
	s, err := h.sessions.issue(d.Subject, t)
	if err != nil {
		return Session{}, false, err
	}
	h.setSession(w, r, s)
	h.obs.trustedBrowser(s.Subject, h.clientIP(r))
	return s, true, nil
}

// deny sends browsers to the phone page and tells other clients where it is.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Location", h.Path+"/login?next="+url.QueryEscape(originalURI(r)))
		w.WriteHeader(http.StatusSeeOther)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, err := fmt.Fprintf(w, `{"error":"sign-in required","login":%q}`+"\n", h.Path+"/login")
	return err
}

// originalURI is the request's path and query as the client sent it, before any rewrite.
func originalURI(r *http.Request) string {
	if or, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && or.URL != nil {
		return or.URL.RequestURI()
	}
	return r.URL.RequestURI()
}

// serveGate routes the gate's own pages; rest is the path below Path.
func (h *Handler) serveGate(w http.ResponseWriter, r *http.Request, rest string) error {
	type route struct {
		methods string
		serve   func(http.ResponseWriter, *http.Request) error
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
		rt = route{"POST", h.serveResend}
	case "/logout":
		rt = route{"GET, HEAD, POST", h.serveLogout}
	case "/call":
		rt = route{"POST", h.serveCall}
	case "/status":
		rt = route{"GET, HEAD", h.serveStatus}
	default:
		if token, ok := strings.CutPrefix(rest, "/voice/"); ok {
			// The telephony provider fetches the call's script: no browser, no form, no CSRF.
			return h.serveVoice(w, r, token)
		}
		return h.message(w, r, http.StatusNotFound, "not_found")
	}
	if !slices.Contains(strings.Split(rt.methods, ", "), r.Method) {
		w.Header().Set("Allow", rt.methods)
		return h.message(w, r, http.StatusMethodNotAllowed, "method")
	}
	if r.Method != http.MethodPost {
		return rt.serve(w, r)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return h.message(w, r, http.StatusRequestEntityTooLarge, "too_large")
		}
		return h.message(w, r, http.StatusBadRequest, "bad_request")
	}
	if !h.sameOrigin(r) || !h.validCSRF(r) {
		return h.message(w, r, http.StatusForbidden, "form_expired")
	}
	return rt.serve(w, r)
}

// sameOrigin refuses a form whose Origin is not the site's: public_url's origin when set (so a
// proxy that ends TLS in front still works), else the request's scheme and host. "null" is let
// through: browsers send it for forms on pages with Referrer-Policy no-referrer, and the CSRF
// token still applies.
func (h *Handler) sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return true
	}
	want := h.origin
	if want == "" {
		want = "http://" + r.Host
		if r.TLS != nil {
			want = "https://" + r.Host
		}
	}
	return strings.EqualFold(origin, want)
}

// csrfToken binds a form to the flow cookie of the browser it was shown to.
func (h *Handler) csrfToken(flowID string) string {
	m := hmac.New(sha256.New, h.keys.csrf)
	m.Write([]byte(flowID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) validCSRF(r *http.Request) bool {
	id, _ := h.flowCookie(r)
	got := r.PostForm.Get("csrf")
	return id != "" && got != "" && hmac.Equal([]byte(got), []byte(h.csrfToken(id)))
}

// flowID returns the browser's flow id, giving it a new flow cookie if it has none the gate
// issued. It stores nothing.
func (h *Handler) flowID(w http.ResponseWriter, r *http.Request) (string, error) {
	if id, _ := h.flowCookie(r); id != "" {
		return id, nil
	}
	id, err := randomToken()
	if err != nil {
		return "", err
	}
	h.setFlow(w, r, id, "/")
	return id, nil
}

// serveLogin shows the phone page, or in users mode the button that sends the code to the
// user's phone. It stores nothing and sends nothing: where the visitor was going rides in the
// signed flow cookie.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) error {
	query := r.URL.Query()
	id, next := h.flowCookie(r)
	if want := localPath(query.Get("next"), h.Path); id == "" || query.Has("next") && want != next {
		if id == "" {
			var err error
			if id, err = randomToken(); err != nil {
				return caddyhttp.Error(http.StatusInternalServerError, err)
			}
		}
		h.setFlow(w, r, id, want)
	}
	t := h.words(r)
	p := page{Title: t["title_sign_in"], CSRF: h.csrfToken(id)}
	if query.Has("signed_out") {
		p.Info = t["signed_out"]
	}
	if user, ok := h.boundUser(r); ok {
		phone, refusal := h.userPhone(user)
		if refusal != "" {
			return h.refuse(w, r, refusal)
		}
		p.SendTo = unbreakable.Replace(maskPhoneDisplay(phone))
	}
	return h.render(w, r, http.StatusOK, "login.html", p)
}

// serveSend starts a fresh flow for the phone typed (or, in users mode, the signed-in user's
// phone) and sends it a code. Whether or not the number may sign in, the answer is the same 303
// to the code page; only allowed numbers get an SMS.
func (h *Handler) serveSend(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, _ := h.flowCookie(r)
	client := h.clientIP(r)
	if wait, err := h.hit(ctx, "ip", limitAddr(client), h.IPLimit); err != nil || wait > 0 {
		return h.limited(w, r, err, wait, "ip")
	}
	f := &flow{}
	if user, ok := h.boundUser(r); ok {
		phone, refusal := h.userPhone(user)
		if refusal != "" {
			return h.refuse(w, r, refusal)
		}
		f.User, f.Phone, f.Allowed = user, phone, true // the code goes to the user's phone, whatever was typed
	} else {
		input := r.PostForm.Get("phone")
		phone, region, err := normalizePhone(input, h.DefaultRegion)
		if err != nil {
			return h.phonePage(w, r, h.csrfToken(id), input, "err_not_phone")
		}
		if h.regions != nil && !h.regions[region] {
			return h.phonePage(w, r, h.csrfToken(id), input, "err_region")
		}
		f.Phone, f.Allowed = phone, h.phones.allows(phone)
	}
	if wait, limit, err := h.codeAllowed(ctx, f.Phone, client); err != nil || wait > 0 {
		return h.limited(w, r, err, wait, limit)
	}
	return h.sendAndContinue(w, r, id, f)
}

// serveResend issues a new code to the flow's phone, once resend_after has passed.
func (h *Handler) serveResend(w http.ResponseWriter, r *http.Request) error {
	id, f, err := h.pendingFlow(w, r)
	if f == nil {
		return err
	}
	if refused, err := h.againRefused(w, r, f); refused {
		return err
	}
	f.Resends++
	return h.sendAndContinue(w, r, id, f)
}

// pendingFlow loads the flow a new code is asked for. When there is none for this visitor it
// answers (with the phone page, or a store failure) and returns a nil flow.
func (h *Handler) pendingFlow(w http.ResponseWriter, r *http.Request) (string, *flow, error) {
	id, _ := h.flowCookie(r)
	f, err := h.loadFlow(r.Context(), id)
	if err != nil {
		return "", nil, h.storeFailed(w, r, err)
	}
	if f == nil || f.Phone == "" || !h.flowSubjectHere(r, f) {
		return "", nil, h.seeOther(w, h.Path+"/login")
	}
	return id, f, nil
}

// flowSubjectHere says whether this request may act on flow f: a user's flow needs that user
// from the first factor, and the code on its way to that user's phone.
func (h *Handler) flowSubjectHere(r *http.Request, f *flow) bool {
	return f.User == "" || firstFactor(r) == f.User && h.users[f.User] == f.Phone
}

// againRefused applies what a second code (by SMS or call) must pass: the client's IP limit,
// the regions in force now, then what every new code must pass. It answers when it refuses. A
// phone that may no longer sign in gets a code nobody knows, as at the start.
func (h *Handler) againRefused(w http.ResponseWriter, r *http.Request, f *flow) (bool, error) {
	ctx := r.Context()
	client := h.clientIP(r)
	if wait, err := h.hit(ctx, "ip", limitAddr(client), h.IPLimit); err != nil || wait > 0 {
		return true, h.limited(w, r, err, wait, "ip")
	}
	if h.regions != nil && !h.regions[regionOf(f.Phone)] {
		id, _ := h.flowCookie(r)
		return true, h.phonePage(w, r, h.csrfToken(id), "", "err_region")
	}
	if f.User == "" {
		f.Allowed = h.phones.allows(f.Phone)
	}
	if wait, limit, err := h.codeAllowed(ctx, f.Phone, client); err != nil || wait > 0 {
		return true, h.limited(w, r, err, wait, limit)
	}
	return false, nil
}

// sendAndContinue issues a code to the flow's phone by SMS, in the background, and moves the
// visitor on to the code page.
func (h *Handler) sendAndContinue(w http.ResponseWriter, r *http.Request, id string, f *flow) error {
	body, to := h.smsBody(r), f.Phone
	err := h.issue(r.Context(), id, f, "sms", h.clientIP(r), func(ctx context.Context, code string) (string, error) {
		return h.sender.Send(ctx, Message{To: to, Body: body(code)})
	})
	return h.continueAfter(w, r, err)
}

// continueAfter moves the visitor on to the code page once a code is on its way, or explains
// why it is not.
func (h *Handler) continueAfter(w http.ResponseWriter, r *http.Request, err error) error {
	switch {
	case err == nil:
		return h.seeOther(w, h.Path+"/verify")
	case errors.Is(err, errOutboxFull):
		h.obs.busy()
		setRetryAfter(w, 30*time.Second)
		t := h.words(r)
		return h.render(w, r, http.StatusServiceUnavailable, "message.html", page{Title: t["title_not_sent"], Text: t["text_not_sent"],
			Link: h.Path + "/login", LinkText: t["start_again"]})
	default:
		return h.storeFailed(w, r, err)
	}
}

// notSent answers the code page of a flow whose code could not be delivered: 502 when the site's
// provider setup is broken, 503 (and a retry) when the provider failed or is down.
func (h *Handler) notSent(w http.ResponseWriter, r *http.Request, id string, f *flow, state string) error {
	status := http.StatusBadGateway
	if state == deliveryFailed {
		status = http.StatusServiceUnavailable
		setRetryAfter(w, 30*time.Second)
	}
	t := h.words(r)
	p := page{Title: t["title_not_sent"], Text: t["text_not_sent"], CSRF: h.csrfToken(id), Retry: true, Link: h.Path + "/login", LinkText: t["other_number"]}
	if f.User == "" {
		p.RetryPhone = f.Phone // in users mode the code goes to the user's phone anyway
	}
	return h.render(w, r, status, "message.html", p)
}

// serveStatus answers the delivery state of the visitor's pending code, as JSON.
func (h *Handler) serveStatus(w http.ResponseWriter, r *http.Request) error {
	id, _ := h.flowCookie(r)
	var f *flow
	var err error
	if id != "" {
		if f, err = h.loadFlow(r.Context(), id); err != nil {
			return h.storeFailed(w, r, err)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	var state string
	if f != nil && f.Phone != "" && h.flowSubjectHere(r, f) {
		if state, err = h.deliveryState(r.Context(), id, f); err != nil {
			return h.storeFailed(w, r, err)
		}
	}
	if state == "" {
		w.WriteHeader(http.StatusNotFound)
		_, err = w.Write([]byte(`{"error":"no code is on its way","login":"` + h.Path + `/login"}` + "\n"))
		return err
	}
	_, err = w.Write([]byte(`{"delivery":"` + state + `"}` + "\n"))
	return err
}

// serveVerify shows the code page (GET) or checks a code (POST).
func (h *Handler) serveVerify(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id, next := h.flowCookie(r)
	var f *flow
	var err error
	if id != "" {
		if f, err = h.loadFlow(ctx, id); err != nil {
			return h.storeFailed(w, r, err)
		}
	}
	if r.Method != http.MethodPost {
		if f == nil || f.Phone == "" {
			return h.seeOther(w, h.Path+"/login")
		}
		state, err := h.deliveryState(ctx, id, f)
		if err != nil {
			return h.storeFailed(w, r, err)
		}
		if state == deliveryFailed || state == deliveryMisconfigured {
			return h.notSent(w, r, id, f, state)
		}
		return h.codePage(w, r, http.StatusOK, id, f, "")
	}
	client := h.clientIP(r)
	if wait, err := h.hit(ctx, "ip", limitAddr(client), h.IPLimit); err != nil || wait > 0 {
		return h.limited(w, r, err, wait, "ip")
	}
	if f == nil || f.Phone == "" || !h.flowSubjectHere(r, f) {
		return h.message(w, r, http.StatusUnauthorized, "flow_expired")
	}
	v, left, wait, err := h.checkCode(ctx, id, f, client, cleanCode(r.PostForm.Get("code"), h.CodeLength))
	if err != nil {
		return h.storeFailed(w, r, err)
	}
	if v == codeLocked {
		return h.limited(w, r, nil, wait, "lockout")
	}
	if v != codeAccepted {
		h.obs.codeFailed(f.Phone, v, left, client)
	}
	switch v {
	case codeWrong:
		return h.codePage(w, r, http.StatusUnauthorized, id, f, h.words(r).count("err_wrong", left))
	case codeExpired:
		return h.codePage(w, r, http.StatusUnauthorized, id, f, h.words(r)["err_expired"])
	case codeExhausted:
		return h.message(w, r, http.StatusUnauthorized, "exhausted")
	}
	subject := f.Phone
	if f.User != "" {
		subject = userPrefix + f.User
	}
	s, err := h.sessions.issue(subject, now())
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	h.setSession(w, r, s)
	h.setCookie(w, r, h.cookieName(r, flowCookie), "", -1)
	if h.devices != nil && r.PostForm.Get("trust") == "1" {
		d, err := h.devices.issue(subject, now())
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		h.setCookie(w, r, h.cookieName(r, deviceCookie), h.devices.encode(d), d.Expires.Sub(now()))
	}
	h.obs.verified(f.Phone, client)
	return h.seeOther(w, localPath(next, h.Path))
}

// codePage shows the code page for flow f, with an error line if errMsg is set.
func (h *Handler) codePage(w http.ResponseWriter, r *http.Request, status int, id string, f *flow, errMsg string) error {
	t := h.words(r)
	resendIn := ceilSeconds(time.Unix(0, f.Sent).Add(time.Duration(h.ResendAfter)).Sub(now()))
	return h.render(w, r, status, "verify.html", page{Title: t["title_code"], CSRF: h.csrfToken(id), Error: errMsg,
		Intro:    t.Say("code_intro", "n", strconv.Itoa(h.CodeLength), "phone", unbreakable.Replace(maskPhoneDisplay(f.Phone))),
		ResendIn: max(0, resendIn), CanCall: h.canCall() && f.Resends > 0})
}

// unbreakable keeps a number on one line: no-break spaces and hyphens.
var unbreakable = strings.NewReplacer(" ", "\u00a0", "-", "\u2011")

// phonePage shows the phone page again with the visitor's input and an error.
func (h *Handler) phonePage(w http.ResponseWriter, r *http.Request, csrf, input, errKey string) error {
	t := h.words(r)
	return h.render(w, r, http.StatusBadRequest, "login.html", page{Title: t["title_sign_in"], CSRF: csrf, Phone: clip(input, 40), Error: t[errKey]})
}

// serveLogout shows the sign-out buttons (GET) or signs out (POST). It clears every gate cookie
// the browser sent (session, trusted browser, flow), whatever the config says today. It revokes
// only cookies that are still valid, so a copied cookie signs out once: on this browser, its
// session, trusted browser and pending flow; everywhere, every session and trusted browser of
// the same subject, on any browser. The store write counts against ip_limit.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		id, err := h.flowID(w, r)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		return h.render(w, r, http.StatusOK, "logout.html", page{Title: h.words(r)["title_sign_out"], CSRF: h.csrfToken(id)})
	}
	ctx, t := r.Context(), now()
	var valid []Session
	for _, c := range []struct {
		codec *sessionCodec
		kind  string
	}{{h.sessions, sessionCookie}, {h.deviceCookies, deviceCookie}} {
		value := cookieValue(r, h.cookieName(r, c.kind))
		if value == "" {
			continue
		}
		h.setCookie(w, r, h.cookieName(r, c.kind), "", -1)
		s, err := c.codec.decode(value, t)
		if err != nil {
			continue // past its limits, or not genuine: nothing to revoke
		}
		revoked, err := h.revoked(ctx, s)
		if err != nil {
			return h.storeFailed(w, r, err)
		}
		if !revoked {
			valid = append(valid, s)
		}
	}
	flowID, _ := h.flowCookie(r)
	if flowID != "" {
		h.setCookie(w, r, h.cookieName(r, flowCookie), "", -1)
	}
	if len(valid) == 0 {
		return h.seeOther(w, h.Path+"/login?signed_out")
	}
	if wait, err := h.hit(ctx, "ip", limitAddr(h.clientIP(r)), h.IPLimit); err != nil || wait > 0 {
		return h.limited(w, r, err, wait, "ip")
	}
	everywhere := r.PostForm.Get("everywhere") == "1"
	for _, s := range valid {
		// Until it would expire: past that it is refused anyway.
		if err := h.store.Revoke(ctx, Revocation{ID: s.ID, Subject: s.subjectID, At: t, TTL: s.Expires.Sub(t)}); err != nil {
			return h.storeFailed(w, r, err)
		}
	}
	if everywhere {
		// Everything of this subject issued until now, sessions and trusted browsers alike.
		subject := valid[0].subjectID
		if err := h.store.Revoke(ctx, Revocation{ID: subject, Subject: subject, At: t, TTL: subjectRevocationTTL}); err != nil {
			return h.storeFailed(w, r, err)
		}
	}
	if flowID != "" {
		if err := h.store.Delete(ctx, flowKey(flowID)); err != nil {
			return h.storeFailed(w, r, err)
		}
	}
	h.obs.revoked(valid[0].Subject, everywhere, h.clientIP(r))
	return h.seeOther(w, h.Path+"/login?signed_out")
}

// limited answers a refused request: 429 with Retry-After, or a store failure.
func (h *Handler) limited(w http.ResponseWriter, r *http.Request, err error, wait time.Duration, limit string) error {
	if err != nil {
		return h.storeFailed(w, r, err)
	}
	h.obs.limited(limit, wait, h.clientIP(r))
	setRetryAfter(w, wait)
	t := h.words(r)
	if limit == "resend" {
		return h.render(w, r, http.StatusTooManyRequests, "message.html", page{Title: t["title_wait"],
			Text: t.Say("text_resend_wait", "wait", t.duration(ceilSeconds(wait))), Link: h.Path + "/verify", LinkText: t["back_to_code"]})
	}
	return h.render(w, r, http.StatusTooManyRequests, "message.html", page{Title: t["title_wait"],
		Text: t.Say("text_wait", "wait", t.duration(ceilSeconds(wait))), Link: h.Path + "/login", LinkText: t["start_again"]})
}

// storeFailed fails closed: nobody passes, the visitor is told, the log says why.
func (h *Handler) storeFailed(w http.ResponseWriter, r *http.Request, err error) error {
	h.obs.storeFailed(err)
	return h.unavailable(w, r)
}

func (h *Handler) unavailable(w http.ResponseWriter, r *http.Request) error {
	setRetryAfter(w, 30*time.Second)
	return h.render(w, r, http.StatusServiceUnavailable, "message.html", page{Title: h.words(r)["title_unavailable"], Text: h.words(r)["text_unavailable"]})
}

func (h *Handler) seeOther(w http.ResponseWriter, location string) error {
	w.Header().Set("Location", location)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// localPath returns next, normalised, if it is a path on this site outside the gate, else "/".
// It resolves dot segments (%2e too, as browsers do) and merges repeated slashes, then refuses
// anything a browser could read as another origin: schemes, "//host", backslashes, controls.
func localPath(next, gatePath string) string {
	if next == "" || len(next) > maxNextLen || next[0] != '/' || strings.HasPrefix(next, "//") {
		return "/"
	}
	for i := 0; i < len(next); i++ {
		if c := next[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return "/"
	}
	p := cleanPath(u.EscapedPath())
	decoded, err := url.PathUnescape(p)
	if err != nil || strings.ContainsAny(decoded, "\\\x00") {
		return "/"
	}
	if decoded = path.Clean(decoded); decoded == gatePath || strings.HasPrefix(decoded, gatePath+"/") {
		return "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		p += "#" + u.EscapedFragment()
	}
	if len(p) > maxNextLen || strings.HasPrefix(p, "//") {
		return "/"
	}
	return p
}

// cleanPath resolves the dot segments of an escaped absolute path and merges repeated slashes,
// keeping a trailing one.
func cleanPath(p string) string {
	var out []string
	trailing := false
	for _, seg := range strings.Split(p, "/")[1:] {
		switch strings.ToLower(seg) {
		case ".", "%2e":
			trailing = true
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = true
		case "":
			trailing = true
		default:
			out = append(out, seg)
			trailing = false
		}
	}
	if len(out) == 0 {
		return "/"
	}
	if trailing {
		return "/" + strings.Join(out, "/") + "/"
	}
	return "/" + strings.Join(out, "/")
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
