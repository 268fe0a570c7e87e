package caddyotp

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// Store keeps the gate's short-lived state: pending flows, counters and revocations.
// Every value expires after its TTL. A missing or expired key reads as nil with a nil error;
// an error means the store could not answer, and the gate then fails closed.
type Store interface {
	// Get returns the value at key, or nil.
	Get(ctx context.Context, key string) ([]byte, error)
	// Set stores value at key for ttl, replacing any value there.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Take returns the value at key and deletes it in one atomic step: of several concurrent
	// Takes of the same key, exactly one gets the value.
	Take(ctx context.Context, key string) ([]byte, error)
	// Delete removes key; removing a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Incr adds one to the counter at key and returns the new count, atomically. A counter
	// that did not exist starts at 1 and expires after ttl; later increments keep that expiry.
	// Get reads a counter as its count in decimal.
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// Raise stores value at key for ttl if the key holds nothing, or a value whose first byte
	// (its rank) is lower than value's, atomically: a value that ranks the same or lower never
	// replaces one there. It reports whether it stored value.
	Raise(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error)
	// Revoke records r for every user of the store. It is idempotent per id: one record, whose
	// time and end only ever move later. Records are bounded per subject: once
	// maxSubjectRevocations live records of r.Subject exist, a revocation of another of its ids
	// is recorded as the subject's own ("everywhere") record at r.At instead, kept for
	// subjectRevocationTTL.
	Revoke(ctx context.Context, r Revocation) error
	// RevokedAt returns when id was revoked, in Unix milliseconds, or 0 if it was not. It runs
	// on every protected request, so it must answer from local state, without allocating; an
	// error means that state is too old to trust. A revocation lasts as long as what it revokes
	// would have, so it may still answer after its ttl: what it revoked has expired too.
	RevokedAt(ctx context.Context, id [16]byte) (int64, error)
	// Tally reads t's locks and, if none holds at t.Now, increments its counters as Incr does,
	// in order, stopping after the first whose count passes its cap: in one atomic step, so
	// that parallel tries cannot slip between a look at a lock and a count. Every key of one
	// Tally has the same hash tag ({...}), so that a Redis Cluster keeps them in one slot.
	Tally(ctx context.Context, t Tally) (Tallied, error)
	// Window counts one event in a sliding window unless a hold or the window's cap stops it,
	// in one atomic step (store_window.go). Every key of one Window has the same hash tag.
	Window(ctx context.Context, w Window) (Windowed, error)
}

// Tally is one try counted against runs of consecutive failures (a lockout).
type Tally struct {
	// Read first. A lock's value is the Unix time in nanoseconds until which it holds, in
	// decimal; while one holds at Now, nothing is counted. A lock past its time counts as none,
	// even while its key has not expired yet.
	Locks    []string
	Now      int64
	Counters []string // then each incremented in order; a new one expires after TTL
	Caps     []int64  // one per counter: the count past which the later counters are not counted
	TTL      time.Duration
}

// Tallied is what a Tally found: whether a lock held (then nothing was counted), the locks'
// values (nil where none), and the counts of the counters it incremented, in order.
type Tallied struct {
	Held   bool
	Locks  [][]byte
	Counts []int64
}

// Revocation says that ID was revoked at At, and is to be remembered for TTL: as long as what
// it revokes could live. ID is a session's or a trusted browser's id, or, for "sign out
// everywhere", Subject itself.
type Revocation struct {
	ID, Subject [16]byte
	At          time.Time
	TTL         time.Duration
}

// everywhere says whether r is a subject's own record, which ends everything of the subject
// issued until r.At.
func (r Revocation) everywhere() bool { return r.ID == r.Subject }

const (
	// maxSubjectRevocations bounds the live records of one subject: a trusted browser mints
	// session ids without an SMS, so revoking them one by one could grow without end.
	maxSubjectRevocations = 100
	// subjectRevocationTTL is how long a subject's record lives: the longest anything can be
	// issued for (trust_device is at most 400 days), whatever the config says today.
	subjectRevocationTTL = 400 * 24 * time.Hour
)

// revocation is when an id was revoked (Unix ms, on the gate's clock) and until when the
// record is kept (Unix ns, on the machine's clock, for sweeping).
type revocation struct {
	at, until int64
}

// revocations are revoked ids. Expired records are swept when the set has doubled since the
// last sweep, so it stays within twice its live size.
type revocations struct {
	mu        sync.RWMutex
	revs      map[[16]byte]revocation
	swept     int
	bySubject map[[16]byte]map[[16]byte]int64 // the memory store's: a subject's ids, and their ends (Unix ns)
}

// revoke records r as the Store contract says, with the subject's bound, at now.
func (r *revocations) revoke(rv Revocation, now time.Time) {
	id, rec := rv.ID, revocation{at: rv.At.UnixMilli(), until: now.Add(rv.TTL).UnixNano()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !rv.everywhere() {
		if r.bySubject == nil {
			r.bySubject = make(map[[16]byte]map[[16]byte]int64)
		}
		ids := r.bySubject[rv.Subject]
		if ids == nil {
			ids = make(map[[16]byte]int64)
			r.bySubject[rv.Subject] = ids
		}
		for other, until := range ids {
			if until <= now.UnixNano() {
				delete(ids, other)
			}
		}
		if _, known := ids[id]; !known && len(ids) >= maxSubjectRevocations {
			id, rec = rv.Subject, revocation{at: rec.at, until: now.Add(subjectRevocationTTL).UnixNano()}
		} else {
			ids[id] = max(ids[id], rec.until)
		}
	}
	r.addLocked(id, rec)
}

func (r *revocations) add(id [16]byte, rev revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(id, rev)
}

func (r *revocations) addLocked(id [16]byte, rev revocation) {
	if r.revs == nil {
		r.revs = make(map[[16]byte]revocation)
	}
	r.revs[id] = later(r.revs[id], rev)
	if len(r.revs) >= 2*max(r.swept, 512) {
		now := time.Now().UnixNano()
		for id, rev := range r.revs {
			if rev.until <= now {
				delete(r.revs, id)
			}
		}
		for subject, ids := range r.bySubject {
			for id, until := range ids {
				if until <= now {
					delete(ids, id)
				}
			}
			if len(ids) == 0 {
				delete(r.bySubject, subject)
			}
		}
		r.swept = len(r.revs)
	}
}

// later joins two records of one id: the latest revocation, kept the longest.
func later(a, b revocation) revocation {
	return revocation{at: max(a.at, b.at), until: max(a.until, b.until)}
}

func (r *revocations) clear() {
	r.mu.Lock()
	r.revs, r.swept, r.bySubject = nil, 0, nil
	r.mu.Unlock()
}

// at returns when id was revoked, or 0; expired records linger until a sweep, harmlessly (see
// Store).
func (r *revocations) at(id [16]byte) int64 {
	r.mu.RLock()
	rev := r.revs[id]
	r.mu.RUnlock()
	return rev.at
}

// merge makes all the set, keeping what the local one knows better: a revocation announced
// while all was being read, or a later one of the same id.
func (r *revocations) merge(all map[[16]byte]revocation, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, rev := range r.revs {
		if rev.until > now {
			all[id] = later(all[id], rev)
		}
	}
	r.revs, r.swept = all, len(all)
}

// holds says whether a lock whose value is v (Tally.Locks) holds at now. A value that is not a
// time in decimal digits holds: a lock fails closed.
func holds(v []byte, now int64) bool {
	until, err := strconv.ParseUint(string(v), 10, 63)
	return err != nil || int64(until) > now
}
