package caddyotp

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// signins are the gate's sessions and trusted browsers: which cookie lets a visitor through,
// the session a right code or a trusted browser makes, and sign-out.
type signins struct {
	sessions *sessionCodec
	devices  *sessionCodec // nil unless trust_device
	// reads trusted-browser cookies for sign-out: devices, or while trust_device is off, one
	// that takes any the key signed, so that one issued before is revoked, not forgotten
	deviceCookies *sessionCodec
	store         Store
	allow         *allowlist
	limits        *limits
	flows         *flows
	now           func() time.Time
	obs           *observer
	cookies       *gateCookies
}

// current returns the visitor's session: the session cookie's, if it is genuine, within the
// gate's limits, not revoked, and its subject may pass for the first-factor user; else a new
// one made from such a trusted-browser cookie (read only then), without an SMS (fresh: its
// cookie is to be set).
// An error means the store could not be asked.
func (si *signins) current(ctx context.Context, sessionCookie string, deviceCookie func() string, user string) (s Session, fresh, ok bool, err error) {
	a, ok, err := si.admit(ctx, si.now(), sessionCookie, deviceCookie, func() string { return user })
	return a.s, a.fresh, ok, err
}

// An admission is what lets a request through: the visitor's session, the name the site behind
// the gate knows the visitor by (for {http.auth.user.id}), whether the session cookie is to be
// set: a new session made from a trusted browser (fresh), or one whose idle limit is due to
// slide, and where the session cookie's last Cookie line is remembered (nil for a new session).
type admission struct {
	s            Session
	name         any
	fresh, slide bool
	lines        *atomic.Pointer[strippedLine]
}

// admit is current at t, for the hot path: it also says what the request is to carry on with,
// and reads the first-factor user only when it can matter (see allows).
func (si *signins) admit(ctx context.Context, t time.Time, sessionCookie string, deviceCookie, user func() string) (admission, bool, error) {
	v, ok, err := si.valid(ctx, si.sessions, sessionCookie, user, t)
	if ok || err != nil || si.devices == nil {
		if !ok {
			return admission{}, false, err
		}
		return admission{s: v.s, name: v.name, slide: si.sessions.slidesAt(v, t), lines: &v.lines}, true, nil
	}
	d, ok, err := si.valid(ctx, si.devices, deviceCookie(), user, t)
	if !ok || err != nil {
		return admission{}, false, err
	}
	s, err := si.sessions.issue(d.s.Subject, t)
	if err != nil {
		return admission{}, false, err
	}
	return admission{s: s, name: subjectName(s.Subject), fresh: true}, true, nil
}

func (si *signins) valid(ctx context.Context, codec *sessionCodec, cookie string, user func() string, t time.Time) (*verifiedCookie, bool, error) {
	if cookie == "" {
		return nil, false, nil
	}
	v, err := codec.check(cookie, t)
	if err != nil || !si.allows(v.s.Subject, user) {
		return nil, false, nil
	}
	revoked, err := si.revoked(ctx, &v.s)
	return v, !revoked && err == nil, err
}

// allows is allowlist.allows, with the first-factor user read only when that looks at it: for
// a user's session, or when the gate binds users. Otherwise a phone's session passes by the
// phone alone, and asking Caddy's replacer (a walk through its providers) is spared.
func (si *signins) allows(subject string, user func() string) bool {
	if _, _, isUser := subjectUser(subject); isUser || len(si.allow.users) > 0 {
		return si.allow.allows(subject, user())
	}
	return si.allow.allows(subject, "")
}

// revoked asks the store whether a session or trusted browser, or its subject, was revoked.
func (si *signins) revoked(ctx context.Context, s *Session) (bool, error) {
	own, err := si.store.RevokedAt(ctx, s.ID)
	if err != nil {
		return false, err
	}
	subject, err := si.store.RevokedAt(ctx, s.subjectID)
	return revokedBy(s, own, subject), err
}

