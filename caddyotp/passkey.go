package caddyotp

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

const (
	// passkeyChallengeTTL is how long a ceremony's challenge lives.
	passkeyChallengeTTL = 5 * time.Minute
	// passkeyFreshness is how new a session made by a code must be to add a passkey, so that a
	// stolen session cookie cannot.
	passkeyFreshness = 5 * time.Minute
	// maxPasskeys bounds one subject's passkeys.
	maxPasskeys = 20
)

// passkeys runs the WebAuthn ceremonies of a gate over plain values: making a passkey for a
// subject who just signed in with a code, and signing in with one. A ceremony's first step
// stores nothing: its challenge travels sealed to the browser, bound to the visitor's flow, and
// the second step counts the request against ip_limit before it touches the store or the vault.
type passkeys struct {
	wa       *webauthn.WebAuthn
	vault    passkeyVault
	store    Store // which challenges were answered, and which sessions added their passkey
	limits   *limits
	allow    *allowlist
	subjects []byte // keys.subject: a subject's owner id is its keyed hash
	seal     sealer
	tokens   sealer // seals challenges
	now      func() time.Time
	obs      *observer
}

// errPasskeyRefused is every refusal of a ceremony's answer: the same whatever was wrong, so
// that a refusal says nothing of which passkeys exist.
var errPasskeyRefused = errors.New("passkey not accepted")

// A challenge is what a ceremony's first step hands its second, sealed: the library's session
// data, the flow it is bound to, when it was made, and for a registration the session it is for.
type challenge struct {
	Kind    string               `json:"kind"`
	Flow    string               `json:"flow"`
	Data    webauthn.SessionData `json:"data"`
	Made    time.Time            `json:"made"`
	Session []byte               `json:"session,omitempty"`
}

// passkeyUser is a subject as the WebAuthn library sees it.
type passkeyUser struct {
	owner   []byte
	name    string
	display string
	keys    []passkey
}

func (u passkeyUser) WebAuthnID() []byte          { return u.owner }
func (u passkeyUser) WebAuthnName() string        { return u.name }
func (u passkeyUser) WebAuthnDisplayName() string { return u.display }
func (u passkeyUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(u.keys))
	for i, k := range u.keys {
		out[i] = k.Credential
	}
	return out
}

// owner is the id a subject's passkeys are kept under and that authenticators return as the
// user handle: a keyed hash, so neither the vault nor the authenticator holds the number.
func (pk *passkeys) owner(subject string) []byte {
	id := subjectID(pk.subjects, "passkey\x00"+subject)
	return id[:]
}

// begin seals the challenge of a ceremony of kind for the flow: the token the browser holds
// until it answers.
func (pk *passkeys) begin(kind, flowID string, c challenge) (string, outcome) {
	c.Kind, c.Flow, c.Made = kind, flowID, pk.now()
	b, err := json.Marshal(c)
	if err != nil {
		return "", failedWith(err)
	}
	sealed, err := pk.tokens.seal([]byte(kind), string(b))
	if err != nil {
		return "", failedWith(err)
	}
	return base64.RawURLEncoding.EncodeToString(sealed), outcome{kind: toCode}
}

// take opens the token of the flow's challenge of kind and marks it answered, once a request
// was counted: nil if the gate did not seal it for this flow, it is older than
// passkeyChallengeTTL on the gate's clock, or it was answered before.
func (pk *passkeys) take(ctx context.Context, kind, flowID, token string) (*challenge, error) {
	sealed, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || flowID == "" {
		return nil, nil
	}
	plain, ok := pk.tokens.open([]byte(kind), sealed)
	var c challenge
	if !ok || json.Unmarshal([]byte(plain), &c) != nil || c.Kind != kind || c.Flow != flowID || pk.now().Sub(c.Made) >= passkeyChallengeTTL {
		return nil, nil
	}
	first, err := pk.store.Raise(ctx, pk.usedKey("challenge", []byte(c.Data.Challenge)), []byte{1}, passkeyChallengeTTL)
	if err != nil || !first {
		return nil, err
	}
	return &c, nil
}

// usedKey names, in the store, a challenge answered or a session that added its passkey.
func (pk *passkeys) usedKey(what string, id []byte) string {
	h := subjectID(pk.subjects, "passkey-"+what+"\x00"+string(id))
	return "pk:" + what + ":" + hex.EncodeToString(h[:])
}

// count counts a ceremony's request from client against ip_limit; ok is false, with the
// outcome to answer, when the limit refused it or the store could not count.
func (pk *passkeys) count(ctx context.Context, client string) (outcome, bool) {
	wait, err := pk.limits.countAddress(ctx, client)
	if err != nil || wait > 0 {
		return limitedBy("ip", wait, err), false
	}
	return outcome{}, true
}

