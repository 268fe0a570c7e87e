package caddyotp

import (
	"context"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Limit is Count events per Window (for lockout: Count consecutive failures, then locked for Window).
type Limit struct {
	Count  int            `json:"count,omitempty"`
	Window caddy.Duration `json:"window,omitempty"`
}

// phoneLockFactor: consecutive failures for one phone from any addresses, as a multiple of the
// lockout count, that lock the phone itself. Below it, only the failing address is locked out,
// so that one address cannot lock the owner out.
const phoneLockFactor = 5

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

// codeAllowed checks, in order, what every new code for phone must pass when client asks for
// it: the lockouts, resend_after since the last code to that phone (whichever flow asked), the
// phone's send limit and the site's hourly cap. It counts as it goes, and says how long to wait
// and which limit refused.
func (h *Handler) codeAllowed(ctx context.Context, phone, client string) (time.Duration, string, error) {
	phoneKey, pairKey := h.lockKeys(phone, client)
	lockKeys := []string{phoneKey, pairKey}
	if wait, err := h.lockedFor(ctx, lockKeys...); err != nil || wait > 0 {
		return wait, "lockout", err
	}
	if wait, err := h.cooldown(ctx, phone); err != nil || wait > 0 {
		return wait, "resend", err
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

// cooldown starts resend_after for phone and returns 0; or, when it is running already, how
// long it still runs. The time of the last code is kept under the phone; a counter named after
// that time lets exactly one of several parallel requests start the next one.
func (h *Handler) cooldown(ctx context.Context, phone string) (time.Duration, error) {
	d := time.Duration(h.ResendAfter)
	if d <= 0 {
		return 0, nil
	}
	key := "cool:" + h.subjectKey(phone)
	v, err := h.store.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	last, _ := strconv.ParseInt(string(v), 10, 64)
	t := now()
	if wait := time.Unix(0, last).Add(d).Sub(t); v != nil && wait > 0 {
		return wait, nil
	}
	if n, err := h.store.Incr(ctx, key+":"+strconv.FormatInt(last, 10), d); err != nil || n > 1 {
		return d, err // a parallel request started it
	}
	return 0, h.store.Set(ctx, key, []byte(strconv.FormatInt(t.UnixNano(), 10)), d)
}

// endCooldown lets phone have a new code at once: the last one could not be sent. It marks the
// last code as sent resend_after ago, which names a fresh counter for the next one.
func (h *Handler) endCooldown(ctx context.Context, phone string) error {
	d := time.Duration(h.ResendAfter)
	if d <= 0 {
		return nil
	}
	return h.store.Set(ctx, "cool:"+h.subjectKey(phone), []byte(strconv.FormatInt(now().Add(-d).UnixNano()-1, 10)), d)
}

// lockKeys are the store keys of phone's own lockout and of the pair (phone, client address).
func (h *Handler) lockKeys(phone, client string) (phoneKey, pairKey string) {
	p := h.subjectKey(phone)
	return p, p + ":" + h.subjectKey(limitAddr(client))
}

// lockedFor returns how long the longest lock of keys (lockKeys) still runs, or 0.
func (h *Handler) lockedFor(ctx context.Context, keys ...string) (time.Duration, error) {
	var wait time.Duration
	for _, key := range keys {
		v, err := h.store.Get(ctx, "lock:"+key)
		if err != nil {
			return 0, err
		}
		if v != nil {
			until, _ := strconv.ParseInt(string(v), 10, 64)
			wait = max(wait, time.Unix(0, until).Sub(now()))
		}
	}
	return wait, nil
}

// tries is a code check counted against the lockout before the code is compared.
type tries struct{ pair, phone int64 }

// countTry counts one code check for phone from client, before the code is compared, so that
// parallel guesses cannot outrun the lockout. It returns how long to wait when the pair or the
// phone is locked, or the counts that the check makes. A locked address or phone is refused
// before anything is counted, and a try over its address's count does not count for the phone,
// so that one address's tries never add up to a lock of the phone.
func (h *Handler) countTry(ctx context.Context, phone, client string) (tries, time.Duration, error) {
	phoneKey, pairKey := h.lockKeys(phone, client)
	if wait, err := h.lockedFor(ctx, phoneKey, pairKey); err != nil || wait > 0 {
		return tries{}, wait, err
	}
	lock := time.Duration(h.Lockout.Window)
	var n tries
	var err error
	if n.pair, err = h.store.Incr(ctx, "fail:"+pairKey, lock); err != nil {
		return n, 0, err
	}
	if n.pair > int64(h.Lockout.Count) {
		return n, lock, nil // parallel tries from this address got there first; the phone's count is not theirs to raise
	}
	if n.phone, err = h.store.Incr(ctx, "fail:"+phoneKey, lock); err != nil {
		return n, 0, err
	}
	// Looked at after counting: a lock set since the first look was set after this count, by a
	// try that counted before it, so of the tries that race one lock at most its count compare.
	if wait, err := h.lockedFor(ctx, phoneKey, pairKey); err != nil || wait > 0 {
		return n, wait, err
	}
	if n.phone > phoneLockFactor*int64(h.Lockout.Count) {
		return n, lock, nil // parallel tries got there first
	}
	return n, 0, nil
}

// tryFailed locks the pair when its consecutive failures reach the lockout count, and the phone
// when its failures from any addresses reach phoneLockFactor times that. A lock starts a new
// count, which it guards until it ends.
func (h *Handler) tryFailed(ctx context.Context, phone, client string, n tries) error {
	phoneKey, pairKey := h.lockKeys(phone, client)
	if n.pair >= int64(h.Lockout.Count) {
		if err := h.lock(ctx, pairKey); err != nil {
			return err
		}
		h.obs.locked(phone, client, h.Lockout.Count, time.Duration(h.Lockout.Window))
	}
	if n.phone >= phoneLockFactor*int64(h.Lockout.Count) {
		if err := h.lock(ctx, phoneKey); err != nil {
			return err
		}
		h.obs.locked(phone, "", phoneLockFactor*h.Lockout.Count, time.Duration(h.Lockout.Window))
	}
	return nil
}

// lock locks key for the lockout window, then clears its count of failures.
func (h *Handler) lock(ctx context.Context, key string) error {
	d := time.Duration(h.Lockout.Window)
	if err := h.store.Set(ctx, "lock:"+key, []byte(strconv.FormatInt(now().Add(d).UnixNano(), 10)), d); err != nil {
		return err
	}
	return h.store.Delete(ctx, "fail:"+key)
}

// trySucceeded ends the runs of consecutive failures of phone and of the pair.
func (h *Handler) trySucceeded(ctx context.Context, phone, client string) error {
	phoneKey, pairKey := h.lockKeys(phone, client)
	if err := h.store.Delete(ctx, "fail:"+pairKey); err != nil {
		return err
	}
	return h.store.Delete(ctx, "fail:"+phoneKey)
}
