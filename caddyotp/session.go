package caddyotp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Session is a signed-in visitor, or (with its own key) a trusted browser. It lives in a cookie,
// signed; the server keeps nothing for it but revocation marks.
type Session struct {
	ID      [16]byte
	Subject string    // the verified phone (E.164), or a first-factor user and their phone (userSubject)
	Issued  time.Time // sign-in time
	Expires time.Time // absolute end: Issued + session_ttl
	Seen    time.Time // last time the cookie was issued; the idle limit counts from here

	subjectID [16]byte // names the subject in revocations ("sign out everywhere"): derived, not sent
}

// Session cookie layout: base64url(payload) "." base64url(HMAC-SHA256(key, payload)),
// payload = version(1) audience(8) id(16) issued(8) expires(8) seen(8) subject(rest), times in
// Unix ms. The audience names the gates that honour it.
const (
	sessionVersion    = 2
	audienceLen       = 8
	sessionHeaderLen  = 1 + audienceLen + 16 + 8 + 8 + 8
	maxSubjectLen     = 128
	maxSessionCookie  = 400 // base64 of the largest payload and MAC, with room to spare
	sessionMACEncoded = 43  // base64url of 32 bytes, unpadded
)

// strictB64 refuses non-zero trailing bits, so every session has exactly one valid encoding.
var strictB64 = base64.RawURLEncoding.Strict()

var (
	errSessionMalformed = errors.New("session cookie malformed")
	errSessionSignature = errors.New("session cookie signature invalid")
	errSessionExpired   = errors.New("session expired")
	errSessionIdle      = errors.New("session idle too long")
	errSessionAudience  = errors.New("session issued by another gate")
)

// sessionCodec signs and checks session cookies. The check runs on every protected request, so
// its MAC and buffers are pooled, and cookies whose signature it has checked are remembered
// (by their exact value, a bounded number of them): a visitor's next requests skip the MAC.
type sessionCodec struct {
	key      []byte
	subjects []byte // the key that derives subject ids
	audience [audienceLen]byte
	ttl      time.Duration
	idle     time.Duration
	scratch  sync.Pool // of *sessionScratch
	seed     maphash.Seed
	verified atomic.Pointer[verifiedTable] // nil until the first cookie is checked
	evict    atomic.Uint32                 // picks which of two taken places a new cookie takes
}

// verifiedSlots bounds the remembered cookies: a fixed table, in pairs of places, allocated at
// the first cookie checked (64 KiB of pointers). A cookie takes a free place of its pair, or
// one of the two cookies there gives way; what is remembered never grows past the table.
const verifiedSlots = 8192

type verifiedTable [verifiedSlots]atomic.Pointer[verifiedCookie]

// verifiedCookie is a session cookie whose signature was checked, and what the hot path needs
// of it, worked out once: its session, its subject's name for {http.auth.user.id} (boxed, so that
// handing it to Caddy's replacer allocates nothing), and its time limits under the codec's ttl
// and idle as instants. None of that changes once made; lines is the last Cookie line a request
// with this cookie carried, and that line without the gate's cookies (see stripRemembering).
type verifiedCookie struct {
	value string
	s     Session
	name  any
	// refused from ends on (the cookie's expiry, or issue + ttl if sooner); with an idle limit,
	// refused after idleEnds (seen + idle), re-issued from slides on (seen + idle/10)
	ends, idleEnds, slides time.Time
	lines                  atomic.Pointer[strippedLine]
}

type sessionScratch struct {
	mac       hash.Hash
	payload   [maxSessionCookie]byte
	got, want [32]byte
}

func newSessionCodec(key, subjects, audience []byte, ttl, idle time.Duration) *sessionCodec {
	c := &sessionCodec{key: key, subjects: subjects, ttl: ttl, idle: idle, seed: maphash.MakeSeed()}
	copy(c.audience[:], audience)
	c.scratch.New = func() any { return &sessionScratch{mac: hmac.New(sha256.New, key)} }
	return c
}

