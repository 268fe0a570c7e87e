package caddyotp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
	"time"
)

// Session is a signed-in visitor. It lives in a cookie, signed with the session key; the server
// keeps nothing for it but a revocation mark after logout.
type Session struct {
	ID      [16]byte
	Subject string    // the verified phone (E.164)
	Issued  time.Time // sign-in time
	Expires time.Time // absolute end: Issued + session_ttl
	Seen    time.Time // last time the cookie was issued; the idle limit counts from here
}

// Session cookie layout: base64url(payload) "." base64url(HMAC-SHA256(session key, payload)),
// payload = version(1) id(16) issued(8) expires(8) seen(8) subject(rest), times in Unix seconds.
const (
	sessionVersion    = 1
	sessionHeaderLen  = 1 + 16 + 8 + 8 + 8
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
)

// sessionCodec signs and checks session cookies. Its MACs are pooled: the check runs on every
// protected request.
type sessionCodec struct {
	key  []byte
	ttl  time.Duration
	idle time.Duration
	macs sync.Pool
}

func newSessionCodec(key []byte, ttl, idle time.Duration) *sessionCodec {
	c := &sessionCodec{key: key, ttl: ttl, idle: idle}
	c.macs.New = func() any { return hmac.New(sha256.New, key) }
	return c
}

// issue starts a new session for subject with a fresh random id.
func (c *sessionCodec) issue(subject string, t time.Time) (Session, error) {
	s := Session{Subject: subject, Issued: t, Expires: t.Add(c.ttl), Seen: t}
	if _, err := rand.Read(s.ID[:]); err != nil {
		return Session{}, err
	}
	return s, nil
}

// encode returns the cookie value for s.
func (c *sessionCodec) encode(s Session) string {
	payload := make([]byte, sessionHeaderLen, sessionHeaderLen+len(s.Subject))
	payload[0] = sessionVersion
	copy(payload[1:17], s.ID[:])
	binary.BigEndian.PutUint64(payload[17:25], uint64(s.Issued.Unix()))
	binary.BigEndian.PutUint64(payload[25:33], uint64(s.Expires.Unix()))
	binary.BigEndian.PutUint64(payload[33:41], uint64(s.Seen.Unix()))
	payload = append(payload, s.Subject...)
	var sum [32]byte
	c.sign(payload, sum[:0])
	return base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sum[:])
}

func (c *sessionCodec) sign(payload, dst []byte) []byte {
	m := c.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(payload)
	dst = m.Sum(dst)
	c.macs.Put(m)
	return dst
}

// decode checks the signature first, then the version and the time limits at t.
func (c *sessionCodec) decode(value string, t time.Time) (Session, error) {
	if len(value) > maxSessionCookie || len(value) < sessionMACEncoded+2 {
		return Session{}, errSessionMalformed
	}
	dot := len(value) - sessionMACEncoded - 1
	if value[dot] != '.' {
		return Session{}, errSessionMalformed
	}
	var pbuf [maxSessionCookie]byte
	n, err := strictB64.Decode(pbuf[:], []byte(value[:dot]))
	if err != nil || n < sessionHeaderLen {
		return Session{}, errSessionMalformed
	}
	payload := pbuf[:n]
	var got, want [32]byte
	if m, err := strictB64.Decode(got[:], []byte(value[dot+1:])); err != nil || m != 32 {
		return Session{}, errSessionMalformed
	}
	if !hmac.Equal(c.sign(payload, want[:0]), got[:]) {
		return Session{}, errSessionSignature
	}
	if payload[0] != sessionVersion || n-sessionHeaderLen > maxSubjectLen {
		return Session{}, errSessionMalformed
	}
	var s Session
	copy(s.ID[:], payload[1:17])
	s.Issued = time.Unix(int64(binary.BigEndian.Uint64(payload[17:25])), 0)
	s.Expires = time.Unix(int64(binary.BigEndian.Uint64(payload[25:33])), 0)
	s.Seen = time.Unix(int64(binary.BigEndian.Uint64(payload[33:41])), 0)
	if !t.Before(s.Expires) {
		return Session{}, errSessionExpired
	}
	if c.idle > 0 && t.Sub(s.Seen) > c.idle {
		return Session{}, errSessionIdle
	}
	s.Subject = string(payload[sessionHeaderLen:])
	return s, nil
}

// needsSlide says whether the cookie should be re-issued to move the idle limit forward.
// It happens at most once a minute (or per half idle limit, if that is shorter).
func (c *sessionCodec) needsSlide(s Session, t time.Time) bool {
	if c.idle <= 0 {
		return false
	}
	step := min(time.Minute, c.idle/2)
	return t.Sub(s.Seen) >= step
}

// revocationID is how the store names a session id.
func revocationID(id [16]byte) string {
	return hex.EncodeToString(id[:])
}
