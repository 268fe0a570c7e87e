package caddyotp

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func newTestMemoryStore(t *testing.T) *MemoryStore {
	t.Helper()
	s := &MemoryStore{Name: t.Name()}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
	return s
}

func TestMemoryStoreTakeGivesTheValueToExactlyOne(t *testing.T) {
	s := newTestMemoryStore(t)
	ctx := context.Background()
	for round := 0; round < 50; round++ {
		_ = s.Set(ctx, "k", []byte("v"), time.Minute)
		var winners atomic.Int32
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if v, _ := s.Take(ctx, "k"); v != nil {
					winners.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := winners.Load(); n != 1 {
			t.Fatalf("round %d: %d takers got the value", round, n)
		}
	}
}

func TestMemoryStoreIncrIsAtomic(t *testing.T) {
	s := newTestMemoryStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = s.Incr(ctx, "n", time.Minute) }()
	}
	wg.Wait()
	if n, _ := s.Incr(ctx, "n", time.Minute); n != 101 {
		t.Errorf("count after 100 concurrent increments and one more = %d, want 101", n)
	}
}

func TestMemoryStoreStateOutlivesReloadButNotTheLastUser(t *testing.T) {
	ctx := context.Background()
	old := &MemoryStore{Name: t.Name()}
	_ = old.Provision(caddy.Context{})
	_ = old.Set(ctx, "flow:x", []byte("pending"), time.Minute)

	// A reload provisions the new config before the old one is cleaned up.
	next := &MemoryStore{Name: t.Name()}
	_ = next.Provision(caddy.Context{})
	_ = old.Cleanup()
	if v, _ := next.Get(ctx, "flow:x"); string(v) != "pending" {
		t.Fatalf("after reload: %q", v)
	}
	_ = next.Cleanup()

	fresh := &MemoryStore{Name: t.Name()}
	_ = fresh.Provision(caddy.Context{})
	defer fresh.Cleanup()
	if v, _ := fresh.Get(ctx, "flow:x"); v != nil {
		t.Errorf("state survived its last user: %q", v)
	}
}
