package caddyotp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The gate's cookies of passkeys: a short one that says the session beside it was just made by
// a code (and so may add a passkey), a long one that says this browser was offered one, and
// the sealed challenge of the ceremony under way.
const (
	enrolCookie     = "_enrol"
	offeredCookie   = "_offered"
	challengeCookie = "_passkey"
)

// maxCeremonyBody caps a ceremony's JSON: an attestation with its certificates fits.
const maxCeremonyBody = 64 << 10

// passkeyPages serves the passkeys' pages and ceremonies under P/passkey/: the offer after a
// code, the JSON ceremonies the pages' scripts call, and the removal from the sign-out page.
type passkeyPages struct {
	pk      *passkeys
	signins *signins
	cookies *gateCookies
	pages   *pageSet
	key     []byte // keys.passkey: signs the enrol cookie
	path    string
	origin  string // public_url's
	obs     *observer
}

// enrolToken binds the enrol cookie to one session, of this gate.
func (pp *passkeyPages) enrolToken(id [16]byte) string {
	m := hmac.New(sha256.New, pp.key)
	m.Write([]byte("enrol\x00"))
	m.Write(pp.cookies.aud)
	m.Write(id[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session is the visitor's session (the session cookie's only), and whether a code made it
// just now: the enrol cookie is bound to it.
func (pp *passkeyPages) session(ctx context.Context, v *visit) (s Session, byCode, ok bool, err error) {
	s, _, ok, err = pp.signins.current(ctx, v.session, func() string { return "" }, v.user)
	byCode = ok && v.enrol != "" && hmac.Equal([]byte(v.enrol), []byte(pp.enrolToken(s.ID)))
	return s, byCode, ok, err
}

// readCookies reads the passkeys' cookies of a request to the gate's pages: the enrol cookie's
// value, and whether the browser was offered a passkey. None while passkeys are off.
func (pp *passkeyPages) readCookies(r *http.Request, secure bool) (enrol string, offered bool) {
	if pp == nil {
		return "", false
	}
	return cookieValue(r, pp.cookies.named(enrolCookie, secure)), cookieValue(r, pp.cookies.named(offeredCookie, secure)) != ""
}

// afterCode sends a visitor whom a code just signed in (session s) on: to the passkey offer,
// once per browser, with the enrol cookie and a flow for the ceremony; else where they were going.
func (pp *passkeyPages) afterCode(w http.ResponseWriter, v *visit, s Session) error {
	next := localPath(v.next, pp.path)
	if v.offered {
		return seeOther(w, next)
	}
	id, err := randomToken()
	if err != nil {
		return err
	}
	pp.cookies.set(w, v.secure, flowCookie, pp.cookies.encodeFlow(id, next), passkeyFreshness)
	pp.cookies.set(w, v.secure, enrolCookie, pp.enrolToken(s.ID), passkeyFreshness)
	return seeOther(w, pp.path+"/passkey/offer")
}

// serve routes P/passkey/OP: the offer page (GET), or a ceremony (POST, JSON).
func (pp *passkeyPages) serve(w http.ResponseWriter, r *http.Request, op string, v *visit) error {
	switch op {
	case "offer":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			return pp.pages.message(w, v, http.StatusMethodNotAllowed, "method")
		}
		return pp.offer(w, r.Context(), v)
	case "register/begin", "register/finish", "signin/begin", "signin/finish":
	default:
		return pp.pages.message(w, v, http.StatusNotFound, "not_found")
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		return pp.json(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCeremonyBody))
	if err != nil {
		return pp.json(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "too large"})
	}
	if !sameOrigin(r, pp.origin) || !pp.cookies.validCSRF(v.flowID, r.Header.Get("X-CSRF-Token")) {
		return pp.json(w, http.StatusForbidden, map[string]string{"error": "form expired: load the page again"})
	}
	ctx := r.Context()
	token := cookieValue(r, pp.cookies.named(challengeCookie, v.secure))
	switch op {
	case "signin/begin":
		options, token, o := pp.pk.beginSignIn(v.flowID)
		return pp.begun(w, v, o, options, token)
	case "signin/finish":
		pp.cookies.set(w, v.secure, challengeCookie, "", -1)
		o := pp.pk.finishSignIn(ctx, v.flowID, v.client, v.user, token, body)
		if o.kind == verified {
			if _, err := pp.signins.signIn(w, v, o.subject, false); err != nil {
				return err
			}
		}
		return pp.answer(w, v, o, map[string]string{"next": localPath(v.next, pp.path)})
	}
	s, byCode, ok, err := pp.session(ctx, v)
	switch {
	case err != nil:
		return pp.answer(w, v, failedWith(err), nil)
	case !ok:
		return pp.json(w, http.StatusUnauthorized, map[string]string{"error": "sign-in required", "login": pp.path + "/login"})
	case op == "register/begin":
		options, token, o := pp.pk.beginRegistration(ctx, v.flowID, v.client, s, byCode)
		return pp.begun(w, v, o, options, token)
	}
	pp.cookies.set(w, v.secure, challengeCookie, "", -1)
	o := pp.pk.finishRegistration(ctx, v.flowID, v.client, token, s, byCode, body, passkeyName(r.UserAgent()))
	if o.kind == verified {
		pp.cookies.set(w, v.secure, enrolCookie, "", -1) // one passkey per code
	}
	return pp.answer(w, v, o, map[string]string{"next": localPath(v.next, pp.path)})
}

