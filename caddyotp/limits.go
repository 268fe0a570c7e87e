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

// limits are the gate's abuse controls over its Store: per-address and per-phone counts in fixed
// windows, the cooldown between codes to one phone, and the lockout. Each check counts as it
// checks, so that nothing is stored for a request no limit has counted.
type limits struct {
	store       Store
	subjects    []byte // the key that names phones and addresses in store keys
	ip, send    Limit
	rangeFactor int // how many times ip a range of addresses (limitRange) may make
	lockout     Limit
	perHour     int // codes per hour handed to the provider by this gate; 0: no cap
	resendAfter time.Duration
	now         func() time.Time
	obs         *observer
}

// key names a phone or an address in store keys by a keyed hash, so the store holds neither.
func (l *limits) key(s string) string {
	id := subjectID(l.subjects, s)
	return hex.EncodeToString(id[:])
}

// hit counts one event of kind for subject in the current fixed window of lim. It returns how
// long to wait when the count is over the limit, else 0.
func (l *limits) hit(ctx context.Context, kind, subject string, lim Limit) (time.Duration, error) {
	win := time.Duration(lim.Window)
	t := l.now()
	slot := t.UnixNano() / int64(win)
	n, err := l.store.Incr(ctx, limitKey(kind, l.key(subject), slot), win)
	if err != nil || n <= int64(lim.Count) {
		return 0, err
	}
	return time.Unix(0, (slot+1)*int64(win)).Sub(t), nil
}

// peek says how long to wait when subject's count of kind in the current window of lim has
// reached the limit already, else 0. It counts nothing.
func (l *limits) peek(ctx context.Context, kind, subject string, lim Limit) (time.Duration, error) {
	win := time.Duration(lim.Window)
	t := l.now()
	slot := t.UnixNano() / int64(win)
	v, err := l.store.Get(ctx, limitKey(kind, l.key(subject), slot))
	if n, _ := strconv.ParseInt(string(v), 10, 64); err != nil || n < int64(lim.Count) {
		return 0, err
	}
	return time.Unix(0, (slot+1)*int64(win)).Sub(t), nil
}

// countAddress counts a request from client against ip_limit, by the address (IPv6: its /64).
func (l *limits) countAddress(ctx context.Context, client string) (time.Duration, error) {
	return l.hit(ctx, "ip", limitAddr(client), l.ip)
}

// countAddressAndRange counts an ask for a new code from client: by the address, then by its range
// (limitRange), which may make rangeFactor times as many. A range over its count is refused
// before anything is counted, so that its many addresses cannot leave a counter each; a request
// refused by the address's count is not counted for the range. Checks of codes and sign-outs
// count by the address only, so that the addresses of one range (a carrier's NAT, an office)
// cannot keep each other from entering a code they have.
func (l *limits) countAddressAndRange(ctx context.Context, client string) (time.Duration, error) {
	rangeLim := Limit{Count: l.ip.Count * l.rangeFactor, Window: l.ip.Window}
	if wait, err := l.peek(ctx, "ipr", limitRange(client), rangeLim); err != nil || wait > 0 {
		return wait, err
	}
	if wait, err := l.countAddress(ctx, client); err != nil || wait > 0 {
		return wait, err
	}
	return l.hit(ctx, "ipr", limitRange(client), rangeLim)
}

// budgetShare: one range of addresses may spend at most 1/budgetShare of a gate's hourly budget.
const budgetShare = 4

// budgetCount is one count of a gate's hourly budget (max_sms_per_hour).
type budgetCount struct {
	subject string
	lim     Limit
}

// budget is what a code for client spends of gate's codes of the hour: the gate's count, and
// its range's, which may spend at most a share of them. A number that may not sign in spends
// it too: were its counts not the same, whoever fills a range's share could tell by the refusal
// which of the numbers sent was allowed.
func (l *limits) budget(gate, client string) []budgetCount {
	hour := caddy.Duration(time.Hour)
	return []budgetCount{
		{"budget\x00" + gate + "\x00" + limitRange(client), Limit{Count: (l.perHour + budgetShare - 1) / budgetShare, Window: hour}},
		{"budget\x00" + gate, Limit{Count: l.perHour, Window: hour}},
	}
}

