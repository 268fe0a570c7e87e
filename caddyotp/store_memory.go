package caddyotp

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/patrickmn/go-cache"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
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

// storeName names the state this store holds, for the gate's default audience.
func (s *MemoryStore) storeName() string { return "memory\x00" + s.Name }

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

func (s *MemoryStore) Raise(_ context.Context, key string, value []byte, ttl time.Duration) (bool, error) {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	if len(value) == 0 {
		return false, nil
	}
	if old := s.mem.get(key); len(old) > 0 && old[0] >= value[0] {
		return false, nil
	}
	s.mem.c.Set(key, value, ttl)
	return true, nil
}

func (s *MemoryStore) Delete(_ context.Context, key string) error {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	s.mem.c.Delete(key)
	return nil
}

func (s *MemoryStore) Revoke(_ context.Context, r Revocation) error {
	s.mem.revs.revoke(r, time.Now())
	return nil
}

func (s *MemoryStore) RevokedAt(_ context.Context, id [16]byte) (int64, error) {
	return s.mem.revs.at(id), nil
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

func (m *memoryBackend) get(key string) []byte {
	v, ok := m.c.Get(key)
	if !ok {
		return nil
	}
	if n, ok := v.(int64); ok { // a counter reads as its decimal, as in Redis
		return strconv.AppendInt(nil, n, 10)
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

// UnmarshalCaddyfile reads the memory store, the default:
//
//	store memory [NAME]    # gates that name the same store share its state
func (s *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		s.Name = d.Val()
	}
	if d.NextArg() || d.NextBlock(0) {
		return d.Errf("memory store takes at most a name")
	}
	return nil
}

var (
	_ Store                 = (*MemoryStore)(nil)
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
)

func (s *MemoryStore) Tally(_ context.Context, t Tally) (Tallied, error) {
	s.mem.mu.Lock()
	defer s.mem.mu.Unlock()
	var out Tallied
	locked := false
	for _, k := range t.Locks {
		b := s.mem.get(k)
		out.Locks = append(out.Locks, b)
		locked = locked || b != nil && holds(b, t.Now)
	}
	if locked {
		out.Held = true
		return out, nil
	}
	for i, k := range t.Counters {
		n, err := s.mem.c.IncrementInt64(k, 1)
		if err != nil { // missing or expired: start a new counter
			n = 1
			s.mem.c.Set(k, n, t.TTL)
		}
		out.Counts = append(out.Counts, n)
		if n > t.Caps[i] {
			break
		}
	}
	return out, nil
}
