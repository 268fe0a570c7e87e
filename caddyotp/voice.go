package caddyotp

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"net/http"
	"strings"
	"time"
)

// A voice call reads the code to a visitor who did not get the SMS. The provider fetches the
// call's script from P/voice/{token}: the token is random, answers once and dies with the code.
// The store keeps the script's code encrypted with a key derived from the token, under a hash
// of the token, so the store alone holds neither the code nor a way to it.

// canCall says whether the sender can place calls and the operator turned them on.
func (h *Handler) canCall() bool {
	return h.public != nil && voiceOn(h.sender)
}

// voiceScript is what the store keeps for one call, sealed.
type voiceScript struct {
	Code    string `json:"code"`
	Lang    string `json:"lang"`
	Site    string `json:"site"`
	Expires int64  `json:"expires"` // with the code, Unix ns on the gate's clock
}

func (h *Handler) voiceKey(token string) string {
	m := hmac.New(sha256.New, h.keys.voice)
	m.Write([]byte("store\x00" + token))
	return "voice:" + hex.EncodeToString(m.Sum(nil)[:16])
}

func (h *Handler) voiceAEAD(token string) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, h.keys.voice)
	m.Write([]byte("seal\x00" + token))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// serveCall places a call that reads a new code (the old one dies), on the same terms as a
// resend: after resend_after, within the send limits. It is offered once a code was resent.
func (h *Handler) serveCall(w http.ResponseWriter, r *http.Request) error {
	id, f, err := h.pendingFlow(w, r)
	if f == nil {
		return err
	}
	if !h.canCall() || f.Resends == 0 {
		return h.seeOther(w, h.Path+"/verify")
	}
	if refused, err := h.againRefused(w, r, f); refused {
		return err
	}
	site, _ := h.smsNames(r)
	lang, to := h.language(r), f.Phone
	err = h.issue(r.Context(), id, f, "call", h.clientIP(r), func(ctx context.Context, code string) (string, error) {
		return h.placeCall(ctx, to, code, lang, site)
	})
	return h.continueAfter(w, r, err)
}

// placeCall stores the sealed script under a new token, then asks the provider to call. If the
// provider refuses, the script is removed again.
func (h *Handler) placeCall(ctx context.Context, phone, code, lang, site string) (string, error) {
	token, err := randomToken()
	if err != nil {
		return "", err
	}
	plain, _ := json.Marshal(voiceScript{Code: code, Lang: lang, Site: site,
		Expires: now().Add(time.Duration(h.CodeTTL)).UnixNano()})
	aead, err := h.voiceAEAD(token)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	sealed := aead.Seal(nonce, nonce, plain, nil)
	if err := h.store.Set(ctx, h.voiceKey(token), sealed, time.Duration(h.CodeTTL)); err != nil {
		return "", err
	}
	// Only public_url: a URL built from the request would let its Host header choose who
	// fetches the script, and so the code.
	ref, err := h.sender.(Caller).Call(ctx, phone, h.origin+h.Path+"/voice/"+token)
	if err != nil {
		_ = h.store.Delete(ctx, h.voiceKey(token))
	}
	return ref, err
}

// serveVoice answers the provider's fetch of a call's script, once: RCML that says the code digit
// by digit, twice. An unknown, used or expired token is a 404.
func (h *Handler) serveVoice(w http.ResponseWriter, r *http.Request, token string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return nil
	}
	w.Header().Set("Cache-Control", "no-store")
	if !validToken(token) {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	sealed, err := h.store.Take(r.Context(), h.voiceKey(token))
	if err != nil {
		return h.storeFailed(w, r, err)
	}
	aead, err := h.voiceAEAD(token)
	if err != nil || len(sealed) < aead.NonceSize() {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	var vs voiceScript
	if err != nil || json.Unmarshal(plain, &vs) != nil || catalog[vs.Lang] == nil || now().UnixNano() >= vs.Expires {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}
	digits := strings.Join(strings.Split(vs.Code, ""), " ") // "4 8 2 9 1 3", or it is read as a number
	var say bytes.Buffer
	_ = xml.EscapeText(&say, []byte(words(catalog[vs.Lang]).Say("voice", "site", vs.Site, "digits", digits)))
	w.Header().Set("Content-Type", "application/xml")
	_, err = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Response><Say voice="woman" language="` + vs.Lang + `" loop="2">` + say.String() + `</Say></Response>` + "\n"))
	return err
}