// admitCode checks what every new code for phone must pass when client asks for it: the
// lockouts, resend_after since the last code to that phone (whichever flow asked), the gate's
// hourly budget and the phone's send limit; it says how long to wait and which limit refused.
// The budget is read before anything counts, and a try refused after the cooldown started ends
// it again: a try that sends nothing spends neither the phone's cooldown nor its send limit,
// so that whoever spends a budget cannot spend the phones' limits with it.
func (l *limits) admitCode(ctx context.Context, phone, client, gate string) (time.Duration, string, error) {
	phoneKey, pairKey := l.lockKeys(phone, client)
	if wait, err := l.lockedFor(ctx, phoneKey, pairKey); err != nil || wait > 0 {
		return wait, "lockout", err
	}
	if wait, err := l.cooldown(ctx, phone); err != nil || wait > 0 {
		return wait, "resend", err
	}
	refused := func(wait time.Duration, limit string, err error) (time.Duration, string, error) {
		if undo := l.endCooldown(ctx, phone); err == nil {
			err = undo
		}
		return wait, limit, err
	}
	var counts []budgetCount
	if l.perHour > 0 {
		counts = l.budget(gate, client)
	}
	for _, c := range counts {
		if wait, err := l.peek(ctx, "site", c.subject, c.lim); err != nil || wait > 0 {
			return refused(wait, "site", err)
		}
	}
	if wait, err := l.hit(ctx, "send", phone, l.send); err != nil || wait > 0 {
		return refused(wait, "send", err)
	}
	for _, c := range counts {
		if wait, err := l.hit(ctx, "site", c.subject, c.lim); err != nil || wait > 0 {
			return refused(wait, "site", err)
		}
	}
	return 0, "", nil
}

// cooldown starts resend_after for phone and returns 0; or, when it is running already, how
// long it still runs. The time of the last code is kept under the phone; a counter named after
// that time lets exactly one of several parallel requests start the next one.
func (l *limits) cooldown(ctx context.Context, phone string) (time.Duration, error) {
	d := l.resendAfter
	if d <= 0 {
		return 0, nil
	}
	key := l.key(phone)
	v, err := l.store.Get(ctx, cooldownKey(key))
	if err != nil {
		return 0, err
	}
	last, _ := strconv.ParseInt(string(v), 10, 64)
	t := l.now()
	if wait := time.Unix(0, last).Add(d).Sub(t); v != nil && wait > 0 {
		return wait, nil
	}
	if n, err := l.store.Incr(ctx, cooldownClaimKey(key, strconv.FormatInt(last, 10)), d); err != nil || n > 1 {
		return d, err // a parallel request started it
	}
	return 0, l.store.Set(ctx, cooldownKey(key), []byte(strconv.FormatInt(t.UnixNano(), 10)), d)
}

// endCooldown lets phone have a new code at once: the last one could not be sent. It marks the
// last code as sent resend_after ago, which names a fresh counter for the next one.
func (l *limits) endCooldown(ctx context.Context, phone string) error {
	d := l.resendAfter
	if d <= 0 {
		return nil
	}
	return l.store.Set(ctx, cooldownKey(l.key(phone)), []byte(strconv.FormatInt(l.now().Add(-d).UnixNano()-1, 10)), d)
}

// lockKeys name phone's own lockout and that of the pair (phone, client address). Both carry
// the phone's hash tag, so that one Tally counts them in one slot of a Redis Cluster.
func (l *limits) lockKeys(phone, client string) (phoneKey, pairKey string) {
	p := "{" + l.key(phone) + "}"
	return p, p + ":" + l.key(limitAddr(client))
}

// lockedFor returns how long the longer lock of the phone and the pair still runs, or 0.
func (l *limits) lockedFor(ctx context.Context, phoneKey, pairKey string) (time.Duration, error) {
	now := l.now()
	got, err := l.store.Tally(ctx, Tally{Locks: []string{lockKey(phoneKey), lockKey(pairKey)}, Now: now.UnixNano()})
	if err != nil {
		return 0, err
	}
	return l.lockWait(got, now), nil
}