// begun answers a ceremony's first step: the options, with the sealed challenge in a cookie
// that lives as long as the challenge.
func (pp *passkeyPages) begun(w http.ResponseWriter, v *visit, o outcome, options any, token string) error {
	if o.kind == toCode {
		pp.cookies.set(w, v.secure, challengeCookie, token, passkeyChallengeTTL)
	}
	return pp.answer(w, v, o, options)
}

// answer writes a ceremony's outcome as JSON: ok (what the step returns), or the refusal.
func (pp *passkeyPages) answer(w http.ResponseWriter, v *visit, o outcome, ok any) error {
	switch o.kind {
	case toCode, verified:
		return pp.json(w, http.StatusOK, ok)
	case limited:
		pp.obs.limited(o.limit, o.wait, v.client)
		setRetryAfter(w, o.wait)
		return pp.json(w, http.StatusTooManyRequests, map[string]any{"error": "too many tries", "retry_after": ceilSeconds(o.wait)})
	case refused:
		if errors.Is(o.err, errPasskeyRefused) {
			return pp.json(w, http.StatusUnauthorized, map[string]string{"error": errPasskeyRefused.Error()})
		}
		return pp.json(w, http.StatusForbidden, map[string]string{"error": "a passkey can be added only just after a sign-in with a code"})
	}
	pp.obs.storeFailed(o.err)
	setRetryAfter(w, 30*time.Second)
	return pp.json(w, http.StatusServiceUnavailable, map[string]string{"error": "sign-in unavailable"})
}

func (pp *passkeyPages) json(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// offer shows the passkey offer to a visitor whom a code just signed in, and remembers for this
// browser that it did; anyone else goes on to where they were going.
func (pp *passkeyPages) offer(w http.ResponseWriter, ctx context.Context, v *visit) error {
	next := localPath(v.next, pp.path)
	_, byCode, ok, err := pp.session(ctx, v)
	if err != nil {
		return pp.pages.unavailable(w, v)
	}
	if !ok || !byCode || v.flowID == "" {
		return seeOther(w, next)
	}
	pp.cookies.set(w, v.secure, offeredCookie, "1", offeredTTL)
	t := words(catalog[v.lang])
	return pp.pages.render(w, v, http.StatusOK, "passkey.html", page{Title: t["passkey_offer_title"], Text: t["passkey_offer_text"],
		CSRF: pp.cookies.csrf(v.flowID), Link: next})
}

// list is the signed-in subject's passkeys for the sign-out page; nil when passkeys are off.
func (pp *passkeyPages) list(ctx context.Context, subject string) ([]passkeyRow, error) {
	if pp == nil {
		return nil, nil
	}
	keys, err := pp.pk.list(ctx, subject)
	rows := make([]passkeyRow, len(keys))
	for i, k := range keys {
		rows[i] = passkeyRow{ID: base64.RawURLEncoding.EncodeToString(k.Credential.ID), Name: k.Name, Made: k.Made.Format(time.DateOnly)}
		if !k.Used.IsZero() {
			rows[i].Used = k.Used.Format(time.DateOnly)
		}
	}
	return rows, err
}

// A passkeyRow is a passkey as the sign-out page lists it.
type passkeyRow struct{ ID, Name, Made, Used string }

// serveRemove removes one of the signed-in visitor's passkeys (the sign-out page's form), then
// shows that page again.
func (pp *passkeyPages) serveRemove(w http.ResponseWriter, r *http.Request, v *visit) error {
	s, _, ok, err := pp.session(r.Context(), v)
	if err != nil {
		return pp.pages.unavailable(w, v)
	}
	if !ok {
		return seeOther(w, pp.path+"/logout")
	}
	id, err := base64.RawURLEncoding.DecodeString(r.PostForm.Get("id"))
	if err != nil || len(id) == 0 || len(id) > 1023 {
		return pp.pages.message(w, v, http.StatusBadRequest, "bad_request")
	}
	switch o := pp.pk.remove(r.Context(), s.Subject, v.client, id); o.kind {
	case limited:
		pp.obs.limited(o.limit, o.wait, v.client)
		return pp.pages.limited(w, v, o)
	case failed:
		pp.obs.storeFailed(o.err)
		return pp.pages.unavailable(w, v)
	}
	return seeOther(w, fmt.Sprintf("%s/logout?removed", pp.path))
}