// fresh says whether s may add a passkey: made by a code (madeByCode, from the enrol cookie
// bound to it) within passkeyFreshness.
func (pk *passkeys) fresh(s Session, madeByCode bool) bool {
	return madeByCode && pk.now().Sub(s.Issued) < passkeyFreshness
}

// beginRegistration counts the request, then returns the options to make a passkey for the
// session's subject (its passkeys are read to exclude them) and their sealed challenge. The
// outcome is toCode (options made), limited, refused (the session may not add one) or failed.
func (pk *passkeys) beginRegistration(ctx context.Context, flowID, client string, s Session, madeByCode bool) (*protocol.CredentialCreation, string, outcome) {
	if o, ok := pk.count(ctx, client); !ok {
		return nil, "", o
	}
	if flowID == "" || !pk.fresh(s, madeByCode) {
		return nil, "", outcome{kind: refused}
	}
	u, err := pk.user(ctx, s.Subject)
	if err != nil {
		return nil, "", failedWith(err)
	}
	if len(u.keys) >= maxPasskeys {
		return nil, "", outcome{kind: refused}
	}
	creation, data, err := pk.wa.BeginRegistration(u,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementRequired, RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification: protocol.VerificationPreferred}),
		webauthn.WithExclusions(webauthn.Credentials(u.WebAuthnCredentials()).CredentialDescriptors()),
		webauthn.WithConveyancePreference(protocol.PreferNoAttestation))
	if err != nil {
		return nil, "", failedWith(err)
	}
	token, o := pk.begin("register", flowID, challenge{Data: *data, Session: s.ID[:]})
	return creation, token, o
}

// finishRegistration counts the request, then checks the browser's answer to the registration
// challenge of token and keeps the passkey it made, named name: one for each session a code
// made. The outcome is verified, limited, refused or failed.
func (pk *passkeys) finishRegistration(ctx context.Context, flowID, client, token string, s Session, madeByCode bool, body []byte, name string) outcome {
	if o, ok := pk.count(ctx, client); !ok {
		return o
	}
	if !pk.fresh(s, madeByCode) {
		return outcome{kind: refused}
	}
	c, err := pk.take(ctx, "register", flowID, token)
	if err != nil {
		return failedWith(err)
	}
	if c == nil || string(c.Session) != string(s.ID[:]) {
		return pk.refuse("registration: no live challenge for this session", client)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(body)
	if err != nil {
		return pk.refuse("registration: malformed answer", client)
	}
	u, err := pk.user(ctx, s.Subject)
	if err != nil {
		return failedWith(err)
	}
	cred, err := pk.wa.CreateCredential(u, c.Data, parsed)
	if err != nil {
		return pk.refuse(clip("registration: "+err.Error(), 200), client) // the library's reason may quote the answer
	}
	for _, k := range u.keys {
		if string(k.Credential.ID) == string(cred.ID) {
			return pk.refuse("registration: an authenticator that ignored the exclusions", client)
		}
	}
	if len(u.keys) >= maxPasskeys {
		return outcome{kind: refused}
	}
	first, err := pk.store.Raise(ctx, pk.usedKey("enrolled", s.ID[:]), []byte{1}, passkeyFreshness)
	if err != nil {
		return failedWith(err)
	}
	if !first {
		return outcome{kind: refused} // this session added its passkey already
	}
	sealed, err := pk.seal.seal(u.owner, s.Subject)
	if err != nil {
		return failedWith(err)
	}
	p := passkey{Credential: *cred, Owner: u.owner, Sealed: sealed, Name: name, Made: pk.now().UTC()}
	if err := pk.vault.save(ctx, p); err != nil {
		return failedWith(err)
	}
	pk.obs.passkey("created", s.Subject, client)
	return outcome{kind: verified, subject: s.Subject}
}

// beginSignIn returns the options of a sign-in with any of the site's passkeys (discoverable:
// no number typed) and their sealed challenge. It counts nothing and stores nothing, so that the
// phone page may ask for them each time it is shown.
func (pk *passkeys) beginSignIn(flowID string) (*protocol.CredentialAssertion, string, outcome) {
	if flowID == "" {
		return nil, "", outcome{kind: refused}
	}
	assertion, data, err := pk.wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, "", failedWith(err)
	}
	token, o := pk.begin("signin", flowID, challenge{Data: *data})
	return assertion, token, o
}