// lockWait is how long after now the longest lock a Tally found still runs, or 0 if none held.
// The store's word that one held is the one that counts: held, but with no time to come that
// its value says (a value that is no time holds, failing closed), it runs the lockout window.
func (l *limits) lockWait(got Tallied, now time.Time) time.Duration {
	if !got.Held {
		return 0
	}
	var wait time.Duration
	for _, v := range got.Locks {
		if until, err := strconv.ParseInt(string(v), 10, 64); v != nil && err == nil {
			wait = max(wait, time.Unix(0, until).Sub(now))
		}
	}
	if wait <= 0 {
		wait = max(time.Duration(l.lockout.Window), time.Second)
	}
	return wait
}

// tries is a code check counted against the lockout before the code is compared.
type tries struct{ pair, phone int64 }

// countTry counts one code check for phone from client, before the code is compared, so that
// parallel guesses cannot outrun the lockout. It returns how long to wait when the pair or the
// phone is locked, or the counts that the check makes. A locked address or phone is refused
// before anything is counted, and a try over its address's count does not count for the phone,
// so that one address's tries never add up to a lock of the phone. One store call (Tally) does
// it all, atomically.
func (l *limits) countTry(ctx context.Context, phone, client string) (tries, time.Duration, error) {
	phoneKey, pairKey := l.lockKeys(phone, client)
	lock := time.Duration(l.lockout.Window)
	count := int64(l.lockout.Count)
	now := l.now()
	got, err := l.store.Tally(ctx, Tally{
		Locks:    []string{lockKey(phoneKey), lockKey(pairKey)},
		Now:      now.UnixNano(),
		Counters: []string{failKey(pairKey), failKey(phoneKey)},
		Caps:     []int64{count, phoneLockFactor * count},
		TTL:      lock,
	})
	if err != nil {
		return tries{}, 0, err
	}
	if wait := l.lockWait(got, now); wait > 0 {
		return tries{}, wait, nil
	}
	var n tries
	if len(got.Counts) > 0 {
		n.pair = got.Counts[0]
	}
	if len(got.Counts) > 1 {
		n.phone = got.Counts[1]
	}
	if n.pair > count || n.phone > phoneLockFactor*count {
		return n, lock, nil // parallel tries got there first; a pair over its count raised no phone's count
	}
	return n, 0, nil
}

// triesLeft is how many more failed tries n leaves before the pair or the phone is locked.
func (l *limits) triesLeft(n tries) int {
	count := int64(l.lockout.Count)
	return int(max(0, min(count-n.pair, phoneLockFactor*count-n.phone)))
}

// tryFailed locks the pair when its consecutive failures reach the lockout count, and the phone
// when its failures from any addresses reach phoneLockFactor times that, and says whether it
// locked either. A lock starts a new count, which it guards until it ends.
func (l *limits) tryFailed(ctx context.Context, phone, client string, n tries) (bool, error) {
	phoneKey, pairKey := l.lockKeys(phone, client)
	d := time.Duration(l.lockout.Window)
	locked := false
	if n.pair >= int64(l.lockout.Count) {
		if err := l.lock(ctx, pairKey); err != nil {
			return false, err
		}
		l.obs.locked(phone, client, l.lockout.Count, d)
		locked = true
	}
	if n.phone >= phoneLockFactor*int64(l.lockout.Count) {
		if err := l.lock(ctx, phoneKey); err != nil {
			return false, err
		}
		l.obs.locked(phone, "", phoneLockFactor*l.lockout.Count, d)
		locked = true
	}
	return locked, nil
}

// lock locks key for the lockout window, then clears its count of failures.
func (l *limits) lock(ctx context.Context, key string) error {
	d := time.Duration(l.lockout.Window)
	if err := l.store.Set(ctx, lockKey(key), []byte(strconv.FormatInt(l.now().Add(d).UnixNano(), 10)), d); err != nil {
		return err
	}
	return l.store.Delete(ctx, failKey(key))
}

// trySucceeded ends the runs of consecutive failures of phone and of the pair.
func (l *limits) trySucceeded(ctx context.Context, phone, client string) error {
	phoneKey, pairKey := l.lockKeys(phone, client)
	if err := l.store.Delete(ctx, failKey(pairKey)); err != nil {
		return err
	}
	return l.store.Delete(ctx, failKey(phoneKey))
}
