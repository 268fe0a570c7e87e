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
// others. Each instance keeps its key's fingerprint in the store under the gate's name, once,
// on its first code sent (a request the limits counted, which stores a flow); one that finds another fingerprint there logs an
// error that says what to do. It runs in the background: no answer waits for it.
type keyCheck struct {
	store       Store
	fingerprint []byte // the key's, ranked for Store.Raise
	state       atomic.Int32
	obs         *observer
}

const (
	keyUnchecked int32 = iota
	keyChecking
	keyChecked
)

// keyFingerprintTTL is how long a fingerprint is kept since an instance last found it there.
const keyFingerprintTTL = 30 * 24 * time.Hour

func newKeyCheck(store Store, subjectKey []byte, obs *observer) *keyCheck {
	m := hmac.New(sha256.New, subjectKey)
	m.Write([]byte("caddy-otp key fingerprint"))
	fp := hex.EncodeToString(m.Sum(nil)[:8])
	return &keyCheck{store: store, fingerprint: append([]byte{'1'}, fp...), obs: obs}
}

// begin checks the fingerprint of gate in the background, unless that is done or under way.
func (k *keyCheck) begin(gate string) {
	if k.state.Load() == keyChecked || !k.state.CompareAndSwap(keyUnchecked, keyChecking) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := k.check(ctx, gate); err != nil {
			k.obs.storeFailed(err)
			k.state.Store(keyUnchecked) // the next request tries again
			return
		}
		k.state.Store(keyChecked)
	}()
}

func (k *keyCheck) check(ctx context.Context, gate string) error {
	key := keyFingerprintKey(gate)
	if stored, err := k.store.Raise(ctx, key, k.fingerprint, keyFingerprintTTL); err != nil || stored {
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
			"shared Caddy storage",
			zap.String("fingerprint_here", string(k.fingerprint[1:])), zap.String("fingerprint_in_store", string(bytes.TrimPrefix(there, []byte{'1'}))))
		return nil
	}
	return k.store.Set(ctx, key, k.fingerprint, keyFingerprintTTL) // found: keep it another TTL
}
