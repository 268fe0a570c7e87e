package caddyotp

import (
	"context"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Limit is Count events per Window (for lockout: Count consecutive failures, then locked for Window).
type Limit struct {
	Count  int            `json:"count,omitempty"`
	Window caddy.Duration `json:"window,omitempty"`
}

// subjectKey names a phone or an IP in store keys by a keyed hash, so the store holds neither.
func (h *Handler) subjectKey(s string) string {
	id := subjectID(h.keys.subject, s)
	return hex.EncodeToString(id[:])
}

// hit counts one event of kind for subject in the current fixed window of l. It returns how long
// to wait when the count is over the limit, else 0.
func (h *Handler) hit(ctx context.Context, kind, subject string, l *Limit) (time.Duration, error) {
	win := time.Duration(l.Window)
	t := now()
	slot := t.UnixNano() / int64(win)
	key := "lim:" + kind + ":" + h.subjectKey(subject) + ":" + strconv.FormatInt(slot, 10)
	n, err := h.store.Incr(ctx, key, win)
	if err != nil || n <= int64(l.Count) {
		return 0, err
	}
	return time.Unix(0, (slot+1)*int64(win)).Sub(t), nil
}

// sendAllowed checks, in order, the phone's lockout, its send limit and the site's hourly cap,
// and counts the send against the latter two. It says how long to wait and which limit refused.
func (h *Handler) sendAllowed(ctx context.Context, phone string) (time.Duration, string, error) {
	if wait, err := h.lockedFor(ctx, phone); err != nil || wait > 0 {
		return wait, "lockout", err
	}
	if wait, err := h.hit(ctx, "send", phone, h.SendLimit); err != nil || wait > 0 {
		return wait, "send", err
	}
	if h.MaxSMSPerHour > 0 {
		if wait, err := h.hit(ctx, "site", "", &Limit{Count: h.MaxSMSPerHour, Window: caddy.Duration(time.Hour)}); err != nil || wait > 0 {
			return wait, "site", err
		}
	}
	return 0, "", nil
}

// lockedFor returns how long phone stays locked after too many consecutive failures, or 0.
func (h *Handler) lockedFor(ctx context.Context, phone string) (time.Duration, error) {
	v, err := h.store.Get(ctx, "lock:"+h.subjectKey(phone))
	if err != nil || v == nil {
		return 0, err
	}
	until, _ := strconv.ParseInt(string(v), 10, 64)
	return max(0, time.Unix(0, until).Sub(now())), nil
}

// failed counts a wrong code against phone and locks the phone when the count reaches the lockout.
func (h *Handler) failed(ctx context.Context, phone string) error {
	subj := h.subjectKey(phone)
	lock := time.Duration(h.Lockout.Window)
	n, err := h.store.Incr(ctx, "fail:"+subj, lock)
	if err != nil || n < int64(h.Lockout.Count) {
		return err
	}
	until := now().Add(lock).UnixNano()
	if err := h.store.Set(ctx, "lock:"+subj, []byte(strconv.FormatInt(until, 10)), lock); err != nil {
		return err
	}
	h.logger.Warn("phone locked", h.phoneField(phone), zap.Int("failures", h.Lockout.Count), zap.Duration("for", lock))
	return h.store.Delete(ctx, "fail:"+subj)
}

// succeeded ends the run of consecutive failures of phone.
func (h *Handler) succeeded(ctx context.Context, phone string) error {
	return h.store.Delete(ctx, "fail:"+h.subjectKey(phone))
}
