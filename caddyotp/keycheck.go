package caddyotp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// keyCheck finds instances of one gate that share a store but not a key (each with storage of
// its own and no `secret`): each would hash every limit's key differently, so every limit
// would count once per instance, and a code or a session of one would be worthless on the
// others. Each instance keeps its key's fingerprint in the store under the gate's name, on a
// code sent (a request the limits counted, which stores a flow) at most every keyRecheck; one
// that finds another fingerprint there logs an error that says what to do. A fingerprint that
// no instance renews fades after keyFingerprintTTL, so that a changed secret is reported for
// that long at most. It runs in the background: no answer waits for it.
type keyCheck struct {
	store       Store
	fingerprint []byte // the key's, ranked for Store.Raise
	ttl         time.Duration
	now         func() time.Time
	last        atomic.Int64 // when the fingerprint was last checked and kept, Unix ns
	running     atomic.Bool
	obs         *observer
}

const (
	// keyFingerprintTTL is how long a fingerprint is kept since an instance last kept it.
	keyFingerprintTTL = time.Hour
	// keyRecheck is how often a serving instance checks and keeps its fingerprint: well within
	// keyFingerprintTTL, so that a live instance's fingerprint never fades.
	keyRecheck = keyFingerprintTTL / 4
)

func newKeyCheck(store Store, subjectKey []byte, obs *observer, now func() time.Time, ttl time.Duration) *keyCheck {
	m := hmac.New(sha256.New, subjectKey)
	m.Write([]byte("caddy-otp key fingerprint"))
	fp := hex.EncodeToString(m.Sum(nil)[:8])
	return &keyCheck{store: store, fingerprint: append([]byte{'1'}, fp...), ttl: ttl, now: now, obs: obs}
}

// begin checks the fingerprint of gate in the background, unless that was done within
// keyRecheck or is under way.
func (k *keyCheck) begin(gate string) {
	if last := k.last.Load(); last != 0 && k.now().UnixNano()-last < int64(keyRecheck) || !k.running.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer k.running.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := k.check(ctx, gate); err != nil {
			k.obs.storeFailed(err) // the next code sent tries again
			return
		}
		k.last.Store(k.now().UnixNano())
	}()
}

func (k *keyCheck) check(ctx context.Context, gate string) error {
	key := keyFingerprintKey(gate)
	if stored, err := k.store.Raise(ctx, key, k.fingerprint, k.ttl); err != nil || stored {
		return err
	}
	there, err := k.store.Get(ctx, key)
	if err != nil {
		return err
	}
	if there != nil && !bytes.Equal(there, k.fingerprint) {
		k.obs.logger.Error("another instance of this gate uses the same store with a different key: every limit counts "+
			"apart on each instance (so it is multiplied by their number), and codes and sessions of one are refused by the "+
			"others; give every instance the same `secret` (e.g. secret {env.OTP_SECRET}, at least 32 characters), or one "+
			"shared Caddy storage. If the secret (or Caddy's storage) of a single instance was changed, this passes by "+
			"itself within an hour, once the old key's fingerprint fades",
			zap.String("fingerprint_here", string(k.fingerprint[1:])), zap.String("fingerprint_in_store", string(bytes.TrimPrefix(there, []byte{'1'}))))
		return nil
	}
	return k.store.Set(ctx, key, k.fingerprint, k.ttl) // found: keep it another TTL
}