// issue starts a new session for subject with a fresh random id.
func (c *sessionCodec) issue(subject string, t time.Time) (Session, error) {
	t = t.Truncate(time.Millisecond) // what the cookie can carry
	s := Session{Subject: subject, Issued: t, Expires: t.Add(c.ttl), Seen: t, subjectID: subjectID(c.subjects, subject)}
	if _, err := rand.Read(s.ID[:]); err != nil {
		return Session{}, err
	}
	return s, nil
}

// encode returns the cookie value for s.
func (c *sessionCodec) encode(s Session) string {
	payload := make([]byte, sessionHeaderLen, sessionHeaderLen+len(s.Subject))
	payload[0] = sessionVersion
	copy(payload[1:9], c.audience[:])
	copy(payload[9:25], s.ID[:])
	binary.BigEndian.PutUint64(payload[25:33], uint64(s.Issued.UnixMilli()))
	binary.BigEndian.PutUint64(payload[33:41], uint64(s.Expires.UnixMilli()))
	binary.BigEndian.PutUint64(payload[41:49], uint64(s.Seen.UnixMilli()))
	payload = append(payload, s.Subject...)
	sc := c.scratch.Get().(*sessionScratch)
	defer c.scratch.Put(sc)
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sc.sign(payload, sc.want[:0]))
}

func (sc *sessionScratch) sign(payload, dst []byte) []byte {
	sc.mac.Reset()
	sc.mac.Write(payload)
	return sc.mac.Sum(dst)
}

// decode checks the signature (or finds the cookie among those already checked), then the time
// limits at t.
func (c *sessionCodec) decode(value string, t time.Time) (Session, error) {
	v, err := c.check(value, t)
	if err != nil {
		return Session{}, err
	}
	return v.s, nil
}

// check is decode for the hot path: the remembered cookie, shared and never to be changed.
func (c *sessionCodec) check(value string, t time.Time) (*verifiedCookie, error) {
	v := c.remembered(value)
	if v == nil {
		s, err := c.verify(value)
		if err != nil {
			return nil, err
		}
		v = c.remember(value, s)
	}
	return v, c.inTimeAt(v, t)
}

// inTimeAt applies the absolute and idle limits at t: the cookie's own, and the gate's current
// ones, which a reload may have shortened since the cookie was issued. The limits are instants
// worked out when the cookie was first checked: t - issued >= ttl is t at or past issued + ttl,
// t - seen > idle is t past seen + idle.
func (c *sessionCodec) inTimeAt(v *verifiedCookie, t time.Time) error {
	if !t.Before(v.ends) {
		return errSessionExpired
	}
	if c.idle > 0 && t.After(v.idleEnds) {
		return errSessionIdle
	}
	return nil
}

// slidesAt is needsSlide for a remembered cookie.
func (c *sessionCodec) slidesAt(v *verifiedCookie, t time.Time) bool {
	return c.idle > 0 && !t.Before(v.slides)
}

// place is the first of the two places in the table where value is remembered. Only cookies
// the codec signed are remembered, so the hash is taken over their MAC, which no one but the
// codec chooses; the whole value is compared before a place counts as found.
func (c *sessionCodec) place(value string) int {
	return int(maphash.String(c.seed, value[len(value)-sessionMACEncoded:])%(verifiedSlots/2)) * 2
}

// remembered is the cookie of exactly this value, if its signature was checked; else nil.
func (c *sessionCodec) remembered(value string) *verifiedCookie {
	table := c.verified.Load()
	if table == nil || len(value) < sessionMACEncoded {
		return nil
	}
	i := c.place(value)
	if v := table[i].Load(); v != nil && sameCookie(v.value, value) {
		return v
	}
	if v := table[i+1].Load(); v != nil && sameCookie(v.value, value) {
		return v
	}
	return nil
}

// sameCookie compares a remembered cookie with a request's in constant time: the remembered one
// is someone's live session, and how long a comparison takes must not tell how much of it a
// forged cookie got right.
func sameCookie(remembered, value string) bool {
	return subtle.ConstantTimeCompare(readOnlyBytes(remembered), readOnlyBytes(value)) == 1
}

