package caddyotp

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"strings"
	"time"
)

// A voice call reads the code to a visitor who did not get the SMS. The provider fetches the
// call's script from public_url + P/voice/{token}: the token is random, answers once and dies
// with the code. The store keeps the script's code encrypted with a key derived from the token,
// under a hash of the token, so the store alone holds neither the code nor a way to it.

// voiceScripts place calls and keep their one-time scripts.
type voiceScripts struct {
	store Store
	calls Caller
	key   []byte        // the voice key, from which each token's keys derive
	url   string        // public_url + P + "/voice/": never built from a request
	ttl   time.Duration // code_ttl
	now   func() time.Time
}

// voiceScript is what the store keeps for one call, sealed.
type voiceScript struct {
	Code    string `json:"code"`
	Lang    string `json:"lang"`
	Site    string `json:"site"`
	Expires int64  `json:"expires"` // with the code, Unix ns on the gate's clock
}

// storeKey is where the script of token is kept: under a hash of the token.
func (vs *voiceScripts) storeKey(token string) string {
	m := hmac.New(sha256.New, vs.key)
	m.Write([]byte("store\x00" + token))
	return voiceKey(m.Sum(nil)[:16])
}

func (vs *voiceScripts) aead(token string) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, vs.key)
	m.Write([]byte("seal\x00" + token))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// caller returns the send of a call to phone that reads a code in lang, naming site.
func (vs *voiceScripts) caller(phone, lang, site string) sendFunc {
	return func(ctx context.Context, code string, _ func(string) string) (Sent, error) {
		return vs.call(ctx, phone, code, lang, site)
	}
}

// call stores the sealed script under a new token, then asks the provider to call. If the
// provider refuses, the script is removed again.
func (vs *voiceScripts) call(ctx context.Context, phone, code, lang, site string) (Sent, error) {
	token, err := randomToken()
	if err != nil {
		return Sent{}, err
	}
	plain, _ := json.Marshal(voiceScript{Code: code, Lang: lang, Site: site, Expires: vs.now().Add(vs.ttl).UnixNano()})
	aead, err := vs.aead(token)
	if err != nil {
		return Sent{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Sent{}, err
	}
	if err := vs.store.Set(ctx, vs.storeKey(token), aead.Seal(nonce, nonce, plain, nil), vs.ttl); err != nil {
		return Sent{}, err
	}
	sent, err := vs.calls.Call(ctx, phone, vs.url+token)
	if err != nil {
		_ = vs.store.Delete(ctx, vs.storeKey(token))
	}
	return sent, err
}

// script returns, once, the RCML of token's call: the code digit by digit, twice. ok is false
// for an unknown, used or expired token.
func (vs *voiceScripts) script(ctx context.Context, token string) (rcml []byte, ok bool, err error) {
	if !validToken(token) {
		return nil, false, nil
	}
	sealed, err := vs.store.Take(ctx, vs.storeKey(token))
	if err != nil {
		return nil, false, err
	}
	aead, err := vs.aead(token)
	if err != nil || len(sealed) < aead.NonceSize() {
		return nil, false, nil
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	var s voiceScript
	if err != nil || json.Unmarshal(plain, &s) != nil || catalog[s.Lang] == nil || vs.now().UnixNano() >= s.Expires {
		return nil, false, nil
	}
	digits := strings.Join(strings.Split(s.Code, ""), " ") // "4 8 2 9 1 3", or it is read as a number
	var say bytes.Buffer
	_ = xml.EscapeText(&say, []byte(words(catalog[s.Lang]).Say("voice", "site", s.Site, "digits", digits)))
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Response><Say voice="woman" language="` + s.Lang + `" loop="2">` + say.String() + `</Say></Response>` + "\n"), true, nil
}

func voiceOn(s Sender) bool {
	c, ok := s.(Caller)
	return ok && c.VoiceEnabled()
}
