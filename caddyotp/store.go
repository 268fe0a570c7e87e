package caddyotp

import (
	"context"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/patrickmn/go-cache"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

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
	Incr(ctx context.Context, key string, ttl time.Duration) (int64, error)
	// Revoke marks the session id as signed out for ttl, for every user of the store.
	Revoke(ctx context.Context, id [16]byte, ttl time.Duration) error
	// Revoked says whether the session id is signed out. It runs on every protected request,
	// so it must answer from local state, without allocating; an error means that state is too
	// old to trust. A revocation lasts as long as its session would have, so it may answer true
	// for one whose time is up: the session has then expired too.
	Revoked(ctx context.Context, id [16]byte) (bool, error)
}

// memoryPool holds the memory stores by name, so their state outlives a config reload.
var memoryPool = caddy.NewUsagePool()

// MemoryStore keeps the gate's state in this process's memory (go-cache). It is the default
// store, right for a single Caddy instance. Its state survives `caddy reload` but not a restart.
type MemoryStore struct {
	// Name of the store: handlers that name the same store share its state. Default "default".
	Name string `json:"name,omitempty"`

	mem *memoryBackend
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.otp.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision attaches the store to the shared backend of its name, creating it if needed.
func (s *MemoryStore) Provision(caddy.Context) error {
	if s.Name == "" {
		s.Name = "default"
	}
	v, _, err := memoryPool.LoadOrNew(s.poolKey(), func() (caddy.Destructor, error) {
		return &memoryBackend{c: cache.New(cache.NoExpiration, time.Minute)}, nil
	})
	if err != nil {
		return err
	}
	s.mem = v.(*memoryBackend)
	return nil
}

// Cleanup releases this config's hold on the backend; the last holder frees it.
func (s *MemoryStore) Cleanup() error {
	_, err := memoryPool.Delete(s.poolKey())
	return err
}

func (s *MemoryStore) poolKey() string { return "otp.store.memory." + s.Name }

func (s *MemoryStore) Get(_ context.Context, key string) ([]byte, error) {
	return s.mem.get(key), nil
}

func (s *MemoryStore) Set(_ context.Context, key string, value []byte, ttl time.Duration) error {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	s.mem.c.Set(key, value, ttl)
	return nil
}

func (s *MemoryStore) Take(_ context.Context, key string) ([]byte, error) {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	v := s.mem.get(key)
	if v != nil {
		s.mem.c.Delete(key)
	}
	return v, nil
}

func (s *MemoryStore) Delete(_ context.Context, key string) error {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	s.mem.c.Delete(key)
	return nil
}

func (s *MemoryStore) Revoke(_ context.Context, id [16]byte, ttl time.Duration) error {
	s.mem.revs.add(id, time.Now().Add(ttl).UnixNano())
	return nil
}

func (s *MemoryStore) Revoked(_ context.Context, id [16]byte) (bool, error) {
	return s.mem.revs.has(id), nil
}

func (s *MemoryStore) Incr(_ context.Context, key string, ttl time.Duration) (int64, error) {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	n, err := s.mem.c.IncrementInt64(key, 1)
	if err != nil { // missing or expired: start a new counter
		s.mem.c.Set(key, int64(1), ttl)
		return 1, nil
	}
	return n, nil
}

// memoryBackend is the state shared by every MemoryStore of one name. Its mutex orders the
// writes, so that Take and Incr are atomic; plain reads only take go-cache's lock.
type memoryBackend struct {
	mu   sync.Mutex
	c    *cache.Cache
	revs revocations
}

// revocations are session ids signed out until a time (Unix ns). Expired ones are swept when
// the set has doubled since the last sweep, so it stays within twice its live size.
type revocations struct {
	mu    sync.RWMutex
	until map[[16]byte]int64
	swept int
}

func (r *revocations) add(id [16]byte, until int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil {
		r.until = make(map[[16]byte]int64)
	}
	r.until[id] = max(until, r.until[id])
	if len(r.until) >= 2*max(r.swept, 512) {
		now := time.Now().UnixNano()
		for id, t := range r.until {
			if t <= now {
				delete(r.until, id)
			}
		}
		r.swept = len(r.until)
	}
}

func (r *revocations) clear() {
	r.mu.Lock()
	r.until, r.swept = nil, 0
	r.mu.Unlock()
}

// has says whether id was revoked; expired entries linger until a sweep, harmlessly (see Store).
func (r *revocations) has(id [16]byte) bool {
	r.mu.RLock()
	_, ok := r.until[id]
	r.mu.RUnlock()
	return ok
}

// merge makes all the set, keeping local entries that all lacks: a revocation only ends by
// expiring, so one announced while all was being read must stay.
func (r *revocations) merge(all map[[16]byte]int64, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, until := range r.until {
		if _, ok := all[id]; !ok && until > now {
			all[id] = until
		}
	}
	r.until, r.swept = all, len(all)
}

func (m *memoryBackend) get(key string) []byte {
	v, ok := m.c.Get(key)
	if !ok {
		return nil
	}
	b, _ := v.([]byte)
	return b
}

// Destruct empties the backend when its last config is gone.
func (m *memoryBackend) Destruct() error {
	m.c.Flush()
	m.revs.clear()
	return nil
}

var (
	_ Store              = (*MemoryStore)(nil)
	_ caddy.Provisioner  = (*MemoryStore)(nil)
	_ caddy.CleanerUpper = (*MemoryStore)(nil)
)