// newSessions makes the session for a verified subject and, when asked for and on, a trusted browser.
func (si *signins) newSessions(subject string, trust bool) (s Session, device *Session, err error) {
	t := si.now()
	if s, err = si.sessions.issue(subject, t); err != nil || !trust || si.devices == nil {
		return s, nil, err
	}
	d, err := si.devices.issue(subject, t)
	return s, &d, err
}

// signOut revokes what the visitor's cookies hold, if they are still valid: a copied cookie
// signs out once. On this browser, its session, trusted browser and pending flow end;
// everywhere, every session and trusted browser of the same subject, on any browser. The store
// writes count against ip_limit. The outcome is signedOut, limited or failed.
func (si *signins) signOut(ctx context.Context, sessionCookie, deviceCookie, flowID, client string, everywhere bool) outcome {
	t := si.now()
	var valid []Session
	for _, c := range []struct {
		codec *sessionCodec
		value string
	}{{si.sessions, sessionCookie}, {si.deviceCookies, deviceCookie}} {
		if c.value == "" {
			continue
		}
		s, err := c.codec.decode(c.value, t)
		if err != nil {
			continue // past its limits, or not genuine: nothing to revoke
		}
		revoked, err := si.revoked(ctx, &s)
		if err != nil {
			return failedWith(err)
		}
		if !revoked {
			valid = append(valid, s)
		}
	}
	if len(valid) == 0 {
		return outcome{kind: signedOut}
	}
	if wait, err := si.limits.countAddress(ctx, client); err != nil || wait > 0 {
		return limitedBy("ip", wait, err)
	}
	for _, s := range valid {
		// Until it would expire: past that it is refused anyway.
		if err := si.store.Revoke(ctx, Revocation{ID: s.ID, Subject: s.subjectID, At: t, TTL: s.Expires.Sub(t)}); err != nil {
			return failedWith(err)
		}
	}
	if everywhere {
		// Everything of this subject issued until now, sessions and trusted browsers alike.
		subject := valid[0].subjectID
		if err := si.store.Revoke(ctx, Revocation{ID: subject, Subject: subject, At: t, TTL: subjectRevocationTTL}); err != nil {
			return failedWith(err)
		}
	}
	if err := si.flows.end(ctx, flowID); err != nil {
		return failedWith(err)
	}
	si.obs.revoked(valid[0].Subject, everywhere, client)
	return outcome{kind: signedOut, subject: valid[0].Subject}
}

// signIn gives the visitor the session of a verified subject, and a trusted browser when asked
// for and on, as cookies; the flow that made them ends with its cookie. It returns the session.
func (si *signins) signIn(w http.ResponseWriter, v *visit, subject string, trust bool) (Session, error) {
	s, device, err := si.newSessions(subject, trust)
	if err != nil {
		return s, caddyhttp.Error(http.StatusInternalServerError, err)
	}
	t := si.now()
	si.cookies.set(w, v.secure, sessionCookie, si.sessions.encode(s), s.Expires.Sub(t))
	si.cookies.set(w, v.secure, flowCookie, "", -1)
	if device != nil {
		si.cookies.set(w, v.secure, deviceCookie, si.devices.encode(*device), device.Expires.Sub(t))
	}
	return s, nil
}

// signOutVisitor signs the visitor out (signOut) and, once signed out, clears every gate cookie
// the browser sent (session, trusted browser, flow), whatever the config says today. Refused (a
// limit, the store), the cookies stay, so that a retry can sign out.
func (si *signins) signOutVisitor(ctx context.Context, w http.ResponseWriter, v *visit, everywhere bool) outcome {
	o := si.signOut(ctx, v.session, v.device, v.flowID, v.client, everywhere)
	if o.kind == signedOut {
		for kind, value := range map[string]string{sessionCookie: v.session, deviceCookie: v.device, flowCookie: v.flowID, enrolCookie: v.enrol} {
			if value != "" {
				si.cookies.set(w, v.secure, kind, "", -1)
			}
		}
	}
	return o
}