// finishSignIn counts the request, then checks the browser's answer to the sign-in challenge of
// token: the passkey's signature over it, from this origin and relying party, with the user
// present, and a sign counter that went up where the authenticator keeps one. The subject it
// belongs to must still be allowed for the visitor's first-factor user. The outcome is verified
// (with the subject), limited, refused or failed; every refusal is alike.
func (pk *passkeys) finishSignIn(ctx context.Context, flowID, client, user, token string, body []byte) outcome {
	if o, ok := pk.count(ctx, client); !ok {
		return o
	}
	c, err := pk.take(ctx, "signin", flowID, token)
	if err != nil {
		return failedWith(err)
	}
	if c == nil {
		return pk.refuse("no live challenge", client)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(body)
	if err != nil {
		return pk.refuse("malformed answer", client)
	}
	var found *passkey
	var vaultErr error
	cred, err := pk.wa.ValidateDiscoverableLogin(func(rawID, owner []byte) (webauthn.User, error) {
		if len(owner) != len(Session{}.subjectID) {
			return nil, errPasskeyRefused // no owner the gate made: the vault is not asked
		}
		keys, err := pk.vault.load(ctx, owner)
		if err != nil {
			vaultErr = err
			return nil, err
		}
		for i := range keys {
			if string(keys[i].Credential.ID) == string(rawID) {
				found = &keys[i]
			}
		}
		return passkeyUser{owner: owner, keys: keys}, nil
	}, c.Data, parsed)
	switch {
	case vaultErr != nil:
		return failedWith(vaultErr)
	case err != nil || found == nil:
		return pk.refuse("signature, origin, relying party or credential", client)
	case cred.Authenticator.CloneWarning:
		return pk.refuse("sign counter did not go up: a cloned authenticator?", client)
	}
	subject, ok := pk.seal.open(found.Owner, found.Sealed)
	if !ok || !pk.allow.allows(subject, user) {
		return pk.refuse("its subject may not sign in here", client)
	}
	found.Credential, found.Used = *cred, pk.now().UTC()
	// Only a passkey still there is updated: one removed meanwhile (revoked) stays removed,
	// and signs no one in.
	if kept, err := pk.vault.update(ctx, *found); err != nil {
		return failedWith(err)
	} else if !kept {
		return pk.refuse("removed while it was being used", client)
	}
	pk.obs.passkey("used", subject, client)
	return outcome{kind: verified, subject: subject}
}

func (pk *passkeys) refuse(why, client string) outcome {
	pk.obs.passkeyRefused(why, client)
	return outcome{kind: refused, err: errPasskeyRefused}
}

// user is subject as the library sees it, with its passkeys.
func (pk *passkeys) user(ctx context.Context, subject string) (passkeyUser, error) {
	owner := pk.owner(subject)
	keys, err := pk.vault.load(ctx, owner)
	name := subjectName(subject)
	if strings.HasPrefix(name, "+") {
		name = maskPhoneDisplay(name)
	}
	return passkeyUser{owner: owner, name: name, display: name, keys: keys}, err
}

// list returns the subject's passkeys, newest first.
func (pk *passkeys) list(ctx context.Context, subject string) ([]passkey, error) {
	keys, err := pk.vault.load(ctx, pk.owner(subject))
	slices.SortFunc(keys, func(a, b passkey) int { return b.Made.Compare(a.Made) })
	return keys, err
}

// remove counts the request, then removes the subject's passkey id. The outcome is signedOut
// (done, or there was none), limited or failed.
func (pk *passkeys) remove(ctx context.Context, subject, client string, id []byte) outcome {
	if o, ok := pk.count(ctx, client); !ok {
		return o
	}
	removed, err := pk.vault.remove(ctx, pk.owner(subject), id)
	if err != nil {
		return failedWith(err)
	}
	if removed {
		pk.obs.passkey("removed", subject, client)
	}
	return outcome{kind: signedOut}
}

// removeAll removes every passkey of subject (an operator's revocation), and says how many.
func (pk *passkeys) removeAll(ctx context.Context, subject, by string) (int, error) {
	n, err := pk.vault.removeAll(ctx, pk.owner(subject))
	for range n {
		pk.obs.passkey("removed", subject, by)
	}
	return n, err
}

// passkeyName names a new passkey for the sign-out page by the browser and system that made it,
// from a fixed vocabulary: nothing of the request is kept as it was sent.
func passkeyName(userAgent string) string {
	browser := ""
	for _, b := range [][2]string{{"Edg/", "Edge"}, {"Firefox/", "Firefox"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"}} {
		if strings.Contains(userAgent, b[0]) {
			browser = b[1]
			break
		}
	}
	system := ""
	for _, s := range [][2]string{{"Android", "Android"}, {"iPhone", "iPhone"}, {"iPad", "iPad"}, {"CrOS", "ChromeOS"},
		{"Windows", "Windows"}, {"Mac OS X", "macOS"}, {"Linux", "Linux"}} {
		if strings.Contains(userAgent, s[0]) {
			system = s[1]
			break
		}
	}
	switch {
	case browser != "" && system != "":
		return browser + " · " + system
	case browser != "" || system != "":
		return browser + system
	}
	return "Passkey"
}
