package caddyotp

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(faultStore{})
}

// storeDown switches every faultStore off: each operation then fails as an unreachable store would.
var storeDown atomic.Bool

var errStoreDown = errors.New("store unreachable (injected)")

// keysDown, when set, makes every faultStore's Set of a key with that prefix fail, as a store
// that fails one write of a request and not the others.
var keysDown atomic.Pointer[string]

// faultStore is the memory store with a switch, so tests can take the store away mid-flow
// (module http.handlers.otp.stores.test_fault, registered only in tests).
type faultStore struct{ MemoryStore }

func (faultStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.otp.stores.test_fault", New: func() caddy.Module { return new(faultStore) }}
}

func (s *faultStore) Get(ctx context.Context, key string) ([]byte, error) {
	if storeDown.Load() {
		return nil, errStoreDown
	}
	return s.MemoryStore.Get(ctx, key)
}

func (s *faultStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if p := keysDown.Load(); storeDown.Load() || p != nil && strings.HasPrefix(key, *p) {
		return errStoreDown
	}
	return s.MemoryStore.Set(ctx, key, value, ttl)
}

func (s *faultStore) Take(ctx context.Context, key string) ([]byte, error) {
	if storeDown.Load() {
		return nil, errStoreDown
	}
	return s.MemoryStore.Take(ctx, key)
}

func (s *faultStore) Delete(ctx context.Context, key string) error {
	if storeDown.Load() {
		return errStoreDown
	}
	return s.MemoryStore.Delete(ctx, key)
}

func (s *faultStore) Raise(ctx context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	if storeDown.Load() {
		return false, errStoreDown
	}
	return s.MemoryStore.Raise(ctx, key, value, ttl)
}

func (s *faultStore) Incr(ctx context.Context, key string, ttl time.Duration) (int64, error) {
	if storeDown.Load() {
		return 0, errStoreDown
	}
	return s.MemoryStore.Incr(ctx, key, ttl)
}

func (s *faultStore) Revoke(ctx context.Context, r Revocation) error {
	if storeDown.Load() {
		return errStoreDown
	}
	return s.MemoryStore.Revoke(ctx, r)
}

func (s *faultStore) RevokedAt(ctx context.Context, id [16]byte) (int64, error) {
	if storeDown.Load() {
		return 0, errStoreDown
	}
	return s.MemoryStore.RevokedAt(ctx, id)
}

func (s *faultStore) Tally(ctx context.Context, t Tally) (Tallied, error) {
	if storeDown.Load() {
		return Tallied{}, errStoreDown
	}
	return s.MemoryStore.Tally(ctx, t)
}

func (s *faultStore) Window(ctx context.Context, w Window) (Windowed, error) {
	if storeDown.Load() {
		return Windowed{}, errStoreDown
	}
	return s.MemoryStore.Window(ctx, w)
}