// remember keeps the checked cookie value of s, in a free place of its pair or in place of one
// of the two there.
func (c *sessionCodec) remember(value string, s Session) *verifiedCookie {
	v := &verifiedCookie{value: strings.Clone(value), s: s, name: subjectName(s.Subject), ends: s.Expires}
	if byTTL := s.Issued.Add(c.ttl); byTTL.Before(v.ends) {
		v.ends = byTTL
	}
	v.idleEnds, v.slides = s.Seen.Add(c.idle), s.Seen.Add(c.idle/10)
	table := c.verified.Load()
	if table == nil {
		c.verified.CompareAndSwap(nil, new(verifiedTable))
		table = c.verified.Load()
	}
	i := c.place(v.value)
	if !table[i].CompareAndSwap(nil, v) && !table[i+1].CompareAndSwap(nil, v) {
		table[i+int(c.evict.Add(1)&1)].Store(v)
	}
	return v
}

// verify checks the cookie's signature and reads it.
func (c *sessionCodec) verify(value string) (Session, error) {
	if len(value) > maxSessionCookie || len(value) < sessionMACEncoded+2 {
		return Session{}, errSessionMalformed
	}
	dot := len(value) - sessionMACEncoded - 1
	if value[dot] != '.' {
		return Session{}, errSessionMalformed
	}
	if strictB64.DecodedLen(dot) > maxSessionCookie {
		return Session{}, errSessionMalformed
	}
	sc := c.scratch.Get().(*sessionScratch)
	defer c.scratch.Put(sc)
	n, err := strictB64.Decode(sc.payload[:], readOnlyBytes(value[:dot]))
	if err != nil || n < sessionHeaderLen {
		return Session{}, errSessionMalformed
	}
	payload := sc.payload[:n]
	if m, err := strictB64.Decode(sc.got[:], readOnlyBytes(value[dot+1:])); err != nil || m != 32 {
		return Session{}, errSessionMalformed
	}
	if !hmac.Equal(sc.sign(payload, sc.want[:0]), sc.got[:]) {
		return Session{}, errSessionSignature
	}
	if payload[0] != sessionVersion || n-sessionHeaderLen > maxSubjectLen {
		return Session{}, errSessionMalformed
	}
	if !hmac.Equal(payload[1:9], c.audience[:]) {
		return Session{}, errSessionAudience
	}
	var s Session
	copy(s.ID[:], payload[9:25])
	s.Issued = time.UnixMilli(int64(binary.BigEndian.Uint64(payload[25:33])))
	s.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(payload[33:41])))
	s.Seen = time.UnixMilli(int64(binary.BigEndian.Uint64(payload[41:49])))
	s.Subject = string(payload[sessionHeaderLen:])
	s.subjectID = subjectID(c.subjects, s.Subject)
	return s, nil
}

// needsSlide says whether the cookie should be re-issued to move the idle limit forward: once a
// tenth of the idle limit has passed (3 minutes for 30), so an active visitor's idle window is
// never less than 90% of session_idle, and a busy site re-signs each cookie rarely.
func (c *sessionCodec) needsSlide(s Session, t time.Time) bool {
	return c.idle > 0 && t.Sub(s.Seen) >= c.idle/10
}

// subjectID names a subject in revocations by a keyed hash, so the store holds no phone.
func subjectID(key []byte, subject string) (id [16]byte) {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(subject))
	copy(id[:], m.Sum(nil))
	return id
}

// revokedBy says whether a session (or trusted browser) is revoked: its own id was, or its
// subject was signed out everywhere at or after it was issued.
func revokedBy(s *Session, own, subject int64) bool {
	return own != 0 || subject != 0 && s.Issued.UnixMilli() <= subject
}

// readOnlyBytes views s as bytes without copying it, for functions that only read their input
// (base64 decoding on the hot path). The bytes must not be written.
func readOnlyBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
